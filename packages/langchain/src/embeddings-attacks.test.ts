import { AgentPolicy, AgentPolicyError, PolicyDeniedError, findPolicyError, type Decision, type PolicySession } from '@agentpolicy/core';
import { Document } from '@langchain/core/documents';
import { Embeddings } from '@langchain/core/embeddings';
import { AsyncCaller } from '@langchain/core/utils/async_caller';
import { FakeVectorStore } from '@langchain/core/utils/testing';
import { OpenAIEmbeddings } from '@langchain/openai';
import { startBillingServer, startFlakyServer, type BillingServer, type FlakyFailure } from '@agentpolicy/test-servers';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { policyEmbeddings } from './policy-embeddings.js';
import { EMBEDDING_MODEL, billedTokens } from './test-support.js';

let server: BillingServer;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(async () => {
  server = await startBillingServer();
  process.on('unhandledRejection', onUnhandled);
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await server.close();
});
beforeEach(() => server.reset());
afterEach(async () => {
  await new Promise((resolve) => setImmediate(resolve));
  expect(unhandled.splice(0)).toEqual([]);
});

type Fields = NonNullable<ConstructorParameters<typeof OpenAIEmbeddings>[0]>;
const openAI = (fields: Fields = {}) => new OpenAIEmbeddings({ apiKey: 'k', model: EMBEDDING_MODEL, maxRetries: 0, configuration: { baseURL: server.baseURL }, ...fields });
const costs = (session: PolicySession): Decision[] => session.report().decisions.filter((decision) => decision.action.type === 'cost');
const usd = (session: PolicySession, inputTokens: number): number => {
  const price = session.priceUsage({ model: EMBEDDING_MODEL, provider: 'openai', inputTokens, outputTokens: 0 });
  if (!price.ok) throw new Error(price.reason);
  return price.nanos / 1e9;
};
/** What one request of `texts` reserves (read from a probe under a large budget, against the server). */
async function estimateOf(texts: string[] | string): Promise<number> {
  const probe = new AgentPolicy({ budget: 1 }).session();
  const embeddings = policyEmbeddings(openAI(), probe);
  await (typeof texts === 'string' ? embeddings.embedQuery(texts) : embeddings.embedDocuments(texts));
  server.reset();
  return costs(probe)[0]!.settlement!.estimated;
}
/** A budget in whole nano-dollars, as a policy takes it. */
const budgetOf = (usd: number): number => Math.round(usd * 1e9) / 1e9;
const sourceOf = (decision: Decision | undefined): unknown => (decision?.action.type === 'cost' ? decision.action.source : undefined);
type Retrying = { callWithRetries(retries: number, callable: () => Promise<unknown>, args: unknown[]): Promise<unknown> };
const codeOf = (error: unknown): unknown => (AgentPolicyError.isInstance(error) ? error.code : error);

