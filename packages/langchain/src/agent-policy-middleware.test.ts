import { AgentPolicy, PolicyDeniedError, type AgentPolicyOptions, type PolicySession } from '@agentpolicy/core';
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver, interrupt } from '@langchain/langgraph';
import { createAgent, createMiddleware } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware, type ToolApprovalRequest } from './agent-policy-middleware.js';
import { CALL_COST, PRICING, USAGE, aiMessage, toolCallMessage } from './test-support.js';

const FINAL = 'All done.';

function setup(options: AgentPolicyOptions = {}, sessionOptions: Parameters<AgentPolicy['session']>[0] = {}) {
  const policy = new AgentPolicy({ blockedTools: ['delete_*'], approvalRules: [{ tool: 'send_email' }], pricing: PRICING, ...options });
  const session = policy.session(sessionOptions);
  const runs = { delete_repo: 0, send_email: 0, search: 0 };
  const tools = [
    tool(
      async ({ name }) => {
        runs.delete_repo++;
        return `deleted ${name}`;
      },
      { name: 'delete_repo', description: 'Delete a repository', schema: z.object({ name: z.string() }) },
    ),
    tool(
      async ({ to }) => {
        runs.send_email++;
        return `sent to ${to}`;
      },
      { name: 'send_email', description: 'Send an email', schema: z.object({ to: z.string() }) },
    ),
    tool(
      async ({ query }) => {
        runs.search++;
        return `results for ${query}`;
      },
      { name: 'search', description: 'Search the web', schema: z.object({ query: z.string() }) },
    ),
  ];
  return { session, runs, tools };
}

function agentFor(session: PolicySession, tools: ReturnType<typeof setup>['tools'], model: ReturnType<typeof fakeModel>, middlewareOptions: Parameters<typeof agentPolicyMiddleware>[1] = {}) {
  return createAgent({ model, tools, middleware: [agentPolicyMiddleware(session, middlewareOptions)], checkpointer: new MemorySaver() });
}

const thread = (id: string) => ({ configurable: { thread_id: id } });
const trail = (session: PolicySession) =>
  session.report().decisions.map((d) => `${d.action.type === 'tool' ? d.action.name : d.action.type}:${d.decision}${d.approval ? `(${d.approval.via})` : ''}`);
const toolMessages = (messages: BaseMessage[]) => messages.filter((message): message is ToolMessage => ToolMessage.isInstance(message));

