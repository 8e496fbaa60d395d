import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
import { DEFAULT_IMAGE_TOKENS, estimateModelCall, imageOutputTokens, imageTokens, splitPromptMedia, type ModelCallEstimate, type ModelEstimate } from './model-estimate.js';
import { priceUsage } from './pricing.js';

const PRICING = new AgentPolicy({
  pricing: {
    'dall-e-3': { perImage: { '1024x1024': 0.04, 'hd/1024x1024': 0.08, '1024x1792': 0.08, 'hd/1024x1792': 0.12 } },
    'dall-e-2': { perImage: 0.02 },
    'tts-1': { perCharacter: '0.000015' },
    'my-model': { input: 1, output: 2 },
    'my-limited': { input: 1, output: 2, maxOutputTokens: 1000, maxInputTokens: 8000 },
    'my-whisper': { perSecond: '0.0001', maxAudioSeconds: 600 },
  },
}).normalized.pricing;

async function estimate(input: ModelCallEstimate): Promise<ModelEstimate> {
  return await estimateModelCall(input, PRICING);
}

async function usd(input: ModelCallEstimate): Promise<number> {
  const result = await estimate(input);
  if (!result.ok) throw new Error(result.reason);
  return result.nanos / 1e9;
}

describe('image token formulas', () => {
  it('follow the tile formula by detail and size, with the largest tile count when the size is unknown', () => {
    expect(imageTokens('gpt-4o', { detail: 'low', width: 4000, height: 4000 })).toBe(85);
    expect(imageTokens('gpt-4o', { detail: 'high', width: 1024, height: 1024 })).toBe(85 + 4 * 170);
    // 2048×4096 → fits 1024×2048 → short side 768: 768×1536 → 2 × 3 tiles.
    expect(imageTokens('gpt-4o', { detail: 'high', width: 2048, height: 4096 })).toBe(85 + 6 * 170);
    expect(imageTokens('gpt-4o', { detail: 'auto' })).toBe(85 + 8 * 170);
    expect(imageTokens('openai/gpt-4o-mini', {})).toBe(2833 + 8 * 5667);
    expect(imageTokens('gpt-4.1-mini', {})).toBe(Math.ceil(1536 * 1.62));
    expect(imageTokens('claude-sonnet-4', { width: 1000, height: 1000 })).toBe(1334);
    expect(imageTokens('claude-sonnet-4', {})).toBe(1600);
    expect(imageTokens('some-vision-model', { width: 10, height: 10 })).toBe(DEFAULT_IMAGE_TOKENS);
    expect(imageTokens('gpt-image-1', { detail: 'high', fidelity: 'high' })).toBe(85 + 8 * 170 + 6240);
  });

  it('no known size ever gives more tokens than the unknown-size bound', () => {
    for (const model of ['gpt-4o', 'o3', 'gpt-5', 'gpt-4.1-nano', 'claude-3-5-sonnet']) {
      const bound = imageTokens(model, {});
      for (const [width, height] of [[1, 1], [512, 512], [768, 2048], [700, 2048], [8000, 100], [100, 8000], [4096, 4096], [3000, 2000]]) {
        expect(imageTokens(model, { detail: 'high', width, height }), `${model} ${width}×${height}`).toBeLessThanOrEqual(bound);
      }
    }
  });

  it('SVG image output has no bound (a second model writes it, billed apart): refused as unpriced, whatever the image model', async () => {
    for (const model of ['gpt-image-1', 'gpt-image-2', 'dall-e-3']) {
      for (const format of ['svg', 'SVG', ' svg ']) {
        const result = await estimate({ model, provider: 'openai', prompt: 'a cat', imageOutput: { size: '1024x1024', quality: 'low', format } });
        expect(result.ok, `${model} ${format}`).toBe(false);
        expect(result.ok ? undefined : result.rule).toEqual({ section: 'pricing', model });
      }
    }
    expect((await estimate({ model: 'gpt-image-1', provider: 'openai', prompt: 'a cat', imageOutput: { size: '1024x1024', quality: 'low', format: 'png' } })).ok).toBe(true);
  });

  it('gpt-image output tokens by quality and size, the largest when either is unknown', () => {
    expect(imageOutputTokens({ size: '1024x1024', quality: 'low' })).toBe(272);
    expect(imageOutputTokens({ size: '1024x1536', quality: 'high' })).toBe(6240);
    expect(imageOutputTokens({})).toBe(6240);
    expect(imageOutputTokens({ quality: 'medium', size: '1024x1024', partialImages: 2 })).toBe(1056 + 200);
    expect(imageOutputTokens({ size: '1024x1024', quality: 'high' }, 'openai/gpt-image-1.5-2025-12-16')).toBe(4160);
    expect(imageOutputTokens({ size: '1024x1024', quality: 'low' }, 'gpt-image-1-mini')).toBe(272);
    // A quality or size named like an Object property is not in the table: the largest image.
    expect(imageOutputTokens({ quality: 'constructor', size: 'length' })).toBe(6240);
    expect(imageOutputTokens({ quality: 'constructor', size: 'length' }, 'gpt-image-2')).toBeUndefined();
  });

  it('gpt-image-2 output tokens by its size formula; a size left to the provider or outside its limits, the dearest within them', () => {
    // OpenAI's calculator: 1024×1024 high 7,024 tokens, 1536×1024 high 5,488 (more than the gpt-image-1 table's 4,160 / 6,208).
    expect(imageOutputTokens({ size: '1024x1024', quality: 'high' }, 'gpt-image-2')).toBe(7024);
    expect(imageOutputTokens({ size: '1536x1024', quality: 'high' }, 'gpt-image-2-2026-04-21')).toBe(5488);
    expect(imageOutputTokens({ size: '1024x1024', quality: 'medium' }, 'gpt-image-2')).toBe(1756);
    expect(imageOutputTokens({ size: '1024x1024', quality: 'low' }, 'gpt-image-2')).toBe(196);
    expect(imageOutputTokens({ size: '3840x2160', quality: 'high' }, 'gpt-image-2')).toBe(13342);
    const dearest = imageOutputTokens({}, 'gpt-image-2');
    expect(dearest).toBe(23719);
    for (const size of ['auto', '4096x4096', '3840x3840', '256x256', '1025x1024', '4000x1000', 'big', '2880X2880']) {
      expect(imageOutputTokens({ size, quality: 'auto' }, 'gpt-image-2'), size).toBe(dearest);
    }
    expect(imageOutputTokens({ quality: 'high', partialImages: 3 }, 'gpt-image-2')).toBe(dearest! + 300);
    // Every size within the limits costs at most the bound for an unknown size.
    for (let width = 512; width <= 3840; width += 112) {
      for (let height = 512; height <= 3840; height += 112) {
        expect(imageOutputTokens({ size: `${width}x${height}`, quality: 'high' }, 'gpt-image-2')!, `${width}x${height}`).toBeLessThanOrEqual(dearest!);
      }
    }
  });

  it('no output bound for a gpt-image-2 quality past high, nor for a later OpenAI image model', () => {
    for (const quality of ['xhigh', 'max', 'hd', 'standard']) expect(imageOutputTokens({ size: '1024x1024', quality }, 'gpt-image-2'), quality).toBeUndefined();
    for (const model of ['gpt-image-2.5-flare', 'gpt-image-2.6-sunburst', 'chatgpt-image-latest', 'openai/gpt-image-3']) {
      expect(imageOutputTokens({ size: '1024x1024', quality: 'low' }, model), model).toBeUndefined();
    }
    // A model of another family keeps the table's bound.
    expect(imageOutputTokens({}, 'house-painter')).toBe(6240);
  });

  it('gpt-image-2 reads every input image at high fidelity', () => {
    expect(imageTokens('gpt-image-2', { detail: 'high' })).toBe(85 + 8 * 170 + 6240);
    expect(imageTokens('gpt-image-1.5', { detail: 'high' })).toBe(85 + 8 * 170);
  });
});

