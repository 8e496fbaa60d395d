import { AgentPolicy, AgentPolicyError, PolicyDeniedError, type Decision, type PolicySession } from '@agentpolicy/core';
import { Document } from '@langchain/core/documents';
import { Embeddings } from '@langchain/core/embeddings';
import { FakeVectorStore } from '@langchain/core/utils/testing';
import { OpenAIEmbeddings } from '@langchain/openai';
import { startBillingServer, startFlakyServer, type BillingServer, type FlakyFailure } from '@agentpolicy/test-servers';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { modelInfoFromEmbeddings } from './model-call.js';
import { policyEmbeddings } from './policy-embeddings.js';
import { EMBEDDING_MODEL, billedTokens } from './test-support.js';

let server: BillingServer;
beforeAll(async () => {
  server = await startBillingServer();
});
afterAll(() => server.close());
beforeEach(() => server.reset());

type Fields = NonNullable<ConstructorParameters<typeof OpenAIEmbeddings>[0]>;
const openAI = (fields: Fields = {}) => new OpenAIEmbeddings({ apiKey: 'k', model: EMBEDDING_MODEL, maxRetries: 0, configuration: { baseURL: server.baseURL }, ...fields });
const costs = (session: PolicySession): Decision[] => session.report().decisions.filter((decision) => decision.action.type === 'cost');
const sourceOf = (decision: Decision | undefined): unknown => (decision?.action.type === 'cost' ? decision.action.source : undefined);
/** USD the session's prices give `inputTokens` of the model. */
const price = (session: PolicySession, inputTokens: number, model = EMBEDDING_MODEL): number => {
  const result = session.priceUsage({ model, provider: 'openai', inputTokens, outputTokens: 0 });
  if (!result.ok) throw new Error(result.reason);
  return result.nanos / 1e9;
};

describe('policyEmbeddings: OpenAIEmbeddings under a budget', () => {
  it('embedDocuments sends the model its own batches, each reserved at its worst case and charged the tokens the server reported', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const embeddings = policyEmbeddings(openAI({ batchSize: 2 }), session);
    const texts = ['alpha', 'beta', 'gamma\ndelta', 'epsilon', 'zeta'];
    const vectors = await embeddings.embedDocuments(texts);

    // The vectors of every batch, in order (the server answers [index] per input of a request).
    expect(vectors).toEqual([[0], [1], [0], [1], [0]]);
    const inputs = server.bodies.map((body) => body['input']);
    expect(inputs).toEqual([['alpha', 'beta'], ['gamma delta', 'epsilon'], ['zeta']]);
    const decisions = costs(session);
    expect(decisions).toHaveLength(3);
    for (const [index, decision] of decisions.entries()) {
      expect(decision.decision).toBe('allow');
      expect(sourceOf(decision)).toBe(`model:openai/${EMBEDDING_MODEL}`);
      expect(decision.action.metadata).toMatchObject({ via: 'langchain', endpoint: 'embeddings', method: 'embedDocuments', batch: index + 1, batches: 3, maxOutputTokens: 0 });
      // Charged what the server reported for the request it received, which is below what was reserved.
      const reported = billedTokens(inputs[index]);
      expect(decision.action.metadata?.['inputTokens']).toBe(reported);
      expect(decision.settlement).toMatchObject({ status: 'committed', actual: price(session, reported) });
      expect(decision.settlement!.actual).toBeLessThan(decision.settlement!.estimated);
      expect(decision.settlement!.actual).toBeGreaterThan(0);
    }
    expect(session.spent).toBeCloseTo(inputs.reduce((sum: number, input) => sum + price(session, billedTokens(input)), 0), 15);
    expect(session.pendingReservations).toBe(0);
  });

  it('embedQuery is one request, reserved at the worst case of the query and charged its reported tokens', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const embeddings = policyEmbeddings(openAI(), session);
    expect(await embeddings.embedQuery('what is agentpolicy?')).toEqual([0]);
    expect(server.bodies.map((body) => body['input'])).toEqual(['what is agentpolicy?']);
    const [decision] = costs(session);
    expect(decision!.action.metadata).toMatchObject({ method: 'embedQuery', texts: 1, inputTokens: billedTokens('what is agentpolicy?') });
    expect(session.spent).toBe(price(session, billedTokens('what is agentpolicy?')));
  });

  it('an empty list sends nothing and records nothing', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    expect(await policyEmbeddings(openAI(), session).embedDocuments([])).toEqual([]);
    expect(server.hits).toBe(0);
    expect(costs(session)).toEqual([]);
  });

  it('a response without usage is charged its estimate, never $0', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    server.omitUsage();
    await policyEmbeddings(openAI(), session).embedQuery('no usage here');
    const [decision] = costs(session);
    expect(decision!.settlement).toMatchObject({ status: 'committed' });
    expect(decision!.settlement!.actual).toBe(decision!.settlement!.estimated);
    expect(session.spent).toBeGreaterThan(0);
  });

  it("a failed request is settled by core's rule: a 4xx charges nothing, a 5xx (or a dropped connection) its estimate", async () => {
    for (const [failure, charged] of [
      [400, false],
      [500, true],
      ['drop', true],
    ] as Array<[FlakyFailure, boolean]>) {
      const flaky = await startFlakyServer(server.baseURL, [failure]);
      const session = new AgentPolicy({ budget: 1 }).session();
      await expect(policyEmbeddings(openAI({ configuration: { baseURL: flaky.baseURL } }), session).embedQuery('x')).rejects.toThrow();
      await flaky.close();
      expect(flaky.hits).toBe(1);
      const [decision] = costs(session);
      expect(decision!.settlement!.status).toBe(charged ? 'committed' : 'released');
      expect(session.spent).toBe(charged ? decision!.settlement!.estimated : 0);
      expect(session.pendingReservations).toBe(0);
    }
  });

  it('metering holds when a LangChain vector store calls the model itself (addDocuments, then a retriever query)', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const embeddings = policyEmbeddings(openAI({ batchSize: 2 }), session);
    const docs = ['red apples', 'green pears', 'yellow bananas'].map((pageContent) => new Document({ pageContent }));
    const store = await FakeVectorStore.fromDocuments(docs, embeddings);
    const found = await store.asRetriever(1).invoke('apples');
    expect(found).toHaveLength(1);
    expect(server.hits).toBe(3);
    expect(costs(session).map((decision) => decision.action.metadata?.['method'])).toEqual(['embedDocuments', 'embedDocuments', 'embedQuery']);
    expect(costs(session).every((decision) => decision.settlement?.status === 'committed')).toBe(true);

    // Under a budget that cannot cover them, the store's own calls are denied and nothing reaches the server.
    server.reset();
    const poor = new AgentPolicy({ budget: 1e-9 }).session();
    const denied = await FakeVectorStore.fromDocuments(docs, policyEmbeddings(openAI(), poor)).catch((error: unknown) => error);
    expect(denied).toBeInstanceOf(PolicyDeniedError);
    expect((denied as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    expect(server.hits).toBe(0);
    expect(poor.spent).toBe(0);
  });
});

