import { calcPrice } from '@pydantic/genai-prices';
import { AgentPolicy } from './policy.js';
import type { PolicyValidationError } from './errors.js';
import { describe, expect, it } from 'vitest';
import { usdToNanosCeil } from './money.js';
import { estimatePromptTokens, imagePrice, priceUsage } from './pricing.js';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import o200k from 'js-tiktoken/ranks/o200k_base';
import { Tiktoken } from 'js-tiktoken/lite';

const none = new Map();

describe('catalog pricing', () => {
  const cases: Array<[string, string | undefined]> = [
    ['gpt-4o', 'openai'],
    ['gpt-4o-mini', 'openai'],
    ['gpt-4o-mini-2024-07-18', 'openai'],
    ['claude-sonnet-4-20250514', 'anthropic'],
    ['gemini-1.5-pro', 'google'],
    ['gemini-2.5-pro', 'google'],
    ['text-embedding-3-small', 'openai'],
  ];
  const usages = [
    { inputTokens: 1_000, outputTokens: 100 },
    { inputTokens: 2_000, outputTokens: 50, cachedInputTokens: 1_500 },
    { inputTokens: 300_000, outputTokens: 10_000 },
    { inputTokens: 5_000, outputTokens: 0, cacheWriteTokens: 4_000 },
  ];

  it('memoised flat rates agree with calcPrice for every model and usage shape, call after call', () => {
    for (let round = 0; round < 3; round++) {
      for (const [model, provider] of cases) {
        for (const usage of usages) {
          const ours = priceUsage({ model, ...(provider ? { provider } : {}), ...usage }, none);
          const reference = calcPrice(
            {
              input_tokens: usage.inputTokens,
              output_tokens: usage.outputTokens,
              ...(usage.cachedInputTokens ? { cache_read_tokens: usage.cachedInputTokens } : {}),
              ...(usage.cacheWriteTokens ? { cache_write_tokens: usage.cacheWriteTokens } : {}),
            },
            model,
            provider ? { providerId: provider } : {},
          );
          if (!reference) {
            expect(ours.ok, `${model} unpriced`).toBe(false);
            continue;
          }
          expect(ours.ok, model).toBe(true);
          if (ours.ok) expect(Math.abs(ours.nanos - usdToNanosCeil(reference.total_price)), `${model} ${JSON.stringify(usage)}`).toBeLessThanOrEqual(1);
        }
      }
    }
  });

  it('an unknown model is unpriced, with a message saying how to add a price', () => {
    const result = priceUsage({ model: 'acme-9', inputTokens: 1, outputTokens: 1 }, none);
    expect(result).toMatchObject({ ok: false, unpriced: true });
    if (!result.ok) expect(result.reason).toContain('pricing: { "acme-9": { input:');
  });

  it('estimates prompt tokens as an upper bound: one per UTF-8 byte, plus 4 per message', () => {
    expect(estimatePromptTokens('a'.repeat(300))).toBe(304);
    expect(estimatePromptTokens('한')).toBe(3 + 4);
    expect(estimatePromptTokens([{ role: 'user', content: 'hi' }])).toBe(Buffer.byteLength('[{"role":"user","content":"hi"}]') + 4);
    expect(estimatePromptTokens(undefined)).toBe(0);
  });

  it('never counts fewer tokens than a real tokeniser makes of the text, in any script (cl100k_base, o200k_base)', () => {
    const tokenisers = { cl100k_base: new Tiktoken(cl100k), o200k_base: new Tiktoken(o200k) };
    const texts = {
      english: 'The quick brown fox jumps over the lazy dog. '.repeat(20),
      korean: '뷁뷂뷃뷄뷅'.repeat(50),
      chinese: '我们今天去公园散步了'.repeat(30),
      'rare CJK': '龘靐齉爩鱻麤'.repeat(50),
      emoji: '🦩🪼🫎🪿🧌'.repeat(40),
      'spaced digits': '1 2 3 4 5 6 7 8 9 0 '.repeat(30),
      punctuation: '!@#$%^&*()_+{}|:"<>?~`'.repeat(20),
      'control characters': '\u0001\u0002\u0003'.repeat(100),
      'combining marks': 'a\u0301\u0302\u0303\u0304'.repeat(60),
      thai: 'ฃฅฆฌฎฏฐฑฒ'.repeat(40),
    };
    for (const [name, tokeniser] of Object.entries(tokenisers)) {
      for (const [kind, text] of Object.entries(texts)) {
        expect(estimatePromptTokens(text), `${kind}, ${name}`).toBeGreaterThanOrEqual(tokeniser.encode(text).length);
        // An embeddings batch: the tokens of its texts.
        const batch = [text, text.slice(7), ''];
        expect(estimatePromptTokens(batch), `${kind} batch, ${name}`).toBeGreaterThanOrEqual(batch.reduce((sum, item) => sum + tokeniser.encode(item).length, 0));
      }
    }
  });
});

