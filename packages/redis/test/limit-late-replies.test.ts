// Rate-limit slots when Redis answers after the check gave up (CLIENT PAUSE holds every command past the client's
// timeout): a take that runs late, or a give-back that fails, must not keep a slot of a call that never ran.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentPolicy } from '@agentpolicy/core';
import { describe, expect, inject, it } from 'vitest';
import { createRedisRateLimitStore } from '../src/index.js';
import { connect, type ClientKind } from './clients.js';
import { freePort, startRedis } from './redis-server.js';

const canStart = inject('redisServer');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
type Pauser = { sendCommand(args: string[]): Promise<unknown> };

describe.skipIf(!canStart)('rate-limit slots when Redis answers late', () => {
  it.each<ClientKind>(['node-redis@6', 'ioredis@6'])('%s: a take that times out and then runs on the server holds no slot (per session and per window)', async (kind) => {
    const server = await startRedis(await freePort());
    const handle = await connect(kind, { url: server.url });
    const pauser = await connect('node-redis@6', { url: server.url });
    const store = createRedisRateLimitStore({ client: handle.client, timeoutMs: 150 });
    const policy = AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 2, per: 'session' }, { tool: 'fetch', max_calls: 2, per: '1h' }] });
    const session = policy.session({ limitStore: store, id: `late-${kind}` });
    try {
      await (pauser.client as unknown as Pauser).sendCommand(['CLIENT', 'PAUSE', '600', 'ALL']);
      const [search, fetch, raw] = await Promise.all([session.checkTool('search'), session.checkTool('fetch'), store.take('raw', 1, null).catch((error: Error) => error)]);
      expect(search).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
      expect(fetch).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
      expect(raw).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await sleep(900);
      // Every take above ran on the server after its check was denied; none of them keeps a slot.
      for (const tool of ['search', 'fetch', 'search', 'fetch']) expect((await session.checkTool(tool)).decision).toBe('allow');
      for (const tool of ['search', 'fetch']) expect(await session.checkTool(tool)).toMatchObject({ decision: 'deny', rule: { section: 'limits' } });
      expect((await store.take('raw', 1, null)).ok).toBe(true);
      expect((await store.take('raw', 1, null)).ok).toBe(false);
      expect(store.owedSlots).toBe(0);
    } finally {
      await handle.close();
      await pauser.close();
      await server.stop();
    }
  });

  it('a give-back that cannot reach Redis is owed: sent again with the next take of its key, before that take counts', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-redis-owed-'));
    const durable = ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'];
    let server = await startRedis(port, durable);
    const handle = await connect('node-redis@6', { url: server.url });
    const store = createRedisRateLimitStore({ client: handle.client, timeoutMs: 300 });
    const ready = () => (handle.client as { isReady: boolean }).isReady;
    try {
      const taken = await store.take('owed', 1, null);
      if (!taken.ok) throw new Error('the first take is allowed');
      // Redis is killed before the give-back (a call denied later, say, by the budget): it fails, and is owed.
      await server.stop();
      for (let i = 0; i < 100 && ready(); i++) await sleep(20);
      await expect(store.giveBack('owed', taken.slot)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(store.owedSlots).toBe(1);
      server = await startRedis(port, durable);
      for (let i = 0; i < 200 && !ready(); i++) await sleep(50);
      // The slot came back with the server (appendfsync always), so another process is still refused…
      const other = await connect('ioredis@6', { url: server.url });
      const elsewhere = createRedisRateLimitStore({ client: other.client });
      expect(await elsewhere.take('owed', 1, null)).toEqual({ ok: false, resetAtMs: null });
      // …until this process's next take of the key gives it back first, in the same script, and takes the one slot.
      expect((await store.take('owed', 1, null)).ok).toBe(true);
      expect(store.owedSlots).toBe(0);
      expect(await elsewhere.take('owed', 1, null)).toEqual({ ok: false, resetAtMs: null });
      await other.close();
    } finally {
      await handle.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
