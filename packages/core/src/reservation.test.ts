import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
import { MAX_NANOS } from './money.js';
import { AgentPolicyError } from './errors.js';
import { withdrawAllow } from './reservation.js';

describe('overruns', () => {
  it('a real cost above the estimate is reported per decision and in the totals', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const held = await session.reserve(0.01, { source: 'job' });
    await held.commit(0.025);
    const fine = await session.reserve(0.01, { source: 'job' });
    await fine.commit(0.004);
    const report = session.report();
    expect(report.decisions[0]?.settlement).toEqual({ status: 'committed', estimated: 0.01, actual: 0.025, overrun: 0.015 });
    expect(report.decisions[1]?.settlement).not.toHaveProperty('overrun');
    expect(report).toMatchObject({ overrun: 0.015, overruns: 1, spent: 0.029 });
  });

  it('once spending passes max_spend, every later call is denied, free ones included', async () => {
    const session = new AgentPolicy({ budget: 0.05, pricing: { m: { input: 1000, output: 1000, maxOutputTokens: 10 } } }).session();
    const call = await session.reserveModelCall({ model: 'm', inputTokens: 10 });
    expect(call.allowed).toBe(true);
    // The provider billed far more than the bound (a model that ignored its limit).
    await call.commit({ inputTokens: 10, outputTokens: 100 });
    expect(session.report().overrun).toBeGreaterThan(0);
    expect(session.spent).toBeGreaterThan(0.05);
    for (const decision of [
      await session.checkTool('free_tool'),
      await session.checkHttp('https://example.com/'),
      await session.checkCost(0, { source: 'x' }),
      (await session.reserveModelCall({ model: 'm', inputTokens: 1, maxOutputTokens: 1 })).decision,
    ]) {
      expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
      expect(decision.reason).toContain('every further call is denied');
    }
    expect(session.exhausted()).toContain('budget is used up');
  });

  it('spending up to max_spend exactly is not an overrun of the budget', async () => {
    const session = new AgentPolicy({ budget: 0.01 }).session();
    const held = await session.reserve(0.005, { source: 'job' });
    await held.commit(0.01);
    expect((await session.checkTool('free_tool')).decision).toBe('allow');
  });
});

