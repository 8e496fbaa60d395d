// State in Redis that this package did not write (another application on the same key prefix, an edit by hand,
// another version, a partial restore) fails closed: the check is a recorded deny whose reason names the key and the
// field, the garbage stays where it is for an operator to see, and once it is fixed or deleted checks work again.
// Never read as zero or as absent, never a crash, never an unhandled rejection.
import { AgentPolicy, AgentPolicyError, PolicySource, type Decision } from '@agentpolicy/core';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it, vi } from 'vitest';
import { createRedisApprovalStore, createRedisBudgetStore, createRedisCallKeyStore, createRedisHaltStore, createRedisRateLimitStore } from '../src/index.js';
import { clientsClosedAfterAll, type ClientKind } from './clients.js';

const redisUrl = inject('redisUrl');
const open = clientsClosedAfterAll();
const USD = 1_000_000_000;
const KINDS: readonly ClientKind[] = ['ioredis@6', 'node-redis@6'];

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

let counter = 0;
const unique = (name: string) => `${name}-${Date.now()}-${++counter}`;

/** A plain ioredis connection for writing garbage where the stores keep their state. */
async function raw(): Promise<Redis> {
  return (await open('ioredis@6', { url: redisUrl! })).client as unknown as Redis;
}

/** The decision was a recorded deny of a failed check, naming what cannot be read. */
function expectUnreadable(decision: Decision, ...named: string[]): void {
  expect(decision.decision).toBe('deny');
  expect(decision.rule.section).toBe('error');
  expect(decision.reason).toMatch(/^the check failed, so the action is denied: /);
  for (const text of named) expect(decision.reason).toContain(text);
  expect(decision.reason).toMatch(/did not write/);
}

/** The warning a commit the store refused emits (the session's rule for a commit that cannot be recorded). */
async function warningOf(commit: () => Promise<unknown>): Promise<string> {
  const warned = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  try {
    await commit();
    return String(warned.mock.calls[0]?.[0]);
  } finally {
    warned.mockRestore();
  }
}

const budgetKeyOf = (period: string, key: string) => `agentpolicy:{budget:${period}:${key}}`;

