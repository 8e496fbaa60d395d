// Conditional rules, limits and shadow mode decided on the tool call's arguments, through createAgent with
// LangChain's fakeModel() and the middleware, and through the callback handler on a tool's own invoke.
import { AgentPolicy, ApprovalRequiredError, PolicyDeniedError, type PolicySession } from '@agentpolicy/core';
import { HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver } from '@langchain/langgraph';
import { createAgent } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware, type ToolApprovalRequest } from './agent-policy-middleware.js';
import { USAGE, aiMessage, oneCallPerTurn, type Call } from './test-support.js';
import { ARGUMENT_RULES, SHADOW_CALLS, SHADOW_OUTCOMES } from '@agentpolicy/test-servers';

const FINAL = 'All done.';

function makeTools(ran: string[]) {
  return [
    tool(
      async ({ to }) => {
        ran.push(`send_email ${to}`);
        return `sent to ${to}`;
      },
      { name: 'send_email', description: 'Send an email', schema: z.object({ to: z.string() }) },
    ),
    tool(
      async ({ amount }) => {
        ran.push(`refund ${amount}`);
        return `refunded ${amount}`;
      },
      { name: 'refund', description: 'Refund an order', schema: z.object({ amount: z.number() }) },
    ),
    tool(
      async ({ command }) => {
        ran.push(`shell ${command}`);
        return `ran ${command}`;
      },
      { name: 'shell', description: 'Run a shell command', schema: z.object({ command: z.string() }) },
    ),
    tool(
      async ({ query }) => {
        ran.push(`search ${query}`);
        return `results for ${query}`;
      },
      { name: 'search', description: 'Search', schema: z.object({ query: z.string() }) },
    ),
  ];
}

/** A model that makes all `calls` in one turn, then answers. */
function oneTurn(calls: readonly Call[]) {
  return fakeModel()
    .respond(aiMessage({ content: '', tool_calls: calls.map(([name, args], i) => ({ name, args, id: `call_${i}`, type: 'tool_call' as const })), usage_metadata: USAGE }))
    .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
}


function agentFor(session: PolicySession, ran: string[], model: ReturnType<typeof fakeModel>) {
  return createAgent({ model, tools: makeTools(ran), middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });
}

const thread = (id: string) => ({ configurable: { thread_id: id } });
const toolMessages = (messages: BaseMessage[]) => messages.filter((message): message is ToolMessage => ToolMessage.isInstance(message));
const toolDecisions = (session: PolicySession) => session.report().decisions.filter((d) => d.action.type === 'tool');
const requestsOf = (result: { __interrupt__?: Array<{ value: unknown }> }) => (result.__interrupt__ ?? []).map((entry) => entry.value as ToolApprovalRequest);

