import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
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

  it('keeps a huge max in bounded memory: slots close together are one run, freed no earlier than exactly', () => {
    let now = 0;
    const store = new InMemoryRateLimitStore({ now: () => now });
    const hour = 3_600_000;
    // A million calls in one hour, 250 per millisecond-ish: one slot each would be a million entries.
    let refused = 0;
    for (let i = 0; i < 1_000_000; i++) {
      if (i % 277 === 0) now += 1;
      if (!store.take('k', 1e9, hour).ok) refused++;
    }
    expect(refused).toBe(0);
    const runs = (store as unknown as { windows: Map<string, { size: number; lasts: Float64Array }> }).windows.get('k');
    expect(runs?.size).toBeLessThanOrEqual(4097);
    expect(runs?.lasts.length).toBeLessThanOrEqual(8192);
    // Nothing frees before its hour is up...
    const full = new InMemoryRateLimitStore({ now: () => now });
    now = 10_000;
    for (let i = 0; i < 3; i++) expect(full.take('k', 3, hour).ok).toBe(true);
    now = 10_000 + 500; // within the same span (3,600,000 / 4096 ≈ 879 ms): joins the run
    const denied = full.take('k', 3, hour);
    expect(denied).toEqual({ ok: false, resetAtMs: 10_000 + hour });
    now = 10_000 + hour - 1;
    expect(full.take('k', 3, hour).ok).toBe(false);
    now = 10_000 + hour;
    expect(full.take('k', 3, hour).ok).toBe(true);
  });

  it('a run frees when its newest slot does', () => {
    let now = 0;
    const hour = 3_600_000;
    const store = new InMemoryRateLimitStore({ now: () => now });
    expect(store.take('k', 2, hour).ok).toBe(true);
    now = 800; // same span: one run, now timed by this slot
    expect(store.take('k', 2, hour).ok).toBe(true);
    now = hour; // the first slot's hour is up, the second's is not: the run still holds both
    expect(store.take('k', 2, hour)).toEqual({ ok: false, resetAtMs: hour + 800 });
    now = hour + 800;
    expect(store.take('k', 2, hour).ok).toBe(true);
    expect(store.take('k', 2, hour).ok).toBe(true);
    expect(store.take('k', 2, hour).ok).toBe(false);
  });

  it('never lets more than max through in any window, against an exact sliding log (random times and give-backs)', () => {
    let seed = 12345;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (const windowMs of [50, 1_000, 60_000, 3_600_000]) {
      let now = 1_000_000;
      const store = new InMemoryRateLimitStore({ now: () => now });
      const max = 1 + Math.floor(random() * 20);
      const allowedAt: number[] = []; // times of slots still held (exact model of what the store let through)
      for (let i = 0; i < 20_000; i++) {
        now += Math.floor(random() ** 4 * (windowMs / 5));
        const taken = store.take('k', max, windowMs);
        const exactHeld = allowedAt.filter((t) => t > now - windowMs).length;
        if (taken.ok) {
          // The store never holds fewer than exactly: it cannot allow a call the exact log would refuse.
          expect(exactHeld).toBeLessThan(max);
          if (random() < 0.2) store.giveBack('k', taken.slot);
          else allowedAt.push(now);
        }
      }
      // Every window of windowMs holds at most max allowed calls.
      for (let a = 0, b = 0; b < allowedAt.length; b++) {
        while ((allowedAt[a] as number) <= (allowedAt[b] as number) - windowMs) a++;
        expect(b - a + 1).toBeLessThanOrEqual(max);
      }
    }
  });

  it('gives back a slot from the run it was taken in, once, and ignores slots it never handed out', () => {
    let now = 5_000;
    const store = new InMemoryRateLimitStore({ now: () => now });
    const a = store.take('k', 3, 3_600_000);
    const b = store.take('k', 3, 3_600_000);
    now += 2_000; // a new run
    const c = store.take('k', 3, 3_600_000);
    if (!a.ok || !b.ok || !c.ok) throw new Error('expected slots');
    expect(store.take('k', 3, 3_600_000).ok).toBe(false);
    store.giveBack('k', '999999');
    store.giveBack('k', 'not a slot');
    expect(store.take('k', 3, 3_600_000).ok).toBe(false);
    store.giveBack('k', a.slot);
    store.giveBack('k', a.slot);
    const d = store.take('k', 3, 3_600_000);
    expect(d.ok).toBe(true);
    expect(store.take('k', 3, 3_600_000).ok).toBe(false);
  });

  it('drops windowed keys whose slots have all freed as new keys come, and keeps (and counts) the ones still holding', () => {
    let now = 1_000_000;
    const store = new InMemoryRateLimitStore({ now: () => now });
    // A key per session, as a server opening a session per request makes: 10,000 of them within a minute.
    for (let i = 0; i < 10_000; i++) expect(store.take(`limit:a:session:${i}`, 1, 60_000).ok).toBe(true);
    expect(store.size).toBe(10_000);
    now += 60_001;
    // Still holding its slot: kept and counted, however many keys come and go.
    expect(store.take('limit:a:session:busy', 1, 3_600_000).ok).toBe(true);
    for (let i = 0; i < 10_000; i++) {
      now += 10;
      expect(store.take(`limit:a:session:next-${i}`, 1, 60_000).ok).toBe(true);
    }
    expect(store.size).toBeLessThan(7_000);
    expect(store.take('limit:a:session:busy', 1, 3_600_000).ok).toBe(false);
    // A key taken again after it was dropped starts from nothing, as its freed slots would have let it.
    expect(store.take('limit:a:session:0', 1, 60_000).ok).toBe(true);
    expect(store.take('limit:a:session:0', 1, 60_000).ok).toBe(false);
  });

  it('keeps the per-session counts of sessions on one budget key bounded as a server opens and ends them', async () => {
    const policy = AgentPolicy.fromDict({ limits: [{ tool: 'fetch', max_calls: 1, per: 'session' }, { tool: 'search', max_calls: 100, per: 'session', scope: 'budget' }] });
    const limitStore = new InMemoryRateLimitStore();
    // A session per request, on the tenant's budget key: each counts its own `fetch` and the tenant's `search`.
    for (let i = 0; i < 50; i++) {
      const session = policy.session({ budgetKey: 'tenant', limitStore });
      expect((await session.checkTool('fetch', {})).decision).toBe('allow');
      expect((await session.checkTool('fetch', {})).decision).toBe('deny');
      await session.checkTool('search', {});
      session.end();
    }
    // The tenant's count is kept (and still counts); the ended sessions' own counts are gone.
    expect(limitStore.size).toBe(1);
    const last = policy.session({ budgetKey: 'tenant', limitStore });
    for (let i = 0; i < 50; i++) expect((await last.checkTool('search', {})).decision).toBe('allow');
    expect((await last.checkTool('search', {})).decision).toBe('deny');
    // A session given its id may be opened again: its count stays after it ends and still counts when it is.
    const named = policy.session({ id: 'conversation-1', budgetKey: 'tenant', limitStore });
    expect((await named.checkTool('fetch', {})).decision).toBe('allow');
    named.end();
    expect(limitStore.size).toBe(2);
    const reopened = policy.session({ id: 'conversation-1', budgetKey: 'tenant', limitStore });
    expect((await reopened.checkTool('fetch', {})).decision).toBe('deny');
  });
});
