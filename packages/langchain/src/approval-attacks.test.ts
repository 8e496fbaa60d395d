// Attacks on interrupt answers through real createAgent loops with a checkpointer: resume values that name requests
// of another thread, requests never raised, odd shapes; a resume after the policy was reloaded; LangChain's own
// human-in-the-loop middleware editing a call before the policy sees it. Each test fails if a tool runs that the
// human did not approve, or an answer resolves a request it was not given for.
import { AgentPolicy, InMemoryApprovalStore, PolicySource, type PolicySession } from '@agentpolicy/core';
import { HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver } from '@langchain/langgraph';
import { createAgent, humanInTheLoopMiddleware, type AgentMiddleware } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentPolicyMiddleware, type ToolApprovalRequest } from './agent-policy-middleware.js';
import { PRICING, USAGE, aiMessage, toolCallMessage } from './test-support.js';

const FINAL = 'All done.';
const thread = (id: string) => ({ configurable: { thread_id: id } });
const requestsOf = (result: { __interrupt__?: { id?: string; value?: unknown }[] }) => (result.__interrupt__ ?? []).map((entry) => entry.value as ToolApprovalRequest);
const toolMessages = (messages: BaseMessage[]) => messages.filter((message): message is ToolMessage => ToolMessage.isInstance(message));

function mailer(sent: string[]) {
  return tool(
    async ({ to }) => {
      sent.push(to);
      return `sent to ${to}`;
    },
    { name: 'send_email', description: 'Send an email', schema: z.object({ to: z.string() }) },
  );
}

// LangChain's own middleware, typed loosely: its config type does not survive exactOptionalPropertyTypes.
const hitl = (interruptOn: Record<string, boolean>) => (humanInTheLoopMiddleware as unknown as (config: unknown) => AgentMiddleware)({ interruptOn });

function agentFor(session: PolicySession, sent: string[], to: string, extra: AgentMiddleware[] = []) {
  const model = fakeModel().respond(toolCallMessage('send_email', { to }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
  return createAgent({ model, tools: [mailer(sent)], middleware: [...extra, agentPolicyMiddleware(session)] as unknown as [AgentMiddleware], checkpointer: new MemorySaver() });
}

const policy = () => new AgentPolicy({ approvalRules: [{ tool: 'send_email' }], pricing: PRICING });

describe('a resume value counts only for the request it names, in its own session', () => {
  it("another thread's request id, in every form, neither runs this call nor answers that request", async () => {
    const store = new InMemoryApprovalStore();
    const sentA: string[] = [];
    const sentB: string[] = [];
    const sessionA = policy().session({ approvals: store });
    const sessionB = policy().session({ approvals: store });
    const agentA = agentFor(sessionA, sentA, 'eve@evil.example');
    const agentB = agentFor(sessionB, sentB, 'bob@ourco.com');
    const [a] = requestsOf(await agentA.invoke({ messages: [new HumanMessage('mail')] }, thread('a')));
    const [b] = requestsOf(await agentB.invoke({ messages: [new HumanMessage('mail')] }, thread('b')));

    for (const resume of [{ [b!.requestId]: true }, { requestId: b!.requestId, approved: true }, { [b!.requestId]: { approved: true, by: 'mallory' } }]) {
      const result = await agentA.invoke(new Command({ resume }), thread('a'));
      expect(requestsOf(result).map((r) => r.requestId)).toEqual([a!.requestId]);
    }
    expect(sentA).toEqual([]);
    // B's request was not answered by A's resumes: it is still pending, and only B's human decides it.
    expect((await sessionB.getApproval(b!.requestId))?.status).toBe('pending');
    expect(sessionA.report().decisions.some((d) => d.decision === 'allow' && d.action.type === 'tool')).toBe(false);

    await agentB.invoke(new Command({ resume: { [b!.requestId]: true } }), thread('b'));
    expect(sentB).toEqual(['bob@ourco.com']);
  });

  it('answers for requests that were never raised, and resume values of odd shapes, approve nothing', async () => {
    const sent: string[] = [];
    const session = policy().session();
    const agent = agentFor(session, sent, 'eve@evil.example');
    const [request] = requestsOf(await agent.invoke({ messages: [new HumanMessage('mail')] }, thread('odd')));
    const id = request!.requestId;
    const values: unknown[] = [
      { apr_AAAAAAAAAAAAAAAAAAAAAA: true },
      { requestId: 'apr_guess', approved: true },
      { [id]: 'yes' },
      { [id]: { approved: 'true' } },
      { [id]: { approved: 1 } },
      { approved: 'true' },
      'approve',
      1,
      [true],
      { requestId: id, approved: 'yes' },
    ];
    for (const resume of values) {
      await agent.invoke(new Command({ resume }), thread('odd')).catch(() => undefined);
      expect(sent).toEqual([]);
    }
    expect(session.report().decisions.some((d) => d.decision === 'allow' && d.action.type === 'tool')).toBe(false);
  });

  it('two pending requests, one answer keyed by the right id and one by a foreign id: only the named call runs', async () => {
    const sent: string[] = [];
    const store = new InMemoryApprovalStore();
    const session = policy().session({ approvals: store });
    const other = policy().session({ approvals: store });
    const foreign = await other.checkTool('send_email', { input: { to: 'eve@evil.example' } });
    const model = fakeModel()
      .respond(
        aiMessage({
          content: '',
          tool_calls: [
            { name: 'send_email', args: { to: 'bob@ourco.com' }, id: 'call_1', type: 'tool_call' },
            { name: 'send_email', args: { to: 'eve@evil.example' }, id: 'call_2', type: 'tool_call' },
          ],
          usage_metadata: USAGE,
        }),
      )
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [mailer(sent)], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });
    const requests = requestsOf(await agent.invoke({ messages: [new HumanMessage('mail both')] }, thread('two')));
    const bob = requests.find((r) => (r.args as { to: string }).to === 'bob@ourco.com')!;

    const result = await agent.invoke(new Command({ resume: { [bob.requestId]: true, [foreign.approvalRequest!.id]: true } }), thread('two'));
    expect(sent).toEqual(['bob@ourco.com']);
    expect(requestsOf(result).map((r) => (r.args as { to: string }).to)).toEqual(['eve@evil.example']);
    expect((await other.getApproval(foreign.approvalRequest!.id))?.status).toBe('pending');
  });
});