describe('embeddings spend attacks: denials', () => {
  it('a call the budget cannot cover is denied before anything is sent: embedDocuments, embedQuery', async () => {
    const session = new AgentPolicy({ budget: 1e-9 }).session();
    const embeddings = policyEmbeddings(openAI(), session);
    for (const call of [() => embeddings.embedDocuments(['a', 'b']), () => embeddings.embedQuery('a')]) {
      const error = await call().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(PolicyDeniedError);
      expect((error as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    }
    expect(server.hits).toBe(0);
    expect(session.spent).toBe(0);
    expect(costs(session).map((decision) => decision.decision)).toEqual(['deny', 'deny']);
  });

  it('a call of several batches that fit only in part sends none of them, and the batches reserved are released', async () => {
    const batch = await estimateOf(['t0', 't1']);
    const session = new AgentPolicy({ budget: budgetOf(2.5 * batch) }).session();
    const error = await policyEmbeddings(openAI({ batchSize: 2 }), session)
      .embedDocuments(['t0', 't1', 't2', 't3', 't4', 't5'])
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(server.hits).toBe(0);
    expect(session.spent).toBe(0);
    expect(session.report().reserved).toBe(0);
    expect(costs(session).map((decision) => [decision.decision, decision.settlement?.status])).toEqual([
      ['allow', 'released'],
      ['allow', 'released'],
      ['deny', undefined],
    ]);
  });

  it('a huge call (100,000 texts, 196 batches) is denied whole under a budget before anything is sent', async () => {
    const session = new AgentPolicy({ budget: 0.01 }).session();
    const texts = Array.from({ length: 100_000 }, (_, i) => `document ${i} `.padEnd(100, '.'));
    const error = await policyEmbeddings(openAI(), session)
      .embedDocuments(texts)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(server.hits).toBe(0);
    expect(session.spent).toBe(0);
    expect(session.report().reserved).toBe(0);
  });
});

describe('embeddings spend attacks: retries inside LangChain', () => {
  for (const [failure, reply] of [
    ['a 500', 500],
    ['a dropped connection', 'drop'],
  ] as Array<[string, FlakyFailure]>) {
    it(`${failure} then a success under maxRetries: the failed attempt is charged its estimate, the retry was reserved before it was sent and is charged its reported tokens`, async () => {
      const session = new AgentPolicy({ budget: 1 }).session();
      const flaky = await startFlakyServer(server.baseURL, [reply]);
      const vector = await policyEmbeddings(openAI({ maxRetries: 2, configuration: { baseURL: flaky.baseURL } }), session).embedQuery('retry me');
      await flaky.close();
      expect(vector).toEqual([0]);
      expect(flaky.hits).toBe(2);
      expect(server.hits).toBe(1);
      const [first, retry] = costs(session);
      expect(costs(session)).toHaveLength(2);
      expect(first!.settlement).toMatchObject({ status: 'committed', actual: first!.settlement!.estimated });
      expect(retry!.action.metadata).toMatchObject({ attempt: 2 });
      expect(retry!.settlement).toMatchObject({ status: 'committed', actual: usd(session, billedTokens('retry me')) });
      expect(session.spent).toBeCloseTo(first!.settlement!.estimated + usd(session, billedTokens('retry me')), 15);
      expect(session.report().overrun).toBe(0);
    });
  }

  it('a retry the budget cannot cover is refused before it is sent, and ends the retries (even with a handler that retries everything)', async () => {
    const estimate = await estimateOf('retry me');
    const session = new AgentPolicy({ budget: budgetOf(1.5 * estimate) }).session();
    const flaky = await startFlakyServer(server.baseURL, [500, 500]);
    const embeddings = policyEmbeddings(openAI({ maxRetries: 6, onFailedAttempt: () => undefined, configuration: { baseURL: flaky.baseURL } }), session);
    const error = await embeddings.embedQuery('retry me').catch((caught: unknown) => caught);
    await flaky.close();
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect((error as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    expect(flaky.hits).toBe(1);
    expect(session.spent).toBe(estimate);
    expect(session.spent).toBeLessThanOrEqual(1.5 * estimate);
    expect(session.pendingReservations).toBe(0);
  });

  it('a model that splits one request in two through its caller has the second reserved and refused like a retry', async () => {
    // Sends each text as its own request through its caller, each reporting OpenAI-style usage.
    class OneByOne extends Embeddings {
      sent = 0;
      model = EMBEDDING_MODEL;
      async embedDocuments(texts: string[]) {
        return Promise.all(texts.map((text) => this.caller.call(async () => (this.sent++, { data: [[text.length]], usage: { prompt_tokens: 1 } })).then((r) => r.data[0]!)));
      }
      async embedQuery(text: string) {
        return (await this.embedDocuments([text]))[0]!;
      }
    }
    const one = await (async () => {
      const probe = new AgentPolicy({ budget: 1 }).session();
      await policyEmbeddings(new OneByOne({}), probe, { provider: 'openai' }).embedDocuments(['aa', 'bb']);
      return costs(probe)[0]!.settlement!.estimated;
    })();
    const model = new OneByOne({});
    const session = new AgentPolicy({ budget: budgetOf(1.5 * one) }).session();
    const error = await policyEmbeddings(model, session, { provider: 'openai' })
      .embedDocuments(['aa', 'bb'])
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(model.sent).toBe(1);
    expect(session.spent).toBeLessThanOrEqual(1.5 * one);
  });

  it('a model that sends its requests without its caller is charged the estimate of each request it was asked for', async () => {
    class Direct extends Embeddings {
      sent = 0;
      model = EMBEDDING_MODEL;
      async embedDocuments(texts: string[]) {
        this.sent++;
        return texts.map(() => [1]);
      }
      async embedQuery() {
        this.sent++;
        return [1];
      }
    }
    const model = new Direct({});
    const session = new AgentPolicy({ budget: 1 }).session();
    await policyEmbeddings(model, session, { provider: 'openai' }).embedDocuments(['a', 'b']);
    const [decision] = costs(session);
    expect(model.sent).toBe(1);
    expect(decision!.settlement).toMatchObject({ status: 'committed', actual: decision!.settlement!.estimated });
  });
});

describe('embeddings spend attacks: concurrency', () => {
  it('8 concurrent embedDocuments of 3 batches each under a budget for 2: exactly 2 calls reach the server, whole, and nothing is overspent', async () => {
    const texts = ['t0', 't1', 't2', 't3', 't4', 't5'];
    const batch = await estimateOf(['t0', 't1']);
    const budget = budgetOf(6 * batch + batch / 2);
    const session = new AgentPolicy({ budget }).session();
    const embeddings = policyEmbeddings(openAI({ batchSize: 2 }), session);
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => embeddings.embedDocuments(texts)));
    const fulfilled = results.filter((result) => result.status === 'fulfilled');
    expect(fulfilled).toHaveLength(2);
    for (const result of fulfilled) expect((result as PromiseFulfilledResult<number[][]>).value).toHaveLength(6);
    for (const result of results) if (result.status === 'rejected') expect(findPolicyError(result.reason)).toBeInstanceOf(PolicyDeniedError);
    expect(server.hits).toBe(6);
    expect(session.spent).toBeLessThanOrEqual(budget);
    expect(session.report().overrun).toBe(0);
    expect(session.pendingReservations).toBe(0);
  });

  it('Korean texts, which a byte-level tokeniser bills at a token a byte: 8 concurrent calls under a budget for 2 never spend past it', async () => {
    // A server billing each text at a token per UTF-8 byte, as cl100k_base (text-embedding-3-*) bills this Korean text.
    const korean = await startBillingServer({ embeddingTokens: (text) => Buffer.byteLength(text) });
    try {
      const model = () => openAI({ configuration: { baseURL: korean.baseURL } });
      const text = '뷁뷂뷃뷄뷅'.repeat(40);
      const probe = new AgentPolicy({ budget: 1 }).session();
      await policyEmbeddings(model(), probe).embedQuery(text);
      const estimate = costs(probe)[0]!.settlement!.estimated;
      const budget = budgetOf(2.5 * estimate);
      const session = new AgentPolicy({ budget }).session();
      const embeddings = policyEmbeddings(model(), session);
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => embeddings.embedQuery(text)));
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(2);
      expect(session.spent).toBeLessThanOrEqual(budget);
      expect(session.report().overrun).toBe(0);
    } finally {
      await korean.close();
    }
  });

  it('one model wrapped for two sessions: each call is reserved and charged once, to its own session', async () => {
    const model = openAI();
    const first = new AgentPolicy({ budget: 1 }).session();
    const second = new AgentPolicy({ budget: 1 }).session();
    await Promise.all([policyEmbeddings(model, first).embedQuery('one'), policyEmbeddings(model, second).embedDocuments(['two', 'three'])]);
    expect(server.hits).toBe(2);
    expect(costs(first)).toHaveLength(1);
    expect(costs(second)).toHaveLength(1);
    expect(first.spent).toBe(usd(first, billedTokens('one')));
    expect(second.spent).toBe(usd(second, billedTokens(['two', 'three'])));
  });
});

