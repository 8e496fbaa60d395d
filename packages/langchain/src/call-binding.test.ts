// Attacks on call identity and approval binding through real createAgent loops with a checkpointer: one resume value
// given to several pending interrupts, an answer for one request offered to another, a call id that a provider numbers
// per turn (replayed with other input), one session shared by two threads, and tools that throw.
import { AgentPolicy, type AgentPolicyOptions, type PolicySession } from '@agentpolicy/core';
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver } from '@langchain/langgraph';
import { createAgent } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware, type ToolApprovalRequest } from './agent-policy-middleware.js';
import { PRICING, USAGE, aiMessage, toolCallMessage } from './test-support.js';

const FINAL = 'All done.';

function setup(options: AgentPolicyOptions = {}) {
  const session = new AgentPolicy({ approvalRules: [{ tool: 'send_email' }], pricing: PRICING, ...options }).session();
  const sent: string[] = [];
  const sendEmail = tool(
    async ({ to }) => {
      sent.push(to);
      return `sent to ${to}`;
    },
    { name: 'send_email', description: 'Send an email', schema: z.object({ to: z.string() }) },
  );
  return { session, sent, sendEmail };
}

const twoEmails = () =>
  aiMessage({
    content: '',
    tool_calls: [
      { name: 'send_email', args: { to: 'bob@example.com' }, id: 'call_1', type: 'tool_call' },
      { name: 'send_email', args: { to: 'eve@example.com' }, id: 'call_2', type: 'tool_call' },
    ],
    usage_metadata: USAGE,
  });

/** Every message in an error, its cause chain and (LangGraph's several errors of one step) its `errors`. */
function messagesOf(error: unknown): string[] {
  if (typeof error !== 'object' || error === null) return [];
  const { message, cause, errors } = error as { message?: unknown; cause?: unknown; errors?: unknown };
  return [...(typeof message === 'string' ? [message] : []), ...messagesOf(cause), ...(Array.isArray(errors) ? errors.flatMap(messagesOf) : [])];
}

const thread = (id: string) => ({ configurable: { thread_id: id } });
const requestsOf = (result: { __interrupt__?: { value?: unknown }[] }) => (result.__interrupt__ ?? []).map((entry) => entry.value as ToolApprovalRequest);
const toolMessages = (messages: BaseMessage[]) => messages.filter((message): message is ToolMessage => ToolMessage.isInstance(message));
const toolTrail = (session: PolicySession) =>
  session
    .report()
    .decisions.filter((d) => d.action.type === 'tool')
    .map((d) => `${d.decision}${d.approval ? `(${d.approval.via})` : ''}`);