describe('a resume is decided again under the policy in force', () => {
  it('a tool blocked by a reload between the interrupt and the approval stays denied', async () => {
    const sent: string[] = [];
    const source = new PolicySource(policy());
    const session = source.session();
    const agent = agentFor(session, sent, 'bob@ourco.com');
    const [request] = requestsOf(await agent.invoke({ messages: [new HumanMessage('mail')] }, thread('reload')));
    expect(source.update({ tools: { block: ['send_email'] } })).toMatchObject({ ok: true });

    const result = await agent.invoke(new Command({ resume: { [request!.requestId]: true } }), thread('reload'));
    expect(sent).toEqual([]);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['error']);
    expect(session.report().decisions.filter((d) => d.action.type === 'tool').at(-1)).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
  });
});

describe("LangChain's human-in-the-loop middleware edits a call before the policy sees it", () => {
  it('an edit to another recipient is decided as edited: the approval rule asks about the edited call', async () => {
    const sent: string[] = [];
    const session = new AgentPolicy({
      rules: [{ require_approval: 'mail outside ourco.com', tool: 'send_email', unless: { 'input.to': { glob: '*@ourco.com' } } }],
      pricing: PRICING,
    } as never).session();
    const agent = agentFor(session, sent, 'bob@ourco.com', [hitl({ send_email: true })]);

    const first = await agent.invoke({ messages: [new HumanMessage('mail')] }, thread('edit'));
    expect(first.__interrupt__).toHaveLength(1);
    const edited = await agent.invoke(new Command({ resume: { decisions: [{ type: 'edit', editedAction: { name: 'send_email', args: { to: 'eve@evil.example' } } }] } }), thread('edit'));

    expect(sent).toEqual([]);
    const [request] = requestsOf(edited);
    expect(request).toMatchObject({ type: 'agentpolicy.approval', args: { to: 'eve@evil.example' } });
    await agent.invoke(new Command({ resume: { [request!.requestId]: true } }), thread('edit'));
    expect(sent).toEqual(['eve@evil.example']);
  });

  it('an edit to another tool name is decided under that name: a blocked tool never runs', async () => {
    const sent: string[] = [];
    const wiped: string[] = [];
    const session = new AgentPolicy({ blockedTools: ['wipe_disk'], pricing: PRICING }).session();
    const wipe = tool(
      async ({ to }) => {
        wiped.push(to);
        return 'wiped';
      },
      { name: 'wipe_disk', description: 'Wipe', schema: z.object({ to: z.string() }) },
    );
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'bob@ourco.com' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({
      model,
      tools: [mailer(sent), wipe],
      middleware: [hitl({ send_email: true }), agentPolicyMiddleware(session)],
      checkpointer: new MemorySaver(),
    });
    await agent.invoke({ messages: [new HumanMessage('mail')] }, thread('rename'));
    await agent.invoke(new Command({ resume: { decisions: [{ type: 'edit', editedAction: { name: 'wipe_disk', args: { to: 'everything' } } }] } }), thread('rename'));
    expect(wiped).toEqual([]);
    expect(sent).toEqual([]);
  });
});
