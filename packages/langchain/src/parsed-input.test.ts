// The input a policy judges is the input the tool runs with: a tool's zod schema fills defaults and applies
// transforms inside tool.invoke, after the middleware has seen the model's arguments. Through real createAgent loops
// with fakeModel(): rules, approval requests, fingerprints and declared costs all read the schema-parsed input.
import { AgentPolicy, type PolicySession } from '@agentpolicy/core';
import { HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { DynamicTool, tool } from '@langchain/core/tools';
import { Command, MemorySaver } from '@langchain/langgraph';
import { createAgent } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware, type AgentPolicyMiddlewareOptions, type ToolApprovalRequest } from './agent-policy-middleware.js';
import { oneCallPerTurn, type Call } from './test-support.js';

const FINAL = 'All done.';

const POLICY = {
  rules: [
    { deny: 'no recursive deletes', tool: 'delete_path', if: { 'input.recursive': { eq: true } } },
    { deny: 'email only to ourco.com', tool: 'send_email', unless: { 'input.to': { glob: '*@ourco.com' } } },
    { require_approval: 'publishing needs a human', tool: 'publish', if: { 'input.visibility': { eq: 'public' } } },
    { deny: 'no secrets', tool: 'shell', if: { 'input.input': { glob: '*secret*' } } },
  ],
};

function makeTools(ran: string[]) {
  return [
    tool(
      async ({ path, recursive }) => {
        ran.push(`delete_path ${path} recursive=${recursive}`);
        return `deleted ${path}`;
      },
      { name: 'delete_path', description: 'Delete a path', schema: z.object({ path: z.string(), recursive: z.boolean().default(true) }) },
    ),
    tool(
      async ({ to }) => {
        ran.push(`send_email ${to}`);
        return `sent to ${to}`;
      },
      {
        name: 'send_email',
        description: 'Send an email',
        schema: z.object({ to: z.string().transform((to) => to.trim().toLowerCase()) }),
      },
    ),
    tool(
      async ({ page, visibility }) => {
        ran.push(`publish ${page} ${visibility}`);
        return `published ${page}`;
      },
      { name: 'publish', description: 'Publish a page', schema: z.object({ page: z.string(), visibility: z.enum(['draft', 'public']).default('public') }) },
    ),
    tool(
      async ({ count }) => {
        ran.push(`count ${count}`);
        return `counted ${count}`;
      },
      { name: 'count', description: 'Count', schema: z.object({ count: z.number().int().positive() }) },
    ),
    new DynamicTool({
      name: 'shell',
      description: 'Run a command line',
      func: async (line: string) => {
        ran.push(`shell ${line}`);
        return `ran ${line}`;
      },
    }),
  ];
}


function agentFor(session: PolicySession, ran: string[], calls: readonly Call[], options: AgentPolicyMiddlewareOptions = {}) {
  return createAgent({ model: oneCallPerTurn(calls), tools: makeTools(ran), middleware: [agentPolicyMiddleware(session, options)], checkpointer: new MemorySaver() });
}

const thread = (id: string) => ({ configurable: { thread_id: id } });
const toolMessages = (messages: BaseMessage[]) => messages.filter((message): message is ToolMessage => ToolMessage.isInstance(message));
const toolDecisions = (session: PolicySession) => session.report().decisions.filter((d) => d.action.type === 'tool');
const requestsOf = (result: { __interrupt__?: Array<{ value: unknown }> }) => (result.__interrupt__ ?? []).map((entry) => entry.value as ToolApprovalRequest);