describe('agentPolicyMiddleware: tools', () => {
  it('a blocked tool never runs; the model gets an error ToolMessage and the run finishes', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const model = fakeModel().respond(toolCallMessage('delete_repo', { name: 'core' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const result = await agentFor(session, tools, model).invoke({ messages: [new HumanMessage('delete core')] }, thread('blocked'));

    expect(runs.delete_repo).toBe(0);
    expect(model.callCount).toBe(2);
    const [denied] = toolMessages(result.messages);
    expect(denied).toMatchObject({ status: 'error', tool_call_id: 'call_1', name: 'delete_repo' });
    expect(denied?.content).toBe('agentpolicy: tool "delete_repo" is blocked by tools.block entry "delete_*"');
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    expect(trail(session)).toEqual(['cost:allow', 'delete_repo:deny', 'cost:allow']);
    expect(session.spent).toBe(2 * CALL_COST);
  });

  it('a toolCosts function that throws denies that call with a recorded reason; the run goes on instead of failing', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const model = fakeModel().respond(toolCallMessage('search', { query: 'x' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = agentFor(session, tools, model, {
      toolCosts: () => {
        throw new Error('price list unavailable');
      },
    });
    const result = await agent.invoke({ messages: [new HumanMessage('search x')] }, thread('cost-throws'));
    expect(runs.search).toBe(0);
    const [denied] = toolMessages(result.messages);
    expect(denied).toMatchObject({ status: 'error', tool_call_id: 'call_1', name: 'search' });
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    const tool = session.report().decisions.find((d) => d.action.type === 'tool');
    expect(tool).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'cost' }, action: { metadata: { toolCallId: 'call_1', costError: 'price list unavailable' } } });
  });

  it('approval: interrupt, then resume with approve runs the tool once and records it once', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = agentFor(session, tools, model, { toolCosts: { send_email: 0.01 } });

    const first = await agent.invoke({ messages: [new HumanMessage('email bob')] }, thread('approve'));
    expect(runs.send_email).toBe(0);
    expect(first.__interrupt__).toHaveLength(1);
    const request = first.__interrupt__?.[0]?.value as ToolApprovalRequest;
    const pending = session.report().decisions[1];
    expect(request).toEqual({
      type: 'agentpolicy.approval',
      requestId: pending?.approvalRequest?.id,
      fingerprint: pending?.fingerprint,
      expiresAt: pending?.approvalRequest?.expiresAt,
      tool: 'send_email',
      args: { to: 'bob@example.com' },
      toolCallId: 'call_1',
      reason: 'tool "send_email" requires approval (approval.require_for[0] {"tool":"send_email"})',
      decisionId: pending?.id,
      rule: { section: 'approval', index: 0, rule: { tool: 'send_email' } },
      sessionId: session.id,
      cost: 0.01,
    });
    expect(session.spent).toBe(CALL_COST);

    const second = await agent.invoke(new Command({ resume: { approved: true, by: 'alice', reason: 'known recipient' } }), thread('approve'));
    expect(second.__interrupt__).toBeUndefined();
    expect(runs.send_email).toBe(1);
    expect(toolMessages(second.messages)[0]).toMatchObject({ status: 'success', content: 'sent to bob@example.com' });
    expect(second.messages.at(-1)?.content).toBe(FINAL);

    // The resume re-ran wrapToolCall from the start: the require_approval is still recorded once, the tool charged once.
    expect(trail(session)).toEqual(['cost:allow', 'send_email:require_approval', 'send_email:allow(request)', 'cost:allow']);
    expect(session.report().decisions[2]).toMatchObject({
      approved: true,
      approval: { via: 'request', requestId: request.requestId, by: 'alice', reason: 'known recipient' },
      action: { input: { to: 'bob@example.com' }, metadata: { toolCallId: 'call_1' } },
    });
    expect(session.spent).toBe(0.01 + 2 * CALL_COST);
    expect(session.report().policyHits.approvalRequired).toEqual(['send_email']);
  });

  it('approval: resume with reject never runs the tool; the model is told and the run finishes', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'eve@example.com' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = agentFor(session, tools, model, { toolCosts: { send_email: 0.01 } });

    await agent.invoke({ messages: [new HumanMessage('email eve')] }, thread('reject'));
    const result = await agent.invoke(new Command({ resume: { approved: false, by: 'alice', reason: 'unknown recipient' } }), thread('reject'));

    expect(runs.send_email).toBe(0);
    expect(toolMessages(result.messages)[0]).toMatchObject({ status: 'error', content: expect.stringContaining('rejected by alice: unknown recipient') });
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    // The human's no is in the audit trail as a denial by the approver, with who and why.
    expect(trail(session)).toEqual(['cost:allow', 'send_email:require_approval', 'send_email:deny', 'cost:allow']);
    expect(session.report().decisions[2]?.rule).toMatchObject({ section: 'approver', outcome: 'rejected', index: 0 });
    expect(session.spent).toBe(2 * CALL_COST);
  });

  it('approval: plain true / false resume values and anything else, which rejects', async () => {
    for (const [resume, ran] of [[true, 1], [false, 0], ['yes', 0]] as const) {
      const { session, runs, tools } = setup({ budget: 1 });
      const model = fakeModel().respond(toolCallMessage('send_email', { to: 'a@b.c' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
      const agent = agentFor(session, tools, model);
      await agent.invoke({ messages: [new HumanMessage('email')] }, thread(`plain-${resume}`));
      const result = await agent.invoke(new Command({ resume }), thread(`plain-${resume}`));
      expect(runs.send_email, String(resume)).toBe(ran);
      expect(result.messages.at(-1)?.content).toBe(FINAL);
    }
  });

  it('approval: a resume after the budget ran out stays denied', async () => {
    const { session, runs, tools } = setup({ budget: 0.05 });
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = agentFor(session, tools, model, { toolCosts: { send_email: 0.04 } });

    const first = await agent.invoke({ messages: [new HumanMessage('email bob')] }, thread('late'));
    expect(first.__interrupt__).toHaveLength(1);
    // Meanwhile something else on the session spends most of what is left.
    expect((await session.checkCost(0.02, { source: 'other-work' })).decision).toBe('allow');

    const result = await agent.invoke(new Command({ resume: { approved: true, by: 'alice' } }), thread('late'));
    expect(runs.send_email).toBe(0);
    const [denied] = toolMessages(result.messages);
    expect(denied?.status).toBe('error');
    expect(denied?.content).toMatch(/^agentpolicy: cost \$0\.04 exceeds the remaining budget/);
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    expect(trail(session)).toEqual(['cost:allow', 'send_email:require_approval', 'cost:allow', 'send_email:deny', 'cost:allow']);
    expect(session.report().decisions[3]?.rule.section).toBe('budget');
    expect(session.spent).toBe(0.02 + 2 * CALL_COST);
  });

  it('approval: two calls in one turn interrupt separately and resume by interrupt id', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const model = fakeModel()
      .respond(
        aiMessage({
          content: '',
          tool_calls: [
            { name: 'send_email', args: { to: 'bob@example.com' }, id: 'call_1', type: 'tool_call' },
            { name: 'send_email', args: { to: 'eve@example.com' }, id: 'call_2', type: 'tool_call' },
            { name: 'search', args: { query: 'news' }, id: 'call_3', type: 'tool_call' },
          ],
          usage_metadata: USAGE,
        }),
      )
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = agentFor(session, tools, model);

    const first = await agent.invoke({ messages: [new HumanMessage('email both')] }, thread('two'));
    const interrupts = first.__interrupt__ ?? [];
    expect(interrupts.map((entry) => (entry.value as ToolApprovalRequest).toolCallId).sort()).toEqual(['call_1', 'call_2']);
    const resume = Object.fromEntries(interrupts.map((entry) => [entry.id, { approved: (entry.value as ToolApprovalRequest).toolCallId === 'call_1' }]));

    const result = await agent.invoke(new Command({ resume }), thread('two'));
    expect(runs).toEqual({ delete_repo: 0, send_email: 1, search: 1 });
    const byId = Object.fromEntries(toolMessages(result.messages).map((message) => [message.tool_call_id, message.status]));
    expect(byId).toEqual({ call_1: 'success', call_2: 'error', call_3: 'success' });
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    const counts = session.report().decisionSummary.byActionType.tool;
    expect(counts).toEqual({ allow: 2, deny: 1, require_approval: 2 });
  });

  it('approval: keeps its interrupt slot when a middleware further in interrupts the same call too', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const seenByInner: unknown[] = [];
    const inner = createMiddleware({
      name: 'SecondLook',
      wrapToolCall: (request, handler) => {
        const answer = interrupt({ secondLook: request.toolCall.id });
        seenByInner.push(answer);
        return answer === 'go' ? handler(request) : new ToolMessage({ content: 'stopped', tool_call_id: request.toolCall.id ?? '', status: 'error' });
      },
    });
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'a@b.c' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools, middleware: [agentPolicyMiddleware(session), inner], checkpointer: new MemorySaver() });

    const first = await agent.invoke({ messages: [new HumanMessage('email')] }, thread('nested'));
    expect(first.__interrupt__?.[0]?.value).toMatchObject({ type: 'agentpolicy.approval', tool: 'send_email' });
    const second = await agent.invoke(new Command({ resume: { approved: true } }), thread('nested'));
    expect(second.__interrupt__?.[0]?.value).toEqual({ secondLook: 'call_1' });
    const third = await agent.invoke(new Command({ resume: 'go' }), thread('nested'));

    expect(seenByInner).toEqual(['go']);
    expect(runs.send_email).toBe(1);
    expect(third.messages.at(-1)?.content).toBe(FINAL);
    expect(trail(session)).toEqual(['cost:allow', 'send_email:require_approval', 'send_email:allow(request)', 'cost:allow']);
  });

  it("a session approver answers in place: no interrupt", async () => {
    const { session, runs, tools } = setup({ budget: 1 }, { approver: () => ({ approved: true, by: 'bot' }) });
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'a@b.c' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const result = await agentFor(session, tools, model).invoke({ messages: [new HumanMessage('email')] }, thread('approver'));
    expect(result.__interrupt__).toBeUndefined();
    expect(runs.send_email).toBe(1);
    expect(trail(session)).toEqual(['cost:allow', 'send_email:allow(approver)', 'cost:allow']);
  });
});

