import { AgentPolicy, type AgentPolicyOptions, type PolicySession } from '@agentpolicy/core';
import { createOpenAI } from '@ai-sdk/openai';
import { startBillingServer, startFlakyServer, type BillingServer } from '@agentpolicy/test-servers';
import { embed, embedMany, wrapEmbeddingModel, type EmbeddingModelMiddleware } from 'ai';
import { MockEmbeddingModelV4 } from 'ai/test';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { policyEmbeddingMiddleware } from './policy-embedding-middleware.js';
import { denialOf as denial, modelDecisions } from './test-utils.js';

/** What the billing server reports for an input: about 4 bytes a token. */
const billed = (input: unknown): number => Math.ceil(Buffer.byteLength(JSON.stringify(input)) / 4);
/** What core reserves for a list of values: one token a byte plus 4 a value (its worst case). */
const reserved = (values: string[]): number => Buffer.byteLength(JSON.stringify(values)) + 4 * values.length;
/** USD core charges for input tokens of text-embedding-3-small (the catalog's USD 0.02 per million, rounded up to a nano-dollar). */
const usd = (tokens: number): number => {
  const price = new AgentPolicy().session().priceUsage({ model: 'text-embedding-3-small', provider: 'openai.embedding', inputTokens: tokens, outputTokens: 0 });
  if (!price.ok) throw new Error(price.reason);
  return price.nanos / 1e9;
};

const VALUES = ['one sentence', 'another sentence'];