describe('interrupt answers are bound to the request they answer', () => {
  it('refuses one bare resume value for several pending requests, then takes answers by request id', async () => {
    const { session, sent, sendEmail } = setup();
    const model = fakeModel().respond(twoEmails()).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    const first = await agent.invoke({ messages: [new HumanMessage('email both')] }, thread('bare'));
    const requests = requestsOf(first);
    expect(requests.map((r) => r.args)).toEqual(expect.arrayContaining([{ to: 'bob@example.com' }, { to: 'eve@example.com' }]));
    expect(new Set(requests.map((r) => r.requestId)).size).toBe(2);

    // The README loop of old: one `true` for whatever is pending. Refused, and nothing runs.
    const refused = await agent.invoke(new Command({ resume: true }), thread('bare')).catch((error: unknown) => error);
    expect(messagesOf(refused).some((message) => /one resume value cannot answer 2 pending approval requests/.test(message))).toBe(true);
    expect(sent).toEqual([]);
    expect(toolTrail(session).filter((t) => t.startsWith('allow'))).toEqual([]);

    const bob = requests.find((r) => (r.args as { to: string }).to === 'bob@example.com')!;
    const eve = requests.find((r) => (r.args as { to: string }).to === 'eve@example.com')!;
    const result = await agent.invoke(new Command({ resume: { [bob.requestId]: { approved: true, by: 'alice' }, [eve.requestId]: false } }), thread('bare'));

    expect(sent).toEqual(['bob@example.com']);
    expect(Object.fromEntries(toolMessages(result.messages).map((m) => [m.tool_call_id, m.status]))).toEqual({ call_1: 'success', call_2: 'error' });
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    const approved = session.report().decisions.find((d) => d.decision === 'allow' && d.action.type === 'tool');
    expect(approved).toMatchObject({ approval: { via: 'request', requestId: bob.requestId, by: 'alice' }, action: { input: { to: 'bob@example.com' } } });
  });

  it('an answer that names one request approves that request only; the other interrupts again', async () => {
    const { session, sent, sendEmail } = setup();
    const model = fakeModel().respond(twoEmails()).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    const requests = requestsOf(await agent.invoke({ messages: [new HumanMessage('email both')] }, thread('named')));
    const bob = requests.find((r) => (r.args as { to: string }).to === 'bob@example.com')!;
    const eve = requests.find((r) => (r.args as { to: string }).to === 'eve@example.com')!;

    const second = await agent.invoke(new Command({ resume: { requestId: bob.requestId, approved: true } }), thread('named'));
    expect(sent).toEqual(['bob@example.com']);
    expect(requestsOf(second).map((r) => r.requestId)).toEqual([eve.requestId]);

    // With one request left pending, a bare value answers it.
    const third = await agent.invoke(new Command({ resume: false }), thread('named'));
    expect(sent).toEqual(['bob@example.com']);
    expect(third.messages.at(-1)?.content).toBe(FINAL);
    expect(toolTrail(session)).toEqual(['require_approval', 'require_approval', 'allow(request)', 'deny']);
  });

  it('an answer given by interrupt id counts for the request its interrupt showed, once; it never answers a request raised later', async () => {
    const { session, sent, sendEmail } = setup();
    // The same call twice in one turn (a provider that repeats an id): one request, shown by both interrupts.
    const same = { name: 'send_email', args: { to: 'bob@example.com' }, id: 'call_1', type: 'tool_call' as const };
    const model = fakeModel()
      .respond(aiMessage({ content: '', tool_calls: [same, { ...same }], usage_metadata: USAGE }))
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    const first = await agent.invoke({ messages: [new HumanMessage('email bob')] }, thread('slots'));
    const [request] = new Set(requestsOf(first).map((r) => r.requestId));
    expect(requestsOf(first).map((r) => r.requestId)).toEqual([request, request]);

    // Both interrupts approved: the approval runs one call, once. The other call's answer was for the used request:
    // it is refused, not carried over to a request raised for it now, which the human never saw.
    const result = await agent.invoke(new Command({ resume: Object.fromEntries(first.__interrupt__!.map((i) => [i.id!, { approved: true, by: 'alice' }])) }), thread('slots'));
    expect(sent).toEqual(['bob@example.com']);
    expect(toolMessages(result.messages).map((m) => m.status).sort()).toEqual(['error', 'success']);
    expect(result.__interrupt__ ?? []).toEqual([]);
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    expect(session.report().decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool').map((d) => d.approval?.requestId)).toEqual([request]);
    // The request raised for the refused call is closed, saying why: no later call of the same tool and input (the
    // same id in another thread) can be decided under it and approved by an answer given for what that call showed.
    expect(await session.pendingApprovals()).toEqual([]);
    const closed = session.report().decisions.find((d) => d.decision === 'require_approval' && d.approvalRequest?.id !== request);
    expect(await session.getApproval(closed!.approvalRequest!.id)).toMatchObject({ status: 'rejected', resolution: { approved: false, by: 'agentpolicy' } });
  });

  it("a call whose request another thread's call used is refused on resume, not run on a request raised then", async () => {
    const { session, sent, sendEmail } = setup();
    const middleware = agentPolicyMiddleware(session);
    const agentFor = () =>
      createAgent({
        model: fakeModel().respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE })),
        tools: [sendEmail],
        middleware: [middleware],
        checkpointer: new MemorySaver(),
      });
    const [a, b] = [agentFor(), agentFor()];
    const [shownA] = requestsOf(await a.invoke({ messages: [new HumanMessage('email bob')] }, thread('a')));
    const [shownB] = requestsOf(await b.invoke({ messages: [new HumanMessage('email bob')] }, thread('b')));
    // One request for one tool and input while it is open: both threads show it. Thread a's human approves it.
    expect(shownB?.requestId).toBe(shownA?.requestId);
    await a.invoke(new Command({ resume: { [shownA!.requestId]: true } }), thread('a'));
    expect(sent).toEqual(['bob@example.com']);

    // Thread b's human says yes to the same request, used by now: b's call does not run on a new request.
    const result = await b.invoke(new Command({ resume: true }), thread('b'));
    expect(sent).toEqual(['bob@example.com']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['error']);
    expect(session.report().decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool')).toHaveLength(1);
  });

  it("a call resumed under a request shown only in another thread is refused, not approved by the answer for what it showed", async () => {
    const { session, sent, sendEmail } = setup();
    const middleware = agentPolicyMiddleware(session);
    const bobTwice = () =>
      fakeModel()
        .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1'))
        .respond(aiMessage({ content: 'Sent.', usage_metadata: USAGE }))
        .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1'))
        .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const [a, b] = [0, 1].map(() => createAgent({ model: bobTwice(), tools: [sendEmail], middleware: [middleware], checkpointer: new MemorySaver() }));
    const [shown] = requestsOf(await a!.invoke({ messages: [new HumanMessage('email bob')] }, thread('a')));
    requestsOf(await b!.invoke({ messages: [new HumanMessage('email bob')] }, thread('b')));
    await a!.invoke(new Command({ resume: { [shown!.requestId]: true } }), thread('a'));
    // Thread a's next turn repeats the call: a new request, shown in thread a only.
    const [next] = requestsOf(await a!.invoke({ messages: [new HumanMessage('again')] }, thread('a')));
    expect(next?.requestId).not.toBe(shown?.requestId);

    // Thread b's human says yes to what b showed (the used request): b's call, now decided under a's new request, is
    // refused, and a's request stays a's to answer.
    const result = await b!.invoke(new Command({ resume: true }), thread('b'));
    expect(sent).toEqual(['bob@example.com']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['error']);
    expect((await session.getApproval(next!.requestId))?.status).toBe('pending');
  });

  it('a bare value with one request pending: the call whose request was answered elsewhere takes that answer, and the run goes on', async () => {
    const { session, sent, sendEmail } = setup();
    const model = fakeModel().respond(twoEmails()).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    const requests = requestsOf(await agent.invoke({ messages: [new HumanMessage('email both')] }, thread('one-left')));
    const eve = requests.find((r) => (r.args as { to: string }).to === 'eve@example.com')!;
    // Eve's request is answered elsewhere; Bob's is the only one pending, and a bare value answers it.
    await session.resolveApproval(eve.requestId, { approved: false, by: 'ops' });
    const result = await agent.invoke(new Command({ resume: true }), thread('one-left'));

    // Bob's call ran once and the model was told; Eve's call got the answer given for its request.
    expect(sent).toEqual(['bob@example.com']);
    expect(Object.fromEntries(toolMessages(result.messages).map((m) => [m.tool_call_id, m.status]))).toEqual({ call_1: 'success', call_2: 'error' });
    expect(result.messages.at(-1)?.content).toBe(FINAL);
  });

  it('a call of the next model turn, reached by a resume, is asked about: the resume value is not taken for its new request', async () => {
    for (const answer of [(id: string) => ({ [id]: true }), () => true, (id: string) => ({ requestId: id, approved: true })]) {
      const { session, sent, sendEmail } = setup();
      const model = fakeModel()
        .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1'))
        .respond(toolCallMessage('send_email', { to: 'eve@example.com' }, 'call_2'))
        .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
      const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });
      const [bob] = requestsOf(await agent.invoke({ messages: [new HumanMessage('email both')] }, thread('next')));
      const second = await agent.invoke(new Command({ resume: answer(bob!.requestId) }), thread('next'));
      expect(sent).toEqual(['bob@example.com']);
      const [eve] = requestsOf(second);
      expect(eve).toMatchObject({ args: { to: 'eve@example.com' } });
      await agent.invoke(new Command({ resume: answer(eve!.requestId) }), thread('next'));
      expect(sent).toEqual(['bob@example.com', 'eve@example.com']);
    }
  });

  it('an answer given elsewhere (resolveApproval) is picked up by a resume that names the request', async () => {
    const { session, sent, sendEmail } = setup();
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_1')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    const [request] = requestsOf(await agent.invoke({ messages: [new HumanMessage('email bob')] }, thread('elsewhere')));
    // A web handler answers it; the agent resumes by naming the request only.
    expect(await session.resolveApproval(request!.requestId, { approved: true, by: 'ops' })).toMatchObject({ ok: true });
    const result = await agent.invoke(new Command({ resume: { requestId: request!.requestId } }), thread('elsewhere'));

    expect(sent).toEqual(['bob@example.com']);
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    expect(session.report().decisions.find((d) => d.decision === 'allow' && d.action.type === 'tool')?.approval).toMatchObject({ via: 'request', by: 'ops' });
  });
});

