import { describe, expect, it } from 'vitest';
import { InMemoryBudgetStore } from './budget-store.js';
import { InMemoryCallKeyStore, parseDecision, type CallKeyBegin, type CallKeyStore } from './call-key-store.js';
import type { Decision } from './decision.js';
import { AgentPolicyError } from './errors.js';
import { AgentPolicy } from './policy.js';

const USD = 1_000_000_000;
const policy = () => AgentPolicy.fromDict({ budget: { max_spend: 100 }, tools: { allow: ['search', 'send_email'] }, approval: { require_for: [{ tool: 'send_email' }] } });

// Two sessions with one id, one budget store and one call-key store: what two processes of one session see.
function twoProcesses(callKeys: CallKeyStore = new InMemoryCallKeyStore()) {
  const store = new InMemoryBudgetStore();
  const p = policy();
  return {
    store,
    a: p.session({ id: 'run-1', budgetKey: 'tenant', store, callKeys }),
    b: p.session({ id: 'run-1', budgetKey: 'tenant', store, callKeys }),
    spent: () => store.snapshot({ key: 'tenant', period: 'session' }).spent / USD,
  };
}

describe('call keys in a shared call-key store', () => {
  it('a call retried elsewhere before it ran gets the first decision back, frozen and equal, and is charged once', async () => {
    const { a, b, spent } = twoProcesses();
    const first = await a.checkTool('search', { input: { q: 'x' }, cost: 2, idempotencyKey: 'call_1' });
    const retried = await b.checkTool('search', { input: { q: 'x' }, cost: 2, idempotencyKey: 'call_1' });
    expect(retried).toEqual(first);
    expect(Object.isFrozen(retried) && Object.isFrozen(retried.rule) && Object.isFrozen(retried.action)).toBe(true);
    expect(spent()).toBe(2);
    expect(await b.claim(retried)).toBe(true);
    // Once it ran (in B), A's copy of the same allow cannot run, and a repeat anywhere is a new action.
    expect(await a.claim(first)).toBe(false);
    const again = await a.checkTool('search', { input: { q: 'x' }, cost: 2, idempotencyKey: 'call_1' });
    expect(again.id).not.toBe(first.id);
    expect(spent()).toBe(4);
    expect(await a.claim(again)).toBe(true);
  });

  it('the processes of one session never record two decisions under one id', async () => {
    const { a, b } = twoProcesses();
    const fromA = [await a.checkTool('search'), await a.checkTool('search', { input: { q: 'y' }, idempotencyKey: 'k1' })];
    const fromB = [await b.checkTool('search'), await b.checkTool('search', { input: { q: 'z' }, idempotencyKey: 'k2' })];
    const ids = [...fromA, ...fromB].map((decision) => decision.id);
    expect(new Set(ids).size).toBe(4);
    for (const id of ids) expect(id).toMatch(/^run-1:[0-9a-f]{8}\.\d+$/);
    // Each takes its own unkeyed allow, never the other's.
    expect(a.consume(fromB[0] as Decision)).toBe(false);
    expect(a.consume(fromA[0] as Decision)).toBe(true);
  });

  it('another action under the same key is a new action', async () => {
    const { a, b, spent } = twoProcesses();
    await a.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
    const other = await b.checkTool('search', { input: { q: 'y' }, cost: 1, idempotencyKey: 'k' });
    expect(other.fingerprint).not.toBe(a.evaluate({ type: 'tool', name: 'search', input: { q: 'x' } }).fingerprint);
    expect(spent()).toBe(2);
  });

  it('consume refuses a keyed allow the store keeps (typed error), and still works for an unkeyed one', async () => {
    const { a } = twoProcesses();
    const keyed = await a.checkTool('search', { input: { q: 'x' }, idempotencyKey: 'k' });
    expect(() => a.consume(keyed)).toThrow(expect.objectContaining({ code: 'CLAIM_REQUIRED' }));
    const unkeyed = await a.checkTool('search', { input: { q: 'x' } });
    expect(a.consume(unkeyed)).toBe(true);
    expect(await a.claim(unkeyed)).toBe(false);
    expect(await a.claim(keyed)).toBe(true);
  });

  it('runTool runs a remembered allow once across both', async () => {
    const { a, b } = twoProcesses();
    const ran: string[] = [];
    const mine = await a.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
    const shared = await b.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
    const claims = await Promise.all([a.claim(mine), b.claim(shared), b.claim(shared), a.claim(mine)]);
    expect(claims.filter(Boolean)).toHaveLength(1);
    await b.runTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k2' }, () => ran.push('b'));
    expect(ran).toEqual(['b']);
  });

  it('a call being decided in one process is denied in the other after waitMs, not decided and charged twice', async () => {
    const callKeys = new InMemoryCallKeyStore({ waitMs: 30 });
    const store = new InMemoryBudgetStore();
    let answer!: (yes: boolean) => void;
    const slow = policy().session({ id: 'run-1', budgetKey: 't', store, callKeys, approver: () => new Promise<boolean>((resolve) => (answer = resolve)) });
    const other = policy().session({ id: 'run-1', budgetKey: 't', store, callKeys });
    const pending = slow.checkTool('send_email', { input: { to: 'a' }, cost: 3, idempotencyKey: 'mail' });
    await new Promise((resolve) => setTimeout(resolve, 10));
    const racing = await other.checkTool('send_email', { input: { to: 'a' }, cost: 3, idempotencyKey: 'mail' });
    expect(racing).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
    expect(racing.reason).toMatch(/being decided in another process/);
    answer(true);
    const decided = await pending;
    expect(decided.decision).toBe('allow');
    expect(store.snapshot({ key: 't', period: 'session' }).spent).toBe(3 * USD);
    // Now decided: the other process gets it back.
    expect(await other.checkTool('send_email', { input: { to: 'a' }, cost: 3, idempotencyKey: 'mail' })).toEqual(decided);
  });

  it('a check that finds the call being decided waits for that decision and gets it', async () => {
    const callKeys = new InMemoryCallKeyStore();
    const store = new InMemoryBudgetStore();
    const slow = policy().session({ id: 'run-1', budgetKey: 't', store, callKeys, approver: () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 50)) });
    const other = policy().session({ id: 'run-1', budgetKey: 't', store, callKeys });
    const first = slow.checkTool('send_email', { input: { to: 'a' }, cost: 3, idempotencyKey: 'mail' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const waited = await other.checkTool('send_email', { input: { to: 'a' }, cost: 3, idempotencyKey: 'mail' });
    expect(waited).toEqual(await first);
    expect(waited.decision).toBe('allow');
    expect(store.snapshot({ key: 't', period: 'session' }).spent).toBe(3 * USD);
    expect([await slow.claim(await first), await other.claim(waited)].filter(Boolean)).toHaveLength(1);
  });

  it('a marker left by a process that crashed while deciding expires, and the call is then decided', async () => {
    let now = 1_000_000;
    const callKeys = new InMemoryCallKeyStore({ now: () => now, waitMs: 0 });
    const call = { sessionId: 'run-1', key: 'k', fingerprint: 'f' };
    expect((callKeys.begin(call, { reuseApproval: true, lockMs: 30_000 }) as CallKeyBegin).status).toBe('new');
    expect((callKeys.begin(call, { reuseApproval: true, lockMs: 30_000 }) as CallKeyBegin).status).toBe('busy');
    now += 30_001;
    expect((callKeys.begin(call, { reuseApproval: true, lockMs: 30_000 }) as CallKeyBegin).status).toBe('new');
  });

  it('a store that fails denies the check (rule section error) and a claim rejects: nothing runs', async () => {
    const broken: CallKeyStore = {
      begin: () => Promise.reject(new AgentPolicyError('STORE_UNAVAILABLE', 'store down')),
      remember: () => Promise.reject(new Error('store down')),
      abandon: () => undefined,
      claim: () => Promise.reject(new AgentPolicyError('STORE_UNAVAILABLE', 'store down')),
    };
    const session = policy().session({ callKeys: broken });
    const decision = await session.checkTool('search', { cost: 1, idempotencyKey: 'k' });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error', message: 'store down' } });
    expect(session.spent).toBe(0);
    const ran: string[] = [];
    await expect(session.runTool('search', { cost: 1, idempotencyKey: 'k' }, () => ran.push('ran'))).rejects.toThrow();
    expect(ran).toEqual([]);
  });

  it('an allow that cannot be remembered gives its money back and never runs', async () => {
    const inner = new InMemoryCallKeyStore();
    const forgetful: CallKeyStore = { begin: (c, o) => inner.begin(c, o), remember: () => Promise.reject(new Error('write failed')), abandon: (c, l) => inner.abandon(c, l), claim: (c, t) => inner.claim(c, t) };
    const session = policy().session({ callKeys: forgetful });
    const decision = await session.checkTool('search', { cost: 1, idempotencyKey: 'k' });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
    expect(session.spent).toBe(0);
  });

  it('an allow that cannot be remembered gives its limit slots back too', async () => {
    const inner = new InMemoryCallKeyStore();
    let failNext = true;
    const flaky: CallKeyStore = {
      begin: (c, o) => inner.begin(c, o),
      remember: (c, l, d, lease) => {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error('write failed'));
        }
        return inner.remember(c, l, d, lease);
      },
      abandon: (c, l) => inner.abandon(c, l),
      claim: (c, t) => inner.claim(c, t),
    };
    const session = AgentPolicy.fromDict({ tools: { allow: ['search'] }, limits: [{ tool: 'search', max_calls: 1, per: 'session' }] }).session({ callKeys: flaky });
    const lost = await session.checkTool('search', { input: { q: 'x' }, idempotencyKey: 'k1' });
    expect(lost).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
    // The lost allow never runs, so it does not count against max_calls: the next call is allowed.
    const next = await session.checkTool('search', { input: { q: 'y' }, idempotencyKey: 'k2' });
    expect(next.decision).toBe('allow');
    const third = await session.checkTool('search', { input: { q: 'z' }, idempotencyKey: 'k3' });
    expect(third).toMatchObject({ decision: 'deny', rule: { section: 'limits' } });
  });

  it('a decision slower than its marker is refused and gives its money back; the process that took over decides once', async () => {
    let now = 1_000_000;
    const inner = new InMemoryCallKeyStore({ now: () => now, waitMs: 0 });
    const store = new InMemoryBudgetStore();
    let takeOver: Promise<Decision> | undefined;
    // Process A is stalled between deciding and remembering for longer than its marker lasts; meanwhile process B
    // finds the marker expired and decides the call itself.
    const slow: CallKeyStore = {
      begin: (c, o) => inner.begin(c, o),
      remember: async (c, l, d, lease) => {
        now += 30_001;
        takeOver = p.session({ id: 'run-1', budgetKey: 'tenant', store, callKeys: inner }).checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
        await takeOver;
        return inner.remember(c, l, d, lease);
      },
      abandon: (c, l) => inner.abandon(c, l),
      claim: (c, t) => inner.claim(c, t),
    };
    const p = policy();
    const a = p.session({ id: 'run-1', budgetKey: 'tenant', store, callKeys: slow });
    const refused = await a.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
    expect(refused).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
    expect(refused.reason).toContain('decided too slowly');
    const decidedByB = await (takeOver as Promise<Decision>);
    expect(decidedByB.decision).toBe('allow');
    // Charged once: A's charge was given back, B's stands.
    expect(store.snapshot({ key: 'tenant', period: 'session' }).spent / USD).toBe(1);
    expect(await a.claim(refused)).toBe(false);
  });

  it('one store shared by a session per request keeps only the decisions that can still be handed back', async () => {
    const callKeys = new InMemoryCallKeyStore();
    const store = new InMemoryBudgetStore();
    const p = policy();
    // 5,000 requests, each a session whose keyed call ran (claimed), as a server sharing one store makes.
    for (let i = 0; i < 5_000; i++) {
      const session = p.session({ id: `req-${i}`, store, callKeys });
      const decision = await session.checkTool('search', { input: { q: i }, cost: 0.01, idempotencyKey: 'call_1' });
      expect(await session.claim(decision)).toBe(true);
    }
    expect(callKeys.size).toBe(0);
    // Kept: a deny, a require_approval and an allow not yet run, each handed back to a repeat of its key.
    const session = p.session({ id: 'req-kept', store, callKeys });
    const denied = await session.checkTool('delete_all', { idempotencyKey: 'd' });
    const waiting = await session.checkTool('send_email', { input: { to: 'a' }, idempotencyKey: 'w' });
    const pending = await session.checkTool('search', { input: { q: 'kept' }, cost: 1, idempotencyKey: 'p' });
    expect(callKeys.size).toBe(3);
    const retry = p.session({ id: 'req-kept', store, callKeys });
    expect(await retry.checkTool('delete_all', { idempotencyKey: 'd' })).toEqual(denied);
    expect(await retry.checkTool('send_email', { input: { to: 'a' }, idempotencyKey: 'w' })).toEqual(waiting);
    const handedBack = await retry.checkTool('search', { input: { q: 'kept' }, cost: 1, idempotencyKey: 'p' });
    expect(handedBack).toEqual(pending);
    // Claimed once, in either: then forgotten, a second claim refused, a repeat decided (and charged) afresh.
    expect(await retry.claim(handedBack)).toBe(true);
    expect(await session.claim(pending)).toBe(false);
    expect(callKeys.size).toBe(2);
    const spent = store.snapshot({ key: 'req-kept', period: 'session' }).spent;
    const again = await session.checkTool('search', { input: { q: 'kept' }, cost: 1, idempotencyKey: 'p' });
    expect(again.id).not.toBe(pending.id);
    expect(store.snapshot({ key: 'req-kept', period: 'session' }).spent - spent).toBe(1 * USD);
  });

  it('a stored record that is not a decision is a typed error, not a guess', () => {
    expect(() => parseDecision('{"id":1}')).toThrow(AgentPolicyError);
    expect(() => parseDecision('nope')).toThrow(AgentPolicyError);
  });

  it('unkeyed checks never touch the store', async () => {
    let calls = 0;
    const inner = new InMemoryCallKeyStore();
    const counting: CallKeyStore = {
      begin: (c, o) => (calls++, inner.begin(c, o)),
      remember: (c, l, d, s) => (calls++, inner.remember(c, l, d, s)),
      abandon: (c, l) => inner.abandon(c, l),
      claim: (c, t) => (calls++, inner.claim(c, t)),
    };
    const session = policy().session({ callKeys: counting });
    const decision = await session.checkTool('search', { cost: 1 });
    expect(await session.claim(decision)).toBe(true);
    expect(calls).toBe(0);
  });
});

describe('without a shared call-key store (the default)', () => {
  it('claim is consume: true once per allow, false for a deny or another session’s decision', async () => {
    const session = policy().session();
    const first = await session.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
    expect(await session.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' })).toBe(first);
    expect(await session.claim(first)).toBe(true);
    expect(await session.claim(first)).toBe(false);
    expect(session.consume(first)).toBe(false);
    const rerun = await session.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'k' });
    expect(rerun.id).not.toBe(first.id);
    expect(session.spent).toBe(2);
    expect(await session.claim(await session.checkTool('rm'))).toBe(false);
    expect(await policy().session().claim(rerun)).toBe(false);
  });
});