describe('policyEmbeddingMiddleware through the AI SDK and the openai provider', () => {
  let billing: BillingServer;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => billing.reset());

  const setup = (options: AgentPolicyOptions, { baseURL = billing.baseURL, id = 'text-embedding-3-small', outer = [] as EmbeddingModelMiddleware[] } = {}) => {
    const session: PolicySession = new AgentPolicy(options).session();
    const provider = createOpenAI({ apiKey: 'k', baseURL });
    const model = wrapEmbeddingModel({ model: provider.embedding(id), middleware: [...outer, policyEmbeddingMiddleware(session)] });
    return { session, model };
  };

  it('reserves the worst case of the values, then charges the tokens the provider reported, at the catalog price of openai.embedding', async () => {
    const { session, model } = setup({ budget: 1 });
    const { embeddings } = await embedMany({ model, values: VALUES, maxRetries: 0 });
    expect(embeddings).toHaveLength(2);
    expect(billing.hits).toBe(1);
    const [decision, ...rest] = modelDecisions(session.report().decisions);
    expect(rest).toEqual([]);
    expect(decision!.action).toMatchObject({ type: 'cost', source: 'model:openai/text-embedding-3-small' });
    expect(decision!.action.metadata).toMatchObject({ via: 'ai-sdk', call: 'embed', provider: 'openai.embedding', estimatedInputTokens: reserved(VALUES), maxOutputTokens: 0 });
    expect(decision!.settlement).toMatchObject({ status: 'committed', estimated: usd(reserved(VALUES)), actual: usd(billed(VALUES)) });
    expect(session.spent).toBe(usd(billed(VALUES)));
  });

  it('a call whose signal is aborted before it is sent is not sent, and nothing is reserved or charged', async () => {
    const { session, model } = setup({ budget: 1 });
    const error = await embedMany({ model, values: VALUES, abortSignal: AbortSignal.abort(), maxRetries: 0 }).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(billing.hits).toBe(0);
    expect(modelDecisions(session.report().decisions)).toEqual([]);
    expect(session.spent).toBe(0);
  });

  it('a call the budget cannot cover throws the policy error and sends nothing', async () => {
    const { session, model } = setup({ budget: Math.floor(usd(reserved(['one sentence'])) * 1e9 / 2) / 1e9 });
    const error = await embed({ model, value: 'one sentence', maxRetries: 3 }).catch((e: unknown) => e);
    expect(denial(error)?.code).toBe('BUDGET_EXCEEDED');
    expect(billing.hits).toBe(0);
    expect(session.spent).toBe(0);
  });

  it('an embedding model with no known price is refused under a budget, saying how to price it, before anything is sent', async () => {
    const { model } = setup({ budget: 1 }, { id: 'house-embedder-v2' });
    const error = await embed({ model, value: 'one sentence', maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(error)?.decision.rule).toMatchObject({ section: 'pricing' });
    expect(String((error as Error).message)).toMatch(/no price known for model "house-embedder-v2".*pricing:/);
    expect(billing.hits).toBe(0);
  });

  it('every chunk embedMany sends in parallel is reserved: a budget for 3 chunks lets at most 3 of 6 reach the server', async () => {
    const values = Array.from({ length: 12 }, (_, i) => `value ${String(i).padStart(2, '0')}`);
    const twoPerCall: EmbeddingModelMiddleware = { overrideMaxEmbeddingsPerCall: () => 2, overrideSupportsParallelCalls: () => true };
    const open = setup({ budget: 1 }, { outer: [twoPerCall] });
    await embedMany({ model: open.model, values, maxRetries: 0 });
    const chunks = modelDecisions(open.session.report().decisions);
    expect(billing.hits).toBe(6);
    expect(chunks).toHaveLength(6);
    const estimate = usd(reserved(values.slice(0, 2)));
    for (const chunk of chunks) expect(chunk.settlement).toMatchObject({ status: 'committed', estimated: estimate, actual: usd(billed(values.slice(0, 2))) });

    billing.reset();
    const budget = Math.round(3.5 * estimate * 1e9) / 1e9;
    const tight = setup({ budget }, { outer: [twoPerCall] });
    const error = await embedMany({ model: tight.model, values, maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(error)?.code).toBe('BUDGET_EXCEEDED');
    // embedMany rejects at the first denial; the chunks already sent finish on their own.
    await vi.waitFor(() => expect(tight.session.pendingReservations).toBe(0));
    const decisions = modelDecisions(tight.session.report().decisions);
    const allowed = decisions.filter((d) => d.decision === 'allow');
    expect(billing.hits).toBeGreaterThan(0);
    expect(billing.hits).toBeLessThanOrEqual(3);
    expect(allowed).toHaveLength(billing.hits);
    expect(decisions.length).toBeGreaterThan(allowed.length);
    expect(tight.session.spent).toBeLessThanOrEqual(budget);
    expect(tight.session.report().overrun).toBe(0);
  });

  it('maxRetries against a server that fails (500, then 429) before it answers: every attempt is reserved and settled on its own', async () => {
    const flaky = await startFlakyServer(billing.baseURL, [500, 429]);
    try {
      const { session, model } = setup({ budget: 1 }, { baseURL: flaky.baseURL });
      await embedMany({ model, values: VALUES, maxRetries: 2 });
      expect(flaky.hits).toBe(3);
      const settlements = modelDecisions(session.report().decisions).map((d) => d.settlement!);
      const estimate = usd(reserved(VALUES));
      // A 5xx may have been billed (the estimate); a 429 was not (released); the answer is charged what it reported.
      expect(settlements.map((s) => [s.status, s.actual])).toEqual([
        ['committed', estimate],
        ['released', 0],
        ['committed', usd(billed(VALUES))],
      ]);
      expect(session.spent).toBe(Math.round((estimate + usd(billed(VALUES))) * 1e9) / 1e9);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await flaky.close();
    }
  });

  it('a retry the budget cannot cover is not sent: a server that keeps failing costs at most the budget', async () => {
    const flaky = await startFlakyServer(billing.baseURL, [500, 500, 500, 500, 500]);
    try {
      const estimate = usd(reserved(VALUES));
      const budget = Math.round(2.5 * estimate * 1e9) / 1e9;
      const { session, model } = setup({ budget }, { baseURL: flaky.baseURL });
      const error = await embedMany({ model, values: VALUES, maxRetries: 4 }).catch((e: unknown) => e);
      expect(denial(error)?.code).toBe('BUDGET_EXCEEDED');
      expect(flaky.hits).toBe(2);
      expect(session.spent).toBe(Math.round(2 * estimate * 1e9) / 1e9);
      expect(session.spent).toBeLessThanOrEqual(budget);
    } finally {
      await flaky.close();
    }
  });
});

describe('policyEmbeddingMiddleware: what the model reports', () => {
  const mock = (usage: unknown) =>
    new MockEmbeddingModelV4({
      provider: 'openai.embedding',
      modelId: 'text-embedding-3-small',
      maxEmbeddingsPerCall: Number.POSITIVE_INFINITY,
      doEmbed: async ({ values }) => ({ embeddings: values.map(() => [0]), usage: usage as { tokens: number }, warnings: [] }),
    });

  it.each([
    ['no usage', undefined],
    ['NaN tokens', { tokens: Number.NaN }],
    ['negative tokens', { tokens: -40 }],
    ['tokens as a string', { tokens: '3' }],
    ['infinite tokens', { tokens: Number.POSITIVE_INFINITY }],
    ['an empty usage object', {}],
    // Values that were embedded were read: a count of 0 is no report.
    ['zero tokens', { tokens: 0 }],
  ])('%s: charged the estimate, never nothing', async (_name, usage) => {
    const session = new AgentPolicy({ budget: 1 }).session();
    await embedMany({ model: wrapEmbeddingModel({ model: mock(usage), middleware: policyEmbeddingMiddleware(session) }), values: VALUES });
    const [decision] = modelDecisions(session.report().decisions);
    expect(decision!.settlement!.estimated).toBe(usd(reserved(VALUES)));
    expect(session.spent).toBe(decision!.settlement!.estimated);
    expect(session.spent).toBeGreaterThan(0);
  });

  it('a call aborted while in flight is charged its estimate', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const controller = new AbortController();
    const model = new MockEmbeddingModelV4({
      provider: 'openai.embedding',
      modelId: 'text-embedding-3-small',
      doEmbed: async ({ abortSignal }) => {
        controller.abort();
        throw abortSignal?.reason ?? new Error('aborted');
      },
    });
    const error = await embed({ model: wrapEmbeddingModel({ model, middleware: policyEmbeddingMiddleware(session) }), value: 'one sentence', abortSignal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeDefined();
    expect(session.spent).toBe(usd(reserved(['one sentence'])));
    expect(session.pendingReservations).toBe(0);
  });

  it('needs a session', () => {
    expect(() => policyEmbeddingMiddleware({} as PolicySession)).toThrow(/needs a PolicySession/);
  });
});