describe('one decision authorises one execution', () => {
  it('a call id the provider numbers per turn, replayed with other input, is asked again, not run on the old approval', async () => {
    const { session, sent, sendEmail } = setup();
    const model = fakeModel()
      .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_0'))
      .respond(aiMessage({ content: 'Sent to Bob.', usage_metadata: USAGE }))
      .respond(toolCallMessage('send_email', { to: 'eve@evil.example' }, 'call_0'))
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });

    await agent.invoke({ messages: [new HumanMessage('email bob')] }, thread('turns'));
    await agent.invoke(new Command({ resume: true }), thread('turns'));
    expect(sent).toEqual(['bob@example.com']);

    // Next turn, same thread: the model reuses call_0 for another recipient.
    const next = await agent.invoke({ messages: [new HumanMessage('and eve')] }, thread('turns'));
    expect(sent).toEqual(['bob@example.com']);
    expect(requestsOf(next).map((r) => r.args)).toEqual([{ to: 'eve@evil.example' }]);
    // The human says no to the repeat, and it is respected.
    const done = await agent.invoke(new Command({ resume: { approved: false, by: 'alice' } }), thread('turns'));
    expect(sent).toEqual(['bob@example.com']);
    expect(done.messages.at(-1)?.content).toBe(FINAL);
    expect(toolTrail(session)).toEqual(['require_approval', 'allow(request)', 'require_approval', 'deny']);
  });

  it('a call id that already ran is decided and charged again, even with the same input', async () => {
    const { session, sent, sendEmail } = setup({ approvalRules: [], budget: 1 });
    const model = fakeModel()
      .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_0'))
      .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_0'))
      .respond(toolCallMessage('send_email', { to: 'bob@example.com' }, 'call_0'))
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session, { toolCosts: { send_email: 0.4 } })], checkpointer: new MemorySaver() });

    const result = await agent.invoke({ messages: [new HumanMessage('spam bob')] }, thread('again'));

    // Two fit the $1 budget, the third is denied.
    expect(sent).toEqual(['bob@example.com', 'bob@example.com']);
    expect(toolTrail(session)).toEqual(['allow', 'allow', 'deny']);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['success', 'success', 'error']);
    expect(session.spent).toBeCloseTo(0.8 + 4 * 0.00002, 9);
  });

  it('the same call three times in one model turn: each is decided and charged, and the run goes on', async () => {
    const { session, sent, sendEmail } = setup({ approvalRules: [], budget: 1 });
    const same = { name: 'send_email', args: { to: 'bob@example.com' }, id: 'call_0', type: 'tool_call' as const };
    const model = fakeModel()
      .respond(aiMessage({ content: '', tool_calls: [same, { ...same }, { ...same }], usage_metadata: USAGE }))
      .respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail], middleware: [agentPolicyMiddleware(session, { toolCosts: { send_email: 0.3 } })], checkpointer: new MemorySaver() });

    const result = await agent.invoke({ messages: [new HumanMessage('spam bob')] }, thread('thrice'));

    expect(sent).toHaveLength(3);
    expect(toolTrail(session)).toEqual(['allow', 'allow', 'allow']);
    expect(result.messages.at(-1)?.content).toBe(FINAL);
    expect(session.spent).toBeCloseTo(0.9 + 2 * 0.00002, 9);
    expect(session.pendingReservations).toBe(0);
  });

  it('one session shared by two threads whose calls carry the same id: neither runs free', async () => {
    const { session, sent, sendEmail } = setup({ approvalRules: [], budget: 0.5 });
    const middleware = agentPolicyMiddleware(session, { toolCosts: { send_email: 0.3 } });
    const run = (to: string, id: string) => {
      const model = fakeModel().respond(toolCallMessage('send_email', { to }, 'call_0')).respond(aiMessage({ content: FINAL, usage_metadata: USAGE }));
      return createAgent({ model, tools: [sendEmail], middleware: [middleware], checkpointer: new MemorySaver() }).invoke({ messages: [new HumanMessage('email')] }, thread(id));
    };

    await Promise.all([run('bob@example.com', 't1'), run('eve@example.com', 't2')]);

    expect(sent).toHaveLength(1);
    expect(toolTrail(session).sort()).toEqual(['allow', 'deny']);
  });
});

