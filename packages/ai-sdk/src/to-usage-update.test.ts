import { describe, expect, it } from 'vitest';
import { toUsageUpdate } from './to-usage-update.js';

const estimate = { estimatedInputTokens: 120, maxOutputTokens: 500 };

describe('toUsageUpdate', () => {
  it('maps the V3/V4 shape, cache and reasoning parts included', () => {
    expect(
      toUsageUpdate({ inputTokens: { total: 100, noCache: 50, cacheRead: 30, cacheWrite: 20 }, outputTokens: { total: 40, text: 10, reasoning: 30 } }, estimate),
    ).toEqual({ inputTokens: 100, outputTokens: 40, cachedInputTokens: 30, cacheWriteTokens: 20, reasoningTokens: 30 });
  });

  it('rebuilds a missing total from its parts', () => {
    expect(
      toUsageUpdate({ inputTokens: { total: undefined, noCache: 50, cacheRead: 30, cacheWrite: undefined }, outputTokens: { total: undefined, text: 10, reasoning: 5 } }, estimate),
    ).toEqual({ inputTokens: 80, outputTokens: 15, cachedInputTokens: 30, reasoningTokens: 5 });
  });

  it('takes a side the provider did not report from the worst-case estimate', () => {
    expect(toUsageUpdate({ inputTokens: {}, outputTokens: { total: 7 } }, estimate)).toEqual({ inputTokens: 120, outputTokens: 7 });
    expect(toUsageUpdate({ inputTokens: { total: 9 }, outputTokens: {} }, estimate)).toEqual({ inputTokens: 9, outputTokens: 500 });
  });

  it('never rebuilds a side from its cache or reasoning details alone (a total of NaN beside zero details is unreported)', () => {
    expect(
      toUsageUpdate({ inputTokens: { total: Number.NaN, noCache: Number.NaN, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: Number.NaN, text: undefined, reasoning: 0 } }, estimate),
    ).toBeUndefined();
    expect(toUsageUpdate({ inputTokens: { total: 9 }, outputTokens: { reasoning: 30 } }, estimate)).toEqual({ inputTokens: 9, outputTokens: 500, reasoningTokens: 30 });
  });

  it('maps the flat V2 shape', () => {
    expect(toUsageUpdate({ inputTokens: 12, outputTokens: 3, cachedInputTokens: 2, reasoningTokens: 1, totalTokens: 15 }, estimate)).toEqual({
      inputTokens: 12,
      outputTokens: 3,
      cachedInputTokens: 2,
      reasoningTokens: 1,
    });
  });

  it('returns undefined when nothing usable was reported (the caller charges the estimate)', () => {
    expect(toUsageUpdate(undefined, estimate)).toBeUndefined();
    expect(toUsageUpdate({ inputTokens: { total: undefined }, outputTokens: { total: undefined } }, estimate)).toBeUndefined();
    expect(toUsageUpdate({ inputTokens: { total: Number.NaN } }, estimate)).toBeUndefined();
    expect(toUsageUpdate({ outputTokens: { total: 3 } }, undefined)).toBeUndefined();
  });
});
