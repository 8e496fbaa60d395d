import { AgentPolicy } from '@agentpolicy/core';
import { describe, expect, inject, it, vi } from 'vitest';
import { createRedisApprovalStore, createRedisRateLimitStore } from '../src/index.js';
import { CLIENT_KINDS, clientsClosedAfterAll } from './clients.js';

const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const open = clientsClosedAfterAll();

const policy = () =>
  AgentPolicy.fromDict({ budget: { max_spend: 10 }, tools: { allow: ['send_email', 'search'] }, approval: { require_for: [{ tool: 'send_email' }] } });

const targets: Array<[string, { url: string } | { nodes: string[] } | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`rate-limit slots on Redis (${where})`, () => {
    it.each(CLIENT_KINDS)('%s: 200 concurrent takes from two clients against max 50 get exactly 50; a slot given back frees one', async (kind) => {
      const [a, b] = [await open(kind, target!), await open(kind, target!)];
      const stores = [createRedisRateLimitStore({ client: a.client }), createRedisRateLimitStore({ client: b.client })];
      const key = `limit:${kind}:${where}:${Date.now()}`;
      const takes = await Promise.all(Array.from({ length: 200 }, (_, i) => stores[i % 2]!.take(key, 50, 60_000)));
      const taken = takes.filter((t) => t.ok);
      expect(taken).toHaveLength(50);
      const refused = takes.find((t) => !t.ok);
      expect(refused?.ok === false && refused.resetAtMs! > Date.now() - 5000).toBe(true);
      const first = taken[0]!;
      if (!first.ok) throw new Error('unreachable');
      await stores[1]!.giveBack(key, first.slot);
      await stores[0]!.giveBack(key, first.slot); // idempotent
      expect((await stores[0]!.take(key, 50, 60_000)).ok).toBe(true);
      expect((await stores[0]!.take(key, 50, 60_000)).ok).toBe(false);
    });
  });

  describe.skipIf(target === null)(`approval requests on Redis (${where})`, () => {
    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: raised here, answered from another process, used once by the restarted app', async (kind) => {
      const sessionId = `agent-${kind}-${where}-${Date.now()}`;
      const first = await open(kind, target!);
      const raising = policy().session({ id: sessionId, approvals: createRedisApprovalStore({ client: first.client }) });
      const raised = await raising.checkTool('send_email', { input: { to: 'a@example.com' } });
      expect(raised.decision).toBe('require_approval');
      const requestId = raised.approvalRequest!.id;

      // Another process (a web handler) sees the pending request and answers it; a second answer is refused.
      const other = await open(kind, target!);
      const answering = createRedisApprovalStore({ client: other.client });
      expect((await answering.listPending(sessionId)).map((r) => r.id)).toEqual([requestId]);
      expect(await answering.resolve(requestId, { approved: true, by: 'alice', at: new Date().toISOString() })).toMatchObject({ ok: true, request: { status: 'approved' } });
      expect(await answering.resolve(requestId, { approved: false, by: 'mallory', at: new Date().toISOString() })).toMatchObject({ ok: false, problem: 'answered' });

      // The app restarted: a new client, a new session with the same id. The approval counts for this action only, once.
      const restarted = await open(kind, target!);
      const resumed = policy().session({ id: sessionId, approvals: createRedisApprovalStore({ client: restarted.client }) });
      const wrong = await resumed.checkTool('send_email', { input: { to: 'attacker@evil.test' }, approval: { requestId } });
      expect(wrong).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_action' } });
      const allowed = await resumed.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } });
      expect(allowed).toMatchObject({ decision: 'allow', approval: { via: 'request', by: 'alice', requestId } });
      const replay = await resumed.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } });
      expect(replay).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'already_used' } });
      expect((await answering.get(requestId))?.status).toBe('used');
    });
  });
}