describe('settling a reservation under attack', () => {
  it('commit twice, release after commit, commit after release: the first settlement stands, charged once', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const a = await session.reserve(1, { source: 'llm' });
    await a.commit(0.5);
    expect((await a.commit(3)).settlement).toMatchObject({ status: 'committed', actual: 0.5 });
    expect((await a.release()).settlement).toMatchObject({ status: 'committed', actual: 0.5 });
    expect((await a.fail({ status: 500 })).settlement).toMatchObject({ status: 'committed', actual: 0.5 });
    const b = await session.reserve(1, { source: 'llm' });
    await b.release();
    expect((await b.commit(2)).settlement).toMatchObject({ status: 'released', actual: 0 });
    expect(session.spent).toBe(0.5);
    expect(session.report().reserved).toBe(0);
  });

  it('concurrent settlements of one reservation charge it once', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const held = await session.reserve(1, { source: 'llm' });
    await Promise.all([held.commit(0.25), held.commit(0.75), held.release(), held.fail()]);
    expect(session.spent).toBe(0.25);
  });

  it.each([
    [Number.NaN, 1],
    [-1, 1],
    [Number.POSITIVE_INFINITY, 1],
    ['0.5', 1],
  ])('an unreadable actual cost %j charges the estimate, with a note', async (actual, charged) => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const held = await session.reserve(1, { source: 'llm' });
    const settled = await held.commit(actual as number);
    expect(session.spent).toBe(charged);
    expect(settled.action.metadata).toMatchObject({ settlementNote: expect.any(String) });
  });

  it('a real cost past what the ledger holds is charged as the most it holds, and the budget is over', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const held = await session.reserve(1, { source: 'llm' });
    const settled = await held.commit(1e308);
    expect(settled.settlement).toMatchObject({ status: 'committed', actual: MAX_NANOS / 1e9 });
    expect(settled.action.metadata).toMatchObject({ settlementNote: expect.stringContaining('too large') });
    expect((await session.checkTool('free')).decision).toBe('deny');
  });

  it('usage pricing past what the ledger holds is recorded, not dropped, by commit and by recordUsage', async () => {
    const huge = { inputTokens: Number.MAX_SAFE_INTEGER, outputTokens: 0 };
    const session = new AgentPolicy({ budget: 5 }).session();
    const call = await session.reserveModelCall({ model: 'gpt-4o', provider: 'openai', prompt: 'hi', maxOutputTokens: 10 });
    expect(call.allowed).toBe(true);
    expect((await call.commit(huge)).settlement).toMatchObject({ actual: MAX_NANOS / 1e9 });
    expect((await session.checkTool('free')).decision).toBe('deny');

    const recorded = new AgentPolicy({ budget: 5 }).session();
    const decision = await recorded.recordUsage({ model: 'gpt-4o', provider: 'openai', ...huge });
    expect(decision).toMatchObject({ decision: 'allow', action: { cost: MAX_NANOS / 1e9 } });
    expect(recorded.spent).toBe(MAX_NANOS / 1e9);
    expect((await recorded.checkTool('free')).decision).toBe('deny');
  });

  it.each([
    { model: 'gpt-4o', provider: 'openai', inputTokens: -5, outputTokens: 10 },
    { model: 'gpt-4o', provider: 'openai', inputTokens: Number.NaN },
    { model: 'gpt-4o', provider: 'openai', inputTokens: '100' },
    { model: 'no-such-model-anywhere', inputTokens: 10, outputTokens: 10 },
  ])('usage the session cannot price (%j) charges the estimate on commit, with a note', async (usage) => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const call = await session.reserveModelCall({ model: 'gpt-4o', provider: 'openai', prompt: 'hi', maxOutputTokens: 100 });
    const settled = await call.commit(usage as never);
    expect(session.spent).toBe(call.estimate);
    expect(settled.action.metadata).toMatchObject({ settlementNote: expect.stringContaining('the estimate was charged') });
  });

  it('usage reported under a cheaper model name is priced as the reserved model; a dearer or equal name is kept', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const cheaper = await session.reserveModelCall({ model: 'gpt-4o', provider: 'openai', prompt: 'hi', maxOutputTokens: 1000 });
    const settled = await cheaper.commit({ model: 'gpt-4o-mini', inputTokens: 1000, outputTokens: 500 });
    // gpt-4o: $2.50 / 1M input, $10 / 1M output (gpt-4o-mini would be $0.00045)
    expect(settled.settlement?.actual).toBe(0.0075);
    expect(settled.action.metadata).toMatchObject({ model: 'gpt-4o-mini', settlementNote: expect.stringContaining('priced as the reserved gpt-4o') });
    const dearer = await session.reserveModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: 'hi', maxOutputTokens: 1000 });
    expect((await dearer.commit({ model: 'gpt-4o', inputTokens: 1000, outputTokens: 500 })).settlement?.actual).toBe(0.0075);
    const dated = await session.reserveModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: 'hi', maxOutputTokens: 1000 });
    const same = await dated.commit({ model: 'gpt-4o-mini-2024-07-18', inputTokens: 1000, outputTokens: 500 });
    expect(same.settlement?.actual).toBe(0.00045);
    expect(same.action.metadata?.['settlementNote']).toBeUndefined();
  });

  it('1,000 concurrent reservations of $0.01 against $5.00 hold exactly 500, by reserve, reserveAction and reserveModelCall', async () => {
    const session = new AgentPolicy({ budget: 5, pricing: { 'flat-model': { input: 0, output: 1000 } } }).session();
    const reservations = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        i % 3 === 0
          ? session.reserve(0.01, { source: 'x' })
          : i % 3 === 1
            ? session.reserveAction({ type: 'tool', name: 'search', cost: 0.01 })
            : session.reserveModelCall({ model: 'flat-model', inputTokens: 0, maxOutputTokens: 10 }),
      ),
    );
    expect(reservations.filter((r) => r.allowed)).toHaveLength(500);
    await Promise.all(reservations.map((r, i) => (i % 2 ? r.commit() : r.commit(0.02))));
    const committed = reservations.filter((r, i) => r.allowed && i % 2 === 0).length * 0.02 + reservations.filter((r, i) => r.allowed && i % 2 === 1).length * 0.01;
    expect(session.spent).toBeCloseTo(committed, 9);
    expect(session.report().reserved).toBe(0);
  });

  it('a reservation never settled is charged at its estimate when the session ends (a stream whose usage never came)', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const call = await session.reserveModelCall({ model: 'gpt-4o', provider: 'openai', prompt: 'hi', maxOutputTokens: 100 });
    session.end();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(session.spent).toBe(call.estimate);
    expect(call.settled).toBe(true);
  });

  it('a reservation asked for before the session ends and handed over after it is charged at its estimate too', async () => {
    const policy = new AgentPolicy({ budget: 5 });
    const session = policy.session({ budgetKey: 'tenant' });
    // end() runs while each check is still settling (a server's request ending while the agent reserves).
    const asked = [session.reserve(0.5, { source: 'model:x' }), session.reserve(0, { source: 'model:x' }), session.reserveModelCall({ model: 'gpt-4o', prompt: 'hi', maxOutputTokens: 100 })];
    const final = session.end();
    const reservations = await Promise.all(asked);
    expect(reservations.map((r) => [r.allowed, r.settled])).toEqual([[true, true], [true, true], [true, true]]);
    const report = session.report();
    expect(report.reserved).toBe(0);
    expect(report.spent).toBeCloseTo(0.5 + (reservations[2] as { estimate: number }).estimate, 9);
    expect(report.decisions.map((d) => d.settlement?.status)).toEqual(['committed', 'committed', 'committed']);
    expect(session.pendingReservations).toBe(0);
    // The report end() returned was taken before they were handed over; the budget key holds what they were charged.
    expect(final.endedAt).not.toBeNull();
    expect(policy.session({ budgetKey: 'tenant' }).report().spent).toBe(report.spent);
    // A commit after that changes nothing: the reservation is settled.
    await reservations[0]?.commit(3);
    expect(session.report().spent).toBe(report.spent);
  });
});