describe.skipIf(redisUrl === null)('a budget whose state in Redis cannot be read', () => {
  const GARBAGE = ['abc', '', '1e400', '-5', '12.5', 'inf', 'nan', '99999999999999999999'];

  for (const kind of KINDS) {
    it.each(GARBAGE)(`${kind}: spent s = %j denies every check, keeps the garbage, and works again once fixed`, async (garbage) => {
      const r = await raw();
      const { client } = await open(kind, { url: redisUrl! });
      const budgetKey = unique('spent');
      const session = new AgentPolicy({ budget: 10 }).session({ store: createRedisBudgetStore({ client }), budgetKey });
      expect((await session.checkCost(9, { source: 'x' })).decision).toBe('allow');
      const key = budgetKeyOf('session', budgetKey);
      expect(await r.hget(key, 's')).toBe(String(9 * USD));

      await r.hset(key, 's', garbage);
      const ran: string[] = [];
      const decision = await session.checkTool('search', { cost: 5 });
      expectUnreadable(decision, `field s of Redis key ${key}`, 'a whole number of nano-dollars');
      await expect(session.guardTool(async () => ran.push('ran'), { name: 'search', cost: 5 })()).rejects.toMatchObject({ code: 'ACTION_DENIED' });
      expect((await session.reserve(5, { source: 'llm' })).allowed).toBe(false);
      expect(ran).toEqual([]);
      // Not reset behind the operator's back: the value is still there to see.
      expect(await r.hget(key, 's')).toBe(garbage);
      // Reports read what was last seen (never zero from garbage); the store's own read is a typed error.
      expect(session.report().spent).toBe(9);
      const reconciled = await session.reconcile().then(() => null, (error: unknown) => error);
      expect(AgentPolicyError.isInstance(reconciled) && reconciled.code === 'STORE_UNAVAILABLE').toBe(true);
      expect((reconciled as Error).message).toContain(`field s of Redis key ${key}`);

      // Fixed by hand: the spend is back, and the budget denies as a budget.
      await r.hset(key, 's', String(9 * USD));
      expect((await session.checkCost(5, { source: 'x' })).rule.section).toBe('budget');
      expect((await session.checkCost(1, { source: 'x' })).decision).toBe('allow');
      // Deleted: starts again from zero.
      await r.del(key);
      expect((await session.checkCost(5, { source: 'x' })).decision).toBe('allow');
    });
  }

  it.each([
    ['w', 'yesterday'],
    ['w', '123'],
    ['r', '-1'],
    ['r', 'abc'],
    ['pw', 'never'],
    ['ps', '1.5'],
    ['xc', 'x'],
    ['xn', '-3'],
    ['nx', 'soon'],
  ])('field %s = %j of a session budget denies, naming the field', async (field, garbage) => {
    const r = await raw();
    const budgetKey = unique(`field-${field}`);
    const session = new AgentPolicy({ budget: 10 }).session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    expect((await session.checkCost(9, { source: 'x' })).decision).toBe('allow');
    const key = budgetKeyOf('session', budgetKey);
    await r.hset(key, field, garbage);
    expectUnreadable(await session.checkCost(0.5, { source: 'x' }), `field ${field} of Redis key ${key}`);
    expect(await r.hget(key, field)).toBe(garbage);
    await r.hdel(key, field);
    expect((await session.checkCost(0.5, { source: 'x' })).decision).toBe('allow');
  });

  it('a day budget whose window start is not the start of a day denies (it is not taken for an old window and reset)', async () => {
    const r = await raw();
    const budgetKey = unique('day');
    const session = AgentPolicy.fromDict({ budget: { max_spend: 10, period: 'day' } }).session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    expect((await session.checkCost(9, { source: 'x' })).decision).toBe('allow');
    const key = budgetKeyOf('day', budgetKey);
    const start = await r.hget(key, 'w');
    await r.hset(key, 'w', String(Number(start) - 12_345));
    expectUnreadable(await session.checkCost(5, { source: 'x' }), `field w of Redis key ${key}`, 'the start of a day window');
    expect(await r.hget(key, 's')).toBe(String(9 * USD));
    await r.hset(key, 'w', start!);
    expect((await session.checkCost(5, { source: 'x' })).rule.section).toBe('budget');
  });

  it('a lease amount that cannot be read is not settled as zero when the lease expires, nor when it is committed', async () => {
    const r = await raw();
    const budgetKey = unique('lease');
    const policy = new AgentPolicy({ budget: 10 });
    const session = policy.session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    const reservation = await session.reserve(6, { source: 'llm' });
    expect(reservation.allowed).toBe(true);
    const key = budgetKeyOf('session', budgetKey);
    const [lease] = await r.hkeys(`${key}:amounts`);
    await r.hset(`${key}:amounts`, lease!, 'lots');

    // Another process whose clock is past the lease's expiry: the sweep meets the garbage before it settles anything.
    const later = policy.session({ store: createRedisBudgetStore({ client: r as never, clockOffsetMs: 3_600_000 }), budgetKey });
    expectUnreadable(await later.checkCost(6, { source: 'x' }), `field ${lease!} of Redis key ${key}:amounts`, 'a lease amount');
    expect(await r.hget(`${key}:amounts`, lease!)).toBe('lots');
    expect(await r.zscore(`${key}:leases`, lease!)).not.toBeNull();

    // The commit fails too (the session warns, as for any commit the store refused): the lease is neither settled
    // as nothing nor forgotten.
    expect(await warningOf(() => reservation.commit(6))).toContain(`field ${lease!} of Redis key ${key}:amounts`);
    expect(await r.hget(`${key}:amounts`, lease!)).toBe('lots');
    expect(await r.hget(key, 's')).toBe('0');

    // Fixed: the expired lease is charged at its amount, and the budget denies as a budget.
    await r.hset(`${key}:amounts`, lease!, String(6 * USD));
    expect((await later.checkCost(6, { source: 'x' })).rule.section).toBe('budget');
    expect(await r.hget(key, 's')).toBe(String(6 * USD));
  });

  it('a commit that meets garbage after settling expired leases writes those back before it fails: nothing half done', async () => {
    const r = await raw();
    const budgetKey = unique('settled');
    const policy = new AgentPolicy({ budget: 10 });
    const now = policy.session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    // A process two hours ahead, holding a lease for ten hours: its commit is the first to see the other lease expired.
    const ahead = policy.session({ store: createRedisBudgetStore({ client: r as never, clockOffsetMs: 7_200_000 }), budgetKey, leaseTtlMs: 36_000_000 });
    const held = await ahead.reserve(3, { source: 'llm' });
    const expiring = await now.reserve(2, { source: 'llm' });
    expect(expiring.allowed && held.allowed).toBe(true);
    const key = budgetKeyOf('session', budgetKey);
    const leases = await r.hgetall(`${key}:amounts`);
    const heldLease = Object.keys(leases).find((id) => leases[id] === String(3 * USD))!;
    const expiredLease = Object.keys(leases).find((id) => leases[id] === String(2 * USD))!;
    await r.hset(`${key}:amounts`, heldLease, 'three');

    expect(await warningOf(() => held.commit(3))).toContain(`field ${heldLease} of Redis key ${key}:amounts`);
    // The expired lease was charged at its estimate, and that is recorded in the state, not lost with the failure.
    expect(await r.hmget(key, 's', 'r', 'xc', 'xn')).toEqual([String(2 * USD), String(3 * USD), '1', String(2 * USD)]);
    expect(await r.hget(`${key}:expired`, expiredLease)).toBe(String(2 * USD));
    expect(await r.zscore(`${key}:leases`, expiredLease)).toBeNull();
    expect(await r.hget(`${key}:amounts`, heldLease)).toBe('three');
  });

  it('an expired-lease entry that cannot be read fails a late commit instead of charging nothing', async () => {
    const r = await raw();
    const budgetKey = unique('lapsed');
    const session = new AgentPolicy({ budget: 10 }).session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    const reservation = await session.reserve(2, { source: 'llm' });
    const key = budgetKeyOf('session', budgetKey);
    const [lease] = await r.hkeys(`${key}:amounts`);
    // As if it had expired and been settled at an amount that was then overwritten.
    await r.hdel(`${key}:amounts`, lease!);
    await r.hset(`${key}:expired`, lease!, 'two dollars');
    expect(await warningOf(() => reservation.commit(5))).toContain(`field ${lease!} of Redis key ${key}:expired`);
    expect(await r.hget(`${key}:expired`, lease!)).toBe('two dollars');
  });

  it('a budget key of the wrong type denies, naming the key and its type', async () => {
    const r = await raw();
    const budgetKey = unique('type');
    const session = new AgentPolicy({ budget: 10 }).session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    const key = budgetKeyOf('session', budgetKey);
    await r.set(key, '9');
    expectUnreadable(await session.checkCost(1, { source: 'x' }), `Redis key ${key} holds a string, not a hash`);
    expect(await r.get(key)).toBe('9');
    await r.del(key);
    await r.set(`${key}:leases`, 'x');
    const reservation = await session.reserve(1, { source: 'llm' });
    expect(reservation.allowed).toBe(false);
    expect(reservation.decision.reason).toContain(`Redis key ${key}:leases holds a string, not a sorted set`);
    // Nothing was held by the refused reserve.
    expect(await r.hgetall(`${key}:amounts`)).toEqual({});
    expect(await r.hget(key, 'r')).not.toBe(String(USD));
    await r.del(`${key}:leases`);
    expect((await session.reserve(1, { source: 'llm' })).allowed).toBe(true);
  });

  it('a fresh budget (no key at all) works exactly as before', async () => {
    const r = await raw();
    const budgetKey = unique('fresh');
    const session = AgentPolicy.fromDict({ budget: { max_spend: 10, period: 'day' } }).session({ store: createRedisBudgetStore({ client: r as never }), budgetKey });
    expect((await session.checkCost(4, { source: 'x' })).decision).toBe('allow');
    const reservation = await session.reserve(3, { source: 'llm' });
    expect(reservation.allowed).toBe(true);
    await reservation.commit(2);
    expect((await session.checkCost(5, { source: 'x' })).rule.section).toBe('budget');
    expect((await session.reconcile()).spent).toBe(6);
    expect(await r.hget(budgetKeyOf('day', budgetKey), 's')).toBe(String(6 * USD));
  });
});