describe('agentPolicyMiddleware judges the input the tool runs with', () => {
  it('a field the schema defaults (recursive: true) is caught by an if rule although the model left it out', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const calls: Call[] = [
      ['delete_path', { path: '/data' }],
      ['delete_path', { path: '/tmp/x', recursive: false }],
    ];
    const result = await agentFor(session, ran, calls).invoke({ messages: [new HumanMessage('clean')] }, thread('default'));

    expect(ran).toEqual(['delete_path /tmp/x recursive=false']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['error', 'success']);
    expect(toolMessages(result.messages)[0]?.content).toContain('no recursive deletes');
    const decisions = toolDecisions(session);
    expect(decisions.map((d) => d.decision)).toEqual(['deny', 'allow']);
    expect(decisions[0]).toMatchObject({ rule: { section: 'rules', index: 0 }, action: { input: { path: '/data', recursive: true } } });
  });

  it('an unless glob judges the transformed value: a padded, upper-case address that trims to ourco.com runs as such', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const calls: Call[] = [
      ['send_email', { to: '  Ada@OurCo.com ' }],
      ['send_email', { to: 'eve@ourco.com.evil.io ' }],
    ];
    const result = await agentFor(session, ran, calls).invoke({ messages: [new HumanMessage('mail')] }, thread('transform'));

    // Raw, the first address fails the glob (padding and case); as the tool gets it, it passes.
    expect(ran).toEqual(['send_email ada@ourco.com']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['success', 'error']);
    expect(toolDecisions(session).map((d) => [d.decision, d.action.type === 'tool' ? d.action.input : undefined])).toEqual([
      ['allow', { to: 'ada@ourco.com' }],
      ['deny', { to: 'eve@ourco.com.evil.io' }],
    ]);
  });

  it('the approval request shows the parsed input, its fingerprint is bound to it, and approving it runs the tool once', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const agent = agentFor(session, ran, [['publish', { page: 'home' }]]);

    const first = await agent.invoke({ messages: [new HumanMessage('publish')] }, thread('approval'));
    expect(ran).toEqual([]);
    const [request] = requestsOf(first);
    expect(request).toMatchObject({ tool: 'publish', args: { page: 'home', visibility: 'public' }, reason: expect.stringContaining('publishing needs a human') });
    const pending = await session.pendingApprovals();
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatchObject({ id: request!.requestId, fingerprint: request!.fingerprint, action: { input: { page: 'home', visibility: 'public' } } });

    const second = await agent.invoke(new Command({ resume: { [request!.requestId]: { approved: true, by: 'alice' } } }), thread('approval'));
    expect(second.__interrupt__).toBeUndefined();
    expect(ran).toEqual(['publish home public']);
    expect(second.messages.at(-1)?.content).toBe(FINAL);
    const approved = toolDecisions(session).filter((d) => d.decision === 'allow');
    expect(approved).toHaveLength(1);
    expect(approved[0]).toMatchObject({ approval: { via: 'request', requestId: request!.requestId, by: 'alice' }, action: { input: { page: 'home', visibility: 'public' } } });
  });

  it('a default that differs on every parse (a generated id): the resumed call is decided on the input the human approved, and runs once', async () => {
    const ran: string[] = [];
    let next = 0;
    const ticket = tool(
      async ({ title, id }) => {
        ran.push(`${title} ${id}`);
        return `opened ${id}`;
      },
      { name: 'publish', description: 'Open a ticket', schema: z.object({ title: z.string(), id: z.string().default(() => `t${++next}`), visibility: z.literal('public').default('public') }) },
    );
    const session = AgentPolicy.fromDict(POLICY).session();
    const agent = createAgent({ model: oneCallPerTurn([['publish', { title: 'outage' }]]), tools: [ticket], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    const [request] = requestsOf(await agent.invoke({ messages: [new HumanMessage('open')] }, thread('generated')));
    expect(request?.args).toEqual({ title: 'outage', id: expect.stringMatching(/^t\d+$/), visibility: 'public' });
    const resumed = await agent.invoke(new Command({ resume: { [request!.requestId]: true } }), thread('generated'));
    expect(resumed.__interrupt__).toBeUndefined();
    // The tool parses its arguments itself, so the generated id is its own; the human approved everything else.
    expect(ran).toHaveLength(1);
    expect(ran[0]).toMatch(/^outage t\d+$/);
    expect(ran[0]).not.toBe(`outage ${(request!.args as { id: string }).id}`);
    expect(toolDecisions(session).map((d) => d.decision)).toEqual(['require_approval', 'allow']);
  });

  it('arguments the schema rejects: the tool does not run, a deny stays a deny, and a declared cost is not charged', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const costs: Array<{ name: string; args: unknown }> = [];
    const calls: Call[] = [
      ['count', { count: -3 }],
      ['delete_path', { path: 42, recursive: true }],
      ['count', { count: 2 }],
    ];
    const options: AgentPolicyMiddlewareOptions = {
      toolCosts: (call) => {
        costs.push(call);
        return call.name === 'count' ? 0.25 : undefined;
      },
    };
    const result = await agentFor(session, ran, calls, options).invoke({ messages: [new HumanMessage('count')] }, thread('invalid'));

    expect(ran).toEqual(['count 2']);
    const messages = toolMessages(result.messages);
    expect(messages.map((m) => m.status)).toEqual(['error', 'error', 'success']);
    expect(messages[0]?.content).toContain('did not match expected schema');
    // Decided on the raw arguments: the recursive delete is still a policy denial.
    expect(messages[1]?.content).toContain('no recursive deletes');
    const decisions = toolDecisions(session);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'deny', 'allow']);
    expect(decisions[0]?.settlement).toMatchObject({ status: 'released', actual: 0 });
    expect(decisions[2]?.settlement).toMatchObject({ status: 'committed', actual: 0.25 });
    expect(session.report().costSummary.allowed.tool).toBeCloseTo(0.25, 10);
    expect(costs.map((c) => c.args)).toEqual([{ count: -3 }, { path: 42, recursive: true }, { count: 2 }]);
  });

  it('toolCosts reads the input the policy decides (defaults filled in)', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const seen: unknown[] = [];
    const options: AgentPolicyMiddlewareOptions = {
      toolCosts: ({ args }) => {
        seen.push(args);
        return undefined;
      },
    };
    await agentFor(session, ran, [['delete_path', { path: '/tmp/y', recursive: false }], ['send_email', { to: ' Bob@OurCo.com' }]], options).invoke(
      { messages: [new HumanMessage('go')] },
      thread('costs'),
    );
    expect(seen).toEqual([
      { path: '/tmp/y', recursive: false },
      { to: 'bob@ourco.com' },
    ]);
  });

  it("a string tool (DynamicTool unwraps { input }) is still judged on the model's { input } arguments", async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const calls: Call[] = [
      ['shell', { input: 'cat secret.txt' }],
      ['shell', { input: 'ls' }],
    ];
    await agentFor(session, ran, calls).invoke({ messages: [new HumanMessage('run')] }, thread('string-tool'));
    expect(ran).toEqual(['shell ls']);
    expect(toolDecisions(session).map((d) => [d.decision, d.action.type === 'tool' ? d.action.input : undefined])).toEqual([
      ['deny', { input: 'cat secret.txt' }],
      ['allow', { input: 'ls' }],
    ]);
  });
});

describe('AgentPolicyCallbackHandler sees only the raw arguments', () => {
  it('LangChain hands handleToolStart the arguments before the schema fills defaults', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const [deletePath] = makeTools(ran) as unknown as [{ invoke(input: unknown, config?: unknown): Promise<unknown> }];
    await deletePath.invoke({ path: '/data' }, { callbacks: [new AgentPolicyCallbackHandler(session)] });
    // The documented limit: the rule on the defaulted field cannot apply here (use the middleware for createAgent).
    expect(ran).toEqual(['delete_path /data recursive=true']);
    expect(toolDecisions(session)[0]).toMatchObject({ decision: 'allow', action: { input: { path: '/data' } } });
  });
});
