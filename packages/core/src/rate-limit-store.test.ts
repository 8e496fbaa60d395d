import { describe, expect, it } from 'vitest';
import { InMemoryRateLimitStore } from './rate-limit-store.js';

describe('InMemoryRateLimitStore', () => {
  it('a sliding window frees each slot windowMs after it was taken and says when', () => {
    let now = 1_000;
    const store = new InMemoryRateLimitStore({ now: () => now });
    expect(store.take('k', 2, 10_000).ok).toBe(true);
    now = 4_000;
    expect(store.take('k', 2, 10_000).ok).toBe(true);
    expect(store.take('k', 2, 10_000)).toEqual({ ok: false, resetAtMs: 11_000 });
    now = 11_000;
    expect(store.take('k', 2, 10_000).ok).toBe(true);
    expect(store.take('k', 2, 10_000)).toEqual({ ok: false, resetAtMs: 14_000 });
  });

  it('giving a slot back frees it, and giving it back twice frees nothing more', () => {
    for (const windowMs of [null, 60_000]) {
      const store = new InMemoryRateLimitStore();
      const first = store.take('k', 2, windowMs);
      const second = store.take('k', 2, windowMs);
      if (!first.ok || !second.ok) throw new Error('expected slots');
      expect(store.take('k', 2, windowMs).ok).toBe(false);
      store.giveBack('k', first.slot);
      store.giveBack('k', first.slot);
      expect(store.take('k', 2, windowMs).ok).toBe(true);
      expect(store.take('k', 2, windowMs).ok).toBe(false);
      store.giveBack('other', second.slot);
      expect(store.take('k', 2, windowMs).ok).toBe(false);
    }
  });

  it('keys are independent; a key without a window never reopens', () => {
    const store = new InMemoryRateLimitStore();
    expect(store.take('a', 1, null).ok).toBe(true);
    expect(store.take('a', 1, null)).toEqual({ ok: false, resetAtMs: null });
    expect(store.take('b', 1, null).ok).toBe(true);
  });

  it('keeps a window key bounded by max while calls keep coming', () => {
    let now = 0;
    const store = new InMemoryRateLimitStore({ now: () => now });
    let allowed = 0;
    for (let i = 0; i < 100_000; i++) {
      now += 1;
      if (store.take('k', 10, 50).ok) allowed++;
    }
    // 10 calls per 50 ms over 100 s: 20,000 windows' worth.
    expect(allowed).toBe(20_000);
  });
});
