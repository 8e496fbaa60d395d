import { AgentPolicy, type AgentPolicyOptions, type PolicySession } from '@agentpolicy/core';
import { createOpenAI } from '@ai-sdk/openai';
import type { ImageModelV4, ImageModelV4CallOptions } from '@ai-sdk/provider';
import { GPT_4O_IMAGE_MAX, GPT_IMAGE_MAX, startBillingServer, startFlakyServer, type BillingServer } from '@agentpolicy/test-servers';
import { NoImageGeneratedError, generateImage, wrapImageModel, wrapProvider } from 'ai';
import { MockImageModelV4 } from 'ai/test';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { policyImageMiddleware } from './policy-image-middleware.js';
import { policyMiddleware } from './policy-middleware.js';
import { denialOf as denial, modelDecisions } from './test-utils.js';

const PRICING: AgentPolicyOptions['pricing'] = {
  'dall-e-3': { perImage: { '1024x1024': 0.04, 'hd/1024x1024': 0.08, '1024x1792': 0.08, 'hd/1024x1792': 0.12 } },
};
const DEAREST = 0.12;
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const settlements = (session: PolicySession) => modelDecisions(session.report().decisions).map((d) => [d.settlement?.status, d.settlement?.actual]);

describe('policyImageMiddleware through the AI SDK and the openai provider', () => {
  let billing: BillingServer;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => billing.reset());

  const setup = (options: AgentPolicyOptions, id: string, { baseURL = billing.baseURL, name = undefined as string | undefined } = {}) => {
    const session = new AgentPolicy({ pricing: PRICING, ...options }).session();
    const provider = createOpenAI({ apiKey: 'k', baseURL, ...(name ? { name } : {}) });
    return { session, model: wrapImageModel({ model: provider.image(id), middleware: policyImageMiddleware(session) }) };
  };

  it('priced per image: each call the SDK makes reserves its images at the size and quality asked and is charged the images returned', async () => {
    const { session, model } = setup({ budget: 1 }, 'dall-e-3');
    const { images } = await generateImage({ model, prompt: 'a cat', n: 2, size: '1024x1024', providerOptions: { openai: { quality: 'hd' } }, maxRetries: 0 });
    expect(images).toHaveLength(2);
    // dall-e-3 makes one image a call: two calls, each reserved on its own.
    expect(billing.hits).toBe(2);
    const decisions = modelDecisions(session.report().decisions);
    expect(decisions).toHaveLength(2);
    for (const decision of decisions) {
      expect(decision.action).toMatchObject({ type: 'cost', source: 'model:openai/dall-e-3' });
      expect(decision.action.metadata).toMatchObject({ via: 'ai-sdk', call: 'image', provider: 'openai.image', images: 1, imageSize: '1024x1024', imageQuality: 'hd' });
      expect(decision.settlement).toMatchObject({ status: 'committed', estimated: 0.08, actual: 0.08 });
    }
    expect(session.spent).toBe(0.16);
  });

  it('a call whose signal is aborted before it is sent is not sent, and nothing is reserved or charged', async () => {
    const { session, model } = setup({ budget: 1 }, 'dall-e-3');
    const error = await generateImage({ model, prompt: 'a cat', size: '1024x1024', abortSignal: AbortSignal.abort(), maxRetries: 0 }).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(billing.hits).toBe(0);
    expect(modelDecisions(session.report().decisions)).toEqual([]);
    expect(session.spent).toBe(0);
  });

  it('a call the budget cannot cover throws the policy error and sends nothing', async () => {
    const { session, model } = setup({ budget: 0.05 }, 'dall-e-3');
    const error = await generateImage({ model, prompt: 'a cat', size: '1024x1024', providerOptions: { openai: { quality: 'hd' } }, maxRetries: 3 }).catch((e: unknown) => e);
    expect(denial(error)?.code).toBe('BUDGET_EXCEEDED');
    expect(billing.hits).toBe(0);
    expect(session.spent).toBe(0);
  });

  it('an image model with no known price is refused under a budget, saying how to price it, before anything is sent', async () => {
    const { model } = setup({ budget: 10 }, 'dall-e-2');
    const error = await generateImage({ model, prompt: 'a cat', maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(error)?.decision.rule).toMatchObject({ section: 'pricing' });
    expect((error as Error).message).toMatch(/per_image/);
    expect(billing.hits).toBe(0);
  });

  /** USD core charges gpt-image-1.5 for usage (the catalog prices its image output above its text output). */
  const gptImage = (session: PolicySession, usage: { inputTokens: number; outputTokens: number; inputImageTokens?: number }): number => {
    const price = session.priceUsage({ model: 'gpt-image-1.5', provider: 'openai.image', ...usage, outputImageTokens: usage.outputTokens });
    if (!price.ok) throw new Error(price.reason);
    return price.nanos / 1e9;
  };
  /** The input tokens the billing server reports for a prompt. */
  const promptTokens = (prompt: string): number => Math.ceil(Buffer.byteLength(JSON.stringify(prompt)) / 4);

  it('token-billed (gpt-image-1.5 from the catalog): reserves the largest output images, charges the reported tokens as image output', async () => {
    const { session, model } = setup({ budget: 10 }, 'gpt-image-1.5');
    await generateImage({ model, prompt: 'a cat', n: 2, maxRetries: 0 });
    expect(billing.hits).toBe(1);
    const [decision] = modelDecisions(session.report().decisions);
    expect(decision!.action.metadata).toMatchObject({ maxOutputTokens: 2 * GPT_IMAGE_MAX, n: 2, outputTokens: 2 * GPT_IMAGE_MAX });
    expect(decision!.settlement).toMatchObject({ status: 'committed', actual: gptImage(session, { inputTokens: promptTokens('a cat'), outputTokens: 2 * GPT_IMAGE_MAX }) });
    expect(decision!.settlement!.actual).toBeLessThanOrEqual(decision!.settlement!.estimated);
  });

  it('an edit counts its input images and mask at full detail, and again at high input fidelity', async () => {
    const edit = async (providerOptions: Record<string, Record<string, string>>, perUpload: number) => {
      const { session, model } = setup({ budget: 10 }, 'gpt-image-1.5');
      await generateImage({ model, prompt: { text: 'add a hat', images: [PNG, PNG], mask: PNG }, providerOptions, maxRetries: 0 });
      const decision = modelDecisions(session.report().decisions)[0]!;
      expect(decision.action.metadata).toMatchObject({ imageInputTokens: 3 * perUpload });
      // The SDK passes on no text and image split of the input: all of it is charged as image input.
      const input = promptTokens('add a hat') + 3 * perUpload;
      expect(decision.settlement).toMatchObject({ status: 'committed', actual: gptImage(session, { inputTokens: input, inputImageTokens: input, outputTokens: GPT_IMAGE_MAX }) });
      expect(decision.settlement!.actual).toBeLessThanOrEqual(decision.settlement!.estimated);
    };
    await edit({}, GPT_4O_IMAGE_MAX);
    await edit({ openai: { inputFidelity: 'high' } }, GPT_4O_IMAGE_MAX + GPT_IMAGE_MAX);
    expect(billing.hits).toBe(2);
  });

  it('a size the price list does not name, no size, or only an aspect ratio is reserved and charged at the dearest listed price', async () => {
    for (const size of ['99999x99999', undefined, 42 as unknown as undefined]) {
      const { session, model } = setup({ budget: 1 }, 'dall-e-3');
      await generateImage({ model, prompt: 'a cat', ...(size !== undefined ? { size: size as `${number}x${number}` } : {}), maxRetries: 0 });
      expect(settlements(session)).toEqual([['committed', DEAREST]]);
    }
    // An aspect ratio leaves the size to the provider: the dearest too, and the ratio is recorded.
    const { session, model } = setup({ budget: 1 }, 'dall-e-3');
    await generateImage({ model, prompt: 'a cat', aspectRatio: '16:9', maxRetries: 0 });
    const [decision] = modelDecisions(session.report().decisions);
    expect(decision!.action.metadata).toMatchObject({ aspectRatio: '16:9' });
    expect(decision!.settlement).toMatchObject({ status: 'committed', actual: DEAREST });
  });

  it('the quality is read from the provider options, whatever the provider is named; qualities that disagree reserve the dearest image', async () => {
    const cost = async (providerOptions: Record<string, Record<string, string>>, name?: string) => {
      const { session, model } = setup({ budget: 1 }, 'dall-e-3', name ? { name } : {});
      await generateImage({ model, prompt: 'a cat', size: '1024x1024', providerOptions, maxRetries: 0 });
      return modelDecisions(session.report().decisions)[0]!.settlement!.estimated;
    };
    expect(await cost({ openai: { quality: 'standard' } })).toBe(0.04);
    expect(await cost({ openai: { quality: 'auto' } })).toBe(0.04);
    // An OpenAI provider renamed `proxy` (provider `proxy.image`) still reads its options under `openai`.
    expect(await cost({ openai: { quality: 'hd' } }, 'proxy')).toBe(0.08);
    expect(await cost({ openai: { quality: 'standard' }, azure: { quality: 'hd' } })).toBe(DEAREST);
    // Token-billed: the output tokens of the quality asked for; of the largest image when the qualities disagree.
    const outputTokens = async (providerOptions: Record<string, Record<string, string>>) => {
      const { session, model } = setup({ budget: 1 }, 'gpt-image-1');
      await generateImage({ model, prompt: 'a cat', size: '1024x1024', providerOptions, maxRetries: 0 });
      return modelDecisions(session.report().decisions)[0]!.action.metadata?.['maxOutputTokens'];
    };
    expect(await outputTokens({ openai: { quality: 'low' } })).toBe(272);
    expect(await outputTokens({ openai: { quality: 'low' }, azure: { quality: 'high' } })).toBe(GPT_IMAGE_MAX);
    // Priced by quality alone: the dearest quality when they disagree.
    const byQuality = async (providerOptions: Record<string, Record<string, string>>) => {
      const { session, model } = setup({ budget: 1, pricing: { 'house-painter': { perImage: { standard: 0.02, hd: 0.05 } } } }, 'house-painter');
      await generateImage({ model, prompt: 'a cat', providerOptions, maxRetries: 0 });
      return modelDecisions(session.report().decisions)[0]!.settlement!.estimated;
    };
    expect(await byQuality({ openai: { quality: 'standard' } })).toBe(0.02);
    expect(await byQuality({ openai: { quality: 'standard' }, azure: { quality: 'hd' } })).toBe(0.05);
  });

  it('a token-billed image with no known output bound (gpt-image-2 at xhigh, gpt-image-2.5) is denied, saying what to set, and nothing is sent', async () => {
    const xhigh = setup({ budget: 10 }, 'gpt-image-2');
    const refused = await generateImage({ model: xhigh.model, prompt: 'a cat', size: '1024x1024', providerOptions: { openai: { quality: 'xhigh' } }, maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(refused)?.message).toMatch(/quality "xhigh" has no known token bound.*max_output_tokens/);
    const later = setup({ budget: 10, pricing: { 'gpt-image-2.5-flare': { input: 5, output: 40 } } }, 'gpt-image-2.5-flare');
    const unbounded = await generateImage({ model: later.model, prompt: 'a cat', maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(unbounded)?.message).toMatch(/max_output_tokens: <tokens per image>/);
    expect(billing.hits).toBe(0);
    // With the bound of one image in the policy, the call is reserved at it and sent.
    const bounded = setup({ budget: 10, pricing: { 'gpt-image-2.5-flare': { input: 5, output: 40, maxOutputTokens: 30_000 } } }, 'gpt-image-2.5-flare');
    await generateImage({ model: bounded.model, prompt: 'a cat', n: 2, maxRetries: 0 });
    expect(modelDecisions(bounded.session.report().decisions)[0]!.action.metadata).toMatchObject({ maxOutputTokens: 60_000 });
    expect(billing.hits).toBe(1);
  });

  it('malformed n: a count that is not a whole number ≥ 1, or one past the budget, is denied and nothing is sent', async () => {
    const { session, model } = setup({ budget: 1 }, 'dall-e-3');
    const half = await generateImage({ model, prompt: 'a cat', n: 0.5, maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(half)?.message).toMatch(/n must be a whole number ≥ 1, got number 0\.5/);
    const huge = await generateImage({ model, prompt: 'a cat', n: 1e6, maxImagesPerCall: 1e6, maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(huge)?.code).toBe('BUDGET_EXCEEDED');
    // Call options the SDK would never send, straight to the wrapped model.
    for (const n of [Number.NaN, -1, 0, Number.POSITIVE_INFINITY, '3']) {
      const options = { prompt: 'a cat', n, size: undefined, aspectRatio: undefined, seed: undefined, files: undefined, mask: undefined, providerOptions: {} };
      const error = await model.doGenerate(options as unknown as ImageModelV4CallOptions).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(denial(error)?.message).toMatch(/n must be a whole number ≥ 1/);
    }
    expect(billing.hits).toBe(0);
    expect(session.spent).toBe(0);
  });

  it('maxRetries against a server that fails (500, then 429) before it answers: every attempt is reserved and settled on its own', async () => {
    const flaky = await startFlakyServer(billing.baseURL, [500, 429]);
    try {
      const { session, model } = setup({ budget: 1 }, 'dall-e-3', { baseURL: flaky.baseURL });
      await generateImage({ model, prompt: 'a cat', size: '1024x1024', maxRetries: 2 });
      expect(flaky.hits).toBe(3);
      expect(settlements(session)).toEqual([
        ['committed', 0.04],
        ['released', 0],
        ['committed', 0.04],
      ]);
      expect(session.spent).toBe(0.08);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await flaky.close();
    }
  });

  it('a retry the budget cannot cover is not sent: a server that keeps failing costs at most the budget', async () => {
    const flaky = await startFlakyServer(billing.baseURL, [500, 500, 500, 500, 500]);
    try {
      const { session, model } = setup({ budget: 0.1 }, 'dall-e-3', { baseURL: flaky.baseURL });
      const error = await generateImage({ model, prompt: 'a cat', size: '1024x1024', maxRetries: 4 }).catch((e: unknown) => e);
      expect(denial(error)?.code).toBe('BUDGET_EXCEEDED');
      expect(flaky.hits).toBe(2);
      expect(session.spent).toBe(0.08);
    } finally {
      await flaky.close();
    }
  });

  it("wrapProvider's imageModelMiddleware puts every image model of the provider under the budget", async () => {
    const session = new AgentPolicy({ budget: 0.05, pricing: PRICING }).session();
    const provider = wrapProvider({
      provider: createOpenAI({ apiKey: 'k', baseURL: billing.baseURL }),
      languageModelMiddleware: policyMiddleware(session),
      imageModelMiddleware: policyImageMiddleware(session),
    });
    await generateImage({ model: provider.imageModel('dall-e-3'), prompt: 'a cat', size: '1024x1024', maxRetries: 0 });
    const error = await generateImage({ model: provider.imageModel('dall-e-3'), prompt: 'a cat', size: '1024x1024', maxRetries: 0 }).catch((e: unknown) => e);
    expect(denial(error)?.code).toBe('BUDGET_EXCEEDED');
    expect(billing.hits).toBe(1);
    expect(session.spent).toBe(0.04);
  });
});

describe('policyImageMiddleware: what the model reports', () => {
  type Result = Awaited<ReturnType<MockImageModelV4['doGenerate']>>;
  const response = { timestamp: new Date(0), modelId: 'm', headers: undefined };
  // The mock's optional capability fields do not meet ImageModelV4 under exactOptionalPropertyTypes: cast.
  const mock = (modelId: string, results: Array<Partial<Result>>): ImageModelV4 => {
    const queue = [...results];
    return new MockImageModelV4({
      provider: 'openai.image',
      modelId,
      maxImagesPerCall: 10,
      doGenerate: async () => ({ images: ['AA=='], warnings: [], response, ...queue.shift() }),
    }) as ImageModelV4;
  };
  const run = async (modelId: string, results: Array<Partial<Result>>, options: { n?: number; maxRetries?: number; size?: `${number}x${number}` } = {}) => {
    const session = new AgentPolicy({ budget: 10, pricing: PRICING }).session();
    const model = wrapImageModel({ model: mock(modelId, results), middleware: policyImageMiddleware(session) });
    const error = await generateImage({ model, prompt: 'a cat', maxRetries: 0, ...options }).then(
      () => undefined,
      (e: unknown) => e,
    );
    return { session, error, decisions: modelDecisions(session.report().decisions) };
  };

  it.each([
    ['no usage', undefined],
    ['NaN counts', { inputTokens: Number.NaN, outputTokens: Number.NaN, totalTokens: Number.NaN }],
    ['negative counts', { inputTokens: -10, outputTokens: -4000, totalTokens: -4010 }],
    ['only a total', { inputTokens: undefined, outputTokens: undefined, totalTokens: 50 }],
    // An image call reads a prompt and bills the image it returns: a count of 0 is no report.
    ['zero counts', { inputTokens: 0, outputTokens: 0, totalTokens: 0 }],
  ])('token-billed, %s: charged the estimate, never nothing', async (_name, usage) => {
    const { session, decisions } = await run('gpt-image-1', [usage === undefined ? {} : { usage: usage as NonNullable<Result['usage']> }]);
    expect(decisions).toHaveLength(1);
    expect(session.spent).toBe(decisions[0]!.settlement!.estimated);
    expect(session.spent).toBeGreaterThan(0);
  });

  it.each([
    ['not reported', undefined],
    ['reported as 0 beside an image returned', 0],
  ])('token-billed, only the input reported (the output %s): the output is charged at its estimate', async (_name, outputTokens) => {
    const { decisions } = await run('gpt-image-1', [{ usage: { inputTokens: 10, outputTokens, totalTokens: undefined } }]);
    expect(decisions[0]!.action.metadata).toMatchObject({ inputTokens: 10, outputTokens: GPT_IMAGE_MAX });
    expect(decisions[0]!.settlement!.actual).toBeGreaterThan(0);
  });

  it('priced per image, no image returned: the SDK retries, and each attempt is charged its estimate', async () => {
    // The SDK waits 2 s, then 4 s, before these retries: the clock is moved on instead.
    vi.useFakeTimers({ toFake: ['setTimeout'] });
    let outcome: Awaited<ReturnType<typeof run>>;
    try {
      const pending = run('dall-e-3', [{ images: [] }, { images: [] }, { images: [], isRetryable: false }], { maxRetries: 2, size: '1024x1024' });
      await vi.advanceTimersByTimeAsync(10_000);
      outcome = await pending;
    } finally {
      vi.useRealTimers();
    }
    const { session, error, decisions } = outcome;
    expect(NoImageGeneratedError.isInstance(error)).toBe(true);
    expect(decisions.map((d) => [d.settlement?.status, d.settlement?.actual])).toEqual([
      ['committed', 0.04],
      ['committed', 0.04],
      ['committed', 0.04],
    ]);
    expect(session.spent).toBe(0.12);
  });

  it('priced per image, more images returned than asked for: each is charged (the overrun is recorded)', async () => {
    const { session, decisions } = await run('dall-e-3', [{ images: ['AA==', 'AA==', 'AA=='] }], { size: '1024x1024' });
    expect(decisions[0]!.settlement).toMatchObject({ estimated: 0.04, actual: 0.12, overrun: 0.08 });
    expect(session.spent).toBe(0.12);
  });

  it('a call aborted while in flight is charged its estimate', async () => {
    const session = new AgentPolicy({ budget: 1, pricing: PRICING }).session();
    const controller = new AbortController();
    const model = new MockImageModelV4({
      provider: 'openai.image',
      modelId: 'dall-e-3',
      doGenerate: async ({ abortSignal }) => {
        controller.abort();
        throw abortSignal?.reason ?? new Error('aborted');
      },
    }) as ImageModelV4;
    const error = await generateImage({ model: wrapImageModel({ model, middleware: policyImageMiddleware(session) }), prompt: 'a cat', size: '1024x1024', abortSignal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeDefined();
    expect(session.spent).toBe(0.04);
    expect(session.pendingReservations).toBe(0);
  });

  it('needs a session', () => {
    expect(() => policyImageMiddleware(undefined as unknown as PolicySession)).toThrow(/needs a PolicySession/);
  });
});
