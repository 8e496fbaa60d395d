import { AgentPolicy } from '@agentpolicy/core';
import { describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore } from '../src/index.js';
import { connect, type ClientKind } from './clients.js';
import { freePort, startRedis } from './redis-server.js';

const canStart = inject('redisServer');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!canStart)('a Redis that answers after the check gave up', () => {
  it.each<ClientKind>(['node-redis@6', 'ioredis@6'])('%s: a reservation that times out and then runs on the server holds nothing: the denied action is never charged', async (kind) => {
    const port = await freePort();
    const server = await startRedis(port);
    const handle = await connect(kind, { url: server.url });
    const pauser = await connect('node-redis@6', { url: server.url });
    const store = createRedisBudgetStore({ client: handle.client, timeoutMs: 150 });
    const budget = { key: `late:${kind}`, period: 'session' as const };
    const session = new AgentPolicy({ budget: 10 }).session({ store, budgetKey: budget.key });
    try {
      // The server holds every command for 600 ms: each reserve below is sent, times out, and runs afterwards.
      await (pauser.client as unknown as { sendCommand(args: string[]): Promise<unknown> }).sendCommand(['CLIENT', 'PAUSE', '600', 'ALL']);
      let ran = 0;
      const attempts = await Promise.allSettled([
        session.runTool('search', { cost: 3 }, () => ran++),
        session.reserve(3, { source: 'llm' }),
        session.reserveModelCall({ model: 'gpt-4o', inputTokens: 10, maxOutputTokens: 10 }).catch(() => undefined),
      ]);
      expect(ran).toBe(0);
      expect(attempts[0]).toMatchObject({ status: 'rejected' });
      expect(attempts[1]).toMatchObject({ status: 'fulfilled', value: { allowed: false } });
      await sleep(900);
      // Nothing is held or spent for checks that were denied, now or when their leases would have expired.
      expect(await store.reconcile(budget)).toMatchObject({ spent: 0, reserved: 0 });
      const next = await session.reserve(10, { source: 'llm' });
      expect(next.allowed).toBe(true);
      await next.release();
    } finally {
      await handle.close();
      await pauser.close();
      await server.stop();
    }
  });
});