describe('usage, failures and estimates that cannot be read', () => {
  const unreadable = (): object => {
    const boom = (): never => {
      throw new Error('trap');
    };
    return new Proxy({}, { get: boom, has: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom });
  };

  it('a commit with unreadable usage charges the estimate (spend is never lost) and says why', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const reservation = await session.reserve(1, { source: 'llm' });
    let settled: Promise<unknown> | undefined;
    expect(() => (settled = reservation.commit(unreadable() as never))).not.toThrow();
    expect(await settled).toMatchObject({ settlement: { status: 'committed', actual: 1 }, action: { metadata: { settlementNote: 'the usage cannot be read (trap); the estimate was charged' } } });
    expect(session.report()).toMatchObject({ spent: 1, reserved: 0 });
  });

  it('a fail with an unreadable failure charges the estimate (it may have been billed)', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const reservation = await session.reserve(1, { source: 'llm' });
    expect(() => reservation.fail(unreadable() as never)).not.toThrow();
    expect(session.report()).toMatchObject({ spent: 1, reserved: 0 });
    const second = await session.reserve(1, { source: 'llm' });
    await second.fail({ error: unreadable() });
    expect(session.report()).toMatchObject({ spent: 2, reserved: 0 });
  });

  it('a model call estimate or usage that cannot be read is a recorded deny, not a raw error', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const reservation = await session.reserveModelCall(unreadable() as never);
    expect(reservation.allowed).toBe(false);
    expect(reservation.decision).toMatchObject({ decision: 'deny', reason: 'the model call estimate cannot be read (trap); denied', rule: { section: 'input', check: 'usage' } });
    const usage = await session.recordUsage(unreadable() as never);
    expect(usage).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'usage' } });
    expect(usage.reason).toMatch(/^the usage cannot be read \(trap\)/);
    await expect(session.recordUsage({ model: 'gpt-4o', inputTokens: 1, outputTokens: 1 }, null as never)).resolves.toMatchObject({ decision: 'deny' });
    expect(session.report()).toMatchObject({ spent: 0, reserved: 0, decisionSummary: { total: 3, deny: 3 } });
  });

  it('reserveModelCalls refuses a list whose length costs nothing to set instead of copying billions of slots', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const sparse: unknown[] = [];
    sparse.length = 2 ** 32 - 1;
    await expect(session.reserveModelCalls(sparse as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'reserveModelCalls takes at most 65536 estimates at once, got 4294967295' });
    expect(session.report().decisionSummary.total).toBe(0);
  });
});

