// A policy's `limits:` counted on Redis: `scope: budget` limits are shared by every session on the budget key, in one
// process and across processes; `scope: session` limits stay per session even on a shared store.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AgentPolicy } from '@agentpolicy/core';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore, createRedisRateLimitStore } from '../src/index.js';
import { clientsClosedAfterAll, type ClientKind } from './clients.js';
import { nextMessage, startWorker, type Target } from './workers.js';

const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

const targets: Array<[string, Target | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

const open = clientsClosedAfterAll();

/** A session of `policy` on Redis stores through its own client, as another app instance would open it. */
async function sessionOn(kind: ClientKind, target: Target, policy: AgentPolicy, budgetKey: string) {
  const { client } = await open(kind, target);
  return policy.session({ store: createRedisBudgetStore({ client }), limitStore: createRedisRateLimitStore({ client }), budgetKey });
}

const SHARED = { limits: [{ tool: 'search', max_calls: 5, per: '1m', scope: 'budget' }] };
const PER_SESSION = { limits: [{ tool: 'search', max_calls: 2, per: 'session' }] };

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`policy limits on Redis (${where})`, () => {
    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: scope budget is one count for two sessions; scope session stays per session', async (kind) => {
      const budgetKey = `team-${kind}-${where}-${Date.now()}`;
      const policy = AgentPolicy.fromDict(SHARED);
      const [a, b] = [await sessionOn(kind, target!, policy, budgetKey), await sessionOn(kind, target!, policy, budgetKey)];

      // 20 concurrent searches, 10 from each session: the shared count lets exactly 5 through in all.
      const decisions = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).checkTool('search', { input: { query: `q${i}` } })));
      expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(5);
      const denied = decisions.filter((d) => d.decision === 'deny');
      expect(denied).toHaveLength(15);
      for (const d of denied) expect(d.rule).toMatchObject({ section: 'limits', index: 0 });
      // A third session on the same key, opened later (a restarted app): the window is still full.
      const later = await sessionOn(kind, target!, policy, budgetKey);
      expect(await later.checkTool('search', { input: { query: 'again' } })).toMatchObject({ decision: 'deny', rule: { section: 'limits', index: 0 } });

      // Another budget key has its own count.
      const other = await sessionOn(kind, target!, policy, `${budgetKey}-other`);
      expect((await other.checkTool('search')).decision).toBe('allow');

      // A per-session limit on the same shared store counts each session on its own.
      const perSession = AgentPolicy.fromDict(PER_SESSION);
      const [c, d] = [await sessionOn(kind, target!, perSession, budgetKey), await sessionOn(kind, target!, perSession, budgetKey)];
      for (const s of [c, d, c, d]) expect((await s.checkTool('search')).decision).toBe('allow');
      for (const s of [c, d]) expect(await s.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'limits', index: 0 } });
    });

    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: a call denied later (over budget) gives its slot back; shadow limits take no slot from enforced ones', async (kind) => {
      const budgetKey = `give-back-${kind}-${where}-${Date.now()}`;
      const policy = AgentPolicy.fromDict({ budget: { max_spend: 1 }, limits: [{ tool: '*', max_calls: 2, per: '1h', scope: 'budget' }] });
      const [a, b] = [await sessionOn(kind, target!, policy, budgetKey), await sessionOn(kind, target!, policy, budgetKey)];

      expect(await a.checkTool('pay', { cost: 5 })).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
      expect(await b.checkTool('pay', { cost: 0.1 })).toMatchObject({ decision: 'allow' });
      expect(await a.checkTool('pay', { cost: 0.1 })).toMatchObject({ decision: 'allow' });
      expect(await b.checkTool('pay', { cost: 0.1 })).toMatchObject({ decision: 'deny', rule: { section: 'limits' } });
      // The shared budget holds the two allowed calls (a's view, taken at its charge, which came second).
      expect(a.spent).toBeCloseTo(0.2, 9);

      const shadowed = AgentPolicy.fromDict({ mode: 'shadow', limits: [{ tool: '*', max_calls: 1, per: '1h', scope: 'budget' }] });
      const s = await sessionOn(kind, target!, shadowed, `${budgetKey}-shadow`);
      expect((await s.checkTool('x')).shadow).toBeUndefined();
      expect(await s.checkTool('x')).toMatchObject({ decision: 'allow', shadow: { decision: 'deny', rule: { section: 'limits' } } });
    });
  });

  describe.skipIf(target === null)(`policy limits across processes (${where})`, () => {
    beforeAll(() => {
      if (!existsSync(DIST)) throw new Error('the worker processes load dist/: run `pnpm build` first');
    });

    it('3 worker processes × 20 concurrent searches against max 7 per minute on one budget key: exactly 7 run', { timeout: 120_000 }, async () => {
      const budgetKey = `procs-${where}-${Date.now()}`;
      const policy = { limits: [{ tool: 'search', max_calls: 7, per: '1m', scope: 'budget' }] };
      const workers = Array.from({ length: 3 }, () => startWorker('node-redis@6', target!, [budgetKey, 'limits', '20', '0', JSON.stringify(policy)]));
      try {
        await Promise.all(workers.map((worker) => nextMessage<{ ready: boolean }>(worker)));
        const results = Promise.all(workers.map((worker) => nextMessage<{ allowed: number; denied: number; other: string[] }>(worker)));
        for (const worker of workers) worker.send('go');
        const counts = await results;
        expect(counts.flatMap((c) => c.other)).toEqual([]);
        expect(counts.reduce((sum, c) => sum + c.allowed, 0)).toBe(7);
        expect(counts.reduce((sum, c) => sum + c.denied, 0)).toBe(53);

        // This process, on the same key, finds the window full too.
        const here = await sessionOn('ioredis@6', target!, AgentPolicy.fromDict(policy), budgetKey);
        expect(await here.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'limits', index: 0 } });
      } finally {
        for (const worker of workers) if (worker.exitCode === null) worker.kill();
      }
    });

    it('8 worker processes (4 on node-redis, 4 on ioredis) × 15 concurrent checks of each tool against max 5 per minute and max 5 per budget: never more than 5 of each', { timeout: 180_000 }, async () => {
      const budgetKey = `procs8-${where}-${Date.now()}`;
      const policy = {
        limits: [
          { tool: 'search', max_calls: 5, per: '1m', scope: 'budget' },
          { tool: 'fetch', max_calls: 5, per: 'session', scope: 'budget' },
        ],
      };
      const kinds: ClientKind[] = ['node-redis@6', 'ioredis@6'];
      const workers = Array.from({ length: 8 }, (_, i) => startWorker(kinds[i % 2]!, target!, [budgetKey, 'limits', '15', '0', JSON.stringify(policy), 'search,fetch']));
      try {
        await Promise.all(workers.map((worker) => nextMessage<{ ready: boolean }>(worker)));
        const results = Promise.all(workers.map((worker) => nextMessage<{ allowedByTool: Record<string, number>; denied: number; other: string[] }>(worker)));
        for (const worker of workers) worker.send('go');
        const counts = await results;
        expect(counts.flatMap((c) => c.other)).toEqual([]);
        expect(counts.reduce((sum, c) => sum + c.allowedByTool.search!, 0)).toBe(5);
        expect(counts.reduce((sum, c) => sum + c.allowedByTool.fetch!, 0)).toBe(5);
        expect(counts.reduce((sum, c) => sum + c.denied, 0)).toBe(8 * 30 - 10);
        // A new session on the budget key later (another restarted app) still finds both full.
        const here = await sessionOn('ioredis@6', target!, AgentPolicy.fromDict(policy), budgetKey);
        expect(await here.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'limits', index: 0 } });
        expect(await here.checkTool('fetch')).toMatchObject({ decision: 'deny', rule: { section: 'limits', index: 1 } });
      } finally {
        for (const worker of workers) if (worker.exitCode === null) worker.kill();
      }
    });
  });
}