describe('policyEmbeddings: model and provider', () => {
  it('reads the model from the instance and the provider from its class (a subclass too); options state them', async () => {
    class TunedEmbeddings extends OpenAIEmbeddings {}
    expect(modelInfoFromEmbeddings(openAI())).toEqual({ model: EMBEDDING_MODEL, provider: 'openai' });
    expect(modelInfoFromEmbeddings(new TunedEmbeddings({ apiKey: 'k', modelName: 'text-embedding-3-large' }))).toEqual({ model: 'text-embedding-3-large', provider: 'openai' });
    class HomeEmbeddings extends Embeddings {
      embedDocuments = async (texts: string[]) => texts.map(() => [1]);
      embedQuery = async () => [1];
    }
    // An unknown class with no model name is priced under its class name, with no provider.
    expect(modelInfoFromEmbeddings(new HomeEmbeddings({}))).toEqual({ model: 'HomeEmbeddings' });

    const session = new AgentPolicy({ budget: 1, pricing: { 'home-embed': { input: 1, output: 0 } } }).session();
    await policyEmbeddings(new HomeEmbeddings({}), session, { model: 'home-embed', provider: 'home' }).embedQuery('hi');
    expect(sourceOf(costs(session)[0])).toBe('model:home/home-embed');
    expect(costs(session)[0]!.decision).toBe('allow');
  });

  it('an unpriced model under a budget is denied before anything is sent; without a budget it is recorded at $0', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const error = await policyEmbeddings(openAI({ model: 'in-house-embedder' }), session)
      .embedDocuments(['a'])
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect((error as PolicyDeniedError).decision.rule).toMatchObject({ section: 'pricing', model: 'in-house-embedder' });
    expect(server.hits).toBe(0);

    const unlimited = new AgentPolicy({}).session();
    await policyEmbeddings(openAI({ model: 'in-house-embedder' }), unlimited).embedDocuments(['a']);
    expect(server.hits).toBe(1);
    expect(unlimited.spent).toBe(0);
  });

  it('refuses what is not a session, not an embeddings model, or a bad option, with INVALID_ARGUMENT', () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const code = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (error) {
        return AgentPolicyError.isInstance(error) ? error.code : error;
      }
      return 'no error';
    };
    expect(code(() => policyEmbeddings(openAI(), {} as PolicySession))).toBe('INVALID_ARGUMENT');
    expect(code(() => policyEmbeddings({} as Embeddings, session))).toBe('INVALID_ARGUMENT');
    expect(code(() => policyEmbeddings(openAI(), session, { model: '' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => policyEmbeddings(openAI(), session, { provider: 42 as unknown as string }))).toBe('INVALID_ARGUMENT');
  });
});