describe('agentPolicyMiddleware: budget', () => {
  it('records each model call at its real cost from usage_metadata', async () => {
    const { session, tools } = setup({ budget: 1 });
    const model = fakeModel().respond(toolCallMessage('search', { query: 'x' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    await agentFor(session, tools, model).invoke({ messages: [new HumanMessage('search')] }, thread('usage'));
    const report = session.report();
    expect(report.spent).toBe(2 * CALL_COST);
    expect(report.reserved).toBe(0);
    const calls = report.decisions.filter((d) => d.action.type === 'cost');
    expect(calls.map((d) => d.settlement)).toEqual([
      { status: 'committed', estimated: calls[0]?.settlement?.estimated, actual: CALL_COST },
      { status: 'committed', estimated: calls[1]?.settlement?.estimated, actual: CALL_COST },
    ]);
    expect(calls[0]?.action).toMatchObject({ source: 'model:FakeBuiltModel', metadata: { middleware: true, threadId: 'usage', inputTokens: 10, outputTokens: 5 } });
  });

  it('a model call over budget sends nothing and ends the run with a message', async () => {
    const { session, tools } = setup({ budget: 0.001 });
    const model = fakeModel().respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const result = await agentFor(session, tools, model).invoke({ messages: [new HumanMessage('hi')] }, thread('over'));
    expect(model.callCount).toBe(0);
    const last = result.messages.at(-1);
    expect(AIMessage.isInstance(last)).toBe(true);
    expect(last?.content).toMatch(/^agentpolicy: model call denied: cost \$0\.00\d+ exceeds the remaining budget \$0\.001/);
    expect(trail(session)).toEqual(['cost:deny']);
    expect(session.spent).toBe(0);
  });

  it('an unpriced model under a budget is denied before the call', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const model = fakeModel().respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [], middleware: [agentPolicyMiddleware(session)] });
    const result = await agent.invoke({ messages: [new HumanMessage('hi')] });
    expect(model.callCount).toBe(0);
    expect(result.messages.at(-1)?.content).toMatch(/^agentpolicy: model call denied: no price known for model "FakeBuiltModel"/);
    expect(session.report().decisions[0]?.rule).toEqual({ section: 'pricing', model: 'FakeBuiltModel' });
  });

  it("exitBehavior 'error' stops the run with the policy error", async () => {
    const { session, tools } = setup({ budget: 0.001 });
    const model = fakeModel().respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const error = await agentFor(session, tools, model, { exitBehavior: 'error' })
      .invoke({ messages: [new HumanMessage('hi')] }, thread('error'))
      .catch((caught: unknown) => caught);
    const cause = PolicyDeniedError.isInstance(error) ? error : (error as { cause?: unknown }).cause;
    expect(PolicyDeniedError.isInstance(cause)).toBe(true);
    expect((cause as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    expect(model.callCount).toBe(0);
  });

  it('beforeModel ends the run cleanly once the budget is used up', async () => {
    // The first call is reserved at its worst case, then charged CALL_COST; the search tool then spends the rest.
    const { session, runs, tools } = setup({ budget: 0.01 });
    const model = fakeModel().respond(toolCallMessage('search', { query: 'x' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const result = await agentFor(session, tools, model, { toolCosts: { search: 0.00998 } }).invoke({ messages: [new HumanMessage('search')] }, thread('used-up'));
    expect(runs.search).toBe(1);
    expect(model.callCount).toBe(1);
    expect(session.remaining).toBe(0);
    expect(result.messages.at(-1)?.content).toBe('agentpolicy: the budget is used up (max_spend $0.01, spent $0.01)');
    expect(trail(session)).toEqual(['cost:allow', 'search:allow']);
  });

  it('charges the estimate for a failed call that may have been billed, nothing for a refused one', async () => {
    for (const [error, charged] of [[new Error('socket hang up'), true], [Object.assign(new Error('bad request'), { status: 400 }), false]] as const) {
      const { session, tools } = setup({ budget: 1 });
      const model = fakeModel().respond(error);
      await expect(agentFor(session, tools, model).invoke({ messages: [new HumanMessage('hi')] }, thread('fail'))).rejects.toThrow(error.message);
      const [decision] = session.report().decisions;
      expect(decision?.settlement?.status).toBe(charged ? 'committed' : 'released');
      expect(session.spent > 0).toBe(charged);
      expect(session.pendingReservations).toBe(0);
    }
  });
});

describe('agentPolicyMiddleware with the callback handler on the same session', () => {
  it('charges nothing twice', async () => {
    const { session, runs, tools } = setup({ budget: 1 });
    const handler = new AgentPolicyCallbackHandler(session, { toolCosts: { send_email: 0.01, search: 0.005 } });
    const model = fakeModel()
      .respond(
        aiMessage({
          content: '',
          tool_calls: [
            { name: 'send_email', args: { to: 'bob@example.com' }, id: 'call_1', type: 'tool_call' },
            { name: 'search', args: { query: 'x' }, id: 'call_2', type: 'tool_call' },
          ],
          usage_metadata: USAGE,
        }),
      )
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = agentFor(session, tools, model, { toolCosts: { send_email: 0.01, search: 0.005 } });
    const config = { ...thread('both'), callbacks: [handler] };

    await agent.invoke({ messages: [new HumanMessage('go')] }, config);
    const result = await agent.invoke(new Command({ resume: true }), config);

    expect(runs).toEqual({ delete_repo: 0, send_email: 1, search: 1 });
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    expect(session.spent).toBe(0.01 + 0.005 + 2 * CALL_COST);
    expect(session.report().decisionSummary).toMatchObject({ total: 5, allow: 4, require_approval: 1, deny: 0 });
    expect(session.pendingReservations).toBe(0);
  });
});