describe('a tool that throws is settled by the one rule', () => {
  function failing(error: Error) {
    let runs = 0;
    const charge = tool(
      async () => {
        runs++;
        throw error;
      },
      { name: 'charge_card', description: 'Charge a card', schema: z.object({ amount: z.number() }) },
    );
    return { charge, runs: () => runs };
  }

  it('middleware: the cost is kept when the tool may have done the work, released when it refused (4xx)', async () => {
    for (const [error, spent] of [
      [new Error('gateway timeout'), 0.2],
      [Object.assign(new Error('card declined'), { status: 402 }), 0],
    ] as const) {
      const session = new AgentPolicy({ budget: 1, pricing: PRICING }).session();
      const { charge, runs } = failing(error);
      const model = fakeModel().respond(toolCallMessage('charge_card', { amount: 5 }, 'call_1', { input_tokens: 0, output_tokens: 0, total_tokens: 0 }));
      const agent = createAgent({ model, tools: [charge], middleware: [agentPolicyMiddleware(session, { toolCosts: { charge_card: 0.2 } })], checkpointer: new MemorySaver() });

      // With a wrapToolCall middleware, LangChain passes a tool's error up: the run rejects with it.
      await expect(agent.invoke({ messages: [new HumanMessage('charge')] }, thread('throws'))).rejects.toThrow(error.message);
      expect(runs()).toBe(1);
      expect(session.spent, error.message).toBeCloseTo(spent, 9);
      expect(session.pendingReservations).toBe(0);
    }
  });

  it('callback handler: the same rule', async () => {
    for (const [error, spent] of [
      [new Error('gateway timeout'), 0.2],
      [Object.assign(new Error('card declined'), { statusCode: 400 }), 0],
    ] as const) {
      const session = new AgentPolicy({ budget: 1 }).session();
      const { charge, runs } = failing(error);
      const handler = new AgentPolicyCallbackHandler(session, { toolCosts: { charge_card: 0.2 } });
      await expect(charge.invoke({ amount: 5 }, { callbacks: [handler] })).rejects.toThrow(error.message);
      expect(runs()).toBe(1);
      expect(session.spent, error.message).toBe(spent);
      expect(session.pendingReservations).toBe(0);
    }
  });
});