describe('estimateModelCall', () => {
  it('n multiplies every output bound', async () => {
    const one = await estimate({ model: 'my-model', prompt: 'hi', maxOutputTokens: 1000 });
    const five = await estimate({ model: 'my-model', prompt: 'hi', maxOutputTokens: 1000, n: 5 });
    expect(one.ok && five.ok).toBe(true);
    expect(five.metadata['maxOutputTokens']).toBe(5000);
    expect(await usd({ model: 'dall-e-2', n: 3, imageOutput: {} })).toBe(0.06);
    expect((await estimate({ model: 'gpt-image-1', provider: 'openai', n: 2, imageOutput: { size: '1024x1024', quality: 'low' } })).metadata['maxOutputTokens']).toBe(544);
    expect((await estimate({ model: 'my-model', n: 0, maxOutputTokens: 1 })).ok).toBe(false);
  });

  it('token-billed images with no known output bound are refused, saying what to set; the policy\'s max_output_tokens is the bound of one image', async () => {
    const pricing = new AgentPolicy({
      pricing: { 'gpt-image-2.5-flare': { input: 5, output: 40 }, 'gpt-image-2.6-sunburst': { input: 5, output: 40, maxOutputTokens: 30_000 } },
    }).normalized.pricing;
    const flare = await estimateModelCall({ model: 'gpt-image-2.5-flare', provider: 'openai.image', imageOutput: { quality: 'max' } }, pricing);
    expect(flare).toMatchObject({ ok: false, rule: { section: 'pricing', model: 'gpt-image-2.5-flare' } });
    if (!flare.ok) expect(flare.reason).toContain('pricing: { "gpt-image-2.5-flare": { max_output_tokens: <tokens per image> } }');
    const xhigh = await estimate({ model: 'gpt-image-2', provider: 'openai', imageOutput: { size: '1024x1024', quality: 'xhigh' } });
    expect(xhigh).toMatchObject({ ok: false, rule: { section: 'pricing' } });
    if (!xhigh.ok) expect(xhigh.reason).toMatch(/quality "xhigh" has no known token bound/);
    // A token-billed image model only the policy names (an Azure deployment, say) may be any model: no bound until the
    // policy gives one. A model the catalog lists (Gemini's image models) keeps the table's largest image.
    const deployment = await estimateModelCall({ model: 'my-painter', provider: 'azure.image', imageOutput: { size: '1024x1024' } }, new AgentPolicy({ pricing: { 'my-painter': { input: 5, output: 30 } } }).normalized.pricing);
    expect(deployment).toMatchObject({ ok: false, rule: { section: 'pricing', model: 'my-painter' } });
    if (!deployment.ok) expect(deployment.reason).toContain('pricing: { "my-painter": { max_output_tokens: <tokens per image> } }');
    expect((await estimate({ model: 'gemini-2.5-flash-image', provider: 'google.image', imageOutput: {} })).metadata['maxOutputTokens']).toBe(6240);
    const sunburst = await estimateModelCall({ model: 'gpt-image-2.6-sunburst', n: 2, imageOutput: { size: '3840x2160', partialImages: 1 } }, pricing);
    expect(sunburst.ok && sunburst.metadata).toMatchObject({ maxOutputTokens: 2 * 30_100 });
    expect((await estimate({ model: 'gpt-image-2', provider: 'openai', n: 2, imageOutput: { size: '1024x1024', quality: 'high' } })).metadata['maxOutputTokens']).toBe(2 * 7024);
  });

  it('without an output limit: the policy limit, else the listed maximum, else a refusal that says what to set', async () => {
    expect((await estimate({ model: 'my-limited', prompt: 'x' })).metadata).toMatchObject({ maxOutputTokens: 1000, outputLimit: 'policy' });
    expect((await estimate({ model: 'gpt-4o', provider: 'openai', prompt: 'x' })).metadata).toMatchObject({ maxOutputTokens: 16384, outputLimit: 'model limits' });
    const refused = await estimate({ model: 'my-model', prompt: 'x' });
    expect(refused).toMatchObject({ ok: false, rule: { section: 'pricing', model: 'my-model' } });
    if (!refused.ok) expect(refused.reason).toContain('pricing: { "my-model": { max_output_tokens: <tokens> } }');
    expect((await estimateModelCall({ model: 'my-model', prompt: 'x' }, PRICING, { fallbackMaxOutputTokens: 50 })).metadata).toMatchObject({ maxOutputTokens: 50 });
  });

  it('images are priced by formula, not by the size of their URL', async () => {
    const text = await usd({ model: 'gpt-4o', provider: 'openai', prompt: 'what is this', maxOutputTokens: 10 });
    const withImage = await usd({ model: 'gpt-4o', provider: 'openai', prompt: 'what is this', images: [{ detail: 'high' }], maxOutputTokens: 10 });
    expect(withImage - text).toBeGreaterThanOrEqual((1445 * 2.5) / 1e6 - 1e-6);
  });

  it('files and unknown audio are bounded by the context window, or refused with what to set', async () => {
    expect((await estimate({ model: 'gpt-4o', provider: 'openai', prompt: 'x', files: 1, maxOutputTokens: 1 })).metadata['estimatedInputTokens']).toBe(128000);
    expect((await estimate({ model: 'my-limited', prompt: 'x', files: 1 })).metadata['estimatedInputTokens']).toBe(8000);
    const refused = await estimate({ model: 'my-model', prompt: 'x', files: 1, maxOutputTokens: 5 });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.reason).toContain('max_input_tokens');
  });

  it('per-image, per-character and per-second prices', async () => {
    expect(await usd({ model: 'dall-e-3', imageOutput: { size: '1024x1024', quality: 'hd' } })).toBe(0.08);
    expect(await usd({ model: 'dall-e-3', imageOutput: { size: '1024x1024' } })).toBe(0.04);
    // Not listed: the highest price, an upper bound.
    expect(await usd({ model: 'dall-e-3', imageOutput: { size: '1792x1024', quality: 'hd' } })).toBe(0.12);
    expect(await usd({ model: 'tts-1', characters: 1000 })).toBe(0.015);
    expect(await usd({ model: 'my-whisper', audio: [{ seconds: 30 }, {}] })).toBe(0.063);
    // The catalog's own duration price (whisper-1: $0.36 an hour).
    expect(await usd({ model: 'whisper-1', provider: 'openai', audio: [{ seconds: 60 }] })).toBe(0.006);
    const unknown = await estimate({ model: 'whisper-1', provider: 'openai', audio: [{}] });
    expect(unknown.ok).toBe(false);
    if (!unknown.ok) expect(unknown.reason).toContain('max_audio_seconds');
    const dalle = await estimate({ model: 'dall-e-9', imageOutput: {} });
    if (!dalle.ok) expect(dalle.reason).toContain('per_image');
    expect(dalle.ok).toBe(false);
  });

  it('actual per-unit usage is priced the same way', () => {
    expect(priceUsage({ model: 'dall-e-3', inputTokens: 0, outputTokens: 0, images: 2, imageSize: '1024x1792' }, PRICING)).toMatchObject({ ok: true, nanos: 160_000_000 });
    expect(priceUsage({ model: 'whisper-1', provider: 'openai', inputTokens: 0, outputTokens: 0, audioSeconds: 3600 }, PRICING)).toMatchObject({ ok: true, nanos: 360_000_000 });
    expect(priceUsage({ model: 'tts-1', inputTokens: 0, outputTokens: 0, characters: -1 }, PRICING)).toMatchObject({ ok: false, unpriced: false });
  });
});