describe.skipIf(redisUrl === null)('approval expiry on the server clock', () => {
  it('a request past its expiry on the server clock takes no answer, whatever the caller says the time is', async () => {
    const handle = await open('ioredis@6', { url: redisUrl! });
    const store = createRedisApprovalStore({ client: handle.client });
    const later = createRedisApprovalStore({ client: handle.client, clockOffsetMs: 120_000 });
    const now = Date.now();
    const request = {
      id: `apr_expiry_${now}`,
      sessionId: 's',
      fingerprint: 'f',
      action: { type: 'tool', name: 'send_email', cost: 0 },
      reason: 'r',
      rule: { section: 'default' },
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + 60_000).toISOString(),
    } as never;
    await store.create(request);
    await expect(store.create(request)).rejects.toThrow(/already exists/);
    expect((await store.get(`apr_expiry_${now}`))?.status).toBe('pending');
    expect((await later.get(`apr_expiry_${now}`))?.status).toBe('expired');
    expect(await later.resolve(`apr_expiry_${now}`, { approved: true, at: new Date().toISOString() })).toMatchObject({ ok: false, problem: 'expired' });
    expect(await later.listPending('s')).toEqual([]);
    expect(await store.resolve('apr_never', { approved: true, at: new Date().toISOString() })).toEqual({ ok: false, problem: 'unknown' });
    expect(await store.consume(`apr_expiry_${now}`, 'f')).toBe(false);
  });

  it('the index of pending requests holds about the pending ones, without a listing: answered ones leave it, expired ones are swept as new ones come', async () => {
    const handle = await open('ioredis@6', { url: redisUrl! });
    const prefix = `sweep${Date.now()}`;
    const store = createRedisApprovalStore({ client: handle.client, prefix });
    // Two minutes on, on the server clock: the first requests have expired.
    const later = createRedisApprovalStore({ client: handle.client, prefix, clockOffsetMs: 120_000 });
    const index = `${prefix}:approvals:pending`;
    const indexed = async () => Number(await (handle.client as unknown as { zcard(key: string): Promise<number> }).zcard(index));
    const now = Date.now();
    const request = (id: string, expiresInMs: number) =>
      ({
        id,
        sessionId: `s${id.length % 3}`,
        fingerprint: 'f',
        action: { type: 'tool', name: 'send_email', cost: 0 },
        reason: 'r',
        rule: { section: 'approval' },
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + expiresInMs).toISOString(),
      }) as never;
    // Answered by id (a link in a message), never listed: each answer takes its request out of the index.
    for (let i = 0; i < 200; i++) await store.create(request(`apr_first_${i}`, 60_000));
    for (let i = 0; i < 100; i++) expect((await store.resolve(`apr_first_${i}`, { approved: i % 2 === 0, at: new Date().toISOString() })).ok).toBe(true);
    expect(await indexed()).toBe(100);
    // The other 100 are never answered and expire; new requests sweep them out, and keep every one still pending.
    for (let i = 0; i < 300; i++) await later.create(request(`apr_next_${i}`, 600_000));
    expect(await indexed()).toBe(300);
    expect(await later.listPending(undefined)).toHaveLength(300);
    expect((await later.get('apr_first_150'))?.status).toBe('expired');
    expect((await later.resolve('apr_next_0', { approved: true, at: new Date().toISOString() })).ok).toBe(true);
    expect(await later.consume('apr_next_0', 'f')).toBe(true);
  });

  it('pending requests are listed oldest first, whatever their expiry (as the ApprovalStore contract says)', async () => {
    const handle = await open('node-redis@6', { url: redisUrl! });
    const store = createRedisApprovalStore({ client: handle.client });
    const now = Date.now();
    const sessionId = `order-${now}`;
    const request = (id: string, createdAgoMs: number, expiresInMs: number) =>
      ({
        id: `apr_${id}_${now}`,
        sessionId,
        fingerprint: 'f',
        action: { type: 'tool', name: 'send_email', cost: 0 },
        reason: 'r',
        rule: { section: 'approval' },
        createdAt: new Date(now - createdAgoMs).toISOString(),
        expiresAt: new Date(now + expiresInMs).toISOString(),
      }) as never;
    // Raised first with a long timeout, then a later one with a short timeout.
    await store.create(request('old', 2_000, 3_600_000));
    await store.create(request('new', 1_000, 60_000));
    expect((await store.listPending(sessionId)).map((r) => r.id)).toEqual([`apr_old_${now}`, `apr_new_${now}`]);
  });

  it('a process whose own clock is hours off counts the same window: limits and approval expiry read the server clock only', async () => {
    const handle = await open('ioredis@6', { url: redisUrl! });
    const limits = createRedisRateLimitStore({ client: handle.client });
    const approvals = createRedisApprovalStore({ client: handle.client });
    const key = `skew:${Date.now()}`;
    const now = Date.now();
    const request = { id: `apr_skew_${now}`, sessionId: 's', fingerprint: 'f', action: { type: 'tool', name: 'x', cost: 0 }, reason: 'r', rule: { section: 'approval' }, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + 60_000).toISOString() } as never;
    await approvals.create(request);
    expect((await limits.take(key, 1, 60_000)).ok).toBe(true);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      for (const skew of [3 * 3_600_000, -3 * 3_600_000]) {
        vi.setSystemTime(now + skew);
        const refused = await limits.take(key, 1, 60_000);
        expect(refused.ok).toBe(false);
        // The reset is on the server's clock, about a minute from the real now, whatever this process believes.
        if (!refused.ok) expect(Math.abs(refused.resetAtMs! - (now + 60_000))).toBeLessThan(10_000);
        expect((await approvals.get(`apr_skew_${now}`))?.status).toBe('pending');
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it('a windowed limit frees its slots when the window passes on the server clock', async () => {
    const handle = await open('node-redis@6', { url: redisUrl! });
    const key = `window:${Date.now()}`;
    const now = createRedisRateLimitStore({ client: handle.client });
    expect((await now.take(key, 1, 1000)).ok).toBe(true);
    expect(await now.take(key, 1, 1000)).toMatchObject({ ok: false });
    expect((await createRedisRateLimitStore({ client: handle.client, clockOffsetMs: 1500 }).take(key, 1, 1000)).ok).toBe(true);
    const unwindowed = `count:${Date.now()}`;
    expect((await now.take(unwindowed, 1, null)).ok).toBe(true);
    expect(await now.take(unwindowed, 1, null)).toEqual({ ok: false, resetAtMs: null });
  });
});