describe('pricing: entries', () => {
  const issuesOf = (pricing: unknown) => {
    try {
      AgentPolicy.fromDict({ pricing });
      return [];
    } catch (error) {
      return (error as PolicyValidationError).issues;
    }
  };

  it('take per-unit prices and limits beside token prices, and round-trip', () => {
    const document = {
      'dall-e-3': { per_image: { '1024x1024': 0.04, 'HD/1024x1792': '0.12' } },
      'whisper-x': { per_second: '0.0001', max_audio_seconds: 1500 },
      'tts-1': { per_character: 0.000015 },
      'gpt-4o': { max_output_tokens: 16384 },
      'my-model': { input: 1, output: 2, max_input_tokens: 8000 },
    };
    const policy = AgentPolicy.fromDict({ pricing: document });
    expect(policy.normalized.pricing.get('dall-e-3')?.perImage?.get('hd/1024x1792')).toBe(120_000_000);
    expect(AgentPolicy.fromDict(policy.toDocument() as Record<string, unknown>).hash).toBe(policy.hash);
    expect(new AgentPolicy({ pricing: { 'tts-1': { perCharacter: 0.000015 }, m: { input: 1, output: 1, maxOutputTokens: 10 } } }).normalized.pricing.get('m')?.maxOutputTokens).toBe(10);
  });

  it('price an image exactly when its size and quality are listed, and at an upper bound otherwise', () => {
    const prices = new Map(Object.entries({ '1024x1024': 40, 'hd/1024x1024': 80, 'hd/1024x1792': 120, '1024x1792': 80, '512x512': 20, 'low/256x256': 5, 'high/256x256': 15 }));
    const cases: [string | undefined, string | undefined, number][] = [
      ['1024x1024', 'hd', 80],
      ['1024x1024', undefined, 40], // the size's own price is its default
      ['1024X1024', 'HD', 80],
      // A quality not listed with a size that has its own price: that price (the size at any other quality).
      ['1024x1024', 'standard', 40],
      ['1024x1792', 'auto', 80],
      // A size listed only with qualities: no quality, or one not listed, is the dearest of them (not of all sizes).
      ['256x256', undefined, 15],
      ['256x256', 'medium', 15],
      ['256x256', 'low', 5],
      // A size with no quality prices takes its price whatever the quality.
      ['512x512', 'hd', 20],
      // Nothing known: the dearest listed.
      ['4096x4096', undefined, 120],
      [undefined, undefined, 120],
      [undefined, 'hd', 120],
    ];
    for (const [size, quality, want] of cases) expect(imagePrice(prices, size, quality), `${quality}/${size}`).toBe(want);
    expect(imagePrice(new Map([['default', 7], ['hd', 9]]), undefined, undefined)).toBe(7);
    expect(imagePrice(new Map([['default', 7], ['hd', 9]]), undefined, 'hd')).toBe(9);
  });

  it('reject bad units and limits, every issue at once', () => {
    const issues = issuesOf({ a: { per_image: {} }, b: { max_output_tokens: 1.5 }, c: {}, d: { input: 1 }, e: { per_second: -1 }, f: { per_pixel: 1 } });
    const paths = issues.map((issue: { path: string }) => issue.path);
    expect(paths).toEqual(expect.arrayContaining(['pricing.a.per_image', 'pricing.b.max_output_tokens', 'pricing.c', 'pricing.d.output', 'pricing.e.per_second', 'pricing.f.per_pixel']));
  });
});

describe('catalog pricing of image and audio token parts', () => {
  it('memoised modality rates agree with calcPrice, call after call', () => {
    const cases: Array<[string, { inputTokens: number; outputTokens: number; inputImageTokens?: number; inputAudioTokens?: number; outputImageTokens?: number; outputAudioTokens?: number }]> = [
      ['gpt-image-1', { inputTokens: 2000, outputTokens: 6240, inputImageTokens: 1500, outputImageTokens: 6240 }],
      ['gpt-4o-transcribe', { inputTokens: 16000, outputTokens: 2000, inputAudioTokens: 15000 }],
      ['gpt-audio', { inputTokens: 1000, outputTokens: 3000, outputAudioTokens: 3000 }],
      ['gpt-4o', { inputTokens: 3000, outputTokens: 100, inputImageTokens: 1445 }],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [model, usage] of cases) {
        const ours = priceUsage({ model, provider: 'openai', ...usage }, none);
        const reference = calcPrice(
          {
            input_tokens: usage.inputTokens,
            output_tokens: usage.outputTokens,
            ...(usage.inputImageTokens ? { input_image_tokens: usage.inputImageTokens } : {}),
            ...(usage.inputAudioTokens ? { input_audio_tokens: usage.inputAudioTokens } : {}),
            ...(usage.outputImageTokens ? { output_image_tokens: usage.outputImageTokens } : {}),
            ...(usage.outputAudioTokens ? { output_audio_tokens: usage.outputAudioTokens } : {}),
          },
          model,
          { providerId: 'openai' },
        );
        expect(reference, model).not.toBeNull();
        expect(ours.ok, model).toBe(true);
        if (ours.ok) expect(Math.abs(ours.nanos - usdToNanosCeil(reference!.total_price)), `${model} round ${round}`).toBeLessThanOrEqual(1);
      }
    }
  });
});

describe('memoised catalog rates on any counts', () => {
  it('agree with calcPrice within a nano-dollar (property)', async () => {
    const fc = await import('fast-check');
    priceUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: 10, outputTokens: 10 }, none);
    fc.assert(
      fc.property(fc.nat(2_000_000), fc.nat(200_000), fc.nat(1_000_000), (input, output, cachedRaw) => {
        const cached = Math.min(cachedRaw, input);
        const ours = priceUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: input, outputTokens: output, cachedInputTokens: cached }, none);
        const reference = calcPrice({ input_tokens: input, output_tokens: output, ...(cached > 0 ? { cache_read_tokens: cached } : {}) }, 'gpt-4o', { providerId: 'openai' });
        expect(ours.ok).toBe(true);
        if (ours.ok) expect(Math.abs(ours.nanos - usdToNanosCeil(reference!.total_price))).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });
});