describe.skipIf(redisUrl === null)('rate-limit slots whose key cannot be read', () => {
  it.each(KINDS)('%s: a limit key of the wrong type denies the call, naming the key, until it is deleted', async (kind) => {
    const r = await raw();
    const { client } = await open(kind, { url: redisUrl! });
    const budgetKey = unique('limit');
    const session = AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 2, per: '1m', scope: 'budget' }] }).session({
      store: createRedisBudgetStore({ client }),
      limitStore: createRedisRateLimitStore({ client }),
      budgetKey,
    });
    expect((await session.checkTool('search', {})).decision).toBe('allow');
    const [key] = (await r.keys(`agentpolicy:{limit:*${budgetKey}*}`)).filter((k) => !k.endsWith(':given'));
    await r.del(key!);
    await r.set(key!, '0');
    const ran: string[] = [];
    expectUnreadable(await session.checkTool('search', {}), `Redis key ${key!} holds a string, not a sorted set`);
    await expect(session.guardTool(async () => ran.push('ran'), { name: 'search' })()).rejects.toMatchObject({ code: 'ACTION_DENIED' });
    expect(ran).toEqual([]);
    expect(await r.get(key!)).toBe('0');

    await r.del(key!);
    await r.hset(`${key!}:given`, 'x', '1');
    expectUnreadable(await session.checkTool('search', {}), `Redis key ${key!}:given holds a hash, not a set`);
    await r.del(`${key!}:given`);
    expect((await session.checkTool('search', {})).decision).toBe('allow');
  });
});

