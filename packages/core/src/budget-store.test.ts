import { describe, expect, it } from 'vitest';
import { InMemoryBudgetStore, windowEnd, windowId, windowStart, type BudgetRef } from './budget-store.js';
import { PolicyValidationError } from './errors.js';
import { AgentPolicy } from './policy.js';

const USD = 1_000_000_000;
const day: BudgetRef = { key: 'tenant-a', period: 'day' };
const session: BudgetRef = { key: 's', period: 'session' };

describe('calendar windows (UTC)', () => {
  it.each([
    ['hour', '2026-11-30T14:59:59.999Z', '2026-11-30T14:00:00.000Z', '2026-11-30T15:00:00.000Z', 'hour:2026-11-30T14'],
    ['day', '2026-11-30T23:59:59.999Z', '2026-11-30T00:00:00.000Z', '2026-12-01T00:00:00.000Z', 'day:2026-11-30'],
    ['week', '2026-12-06T23:59:59.000Z', '2026-11-30T00:00:00.000Z', '2026-12-07T00:00:00.000Z', 'week:2026-11-30'],
    ['week', '2026-11-30T00:00:00.000Z', '2026-11-30T00:00:00.000Z', '2026-12-07T00:00:00.000Z', 'week:2026-11-30'],
    ['week', '1970-01-01T00:00:00.000Z', '1969-12-29T00:00:00.000Z', '1970-01-05T00:00:00.000Z', 'week:1969-12-29'],
    ['month', '2026-12-31T23:59:59.999Z', '2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z', 'month:2026-12'],
    ['month', '2028-02-29T12:00:00.000Z', '2028-02-01T00:00:00.000Z', '2028-03-01T00:00:00.000Z', 'month:2028-02'],
  ] as const)('%s of %s starts %s, ends %s', (period, now, start, end, id) => {
    const s = windowStart(period, Date.parse(now));
    expect(new Date(s).toISOString()).toBe(start);
    expect(new Date(windowEnd(period, s)).toISOString()).toBe(end);
    expect(windowId(period, s)).toBe(id);
  });
});