describe('embeddings spend attacks: a wrapper wrapped again', () => {
  it('for its own session: each request is reserved and charged once, at the model its wrapper meters', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const twice = policyEmbeddings(policyEmbeddings(openAI({ batchSize: 2 }), session), session);
    await twice.embedDocuments(['a', 'b', 'c']);
    await twice.embedQuery('d');
    expect(server.hits).toBe(3);
    expect(costs(session).map((decision) => [decision.decision, sourceOf(decision), decision.settlement?.status])).toEqual(
      Array(3).fill(['allow', `model:openai/${EMBEDDING_MODEL}`, 'committed']),
    );
    expect(session.spent).toBe(usd(session, billedTokens(['a', 'b']) + billedTokens(['c']) + billedTokens('d')));
  });

  it('for another session: both sessions meter the request, each under its own budget, priced as the model', async () => {
    const inner = new AgentPolicy({ budget: 1 }).session();
    const outer = new AgentPolicy({ budget: 1 }).session();
    const embeddings = policyEmbeddings(policyEmbeddings(openAI(), inner), outer);
    await embeddings.embedQuery('shared');
    expect(server.hits).toBe(1);
    expect(inner.spent).toBe(usd(inner, billedTokens('shared')));
    // The outer session does not see the response: it is charged the request's estimate.
    const [charged] = costs(outer);
    expect(sourceOf(charged)).toBe(`model:openai/${EMBEDDING_MODEL}`);
    expect(charged!.settlement).toMatchObject({ status: 'committed', actual: charged!.settlement!.estimated });
    // Under an outer budget that cannot cover it, nothing is sent and the inner session records nothing.
    const poor = new AgentPolicy({ budget: 1e-9 }).session();
    const refused = await policyEmbeddings(policyEmbeddings(openAI(), inner), poor)
      .embedQuery('shared')
      .catch((caught: unknown) => caught);
    expect(refused).toBeInstanceOf(PolicyDeniedError);
    expect(server.hits).toBe(1);
    expect(costs(inner)).toHaveLength(1);
  });
});

