import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentPolicy } from '@agentpolicy/core';
import { describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore } from '../src/index.js';
import { connect } from './clients.js';
import { freePort, startRedis } from './redis-server.js';

const canStart = inject('redisServer');

describe.skipIf(!canStart)('redis-server killed (SIGKILL) mid-burst, with appendfsync always', () => {
  it('after the restart every acknowledged charge is there, nothing is counted twice, and open leases are still held', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-redis-aof-'));
    const durable = ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'];
    let server = await startRedis(port, durable);
    const handle = await connect('ioredis@6', { url: server.url });
    const store = createRedisBudgetStore({ client: handle.client, timeoutMs: 500 });
    const budget = { key: 'crash', period: 'session' as const };
    const session = new AgentPolicy({ budget: 1_000_000 }).session({ store, budgetKey: budget.key, leaseTtlMs: 600_000 });
    const nano = 1e9;
    let committed = 0; // nano-dollars Redis acknowledged as spent
    let charged = 0;
    let heldAcked = 0; // reservations Redis acknowledged and nobody settled
    let attempted = 0; // the most anything sent could add
    let stop = false;
    const worker = async (i: number) => {
      for (let n = 0; !stop; n++) {
        // A store that fails at once never leaves the microtask queue: let timers run.
        if (n % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
        const cost = ((i + n) % 7) + 1;
        attempted += cost * nano;
        if (n % 3 === 0) {
          const decision = await session.checkCost(cost, { source: 'burst' });
          if (decision.decision === 'allow') charged += cost * nano;
          continue;
        }
        const reservation = await session.reserve(cost, { source: 'burst' });
        if (!reservation.allowed) continue;
        if (n % 3 === 1) {
          heldAcked += cost * nano;
          continue;
        }
        try {
          await reservation.commit(cost);
          committed += cost * nano;
        } catch {
          // unknown whether it reached Redis: bounded by `attempted`
        }
      }
    };
    try {
      const workers = Array.from({ length: 8 }, (_, i) => worker(i));
      await new Promise((resolve) => setTimeout(resolve, 400));
      await server.stop(); // SIGKILL
      await new Promise((resolve) => setTimeout(resolve, 200));
      stop = true;
      await Promise.all(workers);
      expect(committed + charged).toBeGreaterThan(0);
      server = await startRedis(port, durable);
      let after: Awaited<ReturnType<typeof store.reconcile>> | undefined;
      for (let tries = 0; after === undefined && tries < 100; tries++) {
        after = await store.reconcile(budget).catch(() => undefined);
        if (after === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (after === undefined) throw new Error('the client did not reconnect');
      // Nothing acknowledged is lost (a commit that could not reach Redis leaves its lease held, charged when it expires)…
      expect(after.spent + after.reserved).toBeGreaterThanOrEqual(committed + charged + heldAcked);
      // …and nothing is counted beyond what was ever sent.
      expect(after.spent + after.reserved).toBeLessThanOrEqual(attempted);
    } finally {
      stop = true;
      await handle.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
