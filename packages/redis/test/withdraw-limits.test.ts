// A withdrawn allow (its call never ran) gives back the `limits:` slots it took on Redis, once, and never to a window
// opened after its own: a client cannot use withdraw to run more than max_calls calls.
import { AgentPolicy, withdrawAllow } from '@agentpolicy/core';
import { describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore, createRedisRateLimitStore } from '../src/index.js';
import { clientsClosedAfterAll, type ClientKind } from './clients.js';
import type { Target } from './workers.js';

const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const open = clientsClosedAfterAll();

const targets: Array<[string, Target | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

const policy = (maxCalls: number) =>
  AgentPolicy.fromDict({ tools: { allow: ['search'] }, budget: { max_spend: 10 }, limits: [{ tool: 'search', max_calls: maxCalls, per: '1m', scope: 'budget' }] });

/** A session on Redis through its own client, as another app instance would open it; `clockOffsetMs` moves its limit clock. */
async function sessionOn(kind: ClientKind, target: Target, maxCalls: number, budgetKey: string, clockOffsetMs = 0) {
  const { client } = await open(kind, target);
  return policy(maxCalls).session({ store: createRedisBudgetStore({ client }), limitStore: createRedisRateLimitStore({ client, clockOffsetMs }), budgetKey });
}

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`withdraw gives back limit slots on Redis (${where})`, () => {
    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: the slot comes back once, for another process too; a withdraw after the run or a second one gives nothing', async (kind) => {
      const budgetKey = `withdraw-${kind}-${where}-${Date.now()}`;
      const [a, b] = [await sessionOn(kind, target!, 2, budgetKey), await sessionOn(kind, target!, 2, budgetKey)];
      const held = await a.reserveAction({ type: 'tool', name: 'search', input: { q: 'held' }, cost: 1 });
      const ran = await b.checkTool('search', { input: { q: 'ran' } });
      expect([held.decision.decision, ran.decision]).toEqual(['allow', 'allow']);
      expect(await b.claim(ran)).toBe(true);
      expect((await b.checkTool('search', { input: { q: 'x' } })).rule).toMatchObject({ section: 'limits' });

      // Withdrawing the call that ran, or the other process's allow, gives nothing back.
      expect(await b.withdraw(ran)).toBe(false);
      expect(await b.withdraw(held.decision)).toBe(false);
      expect((await b.checkTool('search', { input: { q: 'x' } })).rule).toMatchObject({ section: 'limits' });

      // The owner withdraws the call that never ran, twice at once: one slot comes back, for every process.
      const withdrawn = await Promise.all([withdrawAllow(a, held.decision, held), a.withdraw(held.decision)]);
      expect(withdrawn.filter(Boolean)).toHaveLength(1);
      expect(held.decision.settlement).toMatchObject({ status: 'released' });
      const next = await b.checkTool('search', { input: { q: 'next' } });
      expect(next.decision).toBe('allow');
      expect((await a.checkTool('search', { input: { q: 'over' } })).rule).toMatchObject({ section: 'limits' });
      expect(await a.withdraw(held.decision)).toBe(false);
      expect((await a.checkTool('search', { input: { q: 'over' } })).rule).toMatchObject({ section: 'limits' });
    });

    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: a slot taken in a window that has passed gives nothing back to the window open now', async (kind) => {
      for (const sweptFirst of [true, false]) {
        const budgetKey = `rollover-${kind}-${where}-${sweptFirst}-${Date.now()}`;
        const before = await sessionOn(kind, target!, 1, budgetKey);
        // The same count seen a window later (the server's clock moved on by a minute).
        const later = await sessionOn(kind, target!, 1, budgetKey, 60_001);
        const old = await before.checkTool('search', { input: { q: 'old' } });
        expect(old.decision).toBe('allow');
        if (sweptFirst) {
          const fresh = await later.checkTool('search', { input: { q: 'fresh' } });
          expect(fresh.decision).toBe('allow');
          expect(await later.claim(fresh)).toBe(true);
          expect(await before.withdraw(old)).toBe(true);
        } else {
          // Withdrawn after its window passed, before anything else counted: the slot was free already.
          expect(await before.withdraw(old)).toBe(true);
          const fresh = await later.checkTool('search', { input: { q: 'fresh' } });
          expect(fresh.decision).toBe('allow');
          expect(await later.claim(fresh)).toBe(true);
        }
        // One call in the new window ran: max_calls 1 is reached there, whatever the old allow's withdraw did.
        expect((await later.checkTool('search', { input: { q: 'again' } })).rule).toMatchObject({ section: 'limits' });
      }
    });
  });
}
