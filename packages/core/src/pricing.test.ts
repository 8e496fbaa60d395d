import { calcPrice } from '@pydantic/genai-prices';
import { describe, expect, it } from 'vitest';
import { usdToNanosCeil } from './money.js';
import { estimatePromptTokens, priceUsage } from './pricing.js';

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

  it('estimates prompt tokens generously', () => {
    expect(estimatePromptTokens('a'.repeat(300))).toBe(104);
    expect(estimatePromptTokens([{ role: 'user', content: 'hi' }])).toBeGreaterThan(5);
    expect(estimatePromptTokens(undefined)).toBe(0);
  });
});
