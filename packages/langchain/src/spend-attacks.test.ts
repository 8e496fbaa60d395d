import { AgentPolicy, type PolicySession } from '@agentpolicy/core';
import { awaitAllCallbacks } from '@langchain/core/callbacks/promises';
import { fakeModel } from '@langchain/core/testing';
import { RunnableLambda } from '@langchain/core/runnables';
import { tool } from '@langchain/core/tools';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import { createAgent } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware } from './agent-policy-middleware.js';
import { CALL_COST, PRICING, USAGE, aiMessage } from './test-support.js';

const costs = (session: PolicySession) => session.report().decisions.filter((d) => d.action.type === 'cost');
const setup = (budget = 1) => {
  const session = new AgentPolicy({ budget, pricing: PRICING }).session();
  return { session, handler: new AgentPolicyCallbackHandler(session) };
};

describe('spend attacks through LangChain', () => {
  it('a model a chain calls directly is reserved and charged through the handler', async () => {
    const { session, handler } = setup();
    const model = fakeModel().respond(aiMessage({ content: 'hi', usage_metadata: USAGE }));
    const chain = RunnableLambda.from((text: string) => `Q: ${text}`).pipe(model);
    await chain.invoke('hello', { callbacks: [handler] });
    expect(costs(session)).toHaveLength(1);
    expect(session.spent).toBe(CALL_COST);
  });

  it('a model a tool calls without passing its config on is still metered (callbacks reach it through the async context)', async () => {
    const { session, handler } = setup();
    const inner = fakeModel().respond(aiMessage({ content: 'summary', usage_metadata: USAGE }));
    const summarize = tool(async ({ text }) => (await inner.invoke(`summarize ${text}`)).content as string, {
      name: 'summarize',
      description: 'Summarize',
      schema: z.object({ text: z.string() }),
    });
    await summarize.invoke({ text: 'x' }, { callbacks: [handler] });
    expect(costs(session)).toHaveLength(1);
    expect(session.spent).toBe(CALL_COST);
  });

  it('batch(): each prompt is reserved and charged', async () => {
    const { session, handler } = setup();
    const model = fakeModel()
      .respond(aiMessage({ content: 'a', usage_metadata: USAGE }))
      .respond(aiMessage({ content: 'b', usage_metadata: USAGE }))
      .respond(aiMessage({ content: 'c', usage_metadata: USAGE }));
    await model.batch(['1', '2', '3'], { callbacks: [handler] });
    expect(costs(session)).toHaveLength(3);
    expect(session.spent).toBeCloseTo(3 * CALL_COST, 12);
    expect(session.pendingReservations).toBe(0);
  });

  it('stream() broken out of early is charged once, at the estimate when no usage came', async () => {
    const { session, handler } = setup();
    const model = new FakeListChatModel({ responses: ['one two three four five'] });
    const stream = await model.stream('hi', { callbacks: [handler], maxTokens: 100 } as never);
    for await (const _ of stream) break;
    await awaitAllCallbacks();
    await new Promise((resolve) => setImmediate(resolve));
    session.end();
    const [decision, ...rest] = costs(session);
    expect(rest).toHaveLength(0);
    expect(session.pendingReservations).toBe(0);
    expect(session.spent).toBe(decision!.settlement!.estimated);
    expect(session.spent).toBeGreaterThan(0);
  });

  it('50 parallel calls against a budget that fits 10: ten reach the model', async () => {
    const probe = setup();
    await fakeModel().respond(aiMessage({ content: 'x', usage_metadata: USAGE })).invoke('hello', { callbacks: [probe.handler] });
    const estimate = costs(probe.session)[0]!.settlement!.estimated;
    const { session, handler } = setup(Math.round(estimate * 10.5 * 1e9) / 1e9);
    let model = fakeModel();
    for (let i = 0; i < 50; i++) model = model.respond(aiMessage({ content: 'x', usage_metadata: USAGE }));
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => model.invoke('hello', { callbacks: [handler] })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    expect(model.callCount).toBe(10);
    expect(session.spent).toBeLessThanOrEqual(estimate * 10.5);
  });

  it('usage_metadata missing a side, negative or NaN counts: never charged below the estimate', async () => {
    for (const usage of [{}, { output_tokens: 5 }, { input_tokens: -10, output_tokens: 5, total_tokens: -5 }, { input_tokens: Number.NaN, output_tokens: 5, total_tokens: 5 }]) {
      for (const via of ['handler', 'middleware'] as const) {
        const { session, handler } = setup();
        const model = fakeModel().respond(aiMessage({ content: 'x', usage_metadata: usage as typeof USAGE }));
        if (via === 'handler') await model.invoke('hello', { callbacks: [handler] });
        else await createAgent({ model, tools: [], middleware: [agentPolicyMiddleware(session)] }).invoke({ messages: [{ role: 'user', content: 'hello' }] });
        const [decision] = costs(session);
        expect(session.spent, `${via} ${JSON.stringify(usage)}`).toBeGreaterThanOrEqual(decision!.settlement!.estimated);
      }
    }
  });

  it('usage reported under a cheaper model name is priced as the model called', async () => {
    const model = fakeModel().respond(aiMessage({ content: 'x', usage_metadata: USAGE, response_metadata: { model_name: 'free-model' } }));
    const cheap = new AgentPolicy({ budget: 1, pricing: { ...PRICING, 'free-model': { input: 0, output: 0 } } }).session();
    const cheapHandler = new AgentPolicyCallbackHandler(cheap);
    await model.invoke('hello', { callbacks: [cheapHandler] });
    expect(cheap.spent).toBe(CALL_COST);
  });
});