describe('splitPromptMedia', () => {
  it('takes images, audio and files out of OpenAI, AI SDK and LangChain content parts', () => {
    const big = 'A'.repeat(100_000);
    const split = splitPromptMedia([
      { role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${big}`, detail: 'low' } }] },
      { role: 'user', content: [{ type: 'file', mediaType: 'image/jpeg', data: big }, { type: 'file', mediaType: 'application/pdf', data: big }] },
      { role: 'user', content: [{ type: 'input_audio', input_audio: { data: big, format: 'wav' } }, { type: 'image', url: 'https://x/y.png' }] },
    ]);
    expect(split.images).toEqual([{ detail: 'low' }, {}, {}]);
    expect(split.audio).toHaveLength(1);
    expect(split.files).toBe(1);
    expect(JSON.stringify(split.prompt).length).toBeLessThan(1000);
  });
});

describe('estimateModelCall on any input', () => {
  it('never throws: an upper bound, or a refusal with a reason (property)', async () => {
    const fc = await import('fast-check');
    const anything = fc.oneof(fc.anything(), fc.integer(), fc.double(), fc.constant(undefined));
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            model: fc.oneof(fc.constantFrom('gpt-4o', 'my-model', 'my-limited', 'dall-e-3', 'tts-1', 'whisper-1', 'claude-sonnet-4'), fc.string()),
            provider: fc.oneof(fc.constant('openai'), fc.string()),
            prompt: anything,
            inputTokens: anything,
            images: fc.oneof(fc.array(fc.record({ detail: anything, width: anything, height: anything }, { requiredKeys: [] })), anything),
            audio: fc.oneof(fc.array(fc.record({ seconds: anything }, { requiredKeys: [] })), anything),
            files: anything,
            maxOutputTokens: anything,
            n: anything,
            imageOutput: fc.oneof(fc.record({ size: fc.string(), quality: fc.string(), partialImages: anything }, { requiredKeys: [] }), fc.constant(undefined)),
            characters: anything,
          },
          { requiredKeys: ['model'] },
        ),
        async (input) => {
          const result = await estimateModelCall(input as ModelCallEstimate, PRICING);
          if (result.ok) expect(Number.isSafeInteger(result.nanos) && result.nanos >= 0).toBe(true);
          else expect(typeof result.reason).toBe('string');
        },
      ),
      // A value that cannot be turned into a string (its toString is not a function) once made the reason throw.
      { numRuns: 300, examples: [[{ model: '!', n: { toString: 0 } } as never]] },
    );
  });

  it('more images, files, choices or output never lower the estimate (property)', async () => {
    const fc = await import('fast-check');
    await fc.assert(
      fc.asyncProperty(fc.nat(5), fc.nat(3), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4000 }), async (images, extra, n, output) => {
        const base = { model: 'gpt-4o', provider: 'openai', prompt: 'describe these', maxOutputTokens: output, n };
        const fewer = await usd({ ...base, images: Array.from({ length: images }, () => ({ detail: 'auto' })) });
        const more = await usd({ ...base, images: Array.from({ length: images + extra }, () => ({ detail: 'auto' })), n: n + 1, maxOutputTokens: output + extra });
        expect(more).toBeGreaterThanOrEqual(fewer);
      }),
      { numRuns: 100 },
    );
  });
});

describe('an unreadable count is refused, never read as absent', () => {
  it.each([
    ['inputTokens', -100],
    ['inputTokens', Number.NaN],
    ['inputTokens', '5000'],
    ['inputTokens', 1.5],
    ['maxOutputTokens', -1],
    ['maxOutputTokens', Number.POSITIVE_INFINITY],
    ['files', -1],
    ['files', '2'],
    ['characters', -5],
    ['characters', Number.NaN],
  ])('%s: %j', async (field, value) => {
    const model = field === 'characters' ? 'tts-1' : 'gpt-4o';
    const result = await estimate({ model, provider: 'openai', maxOutputTokens: 10, [field]: value } as ModelCallEstimate);
    expect(result).toMatchObject({ ok: false, rule: { section: 'input', check: 'usage' } });
    if (!result.ok) expect(result.reason).toContain(`${field} must be a whole number`);
  });

  it('a session denies the call before anything is reserved, under a budget or not', async () => {
    for (const budget of [5, undefined]) {
      const session = new AgentPolicy(budget === undefined ? {} : { budget }).session();
      const reservation = await session.reserveModelCall({ model: 'gpt-4o', provider: 'openai', inputTokens: -100_000, maxOutputTokens: 10 });
      expect(reservation.allowed).toBe(false);
      expect(reservation.decision.rule).toMatchObject({ section: 'input', check: 'usage' });
    }
  });

  it('null and undefined still mean "not given"', async () => {
    expect((await estimate({ model: 'gpt-4o', provider: 'openai', prompt: 'x', inputTokens: null, files: null, maxOutputTokens: 10 } as unknown as ModelCallEstimate)).ok).toBe(true);
  });
});