describe('embeddings spend attacks: malformed input', () => {
  it('texts that are not strings are refused with INVALID_ARGUMENT before anything is reserved or sent', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const embeddings = policyEmbeddings(openAI(), session);
    const holey: string[] = [];
    holey.length = 2 ** 32 - 1;
    const bad: unknown[] = ['a text', ['a', 1], ['a', null], [undefined], [{ toString: () => 'x' }], [new String('boxed')], [['nested']], holey, { length: 1, 0: 'x' }];
    for (const [index, texts] of bad.entries()) {
      const error = await embeddings.embedDocuments(texts as string[]).catch((caught: unknown) => caught);
      expect(codeOf(error), `bad input ${index}`).toBe('INVALID_ARGUMENT');
    }
    for (const text of [1, null, undefined, ['a'], new String('boxed')]) {
      expect(codeOf(await embeddings.embedQuery(text as string).catch((caught: unknown) => caught))).toBe('INVALID_ARGUMENT');
    }
    expect(server.hits).toBe(0);
    expect(session.report().decisions).toEqual([]);
  });

  it('an array whose items change after they are read sends what was estimated', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    let reads = 0;
    const shifty = new Proxy(['short'], {
      get: (target, key, receiver) => (key === '0' && reads++ > 0 ? 'x'.repeat(1_000_000) : Reflect.get(target, key, receiver)),
    });
    await policyEmbeddings(openAI(), session).embedDocuments(shifty);
    expect(server.bodies.map((body) => body['input'])).toEqual([['short']]);
    expect(costs(session)[0]!.action.metadata).toMatchObject({ inputTokens: billedTokens(['short']) });
  });
});