describe('argument rules through createAgent and agentPolicyMiddleware', () => {
  it('unless: mail to another domain gets an error ToolMessage and never runs; mail to ourco.com runs', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const model = oneCallPerTurn([
      ['send_email', { to: 'eve@gmail.com' }],
      ['send_email', { to: 'eve@ourco.com.evil.io' }],
      ['send_email', { to: 'ada@ourco.com' }],
    ]);
    const result = await agentFor(session, ran, model).invoke({ messages: [new HumanMessage('mail')] }, thread('mail'));

    expect(ran).toEqual(['send_email ada@ourco.com']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['error', 'error', 'success']);
    expect(toolMessages(result.messages)[0]?.content).toContain('email only to ourco.com');
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    const decisions = toolDecisions(session);
    expect(decisions.map((d) => d.decision)).toEqual(['deny', 'deny', 'allow']);
    expect(decisions[0]).toMatchObject({ rule: { section: 'rules', index: 0 }, action: { input: { to: 'eve@gmail.com' } } });
  });

  it('if gt: large refunds interrupt; approving one request runs exactly that refund, the other asks again', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const model = oneTurn([
      ['refund', { amount: 40 }],
      ['refund', { amount: 250 }],
      ['refund', { amount: 9000 }],
    ]);
    const agent = agentFor(session, ran, model);

    const first = await agent.invoke({ messages: [new HumanMessage('refund')] }, thread('refunds'));
    expect(ran).toEqual(['refund 40']);
    const requests = requestsOf(first);
    expect(requests.map((r) => r.args).sort((a, b) => (a as { amount: number }).amount - (b as { amount: number }).amount)).toEqual([{ amount: 250 }, { amount: 9000 }]);
    expect(requests[0]?.reason).toContain('large refunds');
    const small = requests.find((r) => (r.args as { amount: number }).amount === 250)!;
    const large = requests.find((r) => (r.args as { amount: number }).amount === 9000)!;

    const second = await agent.invoke(new Command({ resume: { requestId: small.requestId, approved: true, by: 'alice' } }), thread('refunds'));
    expect(ran).toEqual(['refund 40', 'refund 250']);
    expect(requestsOf(second).map((r) => r.requestId)).toEqual([large.requestId]);

    const third = await agent.invoke(new Command({ resume: { requestId: large.requestId, approved: false, by: 'alice' } }), thread('refunds'));
    expect(ran).toEqual(['refund 40', 'refund 250']);
    expect(third.messages.at(-1)?.content).toBe(FINAL);
    const approved = toolDecisions(session).filter((d) => d.approved);
    expect(approved).toHaveLength(1);
    expect(approved[0]).toMatchObject({ decision: 'allow', approval: { via: 'request', requestId: small.requestId, by: 'alice' }, action: { input: { amount: 250 } } });
  });

  it('command: rm -rf / and an unparseable command line never reach the shell tool; ls runs', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const model = oneTurn([
      ['shell', { command: 'rm -rf /' }],
      ['shell', { command: 'ls; rm -rf /' }],
      ['shell', { command: 'ls `rm -rf /`' }],
      ['shell', { command: 'ls -la' }],
    ]);
    const result = await agentFor(session, ran, model).invoke({ messages: [new HumanMessage('clean up')] }, thread('shell'));

    expect(ran).toEqual(['shell ls -la']);
    const byId = Object.fromEntries(toolMessages(result.messages).map((m) => [m.tool_call_id, m.status]));
    expect(byId).toEqual({ call_0: 'error', call_1: 'error', call_2: 'error', call_3: 'success' });
    for (const d of toolDecisions(session).filter((d) => d.decision === 'deny')) expect(d.rule).toMatchObject({ section: 'rules', index: 2 });
  });

  it('limits: the third search in one run (max 2 per minute) is denied and never runs', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const model = oneCallPerTurn([
      ['search', { query: 'a' }],
      ['search', { query: 'b' }],
      ['search', { query: 'c' }],
    ]);
    const result = await agentFor(session, ran, model).invoke({ messages: [new HumanMessage('search')] }, thread('limits'));

    expect(ran).toEqual(['search a', 'search b']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['success', 'success', 'error']);
    const decisions = toolDecisions(session);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
    expect(decisions[2]?.rule).toMatchObject({ section: 'limits', index: 0 });
  });

  it('limits: three searches in one turn (run in parallel by the tool node) still run only two', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const model = oneTurn([
      ['search', { query: 'a' }],
      ['search', { query: 'b' }],
      ['search', { query: 'c' }],
    ]);
    await agentFor(session, ran, model).invoke({ messages: [new HumanMessage('search')] }, thread('limits-parallel'));

    expect(ran).toHaveLength(2);
    expect(toolDecisions(session).map((d) => d.decision).sort()).toEqual(['allow', 'allow', 'deny']);
  });

  it('mode: shadow lets every call run, with no interrupt, and records what would have been decided', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict({ ...ARGUMENT_RULES, mode: 'shadow' }).session();
    const model = oneCallPerTurn(SHADOW_CALLS);
    const result = await agentFor(session, ran, model).invoke({ messages: [new HumanMessage('go')] }, thread('shadow'));

    expect(result.__interrupt__).toBeUndefined();
    expect(ran).toEqual(['send_email eve@gmail.com', 'refund 250', 'shell rm -rf /', 'search a', 'search b', 'search c']);
    const decisions = toolDecisions(session);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'allow', 'allow', 'allow', 'allow', 'allow']);
    expect(decisions.map((d) => d.shadow && [d.shadow.decision, d.shadow.rule.section])).toEqual(SHADOW_OUTCOMES);
  });
});

/** A tool's invoke, typed loosely so one helper can hold tools with different schemas. */
interface Invokable {
  invoke(input: unknown, config?: { callbacks?: AgentPolicyCallbackHandler[] }): Promise<unknown>;
}