describe('the callback handler sees only the run name', () => {
  it('a renamed run is checked under its run name; through createAgent, the middleware checks the tool call itself', async () => {
    const session = new AgentPolicy({ blockedTools: ['delete_*'], pricing: PRICING }).session();
    let deleted = 0;
    const deleteRepo = tool(
      async () => {
        deleted++;
        return 'deleted';
      },
      { name: 'delete_repo', description: 'Delete a repository', schema: z.object({ name: z.string() }) },
    );

    // LangChain passes the handler no tool name but the run name: this is the limit the README states.
    await deleteRepo.withConfig({ runName: 'search' }).invoke({ name: 'core' }, { callbacks: [new AgentPolicyCallbackHandler(session)] });
    expect(deleted).toBe(1);
    expect(session.report().decisions.at(-1)?.action).toMatchObject({ type: 'tool', name: 'search' });

    // The middleware decides on the model's tool call, which names the registered tool.
    const model = fakeModel().respond(toolCallMessage('delete_repo', { name: 'core' }, 'call_1')).respond(new AIMessage('ok'));
    const agent = createAgent({ model, tools: [deleteRepo], middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });
    const result = await agent.invoke({ messages: [new HumanMessage('delete core')] }, { ...thread('renamed'), runName: 'search' });
    expect(deleted).toBe(1);
    expect(toolMessages(result.messages)[0]?.status).toBe('error');
  });
});