describe('InMemoryBudgetStore leases', () => {
  it('commit and release are idempotent by lease id: a retried commit charges once', () => {
    const store = new InMemoryBudgetStore();
    const grant = store.reserve(session, 3 * USD, 10 * USD, 60_000);
    expect(grant).toMatchObject({ ok: true, snapshot: { spent: 0, reserved: 3 * USD } });
    expect(store.commit(session, grant.lease!, 2 * USD)).toBe('settled');
    expect(store.commit(session, grant.lease!, 2 * USD)).toBe('unknown');
    expect(store.release(session, grant.lease!)).toBe('unknown');
    expect(store.snapshot(session)).toMatchObject({ spent: 2 * USD, reserved: 0 });
    expect(store.release(session, 'never-granted')).toBe('unknown');
  });

  it('refuses what does not fit, counting what is held', () => {
    const store = new InMemoryBudgetStore();
    expect(store.reserve(session, 6 * USD, 10 * USD, 60_000).ok).toBe(true);
    expect(store.reserve(session, 5 * USD, 10 * USD, 60_000)).toMatchObject({ ok: false, snapshot: { reserved: 6 * USD } });
    expect(store.charge(session, 5 * USD, 10 * USD).ok).toBe(false);
    expect(store.charge(session, 4 * USD, 10 * USD).ok).toBe(true);
    expect(store.charge(session, 4 * USD, null).ok).toBe(true); // spend that happened is never refused
    expect(store.snapshot(session)).toMatchObject({ spent: 8 * USD, reserved: 6 * USD });
  });

  it('an expired lease is charged at its estimate, counted, and a late settle does not charge it twice', () => {
    let now = Date.parse('2026-11-30T10:00:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    const a = store.reserve(session, 2 * USD, 10 * USD, 1000);
    const b = store.reserve(session, 1 * USD, 10 * USD, 1000);
    now += 999;
    expect(store.snapshot(session)).toMatchObject({ spent: 0, reserved: 3 * USD, expired: { count: 0, nanos: 0 } });
    now += 1;
    expect(store.snapshot(session)).toMatchObject({ spent: 3 * USD, reserved: 0, expired: { count: 2, nanos: 3 * USD } });
    // A late commit of more than the estimate charges the difference; a late release gives nothing back.
    expect(store.commit(session, a.lease!, 2.5 * USD)).toBe('late');
    expect(store.commit(session, a.lease!, 2.5 * USD)).toBe('unknown');
    expect(store.release(session, b.lease!)).toBe('late');
    expect(store.snapshot(session)).toMatchObject({ spent: 3.5 * USD, reserved: 0 });
  });

  it('a day rolls over: the new window starts at zero, the old one is still reported, open leases carry over', () => {
    let now = Date.parse('2026-11-30T23:59:59Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    expect(store.charge(day, 9 * USD, 10 * USD).ok).toBe(true);
    const open = store.reserve(day, 1 * USD, 10 * USD, 600_000);
    expect(store.charge(day, 1 * USD, 10 * USD).ok).toBe(false);
    now += 1000;
    expect(store.snapshot(day)).toMatchObject({ window: 'day:2026-12-01', spent: 0, reserved: 1 * USD, previous: { window: 'day:2026-11-30', spent: 9 * USD } });
    expect(store.charge(day, 9 * USD, 10 * USD).ok).toBe(true);
    expect(store.charge(day, 1 * USD, 10 * USD).ok).toBe(false);
    store.commit(day, open.lease!, 0.5 * USD);
    expect(store.snapshot(day)).toMatchObject({ spent: 9.5 * USD, reserved: 0 });
  });

  it('drops calendar budgets idle for a whole window as new keys come; keeps the ones still in use, and every session budget', () => {
    let now = Date.parse('2026-11-30T10:00:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    // A key per conversation with a daily budget, as a server giving each request its own budgetKey makes.
    for (let i = 0; i < 10_000; i++) expect(store.charge({ key: `conv-${i}`, period: 'day' }, 1 * USD, 10 * USD).ok).toBe(true);
    for (let i = 0; i < 1_000; i++) store.charge({ key: `session-${i}`, period: 'session' }, 1 * USD, 10 * USD);
    const open = store.reserve({ key: 'conv-0', period: 'day' }, 1 * USD, 10 * USD, 7 * 86_400_000);
    const crashed = store.reserve({ key: 'conv-1', period: 'day' }, 1 * USD, 10 * USD, 1000);
    store.charge({ key: 'tenant', period: 'month' }, 5 * USD, 10 * USD);
    // The next day, the day's budgets are still the report's `previous`: nothing goes.
    now = Date.parse('2026-12-01T10:00:00Z');
    for (let i = 0; i < 1_000; i++) store.charge({ key: `next-${i}`, period: 'day' }, 1 * USD, 10 * USD);
    expect(store.size).toBe(11_001 + 1_000);
    expect(store.snapshot({ key: 'conv-2', period: 'day' })).toMatchObject({ spent: 0, previous: { window: 'day:2026-11-30', spent: 1 * USD } });
    // The day after, new keys sweep the idle ones out (conv-1's lease lapsed at 10:00 yesterday: still waited for).
    now = Date.parse('2026-12-02T09:00:00Z');
    for (let i = 0; i < 10_000; i++) store.charge({ key: `later-${i}`, period: 'day' }, 1 * USD, 10 * USD);
    expect(store.size).toBeLessThan(12_001 + 10_000 - 9_000);
    // Kept: a budget with a lease open, one whose lapsed lease may still be committed late, the month, every session.
    expect(store.commit({ key: 'conv-0', period: 'day' }, open.lease!, 0.5 * USD)).toBe('settled');
    expect(store.commit({ key: 'conv-1', period: 'day' }, crashed.lease!, 3 * USD)).toBe('late');
    expect(store.snapshot({ key: 'tenant', period: 'month' })).toMatchObject({ spent: 0, previous: { spent: 5 * USD } });
    for (let i = 0; i < 1_000; i++) expect(store.snapshot({ key: `session-${i}`, period: 'session' }).spent).toBe(1 * USD);
    expect(store.charge({ key: 'session-0', period: 'session' }, 10 * USD, 10 * USD).ok).toBe(false);
    // A dropped key comes back to a fresh window, as it would have anyway.
    expect(store.snapshot({ key: 'conv-9999', period: 'day' })).toMatchObject({ window: 'day:2026-12-02', spent: 0, reserved: 0 });
    // Later still, every idle calendar budget has gone; the session budgets and the month stay.
    now = Date.parse('2026-12-04T10:00:00Z');
    const before = store.size;
    for (let i = 0; i < 20_000; i++) store.charge({ key: `last-${i}`, period: 'day' }, 1 * USD, 10 * USD);
    expect(store.size).toBeLessThan(before + 20_000 - 10_000);
    expect(store.snapshot({ key: 'session-999', period: 'session' }).spent).toBe(1 * USD);
  });

  it('keeps a calendar budget whose expired lease may still be committed late for a day, then lets it go', () => {
    let now = Date.parse('2026-11-30T10:00:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    const crashed = store.reserve({ key: 'conv', period: 'hour' }, 1 * USD, 10 * USD, 1000);
    now += 2000;
    expect(store.snapshot({ key: 'conv', period: 'hour' })).toMatchObject({ spent: 1 * USD, expired: { count: 1 } });
    // Hours later (its window long past), new keys come: the lapsed lease keeps it.
    now += 5 * 3_600_000;
    for (let i = 0; i < 1_000; i++) store.charge({ key: `k-${i}`, period: 'hour' }, 1, null);
    expect(store.commit({ key: 'conv', period: 'hour' }, crashed.lease!, 2 * USD)).toBe('late');
    const other = store.reserve({ key: 'conv2', period: 'hour' }, 1 * USD, 10 * USD, 1000);
    now += 2000;
    store.snapshot({ key: 'conv2', period: 'hour' });
    // A day after it lapsed, it goes with the rest; a commit after that is unknown (as on Redis).
    now += 86_400_000;
    for (let i = 0; i < 2_000; i++) store.charge({ key: `j-${i}`, period: 'hour' }, 1, null);
    expect(store.size).toBe(2_000);
    expect(store.commit({ key: 'conv2', period: 'hour' }, other.lease!, 2 * USD)).toBe('unknown');
  });
});

describe('budget.period and budgetKey through the session', () => {
  it('validates period', () => {
    expect(() => AgentPolicy.fromDict({ budget: { max_spend: 1, period: 'fortnight' } })).toThrow(PolicyValidationError);
    try {
      AgentPolicy.fromDict({ budget: { max_spend: 1, period: 'fortnight' } });
    } catch (error) {
      expect((error as PolicyValidationError).issues).toEqual([{ path: 'budget.period', message: expect.stringContaining('session, hour, day, week, month') }]);
    }
    expect(AgentPolicy.fromDict({ budget: { max_spend: 1, period: 'month' } }).normalized.budget?.period).toBe('month');
    expect(new AgentPolicy({ budget: 1, period: 'week' }).toDocument().budget).toEqual({ max_spend: 1, period: 'week' });
    expect(AgentPolicy.fromYamlString('budget:\n  max_spend: 1\n').normalized.budget?.period).toBe('session');
  });

  it('sessions with one budgetKey share one budget; each keeps its own id and audit trail', async () => {
    const policy = new AgentPolicy({ budget: 1 });
    const a = policy.session({ id: 'run-a', budgetKey: 'tenant-1' });
    const b = policy.session({ id: 'run-b', budgetKey: 'tenant-1' });
    const other = policy.session({ id: 'run-c', budgetKey: 'tenant-2' });
    const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).checkCost(0.1, { source: 'x' })));
    expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(10);
    expect(a.report()).toMatchObject({ sessionId: 'run-a', budgetKey: 'tenant-1', spent: 1, remaining: 0 });
    expect(a.report().decisions.every((d) => d.sessionId === 'run-a')).toBe(true);
    expect(a.report().decisionSummary.total + b.report().decisionSummary.total).toBe(30);
    expect((await other.checkCost(0.5, { source: 'x' })).decision).toBe('allow');
  });

  it('a daily budget allows again after midnight UTC, and the report names both windows', async () => {
    let now = Date.parse('2026-11-30T23:59:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    const session = new AgentPolicy({ budget: 1, period: 'day' }).session({ store, budgetKey: 'tenant' });
    expect((await session.checkCost(1, { source: 'x' })).decision).toBe('allow');
    const denied = await session.checkCost(0.1, { source: 'x' });
    expect(denied).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(denied.reason).toContain('for day:2026-11-30');
    now += 60_000;
    expect((await session.checkCost(0.25, { source: 'x' })).decision).toBe('allow');
    expect(session.report()).toMatchObject({ period: 'day', window: 'day:2026-12-01', spent: 0.25, previousWindow: { window: 'day:2026-11-30', spent: 1 } });
  });

  it('a reservation never settled expires and is charged at its estimate, reported as such', async () => {
    let now = Date.parse('2026-11-30T10:00:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    const policy = new AgentPolicy({ budget: 1 });
    const crashed = policy.session({ store, budgetKey: 'shared', leaseTtlMs: 5000 });
    const held = await crashed.reserve(0.4, { source: 'llm' });
    expect(held.allowed).toBe(true);
    const survivor = policy.session({ store, budgetKey: 'shared' });
    expect((await survivor.checkCost(0.7, { source: 'x' })).decision).toBe('deny');
    now += 5000;
    expect(await survivor.reconcile()).toMatchObject({ spent: 0.4, reserved: 0, expiredLeases: { count: 1, amount: 0.4 } });
    expect((await survivor.checkCost(0.6, { source: 'x' })).decision).toBe('allow');
    // The crashed run's own late commit does not charge the lease a second time.
    await held.commit(0.3);
    expect(survivor.report()).toMatchObject({ spent: 1, reserved: 0 });
  });

  it('a reservation that held nothing ($0 estimate) still charges its real cost when committed', async () => {
    const session = new AgentPolicy({}).session({ budgetKey: 'free-estimate' });
    const reservation = await session.reserve(0, { source: 'llm' });
    await reservation.commit(0.25);
    expect(session.report()).toMatchObject({ spent: 0.25, reserved: 0 });
  });

  it('rejects a bad budgetKey or leaseTtlMs', () => {
    const policy = new AgentPolicy({ budget: 1 });
    expect(() => policy.session({ budgetKey: '' })).toThrow(/budgetKey/);
    expect(() => policy.session({ leaseTtlMs: 0 })).toThrow(/leaseTtlMs/);
  });
});

describe('a budget its store decides (shared or per period)', () => {
  it.each([
    ['a period budget', { budget: { max_spend: 1, period: 'day' } }, {}],
    ['a shared store', { budget: { max_spend: 1 } }, { store: Object.assign(new InMemoryBudgetStore(), { shared: true }) }],
  ])('%s: a call denied for costing more than the whole budget does not deny later cheaper calls of the tool', async (_name, document, options) => {
    const policy = AgentPolicy.fromDict(document);
    const first = policy.session({ budgetKey: 'team', ...options });
    expect(await first.checkTool('pay', { cost: 5 })).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(await first.checkTool('pay', { cost: 0.1 })).toMatchObject({ decision: 'allow' });
    expect(await first.checkTool('pay', { cost: 5, input: { to: 'x' } })).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(await first.checkTool('pay', { cost: 0.1, input: { to: 'x' } })).toMatchObject({ decision: 'allow' });
    // Another session of the same policy (the verdicts the policy keeps are shared by its sessions).
    const second = policy.session({ budgetKey: 'other', ...options });
    expect(await second.checkTool('pay', { cost: 0.2, input: { to: 'y' } })).toMatchObject({ decision: 'allow' });
    expect(first.spent + second.spent).toBeCloseTo(0.4, 9);
  });
});

describe('free calls after an overrun on a budget its store decides', () => {
  it('a daily budget: once spend passed the limit, free calls are denied until the next window starts', async () => {
    let now = Date.parse('2026-11-30T23:00:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    const session = new AgentPolicy({ budget: 1, period: 'day' }).session({ store, budgetKey: 'tenant' });
    expect((await session.checkTool('search')).decision).toBe('allow');
    const call = await session.reserve(0.5, { source: 'llm' });
    await call.commit(1.5);
    const free = await session.checkTool('search');
    expect(free).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(free.reason).toMatch(/spending has passed the budget/);
    expect((await session.checkTool('search', { cost: 0.01 })).decision).toBe('deny');
    now = Date.parse('2026-12-01T00:00:01Z');
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect((await session.checkTool('search', { cost: 0.5 })).decision).toBe('allow');
    expect(session.report()).toMatchObject({ window: 'day:2026-12-01', spent: 0.5, previousWindow: { window: 'day:2026-11-30', spent: 1.5 } });
  });

  it('usage recorded past the limit of a shared budget denies free calls in that session; another process learns it at its first refused paid check', async () => {
    const store = Object.assign(new InMemoryBudgetStore(), { shared: true });
    const policy = new AgentPolicy({ budget: 1 });
    const spender = policy.session({ store, budgetKey: 'team' });
    const other = policy.session({ store, budgetKey: 'team' });
    await spender.recordUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: 1_000_000, outputTokens: 0 });
    expect(spender.spent).toBeGreaterThan(1);
    expect(await spender.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(await spender.checkHttp('https://example.com/')).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    // Another process has not seen the overrun yet: its free calls go ahead until its first paid check is refused.
    expect((await other.checkTool('search')).decision).toBe('allow');
    expect((await other.checkTool('search', { cost: 0.01 })).decision).toBe('deny');
    expect(await other.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
  });

  it('costs no store round trip for a free call before an overrun has been seen, and one per check after', async () => {
    let now = Date.parse('2026-11-30T10:00:00Z');
    const store = new InMemoryBudgetStore({ now: () => now });
    let reads = 0;
    const reconcile = store.reconcile.bind(store);
    store.reconcile = (budget) => (reads++, reconcile(budget));
    // This store's own synchronous snapshot is not a round trip.
    store.snapshot = (budget) => reconcile(budget);
    const session = new AgentPolicy({ budget: 1, period: 'hour' }).session({ store, budgetKey: 'tenant' });
    for (let i = 0; i < 5; i++) expect((await session.checkTool('search')).decision).toBe('allow');
    const before = reads;
    await session.recordUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: 1_000_000, outputTokens: 0 });
    reads = 0;
    expect((await session.checkTool('search')).decision).toBe('deny');
    expect(reads).toBe(1);
    now += 3_600_000;
    expect((await session.checkTool('search')).decision).toBe('allow');
    reads = 0;
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect(reads).toBe(0);
    expect(before).toBe(0);
  });

  it('a store that cannot say whether the budget is still over denies (rule section error)', async () => {
    const store = Object.assign(new InMemoryBudgetStore(), { shared: true });
    const session = new AgentPolicy({ budget: 1 }).session({ store, budgetKey: 'team' });
    await session.recordUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: 1_000_000, outputTokens: 0 });
    Object.assign(store, { reconcile: () => Promise.reject(new Error('store down')) });
    expect(await session.checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
  });
});