describe('argument rules through AgentPolicyCallbackHandler on a tool invoke', () => {
  function setup(policy: Record<string, unknown> = ARGUMENT_RULES) {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(policy).session();
    const handler = new AgentPolicyCallbackHandler(session);
    const [sendEmail, refund, shell, search] = makeTools(ran) as unknown as [Invokable, Invokable, Invokable, Invokable];
    return { ran, session, handler, sendEmail, refund, shell, search };
  }
  const denial = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => error);

  it('unless: invoke to another domain rejects before the body runs, as a direct call and as a ToolCall', async () => {
    const { ran, session, handler, sendEmail } = setup();
    const direct = await denial(sendEmail.invoke({ to: 'eve@gmail.com' }, { callbacks: [handler] }));
    expect(PolicyDeniedError.isInstance(direct)).toBe(true);
    expect((direct as PolicyDeniedError).decision.rule).toMatchObject({ section: 'rules', index: 0 });
    const asCall = await denial(sendEmail.invoke({ name: 'send_email', args: { to: 'eve@gmail.com' }, id: 'call_1', type: 'tool_call' }, { callbacks: [handler] }));
    expect(PolicyDeniedError.isInstance(asCall)).toBe(true);
    await expect(sendEmail.invoke({ to: 'ada@ourco.com' }, { callbacks: [handler] })).resolves.toBe('sent to ada@ourco.com');
    expect(ran).toEqual(['send_email ada@ourco.com']);
    expect(toolDecisions(session).map((d) => d.decision)).toEqual(['deny', 'deny', 'allow']);
  });

  it('if gt: a large refund needs approval (denied without an approver); the approver sees and approves that input', async () => {
    const { ran, refund, handler } = setup();
    await expect(refund.invoke({ amount: 40 }, { callbacks: [handler] })).resolves.toBe('refunded 40');
    const asked = await denial(refund.invoke({ amount: 250 }, { callbacks: [handler] }));
    expect(ApprovalRequiredError.isInstance(asked)).toBe(true);
    expect((asked as ApprovalRequiredError).decision).toMatchObject({ decision: 'require_approval', rule: { section: 'rules', index: 1 } });
    expect(ran).toEqual(['refund 40']);

    const seen: unknown[] = [];
    const withApprover = AgentPolicy.fromDict(ARGUMENT_RULES).session({
      approver: async (request) => {
        seen.push(request.action);
        return true;
      },
    });
    await expect(refund.invoke({ amount: 250 }, { callbacks: [new AgentPolicyCallbackHandler(withApprover)] })).resolves.toBe('refunded 250');
    expect(seen).toMatchObject([{ name: 'refund', input: { amount: 250 } }]);
    expect(ran).toEqual(['refund 40', 'refund 250']);
  });

  it('command: rm -rf / and an unparseable command are refused through the shell tool', async () => {
    const { ran, shell, handler } = setup();
    for (const command of ['rm -rf /', 'ls; rm -rf /', 'ls && rm -fr ~']) {
      expect(PolicyDeniedError.isInstance(await denial(shell.invoke({ command }, { callbacks: [handler] }))), command).toBe(true);
    }
    await expect(shell.invoke({ command: 'ls -la' }, { callbacks: [handler] })).resolves.toBe('ran ls -la');
    expect(ran).toEqual(['shell ls -la']);
  });

  it('limits: the third invoke is refused; mode: shadow runs it and records the shadow', async () => {
    const { ran, search, handler } = setup();
    await search.invoke({ query: 'a' }, { callbacks: [handler] });
    await search.invoke({ query: 'b' }, { callbacks: [handler] });
    expect(PolicyDeniedError.isInstance(await denial(search.invoke({ query: 'c' }, { callbacks: [handler] })))).toBe(true);
    expect(ran).toEqual(['search a', 'search b']);

    const shadow = setup({ ...ARGUMENT_RULES, mode: 'shadow' });
    for (const query of ['a', 'b', 'c']) await shadow.search.invoke({ query }, { callbacks: [shadow.handler] });
    await shadow.shell.invoke({ command: 'rm -rf /' }, { callbacks: [shadow.handler] });
    expect(shadow.ran).toEqual(['search a', 'search b', 'search c', 'shell rm -rf /']);
    expect(toolDecisions(shadow.session).map((d) => [d.decision, d.shadow?.decision])).toEqual([
      ['allow', undefined],
      ['allow', undefined],
      ['allow', 'deny'],
      ['allow', 'deny'],
    ]);
  });
});
