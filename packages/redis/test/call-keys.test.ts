import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AgentPolicy, type Decision } from '@agentpolicy/core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore, createRedisCallKeyStore } from '../src/index.js';
import { CLIENT_KINDS, connect, type ClientHandle, type ClientKind } from './clients.js';
import type { Target } from './workers.js';

const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const USD = 1_000_000_000;
const WORKER = fileURLToPath(new URL('./call-key-worker.ts', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const KINDS: readonly ClientKind[] = CLIENT_KINDS;

const targets: Array<[string, Target | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

interface Worker {
  child: ChildProcess;
  ask<T>(step: object): Promise<T>;
}

async function start(kind: ClientKind, target: Target, sessionId: string, budgetKey: string): Promise<Worker> {
  const child = fork(WORKER, [kind, JSON.stringify(target), sessionId, budgetKey], { execArgv: ['--no-warnings'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = <T>(): Promise<T> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`worker exited with ${code}`));
      child.once('exit', onExit);
      child.once('message', (message) => {
        child.off('exit', onExit);
        resolve(message as T);
      });
    });
  await next();
  return { child, ask: <T>(step: object) => (child.send(step), next<T>()) };
}

const killed = (child: ChildProcess) => new Promise<void>((resolve) => (child.once('exit', () => resolve()), child.kill('SIGKILL')));

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`call keys shared by processes of one session (${where})`, () => {
    const handles: ClientHandle[] = [];
    const workers: Worker[] = [];
    beforeAll(() => {
      if (!existsSync(DIST)) throw new Error('the worker processes load dist/: run `pnpm build` first');
    });
    afterAll(async () => {
      for (const worker of workers) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
      await Promise.all(handles.map((handle) => handle.close()));
    });

    async function setUp(kind: ClientKind, name: string, count: number) {
      const id = `${name}:${kind}:${where}:${Date.now()}`;
      const handle = await connect(kind, target!);
      handles.push(handle);
      const store = createRedisBudgetStore({ client: handle.client });
      const started = await Promise.all(Array.from({ length: count }, () => start(kind, target!, id, `budget:${id}`)));
      workers.push(...started);
      return { workers: started, spent: async () => (await store.reconcile({ key: `budget:${id}`, period: 'session' })).spent / USD };
    }

    it.each(KINDS)('%s: a call retried in B after A crashed before running gets A’s allow back, charged once; once B ran it, a repeat is decided and charged again', async (kind) => {
      const { workers: [a, b], spent } = await setUp(kind, 'crash', 2);
      const first = await a!.ask<{ decision: Decision }>({ op: 'check', key: 'call_1', cost: 1 });
      expect(first.decision.decision).toBe('allow');
      await killed(a!.child);

      const retried = await b!.ask<{ decision: Decision; frozen: boolean }>({ op: 'check', key: 'call_1', cost: 1 });
      expect(retried.decision).toEqual(first.decision);
      expect(retried.frozen).toBe(true);
      expect(await spent()).toBe(1);
      expect(await b!.ask({ op: 'claim' })).toEqual({ claimed: true });
      expect(await b!.ask({ op: 'claim' })).toEqual({ claimed: false });

      const repeat = await b!.ask<{ decision: Decision }>({ op: 'check', key: 'call_1', cost: 1 });
      expect(repeat.decision.decision).toBe('allow');
      expect(repeat.decision.timestamp).not.toBe(first.decision.timestamp);
      expect(await spent()).toBe(2);
      expect(await b!.ask({ op: 'claim' })).toEqual({ claimed: true });
      await b!.ask({ op: 'exit' }).catch(() => undefined);
    });

    it.each(KINDS)('%s: after A ran the call, B’s repeat is decided and charged again', async (kind) => {
      const { workers: [a, b], spent } = await setUp(kind, 'ran', 2);
      await a!.ask({ op: 'check', key: 'call_1', cost: 1 });
      expect(await a!.ask({ op: 'claim' })).toEqual({ claimed: true });
      const repeat = await b!.ask<{ decision: Decision }>({ op: 'check', key: 'call_1', cost: 1 });
      expect(repeat.decision.decision).toBe('allow');
      expect(await spent()).toBe(2);
      expect(await b!.ask({ op: 'claim' })).toEqual({ claimed: true });
      await Promise.all([a!.ask({ op: 'exit' }).catch(() => undefined), b!.ask({ op: 'exit' }).catch(() => undefined)]);
    });

    it.each(KINDS)('%s: 5 processes holding the same allow claim it at once: exactly one claim is true', async (kind) => {
      const { workers: five, spent } = await setUp(kind, 'claims', 5);
      const first = await five[0]!.ask<{ decision: Decision }>({ op: 'check', key: 'call_1', cost: 1 });
      const others = await Promise.all(five.slice(1).map((worker) => worker.ask<{ decision: Decision }>({ op: 'check', key: 'call_1', cost: 1 })));
      for (const other of others) expect(other.decision).toEqual(first.decision);
      expect(await spent()).toBe(1);
      const claims = await Promise.all(five.map((worker) => worker.ask<{ claimed: boolean }>({ op: 'claim' })));
      expect(claims.filter((claim) => claim.claimed)).toHaveLength(1);
      await Promise.all(five.map((worker) => worker.ask({ op: 'exit' }).catch(() => undefined)));
    });

    it.each(KINDS)('%s: 5 processes checking the same new call at once: it is decided and charged once', async (kind) => {
      const { workers: five, spent } = await setUp(kind, 'race', 5);
      const seen = await Promise.all(five.map((worker) => worker.ask<{ decision: Decision }>({ op: 'check', key: 'call_1', cost: 1 })));
      expect(await spent()).toBe(1);
      const allows = seen.filter((s) => s.decision.decision === 'allow');
      // Every process got the one decision (the losers waited for it), or was denied as "being decided elsewhere".
      for (const s of seen) if (s.decision.decision !== 'allow') expect(s.decision.reason).toMatch(/being decided in another process/);
      expect(new Set(allows.map((s) => `${s.decision.id}@${s.decision.timestamp}`)).size).toBe(1);
      const claims = await Promise.all(five.map((worker) => worker.ask<{ claimed: boolean }>({ op: 'claim' })));
      expect(claims.filter((claim) => claim.claimed)).toHaveLength(1);
      await Promise.all(five.map((worker) => worker.ask({ op: 'exit' }).catch(() => undefined)));
    });
  });
}