describe('reserving a group of model calls (reserveModelCalls)', () => {
  // $0.01 a call: 10 output tokens at $1,000 per million.
  const PRICING = { 'flat-model': { input: 0, output: 1000 } };
  const call = (batch: number) => ({ model: 'flat-model', inputTokens: 0, maxOutputTokens: 10, metadata: { batch } });

  it('holds one reservation per call, in order, when every one is allowed', async () => {
    const session = new AgentPolicy({ budget: 1, pricing: PRICING }).session();
    const group = await session.reserveModelCalls([call(1), call(2), call(3)]);
    expect(group.map((reservation) => [reservation.allowed, reservation.estimate, reservation.decision.action.metadata?.['batch']])).toEqual([
      [true, 0.01, 1],
      [true, 0.01, 2],
      [true, 0.01, 3],
    ]);
    expect(session.report().reserved).toBeCloseTo(0.03, 12);
    expect(await session.reserveModelCalls([])).toEqual([]);
  });

  it('all or none: the first call not allowed is returned alone and the ones reserved before it are released', async () => {
    const session = new AgentPolicy({ budget: 0.025, pricing: PRICING }).session();
    const group = await session.reserveModelCalls([call(1), call(2), call(3)]);
    expect(group).toHaveLength(1);
    expect(group[0]!.allowed).toBe(false);
    expect(group[0]!.decision).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(group[0]!.decision.action.metadata?.['batch']).toBe(3);
    expect(session.report().reserved).toBe(0);
    expect(session.spent).toBe(0);
    expect(session.pendingReservations).toBe(0);
    expect(session.report().decisions.filter((d) => d.decision === 'allow').map((d) => d.settlement?.status)).toEqual(['released', 'released']);

    // An unpriced call in a group denies the group the same way.
    const unpriced = await session.reserveModelCalls([call(1), { model: 'no-such-model', inputTokens: 1, maxOutputTokens: 1 }]);
    expect(unpriced).toHaveLength(1);
    expect(unpriced[0]!.decision.rule).toMatchObject({ section: 'pricing' });
    expect(session.report().reserved).toBe(0);
  });

  it('groups reserved at once under a nearly spent budget never each hold a part and all fail: exactly as many as fit get all of theirs', async () => {
    // Room for two groups of three and half a call: ten groups at once.
    const session = new AgentPolicy({ budget: 0.065, pricing: PRICING }).session();
    const groups = await Promise.all(Array.from({ length: 10 }, () => session.reserveModelCalls([call(1), call(2), call(3)])));
    const whole = groups.filter((group) => group.length === 3 && group.every((reservation) => reservation.allowed));
    expect(whole).toHaveLength(2);
    expect(groups.filter((group) => group.length !== 3).every((group) => group.length === 1 && !group[0]!.allowed)).toBe(true);
    expect(session.report().reserved).toBeCloseTo(0.06, 12);
  });

  it('what is not an array is refused with INVALID_ARGUMENT; a group keeps to the estimates it was given', async () => {
    const session = new AgentPolicy({ budget: 1, pricing: PRICING }).session();
    const error = await session.reserveModelCalls('flat-model' as never).catch((caught: unknown) => caught);
    expect(AgentPolicyError.isInstance(error) && error.code).toBe('INVALID_ARGUMENT');
    const estimates = [call(1)];
    const reserved = session.reserveModelCalls(estimates);
    estimates.push(call(2));
    expect(await reserved).toHaveLength(1);
  });
});

describe('withdrawAllow: an allow whose call will not run', () => {
  const policy = () => AgentPolicy.fromDict({ budget: { max_spend: 1 } });

  it('takes the allow and gives its money back; a repeat of the call is decided and charged anew', async () => {
    const session = policy().session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'search', cost: 0.4, idempotencyKey: 'call_1' });
    expect(session.report().reserved).toBeCloseTo(0.4);
    expect(await withdrawAllow(session, reservation.decision, reservation)).toBe(true);
    expect(reservation.settled).toBe(true);
    expect(session.report().reserved).toBe(0);
    expect(session.spent).toBe(0);
    // The allow is used: nothing can run on it, and the same call is a new decision.
    expect(await session.claim(reservation.decision)).toBe(false);
    const again = await session.checkTool('search', { cost: 0.4, idempotencyKey: 'call_1' });
    expect(again.id).not.toBe(reservation.decision.id);
  });

  it('leaves an allow that ran (or another run took) to the run that has it', async () => {
    const session = policy().session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'search', cost: 0.4 });
    expect(await session.claim(reservation.decision)).toBe(true);
    expect(await withdrawAllow(session, reservation.decision, reservation)).toBe(false);
    expect(reservation.settled).toBe(false);
    await reservation.commit();
    expect(session.spent).toBeCloseTo(0.4);
  });

  it('spends a free allow too, and a claim that throws is no withdrawal', async () => {
    const session = policy().session();
    const decision = await session.checkTool('search');
    expect(await withdrawAllow(session, decision)).toBe(true);
    expect(await session.claim(decision)).toBe(false);
    const throwing = { claim: () => { throw new AgentPolicyError('STORE_UNAVAILABLE', 'down'); } };
    expect(await withdrawAllow(throwing, decision)).toBe(false);
  });
});
