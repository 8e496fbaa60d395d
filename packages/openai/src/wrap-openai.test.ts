import { AgentPolicy, ApprovalRequiredError, findPolicyError, NANOS_PER_USD, PolicyDeniedError, priceUsage, type AgentPolicyOptions, type Decision, type PolicySession } from '@agentpolicy/core';
import OpenAI, { AzureOpenAI, toFile } from 'openai';
import OpenAIv6, { AzureOpenAI as AzureOpenAIv6 } from 'openai-v6';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import { wrapOpenAI, type WrapOpenAIOptions } from './wrap-openai.js';

// gpt-4o-mini in the catalog: $0.15 / 1M input, $0.075 / 1M cached input, $0.60 / 1M output.
// The server reports 1,000 input and 500 output tokens unless a reply says otherwise.
const GPT_4O_MINI_COST = 0.00045; // 1000 × 0.15e-6 + 500 × 0.6e-6
const USER = [{ role: 'user' as const, content: 'Say hello' }];
const NO_WAIT = { 'retry-after-ms': '0' };

const costDecisions = (session: PolicySession): Decision[] => session.report().decisions.filter((d) => d.action.type === 'cost');
const httpDecisions = (session: PolicySession): Decision[] => session.report().decisions.filter((d) => d.action.type === 'http');
const only = (decisions: Decision[]): Decision => {
  expect(decisions).toHaveLength(1);
  return decisions[0]!;
};
const round = (usd: number): number => Math.round(usd * 1e9) / 1e9;