describe.skipIf(redisUrl === null)('call keys on Redis in one process', () => {
  it('a claimed call leaves only who claimed it, for five minutes; one not claimed keeps its decision for a repeat', async () => {
    const handle = await connect('ioredis@6', { url: redisUrl! });
    try {
      const prefix = `claimed${Date.now()}`;
      const callKeys = createRedisCallKeyStore({ client: handle.client, prefix });
      const policy = new AgentPolicy({ budget: 1000, blockedTools: ['delete_*'] });
      // 200 requests of a server sharing one store, each session's keyed call run (claimed).
      for (let i = 0; i < 200; i++) {
        const session = policy.session({ id: `req-${i}`, callKeys });
        expect(await session.claim(await session.checkTool('search', { cost: 0.01, idempotencyKey: 'call_1' }))).toBe(true);
      }
      const redis = handle.client as unknown as { keys(pattern: string): Promise<string[]>; hgetall(key: string): Promise<Record<string, string>>; pttl(key: string): Promise<number> };
      // Each claimed call keeps its token and its claim's id (so the same claim sent again after a lost reply still
      // wins), not its decision, and only for five minutes.
      const claimed = await redis.keys(`${prefix}:*`);
      expect(claimed).toHaveLength(200);
      for (const key of claimed.slice(0, 10)) {
        expect(Object.keys(await redis.hgetall(key)).sort()).toEqual(['c', 't', 'u']);
        expect(await redis.pttl(key)).toBeLessThanOrEqual(300_000);
      }
      await Promise.all(claimed.map((key) => (redis as unknown as { del(key: string): Promise<number> }).del(key)));
      const keys = async () => (await redis.keys(`${prefix}:*`)).length;
      const session = policy.session({ id: 'req-kept', callKeys });
      const denied = await session.checkTool('delete_repo', { idempotencyKey: 'd' });
      const allowed = await session.checkTool('search', { cost: 1, idempotencyKey: 'a' });
      expect(await keys()).toBe(2);
      const other = policy.session({ id: 'req-kept', callKeys });
      expect(await other.checkTool('delete_repo', { idempotencyKey: 'd' })).toEqual(denied);
      const handedBack = await other.checkTool('search', { cost: 1, idempotencyKey: 'a' });
      expect(handedBack).toEqual(allowed);
      expect(await other.claim(handedBack)).toBe(true);
      expect(await session.claim(allowed)).toBe(false);
      expect(await keys()).toBe(2);
      expect((await session.checkTool('search', { cost: 1, idempotencyKey: 'a' })).id).not.toBe(allowed.id);
    } finally {
      await handle.close();
    }
  });

  it('keys expire after ttlMs: a repeat after that is a new action', async () => {
    const handle = await connect('node-redis@6', { url: redisUrl! });
    try {
      const callKeys = createRedisCallKeyStore({ client: handle.client, ttlMs: 200 });
      const session = new AgentPolicy({ budget: 10 }).session({ callKeys });
      const first = await session.checkTool('search', { cost: 1, idempotencyKey: 'k' });
      expect(await session.checkTool('search', { cost: 1, idempotencyKey: 'k' })).toEqual(first);
      expect(session.spent).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await session.checkTool('search', { cost: 1, idempotencyKey: 'k' })).id).not.toBe(first.id);
      expect(session.spent).toBe(2);
    } finally {
      await handle.close();
    }
  });

  it('a Redis that fails denies a keyed check (rule section error) and a claim rejects', async () => {
    const client = { evalsha: () => Promise.reject(new Error('connection lost')), eval: () => Promise.reject(new Error('connection lost')), status: 'ready' };
    const session = new AgentPolicy({ budget: 10 }).session({ callKeys: createRedisCallKeyStore({ client }) });
    const decision = await session.checkTool('search', { cost: 1, idempotencyKey: 'k' });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
    expect(decision.reason).toContain('connection lost');
    const ran: string[] = [];
    await expect(session.runTool('search', { cost: 1, idempotencyKey: 'k2' }, () => ran.push('ran'))).rejects.toThrow();
    expect(ran).toEqual([]);
    expect(session.spent).toBe(0);
  });
});
