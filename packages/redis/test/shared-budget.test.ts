import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AgentPolicy } from '@agentpolicy/core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore } from '../src/index.js';
import { CLIENT_KINDS, connect, type ClientHandle } from './clients.js';
import { nextMessage, startWorker, type Target } from './workers.js';

const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const USD = 1_000_000_000;
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

const targets: Array<[string, Target | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`8 worker processes × 1,000 concurrent checks on one shared budget (${where})`, () => {
    beforeAll(() => {
      if (!existsSync(DIST)) throw new Error('the worker processes load dist/: run `pnpm build` first');
    });

    it.each(CLIENT_KINDS)('%s: exactly ⌊budget / cost⌋ allowed, no overspend, spent + reserved never above the limit', async (kind) => {
      const budgetKey = `stress:${kind}:${where}:${Date.now()}`;
      const workers = Array.from({ length: 8 }, () => startWorker(kind, target!, [budgetKey, 'run', '1000', '0.01', '25']));
      await Promise.all(workers.map((worker) => nextMessage<{ ready: boolean }>(worker)));

      const watcher = await connect(kind, target!);
      const store = createRedisBudgetStore({ client: watcher.client });
      const budget = { key: budgetKey, period: 'session' as const };
      const results = Promise.all(workers.map((worker) => nextMessage<{ allowed: number; denied: number; errors: number; pending: number }>(worker)));
      for (const worker of workers) worker.send('go');
      let sampling = true;
      let samples = 0;
      let worst = 0;
      const sampler = (async () => {
        while (sampling) {
          const { spent, reserved } = await store.reconcile(budget);
          worst = Math.max(worst, spent + reserved);
          samples++;
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
      })();
      const done = await results;
      sampling = false;
      await sampler;
      const final = await store.reconcile(budget);
      await watcher.close();

      const allowed = done.reduce((sum, r) => sum + r.allowed, 0);
      const seen = JSON.stringify({ done, final, worst, samples });
      expect(done.reduce((sum, r) => sum + r.errors, 0), `checks that failed on Redis errors: ${seen}`).toBe(0);
      expect(done.reduce((sum, r) => sum + r.pending, 0)).toBe(0);
      expect(allowed, seen).toBe(2500);
      expect(done.reduce((sum, r) => sum + r.denied, 0)).toBe(5500);
      expect(final).toMatchObject({ spent: 25 * USD, reserved: 0 });
      expect(samples).toBeGreaterThan(0);
      expect(worst, seen).toBeLessThanOrEqual(25 * USD);
    });
  });

  describe.skipIf(target === null)(`a worker killed mid-reservation (${where})`, () => {
    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: its lease expires and is charged at the estimate; the budget is neither stuck nor undercounted', async (kind) => {
      const budgetKey = `killed:${kind}:${where}:${Date.now()}`;
      const worker = startWorker(kind, target!, [budgetKey, 'hold', '1500', '0.6', '1']);
      expect(await nextMessage<{ held: boolean }>(worker)).toEqual({ held: true });
      worker.kill('SIGKILL');

      const handle = await connect(kind, target!);
      const store = createRedisBudgetStore({ client: handle.client });
      const policy = new AgentPolicy({ budget: 1 });
      const survivor = policy.session({ store, budgetKey });
      // While the lease is open its money is held: a check that needs it is denied.
      expect(await survivor.checkCost(0.5, { source: 'x' })).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
      await new Promise((resolve) => setTimeout(resolve, 1600));
      // The next operation on the budget settles the expired lease at its estimate, and says so.
      expect((await survivor.checkCost(0.4, { source: 'x' })).decision).toBe('allow');
      expect(survivor.report()).toMatchObject({ spent: 1, reserved: 0, expiredLeases: { count: 1, amount: 0.6 } });
      expect((await survivor.checkCost(0.01, { source: 'x' })).decision).toBe('deny');
      await handle.close();
    });
  });
}

