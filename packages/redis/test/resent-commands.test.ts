// A command that reached Redis and ran, whose reply was lost when the connection dropped. ioredis (5 and 6, default
// options: autoResendUnfulfilledCommands) sends it again once it has reconnected, so it runs twice; node-redis (5 and
// 6) rejects it, so the caller is told it failed although it ran. Each store operation below has its reply cut once
// (test/reply-cut-proxy.ts, in front of a real redis-server), with the clients' default options, and the policy's
// guarantees are checked afterwards against what Redis holds.
import { AgentPolicy } from '@agentpolicy/core';
import { Redis as IoRedis6 } from 'ioredis';
import { Redis as IoRedis5 } from 'ioredis-v5';
import { createClient as createClient6 } from 'redis';
import { createClient as createClient5 } from 'redis-v5';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  createRedisApprovalStore,
  createRedisBudgetStore,
  createRedisCallKeyStore,
  createRedisHaltStore,
  createRedisRateLimitStore,
  type RedisClientLike,
} from '../src/index.js';
import type { ClientKind } from './clients.js';
import { startReplyCutProxy, type ReplyCutProxy } from './reply-cut-proxy.js';
import { freePort, startRedis, type RedisProcess } from './redis-server.js';

const canStart = inject('redisServer');
const USD = 1_000_000_000;
const KINDS: readonly ClientKind[] = ['ioredis@6', 'ioredis@5', 'node-redis@6', 'node-redis@5'];
const resends = (kind: ClientKind) => kind.startsWith('ioredis');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** One RESP bulk string, so a marker matches an argument, not part of one. */
const arg = (value: string) => `\r\n${value}\r\n`;

interface Client {
  readonly client: RedisClientLike;
  ready(): boolean;
  close(): Promise<void>;
}

/** A client of `kind` with the library's default options (reconnect, offline queue, resend: all as shipped). */
async function connectDefault(kind: ClientKind, url: string): Promise<Client> {
  if (kind === 'ioredis@6' || kind === 'ioredis@5') {
    const Redis = (kind === 'ioredis@6' ? IoRedis6 : IoRedis5) as typeof IoRedis6;
    const client = new Redis(url);
    client.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => (client.once('ready', () => resolve()), client.once('error', reject)));
    return { client: client as unknown as RedisClientLike, ready: () => client.status === 'ready', close: async () => void client.disconnect() };
  }
  const createClient = (kind === 'node-redis@6' ? createClient6 : createClient5) as typeof createClient6;
  const client = createClient({ url });
  client.on('error', () => undefined);
  await client.connect();
  return { client: client as unknown as RedisClientLike, ready: () => client.isReady, close: async () => void client.destroy() };
}