describe.skipIf(redisUrl === null)('call keys whose record cannot be read', () => {
  const policy = new AgentPolicy({ budget: 100 });
  const action = (key: string) => ({ input: { to: 'ops@example.com' }, cost: 1, idempotencyKey: key });

  async function decided(sessionId: string, key: string) {
    const r = await raw();
    const sessionOf = () => policy.session({ id: sessionId, store: createRedisBudgetStore({ client: r as never }), callKeys: createRedisCallKeyStore({ client: r as never, waitMs: 0 }), budgetKey: sessionId });
    const first = sessionOf();
    const decision = await first.checkTool('send_email', action(key));
    expect(decision.decision).toBe('allow');
    const [record] = (await r.keys(`agentpolicy:{callkeys:${sessionId}}:*`)).filter((k) => !k.endsWith(':lock'));
    return { r, first, decision, record: record!, sessionOf };
  }

  it.each([
    ['d', '{"decision":"allow"'],
    ['d', '{"decision":"allow"}'],
    ['u', 'no'],
    ['k', 'permit'],
  ])('field %s = %j: the retry in another process is denied, naming the key, and the tool does not run', async (field, garbage) => {
    const sessionId = unique('calls');
    const { r, record, sessionOf } = await decided(sessionId, 'k1');
    await r.hset(record, field, garbage);
    const retry = sessionOf();
    const ran: string[] = [];
    const decision = await retry.checkTool('send_email', action('k1'));
    expectUnreadable(decision, `field ${field} of Redis key ${record}`);
    await expect(retry.runTool('send_email', action('k1'), async () => ran.push('ran'))).rejects.toMatchObject({ code: 'ACTION_DENIED' });
    expect(ran).toEqual([]);
    expect(await r.hget(record, field)).toBe(garbage);
    await r.del(record);
    expect((await sessionOf().checkTool('send_email', action('k1'))).decision).toBe('allow');
  });

  it('a claim of an allow whose used flag cannot be read is refused with a typed error', async () => {
    const sessionId = unique('claim');
    const { r, first, decision, record } = await decided(sessionId, 'k2');
    await r.hset(record, 'u', 'no');
    await expect(Promise.resolve().then(() => first.claim(decision))).rejects.toSatisfy((error: unknown) => AgentPolicyError.isInstance(error) && error.message.includes(`field u of Redis key ${record}`));
    expect(await r.hget(record, 'u')).toBe('no');
  });

  it('a "being decided" marker of the wrong type denies, naming the key', async () => {
    const sessionId = unique('lock');
    const { r, record, sessionOf } = await decided(sessionId, 'k3');
    await r.del(record);
    await r.hset(`${record}:lock`, 'x', '1');
    expectUnreadable(await sessionOf().checkTool('send_email', action('k3')), `Redis key ${record}:lock holds a hash, not a string`);
    await r.del(`${record}:lock`);
    expect((await sessionOf().checkTool('send_email', action('k3'))).decision).toBe('allow');
  });
});