/** Waits for the work a stream cancel triggers (a few microtask turns), without timing assumptions on the server. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// Both majors run the same suite; the v6 client is typed as v7 here (the calls used are common to both).
const CLIENTS: ReadonlyArray<[string, typeof OpenAI, typeof AzureOpenAI]> = [
  ['openai 7', OpenAI, AzureOpenAI],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI, AzureOpenAIv6 as unknown as typeof AzureOpenAI],
];

it('returns a client of the same type (openai 6 and 7) and refuses anything else', () => {
  const session = new AgentPolicy().session();
  expectTypeOf(wrapOpenAI(new OpenAI({ apiKey: 'k' }), session)).toEqualTypeOf<OpenAI>();
  expectTypeOf(wrapOpenAI(new OpenAIv6({ apiKey: 'k' }), session)).toEqualTypeOf<OpenAIv6>();
  // @ts-expect-error not an openai client
  expect(() => wrapOpenAI({}, session)).toThrow(TypeError);
  // @ts-expect-error not a session
  expect(() => wrapOpenAI(new OpenAI({ apiKey: 'k' }), {})).toThrow(TypeError);
});

it('refuses toolCosts it cannot read, and toolCosts without checkToolCalls, instead of charging nothing (a negative cost is denied when checked, see the parity table)', () => {
  const session = new AgentPolicy({ budget: 1 }).session();
  const client = new OpenAI({ apiKey: 'k' });
  for (const toolCosts of ['0.1', 5, null, [0.1], { get_weather: '0.1' }, { get_weather: null }]) {
    // @ts-expect-error not a ToolCosts value
    expect(() => wrapOpenAI(client, session, { checkToolCalls: true, toolCosts })).toThrow(TypeError);
  }
  expect(() => wrapOpenAI(client, session, { toolCosts: { get_weather: 0.1 } })).toThrow(/checkToolCalls/);
  expect(() => wrapOpenAI(client, session, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } })).not.toThrow();
  expect(() => wrapOpenAI(client, session, { checkToolCalls: true, toolCosts: () => 0.1 })).not.toThrow();
});

describe.each(CLIENTS)('wrapOpenAI with %s', (_name, OpenAIClient, AzureClient) => {
  let server: MockOpenAIServer;

  beforeAll(async () => {
    server = await startMockOpenAI({ usage: { input: 1000, output: 500 }, responseModels: { 'gpt-4o-mini': 'gpt-4o-mini-2024-07-18' } });
  });
  afterAll(() => server.close());
  beforeEach(() => server.reset());

  const setup = (policy: AgentPolicyOptions = {}, options: WrapOpenAIOptions = {}, clientOptions: ConstructorParameters<typeof OpenAI>[0] = {}) => {
    const session = new AgentPolicy(policy).session();
    const original = new OpenAIClient({ apiKey: 'test-key', baseURL: server.baseURL, ...clientOptions });
    const client = wrapOpenAI(original, session, options);
    return { session, original, client };
  };

  describe('records the real cost', () => {
    it('of a chat completion, priced from the usage and the response model', async () => {
      const { session, client } = setup({ budget: 1 });
      const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_completion_tokens: 800 });
      expect(completion.choices[0]?.message.content).toBe('Hello from the mock model');

      const decision = only(costDecisions(session));
      expect(decision.decision).toBe('allow');
      expect(decision.settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(decision.action.metadata).toMatchObject({
        endpoint: 'chat.completions',
        model: 'gpt-4o-mini-2024-07-18',
        inputTokens: 1000,
        outputTokens: 500,
        maxOutputTokens: 800,
      });
      expect(session.spent).toBe(GPT_4O_MINI_COST);
      expect(session.pendingReservations).toBe(0);
    });

    it('with cached and reasoning tokens, and a price from the policy', async () => {
      const { session, client } = setup({ budget: 1, pricing: { 'mock-model': { input: 1, output: 2, cachedInput: 0.5, maxOutputTokens: 4096 } } });
      server.reply({ usage: { input: 1000, cached: 400, output: 500, reasoning: 100 } });
      await client.chat.completions.create({ model: 'mock-model', messages: USER });
      // 600 × $1/M + 400 × $0.5/M + 500 × $2/M
      expect(session.spent).toBe(0.0018);
      expect(only(costDecisions(session)).action.metadata).toMatchObject({ cachedInputTokens: 400, reasoningTokens: 100 });
    });

    it('of a chat stream: asks for usage without touching the caller’s params, and charges it', async () => {
      const { session, client } = setup({ budget: 1 });
      const params = { model: 'gpt-4o-mini', messages: USER, stream: true as const };
      const stream = await client.chat.completions.create(params);
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).toBe('Hello from the mock model');
      expect(server.requests[0]?.body?.['stream_options']).toEqual({ include_usage: true });
      expect(params).not.toHaveProperty('stream_options');
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(session.pendingReservations).toBe(0);
    });

    it('of a chat stream as soon as its usage chunk is parsed, before the stream ends', async () => {
      const { session, client } = setup({ budget: 1 });
      // role, 5 words, finish, usage — then the server holds the connection and never sends [DONE].
      server.reply({ holdAfterEvents: 8 });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true });
      let spentAtUsage: number | undefined;
      for await (const chunk of stream) {
        if (chunk.usage) {
          spentAtUsage = session.spent;
          break;
        }
      }
      expect(spentAtUsage).toBe(GPT_4O_MINI_COST);
      await settle();
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });

    it('of a chat stream with includeStreamUsage off: the request is left as is and the estimate is charged', async () => {
      const { session, client } = setup({ budget: 1 }, { includeStreamUsage: false });
      for await (const _chunk of await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true })) void _chunk;
      await settle();
      expect(server.requests[0]?.body).not.toHaveProperty('stream_options');
      const { settlement } = only(costDecisions(session));
      expect(settlement?.actual).toBe(settlement?.estimated);
    });

    it('of a chat stream whose caller turned usage off: the estimate', async () => {
      const { session, client } = setup({ budget: 1 });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, stream_options: { include_usage: false } });
      for await (const _chunk of stream) void _chunk;
      await settle();
      expect(server.requests[0]?.body?.['stream_options']).toEqual({ include_usage: false });
      const { settlement } = only(costDecisions(session));
      expect(settlement?.status).toBe('committed');
      expect(settlement?.actual).toBe(settlement?.estimated);
      expect(session.spent).toBe(settlement?.estimated);
    });

    it('of a Responses call, JSON and streamed', async () => {
      const { session, client } = setup({ budget: 1 });
      const response = await client.responses.create({ model: 'gpt-4o-mini', input: 'Say hello', max_output_tokens: 600 });
      expect(response.output_text).toBe('Hello from the mock model');
      const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'Say hello', stream: true });
      const types: string[] = [];
      for await (const event of stream) types.push(event.type);
      expect(types.at(-1)).toBe('response.completed');

      const [json, streamed] = costDecisions(session);
      expect(json?.action.metadata).toMatchObject({ endpoint: 'responses', stream: false, maxOutputTokens: 600, model: 'gpt-4o-mini-2024-07-18' });
      expect(json?.settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(streamed?.action.metadata).toMatchObject({ endpoint: 'responses', stream: true });
      expect(streamed?.settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(session.spent).toBe(round(2 * GPT_4O_MINI_COST));
    });

    it('of an embeddings call (no output tokens reserved)', async () => {
      const { session, client } = setup({ budget: 1 });
      const result = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
      expect(result.data).toHaveLength(2);
      const decision = only(costDecisions(session));
      expect(decision.action.metadata).toMatchObject({ endpoint: 'embeddings', maxOutputTokens: 0, inputTokens: 1000, outputTokens: 0 });
      // text-embedding-3-small: $0.02 / 1M tokens
      expect(decision.settlement).toMatchObject({ status: 'committed', actual: 0.00002 });
    });

    it('of an image generation that reports token usage', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ usage: { input: 100, output: 1000 } });
      await client.images.generate({ model: 'gpt-image-1', prompt: 'a lighthouse' });
      // gpt-image-1: $5 / 1M input, $40 / 1M output
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: 0.0405 });
      expect(only(costDecisions(session)).action.metadata).toMatchObject({ endpoint: 'images', model: 'gpt-image-1' });
    });

    it('of an image generation: its output is image tokens, priced at the model’s image rate', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ usage: { input: 100, output: 1000 } });
      await client.images.generate({ model: 'gpt-image-1.5', prompt: 'a lighthouse' });
      const usage = { model: 'gpt-image-1.5', provider: 'openai', inputTokens: 100, outputTokens: 1000 };
      const asImages = priceUsage({ ...usage, outputImageTokens: 1000 }, new Map());
      const asText = priceUsage(usage, new Map());
      if (!asImages.ok || !asText.ok) throw new Error('gpt-image-1.5 has no catalog price');
      // The catalog prices gpt-image-1.5's image output above its text output: charging text would undercharge.
      expect(asImages.nanos).toBeGreaterThan(asText.nanos);
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: asImages.nanos / NANOS_PER_USD });
    });

    it('of a multipart audio transcription that reports token usage', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ usage: { input: 2000, output: 100 } });
      const file = await toFile(Buffer.from('RIFF....WAVE'), 'note.wav', { type: 'audio/wav' });
      const result = await client.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file });
      expect(result.text).toBe('Hello from the mock model');
      // gpt-4o-transcribe: $2.5 / 1M input, $10 / 1M output
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: 0.006 });
      expect(only(costDecisions(session)).action.metadata).toMatchObject({ endpoint: 'audio.transcriptions', model: 'gpt-4o-transcribe' });
    });
  });

  describe('streams that do not finish', () => {
    it('a chat stream the caller breaks out of is charged its estimate, once', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ holdAfterEvents: 2 });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 100 });
      for await (const _chunk of stream) break;
      await settle();
      const { settlement } = only(costDecisions(session));
      expect(settlement).toMatchObject({ status: 'committed' });
      expect(settlement?.actual).toBe(settlement?.estimated);
      expect(session.spent).toBe(settlement?.estimated);
      expect(session.pendingReservations).toBe(0);
      expect(server.count()).toBe(1);
    });

    it('a Responses stream broken out of early is charged its estimate', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ holdAfterEvents: 3 });
      const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'Say hello', stream: true, max_output_tokens: 100 });
      for await (const event of stream) if (event.type === 'response.output_item.added') break;
      await settle();
      const { settlement } = only(costDecisions(session));
      expect(settlement?.status).toBe('committed');
      expect(session.spent).toBe(settlement?.estimated);
      expect(session.pendingReservations).toBe(0);
    });

    it('an aborted stream is charged its estimate even when nobody reads it again', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ holdAfterEvents: 2 });
      const controller = new AbortController();
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 100 }, { signal: controller.signal });
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next();
      controller.abort();
      const { settlement } = only(costDecisions(session));
      expect(settlement?.status).toBe('committed');
      expect(session.spent).toBe(settlement?.estimated);
      expect(session.pendingReservations).toBe(0);
    });

    it('a stream never read stays reserved until the session ends, which charges its estimate', async () => {
      const { session, client } = setup({ budget: 1 });
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 100 });
      expect(session.pendingReservations).toBe(1);
      expect(session.spent).toBe(0);
      const report = session.end();
      expect(session.pendingReservations).toBe(0);
      expect(report.spent).toBe(only(costDecisions(session)).settlement?.estimated);
    });
  });

  describe('denials', () => {
    it('a call over the budget is refused with the agentpolicy error, once, and never sent', async () => {
      const { session, client } = setup({ budget: 0.0001 });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 1000 }).catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect((error as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
      expect(server.count()).toBe(0);
      expect(only(costDecisions(session)).decision).toBe('deny');
      expect(session.spent).toBe(0);
    });

    it('a model with no known price is refused under a budget', async () => {
      const { session, client } = setup({ budget: 1 });
      const error = await client.chat.completions.create({ model: 'my-finetune-xyz', messages: USER }).catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect((error as PolicyDeniedError).decision.rule).toEqual({ section: 'pricing', model: 'my-finetune-xyz' });
      expect(server.count()).toBe(0);
      expect(session.report().decisionSummary.deny).toBe(1);
    });

    it('a host not on the network allow-list is refused before anything is sent', async () => {
      const { session, client } = setup({ budget: 1, allowedDomains: ['api.openai.com'] });
      const error = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }).catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect((error as PolicyDeniedError).decision.rule).toMatchObject({ section: 'network', list: 'allow' });
      expect(server.count()).toBe(0);
      expect(session.report().policyHits.deniedDomains).toEqual(['127.0.0.1']);
      expect(costDecisions(session)).toHaveLength(0);
    });

    it('the network check can be turned off; an allow-listed host passes', async () => {
      const off = setup({ allowedDomains: ['api.openai.com'] }, { checkNetwork: false });
      await off.client.models.list();
      expect(httpDecisions(off.session)).toHaveLength(0);
      const listed = setup({ allowedDomains: ['127.0.0.1'] });
      await listed.client.models.list();
      expect(only(httpDecisions(listed.session))).toMatchObject({ decision: 'allow', action: { domain: '127.0.0.1', method: 'GET' } });
      expect(costDecisions(listed.session)).toHaveLength(0);
    });

    it('an ended session refuses every further call', async () => {
      const { session, client } = setup();
      session.end();
      const error = await client.models.list().catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect((error as PolicyDeniedError).decision.rule).toEqual({ section: 'session', check: 'ended' });
      expect(server.count()).toBe(0);
    });

    it('concurrent calls cannot overspend: the second reservation is refused', async () => {
      const { session, client } = setup({ budget: 0.003 });
      const call = () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 4000 });
      const results = await Promise.allSettled([call(), call()]);
      expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(server.count()).toBe(1);
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });
  });

  describe('retries and failures', () => {
    // Each attempt is reserved before it is sent and settled by core's rule (Reservation.fail): a 5xx or a dropped
    // connection may come after the model did the work, so a retried one is charged its estimate like a final one;
    // a 4xx (429) charges nothing.
    const settlements = (session: PolicySession) => costDecisions(session).map((decision) => decision.settlement);

    it('a 503 retried twice then answered: each attempt reserved; the failed ones charged their estimate, the answer its usage', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ status: 503, headers: NO_WAIT }, { status: 503, headers: NO_WAIT });
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 100 });
      expect(server.count()).toBe(3);
      expect(httpDecisions(session)).toHaveLength(1);
      const [first, second, third] = settlements(session);
      expect(first).toMatchObject({ status: 'committed', actual: first?.estimated });
      expect(second).toMatchObject({ status: 'committed', actual: first?.estimated });
      expect(third).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(costDecisions(session).map((decision) => decision.action.metadata?.['attempt'])).toEqual([undefined, 2, 3]);
      expect(session.spent).toBeCloseTo(2 * (first?.estimated ?? 0) + GPT_4O_MINI_COST, 9);
      expect(session.pendingReservations).toBe(0);
    });

    it('a 503 on every attempt is charged its estimate per attempt', async () => {
      const { session, client } = setup({ budget: 1 }, {}, { maxRetries: 1 });
      server.reply({ status: 503, headers: NO_WAIT }, { status: 503, headers: NO_WAIT });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 100 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAIClient.InternalServerError);
      expect(server.count()).toBe(2);
      const all = settlements(session);
      expect(all).toHaveLength(2);
      for (const settlement of all) expect(settlement).toMatchObject({ status: 'committed', actual: settlement?.estimated });
      expect(session.spent).toBeCloseTo(2 * (all[0]?.estimated ?? 0), 9);
      expect(session.pendingReservations).toBe(0);
    });

    it('a retry the budget can no longer cover is not sent: the policy error ends the request', async () => {
      // Room for the first attempt's estimate and less than a second one.
      const probe = setup({ budget: 1 });
      const estimate = (await probe.session.reserveModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: USER, maxOutputTokens: 100 })).decision.action.cost;
      const { session, client } = setup({ budget: estimate * 1.5 });
      server.reply({ status: 503, headers: NO_WAIT }, { status: 503, headers: NO_WAIT });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 100 }).catch((e: unknown) => e);
      expect((findPolicyError(error) as PolicyDeniedError | undefined)?.decision.rule).toMatchObject({ section: 'budget' });
      expect(server.count()).toBe(1);
      expect(session.spent).toBeCloseTo(estimate, 9);
      expect(session.pendingReservations).toBe(0);
    });

    it('a 4xx error charges nothing', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ status: 400 });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAIClient.BadRequestError);
      expect(server.count()).toBe(1);
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'released', actual: 0 });
      expect(session.spent).toBe(0);
      expect(session.pendingReservations).toBe(0);
    });

    it('a 429 retried then answered: the 429 attempt charges nothing, the answer its usage', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ status: 429, headers: NO_WAIT });
      await client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' });
      expect(server.count()).toBe(2);
      expect(settlements(session)).toEqual([expect.objectContaining({ status: 'released', actual: 0 }), expect.objectContaining({ status: 'committed', actual: 0.00002 })]);
      expect(session.spent).toBe(0.00002);
    });

    it('a dropped connection retried then answered: the dropped attempt charged its estimate (it may have been served), the answer its usage', async () => {
      const { session, client } = setup({ budget: 1 });
      server.reply({ drop: true });
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 100 });
      expect(server.count()).toBe(2);
      const [dropped, answered] = settlements(session);
      expect(dropped).toMatchObject({ status: 'committed', actual: dropped?.estimated });
      expect(answered).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(session.spent).toBeCloseTo((dropped?.estimated ?? 0) + GPT_4O_MINI_COST, 9);
    });

    it('a connection failure after every retry is charged its estimate per attempt', async () => {
      const closed = await startMockOpenAI();
      const baseURL = closed.baseURL;
      await closed.close();
      const { session, client } = setup({ budget: 1 }, {}, { baseURL, maxRetries: 1 });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 100 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAIClient.APIConnectionError);
      const all = settlements(session);
      expect(all).toHaveLength(2);
      for (const settlement of all) expect(settlement).toMatchObject({ status: 'committed', actual: settlement?.estimated });
      expect(session.pendingReservations).toBe(0);
    });

    it('a request aborted before it was sent charges nothing', async () => {
      const { session, client } = setup({ budget: 1 });
      const controller = new AbortController();
      controller.abort();
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }, { signal: controller.signal }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAIClient.APIUserAbortError);
      expect(server.count()).toBe(0);
      expect(session.spent).toBe(0);
      expect(session.pendingReservations).toBe(0);
    });
  });

  describe('helpers, clones and the original client', () => {
    it('chat.completions.stream() is governed and charged its usage', async () => {
      const { session, client } = setup({ budget: 1 });
      const stream = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: USER });
      const completion = await stream.finalChatCompletion();
      expect(completion.usage?.prompt_tokens).toBe(1000);
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
    });

    it('chat.completions.stream() is refused like create()', async () => {
      const { client } = setup({ budget: 0.0001 });
      const stream = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: USER, max_tokens: 1000 });
      const error = await stream.finalChatCompletion().catch((e: unknown) => e);
      // The helpers wrap every error that is not the client's own in an OpenAIError, with the original as its cause.
      expect(error).toBeInstanceOf(OpenAIClient.OpenAIError);
      expect(PolicyDeniedError.isInstance((error as Error).cause)).toBe(true);
      expect(server.count()).toBe(0);
    });

    it('responses.stream() is governed and charged its usage', async () => {
      const { session, client } = setup({ budget: 1 });
      const response = await client.responses.stream({ model: 'gpt-4o-mini', input: 'Say hello' }).finalResponse();
      expect(response.usage?.input_tokens).toBe(1000);
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
    });

    it('runTools() is governed: every model turn is reserved and charged', async () => {
      const { session, client } = setup({ budget: 1 });
      let ran = 0;
      server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' }] });
      const runner = client.chat.completions.runTools({
        model: 'gpt-4o-mini',
        messages: USER,
        tools: [{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: {} }, function: () => `sunny (${++ran})` } }],
      });
      expect(await runner.finalContent()).toBe('Hello from the mock model');
      expect(ran).toBe(1);
      expect(server.count('/v1/chat/completions')).toBe(2);
      expect(costDecisions(session).map((d) => d.settlement?.actual)).toEqual([GPT_4O_MINI_COST, GPT_4O_MINI_COST]);
    });

    it('withOptions() on the wrapped client stays governed, with its own fetch too', async () => {
      const { session, client } = setup({ budget: 1 });
      let seen = 0;
      const clone = client.withOptions({ timeout: 5_000 }).withOptions({
        fetch: (input: string | URL | Request, init?: RequestInit) => {
          seen++;
          expect(new Headers(init?.headers).has('x-agentpolicy-call')).toBe(false);
          return fetch(input, init);
        },
      });
      await clone.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
      expect(seen).toBe(1);
      expect(only(costDecisions(session)).settlement).toMatchObject({ status: 'committed', actual: GPT_4O_MINI_COST });
      expect(server.requests[0]?.headers['x-agentpolicy-call']).toBeUndefined();
    });

    it('leaves the original client untouched', async () => {
      const { session, client, original } = setup({ budget: 0.0001, allowedDomains: ['api.openai.com'] });
      expect(client).not.toBe(original);
      const stream = await original.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 1000 });
      for await (const _chunk of stream) void _chunk;
      expect(server.requests[0]?.body?.['stream_options']).toBeUndefined();
      expect(session.report().decisionSummary.total).toBe(0);
    });

    it('a request that reaches the governed fetch without a call (the client\'s own token exchange) is network-checked', async () => {
      const { session, client } = setup({ allowedDomains: ['127.0.0.1'] });
      const internalFetch = (client as unknown as { fetch: typeof fetch }).fetch;
      await expect(internalFetch('https://login.example.com/token', { method: 'POST' })).rejects.toSatisfy(PolicyDeniedError.isInstance);
      expect(only(httpDecisions(session))).toMatchObject({ decision: 'deny', action: { domain: 'login.example.com', method: 'POST' } });
      const models = await internalFetch(`${server.baseURL}/models`);
      expect(models.status).toBe(200);
    });

    it('a URL or Request object reaching the governed fetch is decided on what is sent (no lying getter picks the host)', async () => {
      const { session, client } = setup({ allowedDomains: ['api.openai.com'] });
      const internalFetch = (client as unknown as { fetch: typeof fetch }).fetch;
      // The check once read `href` while fetch sends `toString()`: the two can name different hosts.
      class LyingUrl extends URL {
        override get href(): string {
          return 'https://api.openai.com/v1/models';
        }
      }
      class LyingRequest extends Request {
        override get url(): string {
          return 'https://api.openai.com/v1/models';
        }
      }
      await expect(internalFetch(new LyingUrl(`${server.baseURL}/models`))).rejects.toSatisfy(PolicyDeniedError.isInstance);
      await expect(internalFetch(new LyingRequest(`${server.baseURL}/models`))).rejects.toSatisfy(PolicyDeniedError.isInstance);
      expect(server.count()).toBe(0);
      expect(httpDecisions(session).map((decision) => [decision.decision, decision.action.type === 'http' ? decision.action.domain : undefined])).toEqual([['deny', '127.0.0.1'], ['deny', '127.0.0.1']]);
    });

    it('an AzureOpenAI client is governed through its deployment URLs', async () => {
      const session = new AgentPolicy({ budget: 1, allowedDomains: ['127.0.0.1'] }).session();
      const azure = new AzureClient({ apiKey: 'k', baseURL: server.baseURL, apiVersion: '2025-01-01-preview', deployment: 'gpt-4o-mini' });
      const client = wrapOpenAI(azure, session, { metadata: { agent: 'azure-test' } });
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
      expect(server.requests[0]?.path).toBe('/v1/chat/completions');
      expect(only(httpDecisions(session)).action).toMatchObject({ domain: '127.0.0.1', url: expect.stringContaining('/deployments/gpt-4o-mini/chat/completions') });
      expect(only(costDecisions(session))).toMatchObject({
        settlement: { status: 'committed', actual: GPT_4O_MINI_COST },
        action: { metadata: { endpoint: 'chat.completions', agent: 'azure-test' } },
      });
    });

    it('wrapping a wrapped client governs it under the new session only', async () => {
      const first = setup({ budget: 1 });
      const second = new AgentPolicy({ budget: 1 }).session();
      const rewrapped = wrapOpenAI(first.client, second);
      await rewrapped.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
      expect(first.session.report().decisionSummary.total).toBe(0);
      expect(second.spent).toBe(GPT_4O_MINI_COST);
    });
  });

  describe('tool calls the model returns', () => {
    const blocked = { allowedTools: ['get_weather'], blockedTools: ['send_email'] };

    it('are left alone by default', async () => {
      const { session, client } = setup(blocked);
      server.reply({ toolCalls: [{ id: 'call_1', name: 'send_email', arguments: '{}' }] });
      const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
      expect(completion.choices[0]?.message.tool_calls?.[0]?.id).toBe('call_1');
      expect(session.report().decisionSummary.byActionType.tool.allow + session.report().decisionSummary.byActionType.tool.deny).toBe(0);
    });

    it('a blocked chat tool call rejects the request, after its cost is recorded', async () => {
      const { session, client } = setup({ ...blocked, budget: 1 }, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_ok', name: 'get_weather', arguments: '{}' }, { id: 'call_bad', name: 'send_email', arguments: '{}' }] });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect((error as PolicyDeniedError).decision.action).toMatchObject({ type: 'tool', name: 'send_email', metadata: { toolCallId: 'call_bad' } });
      expect(session.spent).toBe(GPT_4O_MINI_COST);
      const tools = session.report().decisions.filter((d) => d.action.type === 'tool');
      expect(tools.map((d) => d.decision)).toEqual(['allow', 'deny']);
      expect(tools[1]?.action).toMatchObject({ input: {} });
      // The loop can ask again by the call id and its input: the same decision comes back, nothing new is recorded.
      expect((await session.checkTool('send_email', { input: {}, idempotencyKey: 'call_bad' })).id).toBe(tools[1]?.id);
      expect(session.report().decisions.filter((d) => d.action.type === 'tool')).toHaveLength(2);
    });

    it('an allowed chat tool call passes through and is recorded', async () => {
      const { session, client } = setup(blocked, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }] });
      const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
      expect(completion.choices[0]?.message.tool_calls).toHaveLength(1);
      expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => d.decision)).toEqual(['allow']);
    });

    it('a blocked tool call in a chat stream fails the stream before the call is complete, and the usage is still charged', async () => {
      const { session, client } = setup({ ...blocked, budget: 1 }, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_bad', name: 'send_email', arguments: '{"to":"x"}' }] });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true });
      const finishes: unknown[] = [];
      const error = await (async () => {
        for await (const chunk of stream) finishes.push(chunk.choices[0]?.finish_reason);
      })().catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect(finishes).not.toContain('tool_calls');
      await settle();
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });

    it('a blocked Responses function call rejects the request (JSON and streamed)', async () => {
      const { session, client } = setup(blocked, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_r1', name: 'send_email', arguments: '{}' }] }, { toolCalls: [{ id: 'call_r2', name: 'send_email', arguments: '{}' }] });
      const json = await client.responses.create({ model: 'gpt-4o-mini', input: 'x' }).catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(json)).toBe(true);
      const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true });
      const types: string[] = [];
      const streamed = await (async () => {
        for await (const event of stream) types.push(event.type);
      })().catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance(streamed)).toBe(true);
      expect(types).not.toContain('response.function_call_arguments.done');
      expect(types).not.toContain('response.output_item.done');
      expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => [d.decision, d.action.metadata?.['toolCallId']])).toEqual([
        ['deny', 'call_r1'],
        ['deny', 'call_r2'],
      ]);
    });

    it('the loop runs an allowed call once under its allow; the same call id again, or with other arguments, is decided anew', async () => {
      const { session, client } = setup({ allowedTools: ['get_weather'], budget: 1 }, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_0', name: 'get_weather', arguments: '{"city":"Paris"}' }] }, { toolCalls: [{ id: 'call_0', name: 'get_weather', arguments: '{"city":"Oslo"}' }] });
      const ran: string[] = [];
      const weather = (args: { city: string }) => ran.push(args.city);
      const runCall = async () => {
        const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
        const call = completion.choices[0]!.message.tool_calls![0]!;
        if (call.type !== 'function') throw new Error('not a function call');
        const args = JSON.parse(call.function.arguments) as { city: string };
        return session.runTool(call.function.name, { input: args, idempotencyKey: call.id }, () => weather(args));
      };

      await runCall();
      const checked = session.report().decisions.filter((d) => d.action.type === 'tool');
      // The check made when the response arrived is the allow the loop ran under: one record.
      expect(checked).toHaveLength(1);
      expect(checked[0]?.action).toMatchObject({ name: 'get_weather', input: { city: 'Paris' } });
      // The same call id run again: not under the used allow, but decided (and recorded) again.
      await session.runTool('get_weather', { input: { city: 'Paris' }, idempotencyKey: 'call_0' }, () => weather({ city: 'Paris' }));
      expect(session.report().decisions.filter((d) => d.action.type === 'tool')).toHaveLength(2);
      // The next response reuses call_0 with other arguments: another call, decided and recorded on its own.
      await runCall();
      expect(ran).toEqual(['Paris', 'Paris', 'Oslo']);
      expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => (d.action as { input?: unknown }).input)).toEqual([
        { city: 'Paris' },
        { city: 'Paris' },
        { city: 'Oslo' },
      ]);
    });

    it('a call that needs approval: the request rejects with the approval request, answered elsewhere, run once with that answer', async () => {
      const { session, client } = setup({ approvalRules: [{ tool: 'send_email' }] }, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_1', name: 'send_email', arguments: '{"to":"bob@example.com"}' }] });
      const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
      expect(ApprovalRequiredError.isInstance(error)).toBe(true);
      const { decision } = error as ApprovalRequiredError;
      const requestId = decision.approvalRequest!.id;
      expect(decision.action).toMatchObject({ name: 'send_email', input: { to: 'bob@example.com' }, metadata: { toolCallId: 'call_1' } });

      // A human approves from a web handler (any process with the same approval store).
      expect(await session.resolveApproval(requestId, { approved: true, by: 'alice' })).toMatchObject({ ok: true });
      const sent: string[] = [];
      const send = (to: string) => sent.push(to);
      // Other arguments under that approval: not approved.
      await expect(session.runTool('send_email', { input: { to: 'eve@example.com' }, idempotencyKey: 'call_1', approval: { requestId } }, () => send('eve@example.com'))).rejects.toThrow(/requires approval/);
      await session.runTool('send_email', { input: { to: 'bob@example.com' }, idempotencyKey: 'call_1', approval: { requestId } }, () => send('bob@example.com'));
      // Used once: the same answer again does not run it again.
      await expect(session.runTool('send_email', { input: { to: 'bob@example.com' }, idempotencyKey: 'call_1', approval: { requestId } }, () => send('bob@example.com'))).rejects.toThrow(/requires approval/);
      expect(sent).toEqual(['bob@example.com']);
    });

    describe('declared tool costs (toolCosts)', () => {
      const toolDecisions = (session: PolicySession) => session.report().decisions.filter((d) => d.action.type === 'tool');
      const toolSpend = (session: PolicySession) => round(toolDecisions(session).reduce((sum, d) => sum + (d.settlement?.actual ?? 0), 0));
      const weatherTool = (run: () => unknown) => ({ type: 'function' as const, function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: {} }, function: run } });

      it('the loop runs a call with its cost under the allow the response got: one decision, counted once by a limit, charged once', async () => {
        const { session, client } = setup({ budget: 1, limits: [{ tool: 'get_weather', max_calls: 1, per: '1h' }] }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' }] });
        const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
        // Reserved when the response arrived: the money is held until the call has run.
        expect(toolDecisions(session)).toEqual([expect.objectContaining({ decision: 'allow', action: expect.objectContaining({ cost: 0.1 }), settlement: expect.objectContaining({ status: 'pending' }) })]);
        const call = completion.choices[0]!.message.tool_calls![0]!;
        if (call.type !== 'function') throw new Error('not a function call');
        let ran = 0;
        await session.runTool('get_weather', { input: JSON.parse(call.function.arguments), cost: 0.1, idempotencyKey: call.id }, () => ++ran);
        // Before, the response was checked at no cost and the loop's call with its cost was another action: decided
        // again, and denied by the limit the first check had counted, so the tool never ran.
        expect(ran).toBe(1);
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'committed']]);
        expect(toolSpend(session)).toBe(0.1);
      });

      it('a call the budget cannot cover is refused when the response arrives, and nothing is held', async () => {
        const { session, client } = setup({ budget: 0.5 }, { checkToolCalls: true, toolCosts: { get_weather: 2 } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }] });
        const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
        expect(PolicyDeniedError.isInstance(error)).toBe(true);
        expect(toolDecisions(session).map((d) => `${d.decision}:${d.rule.section}`)).toEqual(['deny:budget']);
        expect(session.pendingReservations).toBe(0);
      });

      it('a refused response gives back the cost its allowed calls held; their call id is decided anew', async () => {
        const { session, client } = setup({ ...blocked, budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        server.reply({ toolCalls: [{ id: 'call_ok', name: 'get_weather', arguments: '{}' }, { id: 'call_bad', name: 'send_email', arguments: '{}' }] });
        await expect(client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER })).rejects.toThrow(/blocked|not allowed/);
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'released'], ['deny', undefined]]);
        expect(session.pendingReservations).toBe(0);
        await session.runTool('get_weather', { input: {}, cost: 0.1, idempotencyKey: 'call_ok' }, () => 'ok');
        expect(toolDecisions(session)).toHaveLength(3);
        expect(toolSpend(session)).toBe(0.1);
      });

      it('a streamed response refused at a later call gives back the cost an earlier call of it held', async () => {
        const { session, client } = setup({ ...blocked, budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        server.reply({ toolCalls: [{ id: 'call_ok', name: 'get_weather', arguments: '{}' }, { id: 'call_bad', name: 'send_email', arguments: '{}' }] });
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true });
        const read = async () => {
          for await (const _chunk of stream) {
            // read to the end
          }
        };
        await expect(read()).rejects.toThrow(/blocked|not allowed/);
        await settle();
        // The calls of a stream are checked as each completes: the first was allowed (its cost held) before the
        // second was refused. Before, its reservation stayed open until session.end() charged it.
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'released'], ['deny', undefined]]);
        expect(toolSpend(session)).toBe(0);
      });

      it.each([
        ['broken out of', 'break'],
        ['aborted', 'abort'],
      ] as const)('a stream %s before its end gives back the cost its allowed calls hold; one read whole keeps it for the loop', async (_what, how) => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        const call = { toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' }], argumentChunks: [3] };
        server.reply(call, call);
        const stream = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: USER });
        let chunks = 0;
        for await (const _chunk of stream) {
          // The call is complete (and its cost held) once its choice finishes; the caller stops before the stream ends.
          if (++chunks === 7) {
            if (how === 'abort') stream.abort();
            break;
          }
        }
        await settle();
        // Before, the cost stayed held until session.end() charged it, for a call that never ran.
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'released']]);
        expect(session.pendingReservations).toBe(0);
        // Read whole (the client cancels the body after its last event): the allow and its cost wait for the loop.
        const completion = await client.chat.completions.stream({ model: 'gpt-4o-mini', messages: USER }).finalChatCompletion();
        const returned = completion.choices[0]!.message.tool_calls![0]!;
        if (returned.type !== 'function') throw new Error('not a function call');
        await session.runTool('get_weather', { input: JSON.parse(returned.function.arguments), cost: 0.1, idempotencyKey: returned.id }, () => 'sunny');
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'released'], ['allow', 'committed']]);
        expect(toolSpend(session)).toBe(0.1);
      });

      it.each([
        ['chat.completions.create({ stream: true })', 'chat'],
        ['responses.create({ stream: true })', 'responses'],
      ] as const)('%s broken out of at its first event, its last events already received, gives back the cost its calls hold', async (_what, api) => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        // The whole answer arrives in one chunk: the call is decided (its cost held) and the last event read before the
        // caller sees the first event.
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }] });
        const stream =
          api === 'chat'
            ? await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true })
            : await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true });
        for await (const _event of stream as AsyncIterable<unknown>) {
          void _event;
          break;
        }
        await settle();
        // Before, with openai 6 (which cancels the body before it aborts the request), the cost stayed held until
        // session.end() charged it, for a call the caller never got.
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'released']]);
        expect(session.pendingReservations).toBe(0);
      });

      it('a Responses stream that ends with other arguments for a call item: that call is decided, and the cost of the one it replaces given back', async () => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' }], terminalArguments: ['{"city":"Rome"}'] });
        const response = await client.responses.stream({ model: 'gpt-4o-mini', input: 'x' }).finalResponse();
        const item = response.output.find((o) => o.type === 'function_call');
        if (item?.type !== 'function_call') throw new Error('no function call');
        expect(item.arguments).toBe('{"city":"Rome"}');
        await session.runTool('get_weather', { input: JSON.parse(item.arguments), cost: 0.1, idempotencyKey: item.call_id }, () => 'sunny');
        // Before, the Paris call's cost stayed held until session.end() charged it, for a call the caller never got.
        expect(toolDecisions(session).map((d) => [d.action.type === 'tool' ? d.action.input : undefined, d.settlement?.status])).toEqual([
          [{ city: 'Paris' }, 'released'],
          [{ city: 'Rome' }, 'committed'],
        ]);
        expect(session.pendingReservations).toBe(0);
        expect(toolSpend(session)).toBe(0.1);
      });

      it('a stream cut after its last event: where the client fails the read, the cost its call held is given back; where it returns the response, it waits for the loop', async () => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        // Six events (role, call, arguments, finish, usage, [DONE]), then the connection is cut instead of ended.
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }], dropAfterEvents: 6 });
        const completion = await client.chat.completions.stream({ model: 'gpt-4o-mini', messages: USER }).finalChatCompletion().catch(() => undefined);
        await settle();
        expect(completion === undefined).toBe(_name === 'openai 6');
        if (completion === undefined) {
          // openai 6 reads on past [DONE] and fails with the cut: the caller never gets the call. Before, its cost stayed held.
          expect(toolDecisions(session).map((d) => d.settlement?.status)).toEqual(['released']);
          expect(session.pendingReservations).toBe(0);
          return;
        }
        // openai 7 stops reading at [DONE]: the caller has the call, and its loop runs it on the response's allow.
        await session.runTool('get_weather', { input: {}, cost: 0.1, idempotencyKey: 'call_1' }, () => 'sunny');
        expect(toolDecisions(session).map((d) => d.settlement?.status)).toEqual(['committed']);
      });

      it('runTools(): the same call (id and arguments) twice in one response runs twice, each on an allow of its own, charged twice', async () => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        const twice = { id: 'call_1', name: 'get_weather', arguments: '{}' };
        server.reply({ toolCalls: [twice, twice] }, {});
        let ran = 0;
        // Before, the second run found the first's allow taken and the run failed with DECISION_USED.
        await client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: USER, tools: [weatherTool(() => ++ran)] }).finalContent();
        expect(ran).toBe(2);
        expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([['allow', 'committed'], ['allow', 'committed']]);
        expect(toolSpend(session)).toBe(0.2);
      });

      it('runTools(): a call the client never runs (the run stopped at an earlier function\'s error) gives back its cost', async () => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'lookup', arguments: '{}' }, { id: 'call_2', name: 'get_weather', arguments: '{}' }] }, {});
        let ran = 0;
        const lookup = { type: 'function' as const, function: { name: 'lookup', description: 'lookup', parameters: { type: 'object', properties: {} }, function: () => { throw new Error('lookup broke'); } } };
        // One call after another (openai 6 always does so): the first function's error ends the run before the second.
        const error = await client.chat.completions
          .runTools({ model: 'gpt-4o-mini', messages: USER, parallel_tool_calls: false, tools: [lookup, weatherTool(() => ++ran)] })
          .finalContent()
          .catch((e: unknown) => e);
        expect(String((error as Error).message)).toMatch(/lookup broke/);
        await settle();
        expect(ran).toBe(0);
        // Before, its cost stayed held until session.end() charged it.
        expect(toolDecisions(session).map((d) => [d.action.type === 'tool' ? d.action.name : '', d.settlement?.status])).toEqual([['lookup', undefined], ['get_weather', 'released']]);
        expect(session.pendingReservations).toBe(0);
        expect(toolSpend(session)).toBe(0);
      });

      it('runTools(): the repeat is decided anew, so a limit the first run used up stops it', async () => {
        const { session, client } = setup({ budget: 1, limits: [{ tool: 'get_weather', max_calls: 1, per: '1h' }] }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        const twice = { id: 'call_1', name: 'get_weather', arguments: '{}' };
        server.reply({ toolCalls: [twice, twice] }, {});
        let ran = 0;
        const error = await client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: USER, tools: [weatherTool(() => ++ran)] }).finalContent().catch((e: unknown) => e);
        expect(findPolicyError(error)).toMatchObject({ name: 'PolicyDeniedError', decision: { rule: { section: 'limits' } } });
        expect(ran).toBe(1);
        expect(toolSpend(session)).toBe(0.1);
        expect(session.pendingReservations).toBe(0);
      });

      it.each([
        ['returns', () => 'sunny', 0.1],
        ['throws a plain Error (it may have done the work): charged', () => { throw new Error('boom'); }, 0.1],
        ['throws with status 500: charged', () => { throw Object.assign(new Error('upstream'), { status: 500 }); }, 0.1],
        ['throws with status 404 (it refused the input): released', () => { throw Object.assign(new Error('no such city'), { status: 404 }); }, 0],
        ['throws with statusCode 422: released', () => { throw Object.assign(new Error('bad city'), { statusCode: 422 }); }, 0],
      ])('runTools(): a function that %s settles its cost by core\'s rule', async (_what, run, spent) => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: { get_weather: 0.1 } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }] }, {});
        await client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: USER, tools: [weatherTool(run)] }).finalContent().catch(() => undefined);
        expect(toolDecisions(session).map((d) => d.decision)).toEqual(['allow']);
        expect(toolSpend(session)).toBe(spent);
        expect(session.pendingReservations).toBe(0);
      });

      it('a call that needs approval, answered elsewhere, runs once with its cost and is charged once', async () => {
        const { session, client } = setup({ budget: 1, approvalRules: [{ tool: 'send_email' }] }, { checkToolCalls: true, toolCosts: { send_email: 0.2 } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'send_email', arguments: '{"to":"bob@example.com"}' }] });
        const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
        expect(ApprovalRequiredError.isInstance(error)).toBe(true);
        const requestId = (error as ApprovalRequiredError).decision.approvalRequest!.id;
        expect(toolSpend(session)).toBe(0);
        await session.resolveApproval(requestId, { approved: true, by: 'alice' });
        let sent = 0;
        await session.runTool('send_email', { input: { to: 'bob@example.com' }, cost: 0.2, idempotencyKey: 'call_1', approval: { requestId } }, () => ++sent);
        expect(sent).toBe(1);
        expect(toolDecisions(session).map((d) => `${d.decision}:${d.settlement?.status ?? '-'}`)).toEqual(['require_approval:-', 'allow:committed']);
        expect(toolSpend(session)).toBe(0.2);
      });

      it('a cost function that throws denies the call', async () => {
        const { session, client } = setup({ budget: 1 }, { checkToolCalls: true, toolCosts: () => { throw new Error('no price list'); } });
        server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }] });
        await expect(client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER })).rejects.toThrow();
        const [decision] = toolDecisions(session);
        expect(decision).toMatchObject({ decision: 'deny', action: { metadata: { costError: 'no price list' } } });
      });
    });

    it.each([
      ['the same arguments', '{}'],
      ['other arguments', '{"city":"Paris"}'],
    ])('a stream that repeats a call id with %s checks every call: a blocked one refuses it', async (_what, args) => {
      const { session, client } = setup(blocked, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: args }, { id: 'call_1', name: 'send_email', arguments: '{}' }], argumentChunks: [1, 2] });
      // Before, the second call was skipped as already seen (its id was), so the stream passed with a blocked call in it.
      const error = await client.chat.completions.stream({ model: 'gpt-4o-mini', messages: USER }).finalChatCompletion().catch((e: unknown) => e);
      expect(findPolicyError(error)).toMatchObject({ decision: { action: { type: 'tool', name: 'send_email', metadata: { toolCallId: 'call_1' } } } });
      expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => `${d.action.type === 'tool' ? d.action.name : ''}:${d.decision}`)).toEqual(['get_weather:allow', 'send_email:deny']);
    });

    it('a Responses stream decides each call item once, and a repeated call id in another item again', async () => {
      const { session, client } = setup(blocked, { checkToolCalls: true });
      server.reply({ toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{}' }] });
      for await (const _event of await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true })) void _event;
      expect(session.report().decisions.filter((d) => d.action.type === 'tool')).toHaveLength(1);
      server.reply({ toolCalls: [{ id: 'call_2', name: 'get_weather', arguments: '{}' }, { id: 'call_2', name: 'send_email', arguments: '{}' }] });
      const read = async () => {
        for await (const _event of await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true })) void _event;
      };
      const error = await read().catch((e: unknown) => e);
      expect(findPolicyError(error)).toMatchObject({ decision: { action: { type: 'tool', name: 'send_email', metadata: { toolCallId: 'call_2' } } } });
    });

    it.each([
      ['responses.stream().finalResponse()', 'helper'],
      ['responses.create({ stream: true }) read whole', 'raw'],
    ] as const)('a Responses stream whose calls are only in its terminal event is checked too: %s rejects a blocked call', async (_what, how) => {
      const { session, client } = setup(blocked, { checkToolCalls: true });
      // No output_item or arguments events: the blocked call is only in response.completed's output, which is what
      // finalResponse() returns. Before, such a call was never checked and the stream passed with it.
      server.reply({ toolCalls: [{ id: 'call_1', name: 'send_email', arguments: '{}' }], responsesEvents: 'terminal-only' });
      const read = async () => {
        if (how === 'helper') return client.responses.stream({ model: 'gpt-4o-mini', input: 'x' }).finalResponse();
        for await (const _event of await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true })) void _event;
        return undefined;
      };
      const error = await read().catch((e: unknown) => e);
      expect(findPolicyError(error)).toMatchObject({ decision: { decision: 'deny', action: { type: 'tool', name: 'send_email', metadata: { toolCallId: 'call_1' } } } });
      // A call already checked at its arguments' end is not decided again when the response ends with it.
      server.reply({ toolCalls: [{ id: 'call_2', name: 'get_weather', arguments: '{}' }] });
      await client.responses.stream({ model: 'gpt-4o-mini', input: 'x' }).finalResponse();
      expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => d.decision)).toEqual(['deny', 'allow']);
    });

    it('runTools() never runs a blocked tool', async () => {
      const { client } = setup(blocked, { checkToolCalls: true });
      let ran = 0;
      server.reply({ toolCalls: [{ id: 'call_1', name: 'send_email', arguments: '{}' }] });
      const runner = client.chat.completions.runTools({
        model: 'gpt-4o-mini',
        messages: USER,
        tools: [{ type: 'function', function: { name: 'send_email', description: 'send', parameters: { type: 'object', properties: {} }, function: () => String(++ran) } }],
      });
      const error = await runner.finalContent().catch((e: unknown) => e);
      expect(PolicyDeniedError.isInstance((error as Error).cause)).toBe(true);
      expect(ran).toBe(0);
      expect(server.count()).toBe(1);
    });
  });

  it('the report lists every call with its endpoint, model and cost', async () => {
    const { session, client } = setup({ budget: 1, pricing: { 'mock-model': { input: 1, output: 2, maxOutputTokens: 4096 } } });
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER });
    await client.chat.completions.create({ model: 'mock-model', messages: USER });
    for await (const _event of await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true })) void _event;
    await client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' });

    const report = session.end();
    const calls = report.decisions
      .filter((d) => d.action.type === 'cost')
      .map((d) => ({ endpoint: d.action.metadata?.['endpoint'], model: d.action.metadata?.['model'], cost: d.settlement?.actual }));
    expect(calls).toEqual([
      { endpoint: 'chat.completions', model: 'gpt-4o-mini-2024-07-18', cost: GPT_4O_MINI_COST },
      { endpoint: 'chat.completions', model: 'mock-model', cost: 0.002 },
      { endpoint: 'responses', model: 'gpt-4o-mini-2024-07-18', cost: GPT_4O_MINI_COST },
      { endpoint: 'embeddings', model: 'text-embedding-3-small', cost: 0.00002 },
    ]);
    expect(report.spent).toBe(round(GPT_4O_MINI_COST * 2 + 0.002 + 0.00002));
    expect(report.costSummary.allowed.cost).toBe(report.spent);
    expect(report.reserved).toBe(0);
  });
});