describe.skipIf(!canStart)('a reply lost on a dropped connection, the command re-sent or rejected', () => {
  let server: RedisProcess;
  let proxy: ReplyCutProxy;
  const clients: Client[] = [];
  beforeAll(async () => {
    server = await startRedis(await freePort());
    proxy = await startReplyCutProxy(server);
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await proxy?.close();
    await server?.stop();
  });

  async function open(kind: ClientKind): Promise<Client> {
    const client = await connectDefault(kind, proxy.url);
    clients.push(client);
    return client;
  }

  /** Waits until the client has reconnected (and, for ioredis, re-sent what was unanswered). */
  async function reconnected(client: Client): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!client.ready()) {
      if (Date.now() > deadline) throw new Error('the client did not reconnect');
      await sleep(10);
    }
    await sleep(100);
  }

  const name = (what: string, kind: ClientKind) => `${what}:${kind}:${Date.now()}:${Math.random().toString(36).slice(2, 8)}`;

  describe('budget', () => {
    it.each(KINDS)('%s: a check whose charge ran but whose reply was lost never records less than was spent (a charge is not marked: sent again, it counts twice)', async (kind) => {
      const client = await open(kind);
      const store = createRedisBudgetStore({ client: client.client });
      const budget = { key: name('charge', kind), period: 'session' as const };
      const session = new AgentPolicy({ budget: 10 }).session({ store, budgetKey: budget.key });
      expect((await session.checkCost(1, { source: 'warm' })).decision).toBe('allow');
      const cut = proxy.cutReplyTo(arg('charge'), budget.key);
      const decision = await session.checkCost(3, { source: 'x' });
      await cut;
      await reconnected(client);
      expect((await session.checkCost(1, { source: 'after' })).decision).toBe('allow');
      const stored = (await store.reconcile(budget)).spent / USD;
      if (resends(kind)) {
        // ioredis ran it twice and the caller heard the second answer: allowed, and 3 recorded twice in the store.
        expect(decision.decision).toBe('allow');
        expect(stored).toBe(8);
      } else {
        // node-redis rejected it: the check is denied, and the charge that ran stays recorded.
        expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
        expect(stored).toBe(5);
      }
      // Never less than what the session allowed: the error is on the side of spending less.
      expect(stored).toBeGreaterThanOrEqual(session.spent);
    });

    it.each(KINDS)('%s: a refund run twice gives the money back once: the budget cannot be overspent through it', async (kind) => {
      const client = await open(kind);
      const store = createRedisBudgetStore({ client: client.client });
      const budget = { key: name('refund', kind), period: 'session' as const };
      expect((await store.charge(budget, 6 * USD, 10 * USD)).ok).toBe(true);
      const cut = proxy.cutReplyTo(arg('refund'), budget.key);
      await store.refund(budget, 2 * USD).catch(() => undefined);
      await cut;
      await reconnected(client);
      expect((await store.reconcile(budget)).spent).toBe(4 * USD);
      // 6 more would go past the limit of 10: refused.
      expect((await store.charge(budget, 7 * USD, 10 * USD)).ok).toBe(false);
    });

    it.each(KINDS)('%s: a reservation whose reply was lost holds nothing once the check is denied, and settles once when granted', async (kind) => {
      const client = await open(kind);
      const store = createRedisBudgetStore({ client: client.client, timeoutMs: 5000 });
      const budget = { key: name('reserve', kind), period: 'session' as const };
      const session = new AgentPolicy({ budget: 10 }).session({ store, budgetKey: budget.key, leaseTtlMs: 2000 });
      await store.reconcile(budget);
      const cut = proxy.cutReplyTo(arg('reserve'), budget.key);
      const reservation = await session.reserve(4, { source: 'llm' });
      await cut;
      await reconnected(client);
      if (resends(kind)) {
        expect(reservation.allowed).toBe(true);
        const commitCut = proxy.cutReplyTo(arg('commit'), budget.key);
        await reservation.commit(3);
        await commitCut;
        await reconnected(client);
      } else {
        expect(reservation.allowed).toBe(false);
      }
      // Past the lease's TTL: a lease left open would now be charged at its estimate (4).
      await sleep(2300);
      expect((await session.checkCost(1, { source: 'after' })).decision).toBe('allow');
      const expected = reservation.allowed ? 4 : 1;
      expect((await store.reconcile(budget)).spent / USD).toBe(expected);
      expect((await store.reconcile(budget)).reserved).toBe(0);
      expect(session.report().spent).toBe(expected);
    });

    it('a reservation cancelled after it ran, then sent again (its reply lost), is refused: nothing stays held', async () => {
      const client = await open('node-redis@6');
      const store = createRedisBudgetStore({ client: client.client });
      const budget = { key: name('cancelled', 'node-redis@6'), period: 'session' as const };
      // The store's own operations, in the order a re-sent reserve could meet them (one lease id throughout).
      const run = (store as unknown as { run(b: typeof budget, op: string, amount: number, limit: number | null, ttl: number, id: string): Promise<{ ok: boolean }> }).run.bind(store);
      expect((await run(budget, 'reserve', 4 * USD, 10 * USD, 60_000, 'lease-1')).ok).toBe(true);
      await run(budget, 'cancel', 0, null, 1, 'lease-1');
      expect((await run(budget, 'reserve', 4 * USD, 10 * USD, 60_000, 'lease-1')).ok).toBe(false);
      expect(await store.reconcile(budget)).toMatchObject({ spent: 0, reserved: 0 });
    });

    it.each(KINDS)('%s: a release whose reply was lost gives the lease back once and charges nothing', async (kind) => {
      const client = await open(kind);
      const store = createRedisBudgetStore({ client: client.client });
      const budget = { key: name('release', kind), period: 'session' as const };
      const session = new AgentPolicy({ budget: 10 }).session({ store, budgetKey: budget.key });
      const reservation = await session.reserve(4, { source: 'llm' });
      const cut = proxy.cutReplyTo(arg('release'), budget.key);
      await reservation.release();
      await cut;
      await reconnected(client);
      expect(await store.reconcile(budget)).toMatchObject({ spent: 0, reserved: 0 });
      expect((await session.checkCost(10, { source: 'all of it' })).decision).toBe('allow');
    });
  });

  describe('rate limits', () => {
    it.each(KINDS)('%s: a take whose reply was lost counts once, is given back if the check failed, and never lets more than max through', async (kind) => {
      const client = await open(kind);
      const limits = createRedisRateLimitStore({ client: client.client });
      const key = name('limit', kind);
      expect((await limits.take(key, 2, null)).ok).toBe(true);
      const cut = proxy.cutReplyTo(arg('take'), key);
      const taken = await limits.take(key, 2, null).catch(() => ({ ok: false as const, failed: true }));
      await cut;
      await reconnected(client);
      if (resends(kind)) expect(taken).toMatchObject({ ok: true });
      else expect(taken).toMatchObject({ failed: true });
      // The second slot is taken exactly when the caller was told so: max 2, never more, and not fewer.
      const more = [await limits.take(key, 2, null), await limits.take(key, 2, null)];
      expect(more.filter((take) => take.ok)).toHaveLength(taken.ok ? 0 : 1);
    });

    it.each(KINDS)('%s: a give-back whose reply was lost frees one slot, once', async (kind) => {
      const client = await open(kind);
      const limits = createRedisRateLimitStore({ client: client.client });
      const key = name('give', kind);
      const first = await limits.take(key, 2, null);
      expect((await limits.take(key, 2, null)).ok).toBe(true);
      const cut = proxy.cutReplyTo(arg('give'), key);
      await limits.giveBack(key, (first as { slot: string }).slot).catch(() => undefined);
      await cut;
      await reconnected(client);
      expect((await limits.take(key, 2, null)).ok).toBe(true);
      expect((await limits.take(key, 2, null)).ok).toBe(false);
    });
  });

  describe('call keys', () => {
    const call = (kind: ClientKind) => ({ sessionId: name('calls', kind), key: 'call_1', fingerprint: 'f'.repeat(16) });
    const allow = { id: 'd1', decision: 'allow' } as never;

    it.each(KINDS)('%s: a begin whose reply was lost hands the caller its own marker, not "busy"', async (kind) => {
      const client = await open(kind);
      const keys = createRedisCallKeyStore({ client: client.client, waitMs: 0 });
      const ref = call(kind);
      await keys.abandon(ref, 'warm');
      const cut = proxy.cutReplyTo(arg('begin'), ref.sessionId);
      const begun = await keys.begin(ref, { lockMs: 30_000, reuseApproval: false }).catch(() => ({ status: 'failed' }));
      await cut;
      await reconnected(client);
      if (resends(kind)) expect(begun.status).toBe('new');
      else expect(begun.status).toBe('failed');
    });

    it.each(KINDS)('%s: a remember whose reply was lost still says the decision was remembered', async (kind) => {
      const client = await open(kind);
      const keys = createRedisCallKeyStore({ client: client.client });
      const ref = call(kind);
      const begun = await keys.begin(ref, { lockMs: 30_000, reuseApproval: false });
      expect(begun.status).toBe('new');
      const lock = (begun as { lock: string }).lock;
      const cut = proxy.cutReplyTo(arg('remember'), ref.sessionId);
      const remembered = await keys.remember(ref, lock, allow, undefined).catch(() => 'failed');
      await cut;
      await reconnected(client);
      expect(remembered).toBe(resends(kind) ? true : 'failed');
      expect(await keys.claim(ref, lock)).toBe(true);
    });

    it.each(KINDS)('%s: a claim whose reply was lost: the allow runs exactly once, never twice, never zero times', async (kind) => {
      const client = await open(kind);
      const other = await open(kind);
      const keys = createRedisCallKeyStore({ client: client.client });
      const elsewhere = createRedisCallKeyStore({ client: other.client });
      const ref = call(kind);
      const begun = await keys.begin(ref, { lockMs: 30_000, reuseApproval: false });
      const lock = (begun as { lock: string }).lock;
      expect(await keys.remember(ref, lock, allow, undefined)).toBe(true);
      const cut = proxy.cutReplyTo(arg('claim'), ref.sessionId);
      const claimed = await keys.claim(ref, lock).catch(() => 'failed');
      await cut;
      await reconnected(client);
      // Another process holding the same decision (same token) never gets it too.
      expect(await elsewhere.claim(ref, lock)).toBe(false);
      if (resends(kind)) expect(claimed).toBe(true);
      else expect(claimed).toBe('failed');
    });
  });

  describe('approvals', () => {
    const policy = () => AgentPolicy.fromDict({ tools: { allow: ['send_email'] }, approval: { require_for: [{ tool: 'send_email' }] } });
    const input = { to: 'a@example.com' };

    it.each(KINDS)('%s: raising a request whose reply was lost raises it once', async (kind) => {
      const client = await open(kind);
      const approvals = createRedisApprovalStore({ client: client.client });
      const session = policy().session({ id: name('create', kind), approvals });
      await approvals.get('warm');
      const cut = proxy.cutReplyTo(arg('create'), session.id);
      const decision = await session.checkTool('send_email', { input });
      await cut;
      await reconnected(client);
      if (resends(kind)) {
        expect(decision).toMatchObject({ decision: 'require_approval' });
        expect((await approvals.get(decision.approvalRequest!.id))?.status).toBe('pending');
      } else {
        expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
      }
    });

    it.each(KINDS)('%s: an answer whose reply was lost is reported as it really is, and used once', async (kind) => {
      const client = await open(kind);
      const approvals = createRedisApprovalStore({ client: client.client });
      const session = policy().session({ id: name('resolve', kind), approvals });
      const requestId = (await session.checkTool('send_email', { input })).approvalRequest!.id;
      const cut = proxy.cutReplyTo(arg('resolve'), requestId);
      const answered = await session.resolveApproval(requestId, { approved: true, by: 'alice' }).catch(() => ({ ok: 'failed' }));
      await cut;
      await reconnected(client);
      // node-redis: the caller was told it failed, and it was taken back (withdrawn), so the human answers again.
      if (!resends(kind)) {
        expect(answered.ok).toBe('failed');
        // The withdrawal goes once the client has reconnected.
        const deadline = Date.now() + 10_000;
        while ((await approvals.get(requestId))?.status !== 'pending' && Date.now() < deadline) await sleep(20);
        expect((await approvals.get(requestId))?.status).toBe('pending');
        expect((await session.resolveApproval(requestId, { approved: true, by: 'alice' })).ok).toBe(true);
      } else {
        expect(answered.ok).toBe(true);
      }
      expect((await approvals.get(requestId))?.status).toBe('approved');
      const used = await session.checkTool('send_email', { input, approval: { requestId } });
      expect(used.decision).toBe('allow');
      expect((await session.checkTool('send_email', { input, approval: { requestId } })).decision).not.toBe('allow');
    });

    it.each(KINDS)('%s: using an approval whose reply was lost: the approved action runs once', async (kind) => {
      const client = await open(kind);
      const approvals = createRedisApprovalStore({ client: client.client });
      const session = policy().session({ id: name('consume', kind), approvals });
      const requestId = (await session.checkTool('send_email', { input })).approvalRequest!.id;
      expect((await session.resolveApproval(requestId, { approved: true, by: 'alice' })).ok).toBe(true);
      const cut = proxy.cutReplyTo(arg('consume'), requestId);
      const used = await session.checkTool('send_email', { input, approval: { requestId } });
      await cut;
      await reconnected(client);
      const again = await session.checkTool('send_email', { input, approval: { requestId } });
      expect([used, again].filter((decision) => decision.decision === 'allow')).toHaveLength(resends(kind) ? 1 : 0);
      if (resends(kind)) expect(used.decision).toBe('allow');
      expect((await approvals.get(requestId))?.status).toBe('used');
    });
  });

  describe('halts', () => {
    it.each(KINDS)('%s: a halt set or lifted whose reply was lost is in force (or lifted) once, and said so', async (kind) => {
      const client = await open(kind);
      const halts = createRedisHaltStore({ client: client.client, name: name('halt', kind) });
      await halts.list();
      const setCut = proxy.cutReplyTo(arg('set'), 'stop it');
      const set = await halts.halt({ reason: 'stop it', at: new Date().toISOString() }).then(() => 'ok', () => 'failed');
      await setCut;
      await reconnected(client);
      expect(set).toBe(resends(kind) ? 'ok' : 'failed');
      expect(await halts.halted('any')).toMatchObject({ reason: 'stop it' });
      const delCut = proxy.cutReplyTo(arg('del'), arg('*'));
      const lifted = await halts.resume().catch(() => 'failed');
      await delCut;
      await reconnected(client);
      expect(lifted).toBe(resends(kind) ? true : 'failed');
      expect(await halts.halted('any')).toBeUndefined();
    });
  });
});