describe.skipIf(redisUrl === null)('approval requests whose hash cannot be read', () => {
  const policy = () => AgentPolicy.fromDict({ tools: { allow: ['send_email'] }, approval: { require_for: [{ tool: 'send_email' }] } });
  const input = { to: 'a@example.com' };
  const at = () => new Date().toISOString();

  async function raised(kind: ClientKind) {
    const r = await raw();
    const { client } = await open(kind, { url: redisUrl! });
    const store = createRedisApprovalStore({ client });
    const sessionId = unique('approvals');
    const session = policy().session({ id: sessionId, approvals: store });
    const decision = await session.checkTool('send_email', { input });
    expect(decision.decision).toBe('require_approval');
    const requestId = decision.approvalRequest!.id;
    return { r, store, session, requestId, key: `agentpolicy:{approval:${requestId}}` };
  }

  it.each(KINDS)('%s: an unknown status is neither answered nor used', async (kind) => {
    const { r, store, session, requestId, key } = await raised(kind);
    await r.hset(key, 'status', 'APPROVED');
    await expect(store.resolve(requestId, { approved: true, by: 'alice', at: at() })).rejects.toSatisfy((error: unknown) => AgentPolicyError.isInstance(error) && error.message.includes(`field status of Redis key ${key}`));
    await expect(store.get(requestId)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const ran: string[] = [];
    const decision = await session.checkTool('send_email', { input, approval: { requestId } });
    expect(decision.decision).not.toBe('allow');
    await expect(session.runTool('send_email', { input, approval: { requestId } }, async () => ran.push('ran'))).rejects.toBeInstanceOf(AgentPolicyError);
    expect(ran).toEqual([]);
    expect(await r.hget(key, 'status')).toBe('APPROVED');
    // Fixed by hand: answered once, used once.
    await r.hset(key, 'status', 'pending');
    expect(await store.resolve(requestId, { approved: true, by: 'alice', at: at() })).toMatchObject({ ok: true });
    expect((await session.checkTool('send_email', { input, approval: { requestId } })).decision).toBe('allow');
  });

  it('an approved request whose expiry cannot be read is not used', async () => {
    const { r, store, session, requestId, key } = await raised('ioredis@6');
    expect(await store.resolve(requestId, { approved: true, by: 'alice', at: at() })).toMatchObject({ ok: true });
    await r.hset(key, 'expires', 'tomorrow');
    const decision = await session.checkTool('send_email', { input, approval: { requestId } });
    expect(decision.decision).not.toBe('allow');
    expect(decision.reason).toContain(`field expires of Redis key ${key}`);
    expect(await r.hget(key, 'status')).toBe('approved');
  });

  it.each([
    ['request', '{"id":'],
    ['request', '[]'],
    ['resolution', 'yes'],
  ])('field %s = %j: reading the request is a typed error naming the field', async (field, garbage) => {
    const { r, store, requestId, key } = await raised('node-redis@6');
    if (field === 'resolution') expect(await store.resolve(requestId, { approved: false, by: 'bob', at: at() })).toMatchObject({ ok: true });
    await r.hset(key, field, garbage);
    await expect(store.get(requestId)).rejects.toSatisfy((error: unknown) => AgentPolicyError.isInstance(error) && error.message.includes(`field ${field} of Redis key ${key}`));
  });

  it('a request key of the wrong type is a typed error naming it', async () => {
    const { r, store, requestId, key } = await raised('ioredis@6');
    await r.del(key);
    await r.set(key, 'approved');
    await expect(store.resolve(requestId, { approved: true, by: 'alice', at: at() })).rejects.toSatisfy((error: unknown) => AgentPolicyError.isInstance(error) && error.message.includes(`Redis key ${key} holds a string, not a hash`));
  });
});

describe.skipIf(redisUrl === null)('halts whose hash cannot be read', () => {
  it.each(KINDS)('%s: a halt key of the wrong type halts every check, naming the key; an unreadable entry halts too', async (kind) => {
    const r = await raw();
    const { client } = await open(kind, { url: redisUrl! });
    const name = unique('fleet');
    const key = `agentpolicy:{halt:${name}}`;
    const source = new PolicySource(new AgentPolicy({ budget: 10 }), { halts: createRedisHaltStore({ client, name }) });
    const session = source.session({ id: 'agent' });
    expect((await session.checkTool('search', {})).decision).toBe('allow');

    await r.set(key, 'halted');
    const ran: string[] = [];
    const decision = await session.checkTool('search', {});
    expect(decision.decision).toBe('deny');
    expect(decision.reason).toContain(`Redis key ${key} holds a string, not a hash`);
    await expect(session.guardTool(async () => ran.push('ran'), { name: 'search' })()).rejects.toMatchObject({ code: 'ACTION_DENIED' });
    expect(ran).toEqual([]);
    expect(await r.get(key)).toBe('halted');

    await r.del(key);
    await r.hset(key, '*', 'not json');
    expect((await session.checkTool('search', {})).rule.section).toBe('halt');
    await r.del(key);
    expect((await session.checkTool('search', {})).decision).toBe('allow');
  });
});