describe.skipIf(redisUrl === null)('store semantics on Redis', () => {
  const handles: ClientHandle[] = [];
  afterAll(async () => {
    await Promise.all(handles.map((handle) => handle.close()));
  });

  for (const kind of CLIENT_KINDS) {
    it(`${kind}: commit and release are idempotent by lease id; a retried commit charges once`, async () => {
      const handle = await connect(kind, { url: redisUrl! });
      handles.push(handle);
      const store = createRedisBudgetStore({ client: handle.client });
      const budget = { key: `idem:${kind}:${Date.now()}`, period: 'session' as const };
      const grant = await store.reserve(budget, 3 * USD, 10 * USD, 60_000);
      expect(grant).toMatchObject({ ok: true, snapshot: { spent: 0, reserved: 3 * USD, window: 'session' } });
      expect(await store.commit(budget, grant.lease!, 2 * USD)).toBe('settled');
      expect(await store.commit(budget, grant.lease!, 2 * USD)).toBe('unknown');
      expect(await store.release(budget, grant.lease!)).toBe('unknown');
      expect(await store.reconcile(budget)).toMatchObject({ spent: 2 * USD, reserved: 0 });
      expect(await store.charge(budget, 9 * USD, 10 * USD)).toMatchObject({ ok: false, snapshot: { spent: 2 * USD } });
      expect(await store.charge(budget, 9 * USD, null)).toMatchObject({ ok: true, snapshot: { spent: 11 * USD } });
    });
  }

  it.each(CLIENT_KINDS)('%s: after SCRIPT FLUSH (a restarted or failed-over server) the script is sent again on NOSCRIPT', async (kind) => {
    const handle = await connect(kind, { url: redisUrl! });
    const admin = await connect('node-redis@6', { url: redisUrl! });
    handles.push(handle, admin);
    const store = createRedisBudgetStore({ client: handle.client });
    const budget = { key: `noscript:${kind}:${Date.now()}`, period: 'session' as const };
    expect((await store.charge(budget, 1, null)).ok).toBe(true);
    await (admin.client as unknown as { sendCommand(args: string[]): Promise<unknown> }).sendCommand(['SCRIPT', 'FLUSH']);
    expect((await store.charge(budget, 1, null)).snapshot.spent).toBe(2);
  });

  it('exact at nano-dollar precision up to large sums', async () => {
    const handle = await connect('ioredis@6', { url: redisUrl! });
    handles.push(handle);
    const store = createRedisBudgetStore({ client: handle.client });
    const budget = { key: `precise:${Date.now()}`, period: 'session' as const };
    await store.charge(budget, 4_503_599_627_370_495, null);
    expect((await store.charge(budget, 1, null)).snapshot.spent).toBe(4_503_599_627_370_496);
    expect((await store.charge(budget, 7, 4_503_599_627_370_503)).ok).toBe(true);
    expect((await store.charge(budget, 1, 4_503_599_627_370_503)).ok).toBe(false);
  });

  it('an expired lease is charged at its estimate; a late commit adds only what exceeds it; a late release gives nothing back', async () => {
    const handle = await connect('node-redis@6', { url: redisUrl! });
    handles.push(handle);
    const store = createRedisBudgetStore({ client: handle.client });
    const budget = { key: `expiry:${Date.now()}`, period: 'session' as const };
    const a = await store.reserve(budget, 2 * USD, 10 * USD, 200);
    const b = await store.reserve(budget, 1 * USD, 10 * USD, 200);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await store.reconcile(budget)).toMatchObject({ spent: 3 * USD, reserved: 0, expired: { count: 2, nanos: 3 * USD } });
    expect(await store.commit(budget, a.lease!, 2.5 * USD)).toBe('late');
    expect(await store.commit(budget, a.lease!, 2.5 * USD)).toBe('unknown');
    expect(await store.release(budget, b.lease!)).toBe('late');
    expect(await store.reconcile(budget)).toMatchObject({ spent: 3.5 * USD, reserved: 0 });
  });

  it.each(['hour', 'day', 'week', 'month'] as const)('a calendar %s rolls over on the server clock: the new window starts at zero, the old one is still reported', async (period) => {
    const handle = await connect('ioredis@6', { url: redisUrl! });
    handles.push(handle);
    const policy = new AgentPolicy({ budget: 1, period });
    const budgetKey = `rollover:${period}:${Date.now()}`;
    // Two views of the same Redis, the second one window later: what the server clock shows after the rollover.
    const before = createRedisBudgetStore({ client: handle.client });
    const now = await before.reconcile({ key: budgetKey, period });
    const after = createRedisBudgetStore({ client: handle.client, clockOffsetMs: period === 'month' ? 32 * 86_400_000 : period === 'week' ? 7 * 86_400_000 : period === 'day' ? 86_400_000 : 3_600_000 });
    const early = policy.session({ store: before, budgetKey });
    expect((await early.checkCost(0.75, { source: 'x' })).decision).toBe('allow');
    const denied = await early.checkCost(0.5, { source: 'x' });
    expect(denied).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(denied.reason).toContain(`for ${now.window}`);
    const late = policy.session({ store: after, budgetKey });
    expect((await late.checkCost(0.5, { source: 'x' })).decision).toBe('allow');
    const report = late.report();
    expect(report.window).not.toBe(now.window);
    expect(report.window.startsWith(`${period}:`)).toBe(true);
    expect(report).toMatchObject({ period, spent: 0.5, previousWindow: { window: now.window, spent: 0.75 } });
  });

  it('every key of one budget shares one hash tag', () => {
    const store = createRedisBudgetStore({ client: { evalsha: async () => null, eval: async () => null, status: 'ready' } });
    const keys = store.keys({ key: 'tenant:{odd}', period: 'day' });
    const tags = keys.map((key) => key.slice(key.indexOf('{') + 1, key.indexOf('}', key.indexOf('{'))));
    expect(new Set(tags).size).toBe(1);
  });

  it('rejects a client it cannot use, and bad options', () => {
    expect(() => createRedisBudgetStore({ client: {} as never })).toThrow(/node-redis or ioredis client/);
    const client = { evalsha: async () => null, eval: async () => null, status: 'ready' };
    expect(() => createRedisBudgetStore({ client, prefix: 'a{b' })).toThrow(/braces/);
    expect(() => createRedisBudgetStore({ client, timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`free calls after an overrun of a shared budget (${where})`, () => {
    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: denied in the session that saw the overrun; another process denies them from its first refused paid check', async (kind) => {
      const one = await connect(kind, target!);
      const two = await connect(kind, target!);
      try {
        const budgetKey = `overrun:${kind}:${where}:${Date.now()}`;
        const policy = new AgentPolicy({ budget: 1 });
        const spender = policy.session({ store: createRedisBudgetStore({ client: one.client }), budgetKey });
        // Another process: its own client and store (nothing cached from the spender).
        const other = policy.session({ store: createRedisBudgetStore({ client: two.client }), budgetKey });
        expect((await spender.checkTool('search')).decision).toBe('allow');
        const call = await spender.reserve(0.5, { source: 'llm' });
        await call.commit(1.5);
        const free = await spender.checkTool('search');
        expect(free).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
        expect(free.reason).toMatch(/spending has passed the budget \(spent \$1\.50/);
        expect((await other.checkTool('search')).decision).toBe('allow');
        expect((await other.checkTool('search', { cost: 0.01 })).decision).toBe('deny');
        expect(await other.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
      } finally {
        await one.close();
        await two.close();
      }
    });
  });
}