describe('embeddings spend attacks: going around the wrapper', () => {
  it("the wrapped model's own methods and its caller refuse to send anything outside the wrapper", async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const model = openAI();
    const store = new FakeVectorStore(model); // built on the model before it was wrapped
    policyEmbeddings(model, session);
    const around = model as unknown as { embeddingWithRetry(request: unknown): Promise<unknown>; caller: AsyncCaller };
    const attempts: Array<() => Promise<unknown>> = [
      () => model.embedDocuments(['a']),
      () => model.embedQuery('a'),
      () => around.embeddingWithRetry({ model: EMBEDDING_MODEL, input: 'a' }),
      () => around.caller.call(async () => fetch(`${server.baseURL}/embeddings`, { method: 'POST', body: '{}' })),
      () => around.caller.callWithOptions({}, async () => fetch(`${server.baseURL}/embeddings`, { method: 'POST', body: '{}' })),
      // The method call and callWithOptions hand their work to (private in its types, callable all the same).
      () => (around.caller as unknown as Retrying).callWithRetries(0, async () => fetch(`${server.baseURL}/embeddings`, { method: 'POST', body: '{}' }), []),
      () => around.caller.fetch(`${server.baseURL}/embeddings`, { method: 'POST', body: '{}' }),
      () => store.addDocuments([new Document({ pageContent: 'a' })]),
    ];
    for (const attempt of attempts) expect(codeOf(await attempt().catch((caught: unknown) => caught))).toBe('INVALID_ARGUMENT');
    expect(server.hits).toBe(0);
    expect(session.report().decisions).toEqual([]);
  });

  it("a wrapped model called directly from inside another wrapper's request is still refused", async () => {
    // An embeddings that hands its work to another model (as CacheBackedEmbeddings does), here the raw one.
    class Delegating extends Embeddings {
      constructor(private readonly underlying: Embeddings) {
        super({});
      }
      embedDocuments(texts: string[]) {
        return this.underlying.embedDocuments(texts);
      }
      embedQuery(text: string) {
        return this.underlying.embedQuery(text);
      }
    }
    const session = new AgentPolicy({ budget: 1 }).session();
    const model = openAI();
    policyEmbeddings(model, session);
    const outer = policyEmbeddings(new Delegating(model), session, { model: EMBEDDING_MODEL, provider: 'openai' });
    expect(codeOf(await outer.embedQuery('a').catch((caught: unknown) => caught))).toBe('INVALID_ARGUMENT');
    expect(server.hits).toBe(0);
    // Handing it the wrapper instead meters the request where it is sent (and the outer call at its estimate).
    const through = policyEmbeddings(new Delegating(policyEmbeddings(model, session)), session, { model: EMBEDDING_MODEL, provider: 'openai' });
    await through.embedQuery('a');
    expect(server.hits).toBe(1);
  });

  it('a caller put in place later is governed too, and the caller property cannot be redefined', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const model = openAI();
    const embeddings = policyEmbeddings(model, session);
    model.caller = new AsyncCaller({ maxRetries: 0 });
    expect(codeOf(await model.embedQuery('a').catch((caught: unknown) => caught))).toBe('INVALID_ARGUMENT');
    expect(() => Object.defineProperty(model, 'caller', { value: new AsyncCaller({}) })).toThrow(TypeError);
    expect(server.hits).toBe(0);
    // Through the wrapper, the new caller's attempts are metered.
    await embeddings.embedQuery('a');
    expect(server.hits).toBe(1);
    expect(costs(session)).toHaveLength(1);
  });

  it('a frozen model cannot be metered: INVALID_ARGUMENT when it is wrapped', () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    expect(codeOf((() => {
      try {
        return policyEmbeddings(Object.freeze(openAI()), session);
      } catch (error) {
        return error;
      }
    })())).toBe('INVALID_ARGUMENT');
  });
});
