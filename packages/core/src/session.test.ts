import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import type { Decision } from './decision.js';
import type { ApproverRequest as ApprovalRequest } from './approvals.js';
import type { Reservation } from './reservation.js';
import { ApprovalRequiredError, PolicyDeniedError } from './errors.js';
import { InMemoryBudgetStore, type BudgetStore } from './budget-store.js';
import { AgentPolicy } from './policy.js';
import type { PolicySession } from './session.js';

const seed = () =>
  AgentPolicy.fromDict({
    budget: { max_spend: 5.0 },
    tools: { allow: ['search_docs', 'read_file', 'send_email'], block: ['delete_prod_db'] },
    network: { allow: ['docs.python.org'], block: ['twitter.com'] },
    approval: { require_for: [{ tool: 'send_email' }, { cost_gt: 1.0 }] },
  });

describe('precedence: block → allow-list miss → budget → approval → allow', () => {
  it('block wins over everything, and approved: true does not lift it', async () => {
    const session = seed().session();
    const decision = await session.checkTool('delete_prod_db', { approved: true });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block', entry: 'delete_prod_db' }, approved: false });
    expect(decision.reason).toContain('blocked');
  });

  it('block catches case variants and Unicode look-alikes', async () => {
    const session = new AgentPolicy({ blockedTools: ['delete_prod_db', 'mcp__shell__*'] }).session();
    for (const name of ['DELETE_PROD_DB', 'Delete_Prod_Db', 'ｄｅｌｅｔｅ_ｐｒｏｄ_ｄｂ', 'dеlete_prod_db', 'MCP__SHELL__exec']) {
      expect((await session.checkTool(name)).decision, name).toBe('deny');
    }
    expect((await session.checkTool('delete_test_db')).decision).toBe('allow');
  });

  it('a tool name with invisible, bidi, control or space characters is denied outright', async () => {
    const session = new AgentPolicy({}).session();
    for (const name of ['delete\u200bprod', 'send\u202eliame', 'a b', 'tab\t', 'nul\u0000']) {
      const decision = await session.checkTool(name);
      expect(decision.decision).toBe('deny');
      expect(decision.rule).toEqual({ section: 'input', check: 'tool_name' });
    }
  });

  it('an allow-list miss denies, and allow entries match exactly', async () => {
    const session = seed().session();
    expect(await session.checkTool('write_file')).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'allow', entry: null } });
    expect((await session.checkTool('READ_FILE')).decision).toBe('deny');
    expect((await session.checkTool('read_file')).decision).toBe('allow');
  });

  it('budget denies before approval, and approved: true does not lift it', async () => {
    const session = seed().session();
    const decision = await session.checkTool('send_email', { cost: 6, approved: true });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'budget', maxSpend: 5, spent: 0, requested: 6 } });
  });

  it('approval rule → require_approval; approved: true skips only that step', async () => {
    const session = seed().session();
    const pending = await session.checkTool('send_email');
    expect(pending).toMatchObject({ decision: 'require_approval', rule: { section: 'approval', index: 0, rule: { tool: 'send_email' } }, approved: false });
    const retried = await session.checkTool('send_email', { approved: true });
    expect(retried).toMatchObject({ decision: 'allow', approved: true, approval: { via: 'caller' }, rule: { section: 'approval', index: 0 } });
  });

  it('cost_gt escalates any action over the amount; the first matching rule is reported', async () => {
    const session = seed().session();
    expect((await session.checkTool('read_file', { cost: 1 })).decision).toBe('allow');
    expect(await session.checkTool('read_file', { cost: 1.01 })).toMatchObject({ decision: 'require_approval', rule: { index: 1 } });
    expect(await session.checkTool('send_email', { cost: 2 })).toMatchObject({ decision: 'require_approval', rule: { index: 0 } });
    expect(await session.checkCost(1.5, { source: 'llm' })).toMatchObject({ decision: 'require_approval', rule: { index: 1 } });
  });

  it('every key of a rule must match', async () => {
    const policy = new AgentPolicy({ approvalRules: [{ tool: 'pay_*', costGt: 10 }, { domain: 'bank.example', action: 'http' }, { action: 'cost' }] });
    const session = policy.session();
    expect((await session.checkTool('pay_invoice', { cost: 5 })).decision).toBe('allow');
    expect((await session.checkTool('pay_invoice', { cost: 11 })).decision).toBe('require_approval');
    expect((await session.checkTool('refund', { cost: 11 })).decision).toBe('allow');
    expect((await session.checkHttp('https://api.bank.example/transfer')).decision).toBe('require_approval');
    expect((await session.checkHttp('https://bank.example.org/')).decision).toBe('allow');
    expect((await session.checkCost(0.01, { source: 'llm' })).decision).toBe('require_approval');
  });

  it('network: block subtree, allow exact, non-http schemes denied', async () => {
    const session = seed().session();
    expect(await session.checkHttp('https://mobile.twitter.com/x')).toMatchObject({ decision: 'deny', rule: { section: 'network', list: 'block', entry: 'twitter.com' }, action: { domain: 'mobile.twitter.com' } });
    expect(await session.checkHttp('https://DOCS.python.org./3/')).toMatchObject({ decision: 'allow', action: { domain: 'docs.python.org' } });
    expect(await session.checkHttp('https://python.org/')).toMatchObject({ decision: 'deny', rule: { section: 'network', list: 'allow' } });
    expect(await session.checkHttp('file:///etc/passwd')).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'url' } });
    expect(await session.checkHttp('not a url')).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'url' } });
  });
});

describe('money is exact', () => {
  it('0.10 + 0.20 fits a $0.30 budget', async () => {
    const session = new AgentPolicy({ budget: '0.30' }).session();
    expect((await session.checkCost(0.1, { source: 'a' })).decision).toBe('allow');
    expect((await session.checkCost(0.2, { source: 'b' })).decision).toBe('allow');
    expect(session.report()).toMatchObject({ spent: 0.3, remaining: 0 });
    expect((await session.checkCost(0.000000001, { source: 'c' })).decision).toBe('deny');
  });

  it('50 × $0.10 reaches $5.00 exactly and the 51st is denied', async () => {
    const session = seed().session();
    for (let i = 0; i < 50; i++) expect((await session.checkTool('read_file', { cost: 0.1 })).decision).toBe('allow');
    expect(session.spent).toBe(5);
    expect(session.remaining).toBe(0);
    expect(await session.checkTool('read_file', { cost: 0.1 })).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect((await session.checkTool('read_file')).decision).toBe('allow');
  });

  it('a token-priced $0.000005 is charged exactly; too small a cost is rounded up', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    await session.checkCost(0.000005, { source: 'tokens' });
    expect(session.spent).toBe(0.000005);
    await session.checkCost(1e-15, { source: 'dust' });
    expect(session.spent).toBe(0.000005001);
  });

  it('spending exactly up to the budget is allowed', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    expect((await session.checkCost(5, { source: 'all' })).decision).toBe('allow');
  });

  it.each([
    ['negative', -1],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['string', '0.1'],
    ['null', null],
    ['boolean', true],
    ['bigint', 1n],
    ['object', { valueOf: () => 0.1 }],
  ])('a %s cost is denied with a reason and charges nothing', async (_label, cost) => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const decision = await session.checkTool('x', { cost: cost as number });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'cost' } });
    expect(decision.reason).toContain('cost must be a finite non-negative number');
    expect(session.spent).toBe(0);
  });

  it('reads a cost once', async () => {
    const session = new AgentPolicy({ budget: 5 }).session();
    const read = vi.fn(() => 1);
    const options = Object.defineProperty({}, 'cost', { get: read, enumerable: true });
    await session.checkTool('x', options);
    expect(read).toHaveBeenCalledTimes(1);
  });
});

describe('concurrency', () => {
  it('1,000 concurrent checks of $0.01 against $5.00 allow exactly 500', async () => {
    const session = seed().session();
    const decisions = await Promise.all(Array.from({ length: 1000 }, () => session.checkTool('read_file', { cost: 0.01 })));
    expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(500);
    expect(decisions.filter((d) => d.decision === 'deny')).toHaveLength(500);
    expect(session.report()).toMatchObject({ spent: 5, reserved: 0, remaining: 0 });
  });

  it.each([false, true])('an asynchronous store behind the same interface stays exact (shared: %s)', async (shared) => {
    const inner = new InMemoryBudgetStore();
    const tick = () => new Promise((resolve) => setImmediate(resolve));
    const store: BudgetStore = {
      shared,
      reserve: async (budget, amount, limit, ttlMs) => {
        await tick();
        return inner.reserve(budget, amount, limit, ttlMs);
      },
      commit: async (budget, lease, actual) => {
        await tick();
        return inner.commit(budget, lease, actual);
      },
      release: async (budget, lease) => {
        await tick();
        return inner.release(budget, lease);
      },
      charge: async (budget, amount, limit) => {
        await tick();
        return inner.charge(budget, amount, limit);
      },
      refund: (budget, amount) => inner.refund(budget, amount),
      reconcile: (budget) => inner.reconcile(budget),
      snapshot: (budget) => inner.snapshot(budget),
    };
    const session = seed().session({ store, id: 'shared' });
    const decisions = await Promise.all(Array.from({ length: 1000 }, () => session.checkTool('read_file', { cost: 0.01 })));
    expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(500);
    expect(decisions.filter((d) => d.decision === 'deny' && d.rule.section === 'budget')).toHaveLength(500);
    expect(inner.snapshot({ key: 'shared', period: 'session' })).toMatchObject({ spent: 5_000_000_000, reserved: 0 });
    const reservations = await Promise.all(Array.from({ length: 10 }, () => session.reserve(0.01, { source: 'llm' })));
    expect(reservations.every((r) => !r.allowed)).toBe(true);
  });

  it('decideTool hands back the decision itself while the stores answer at once, a promise when one does not, a recorded deny when one fails', async () => {
    const session = seed().session();
    const now = session.decideTool('read_file', { input: { path: 'a' } });
    expect(now).not.toBeInstanceOf(Promise);
    expect(now).toMatchObject({ decision: 'allow', action: { name: 'read_file', input: { path: 'a' } } });
    expect(session.decideTool('delete_prod_db')).toMatchObject({ decision: 'deny' });
    expect(session.report().decisions.map((d) => d.decision)).toEqual(['allow', 'deny']);
    const inner = new InMemoryBudgetStore();
    const slow: BudgetStore = {
      reserve: async (...args) => inner.reserve(...args),
      charge: async (...args) => inner.charge(...args),
      commit: (...args) => inner.commit(...args),
      release: (...args) => inner.release(...args),
      refund: (...args) => inner.refund(...args),
      reconcile: (budget) => inner.reconcile(budget),
      snapshot: (budget) => inner.snapshot(budget),
    };
    const paid = seed().session({ store: slow }).decideTool('read_file', { cost: 0.01 });
    expect(paid).toBeInstanceOf(Promise);
    expect(await paid).toMatchObject({ decision: 'allow', action: { cost: 0.01 } });
    const failing: BudgetStore = { ...slow, charge: async () => Promise.reject(new Error('store down')) };
    const denied = await seed().session({ store: failing }).decideTool('read_file', { cost: 0.01 });
    expect(denied).toMatchObject({ decision: 'deny', rule: { section: 'error', message: 'store down' } });
  });

  it('a decision the application keeps does not keep its session (audit trail, stores) alive', async () => {
    setFlagsFromString('--expose_gc');
    const collect = runInNewContext('gc') as () => void;
    const policy = AgentPolicy.fromDict({ limits: [{ tool: '*', max_calls: 10, per: '1m' }] });
    let session: PolicySession | undefined = policy.session();
    const kept = [await session.checkTool('search', { input: { q: 1 } }), await session.checkTool('search'), await session.checkTool('other', { idempotencyKey: 'k' })];
    const gone = new WeakRef(session);
    session = undefined;
    for (let i = 0; i < 5 && gone.deref() !== undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      collect();
    }
    expect(gone.deref()).toBeUndefined();
    // The kept decisions still work out their fingerprint.
    expect(kept[0]?.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('consume takes an allow once, whether given the decision itself or a copy of it, and never another session\'s', async () => {
    const session = seed().session({ id: 's1' });
    const twin = seed().session({ id: 's1' });
    const decision = await session.checkTool('read_file', { input: { path: 'a' } });
    // Same session id, but this session never made the decision: not its allow to use.
    expect(twin.consume(decision)).toBe(false);
    expect(twin.consume(JSON.parse(JSON.stringify(decision)) as Decision)).toBe(false);
    const copy = JSON.parse(JSON.stringify(decision)) as Decision;
    expect(session.consume(copy)).toBe(true);
    expect(session.consume(decision)).toBe(false);
    expect(session.consume({ ...decision, id: 's1:999' })).toBe(false);
  });

  it('a budget store that fails denies and records the denial', async () => {
    const broken: BudgetStore = {
      reserve: async () => {
        throw new Error('redis: connection refused');
      },
      charge: async () => {
        throw new Error('redis: connection refused');
      },
      commit: () => 'unknown',
      release: () => 'unknown',
      refund: () => undefined,
      reconcile: () => ({ spent: 0, reserved: 0, window: 'session', previous: null, expired: { count: 0, nanos: 0 } }),
      snapshot: () => ({ spent: 0, reserved: 0, window: 'session', previous: null, expired: { count: 0, nanos: 0 } }),
    };
    const session = seed().session({ store: broken });
    const decision = await session.checkTool('read_file', { cost: 0.01 });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error', message: 'redis: connection refused' } });
    expect(session.report().decisions).toHaveLength(1);
    const reservation = await session.reserve(0.01, { source: 'llm' });
    expect(reservation.allowed).toBe(false);
    const guarded = vi.fn(async () => 'ran');
    await expect(session.guardTool(guarded, { name: 'read_file', cost: 0.01 })()).rejects.toBeInstanceOf(PolicyDeniedError);
    expect(guarded).not.toHaveBeenCalled();
  });

  it('random concurrent sequences never overspend (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2_000 }),
        fc.array(
          fc.record({
            kind: fc.constantFrom('check', 'reserve-commit', 'reserve-release', 'guard-ok', 'guard-throw'),
            cents: fc.integer({ min: 0, max: 300 }),
            actualCents: fc.integer({ min: 0, max: 300 }),
            delay: fc.integer({ min: 0, max: 3 }),
          }),
          { maxLength: 60 },
        ),
        async (budgetCents, ops) => {
          const session = new AgentPolicy({ budget: budgetCents / 100 }).session();
          const tick = (n: number) => new Promise((resolve) => setTimeout(resolve, n));
          let expectedSpent = 0;
          await Promise.all(
            ops.map(async (op) => {
              await tick(op.delay);
              if (op.kind === 'check') {
                const d = await session.checkCost(op.cents / 100, { source: 'x' });
                if (d.decision === 'allow') expectedSpent += op.cents;
              } else if (op.kind.startsWith('reserve')) {
                const r = await session.reserve(op.cents / 100, { source: 'y' });
                await tick(op.delay);
                if (!r.allowed) return;
                if (op.kind === 'reserve-commit') {
                  const actual = Math.min(op.actualCents, op.cents);
                  await r.commit(actual / 100);
                  expectedSpent += actual;
                } else await r.release();
              } else {
                let ran = false;
                const fn = session.guardTool(async () => {
                  ran = true;
                  await tick(op.delay);
                  // A 4xx-like error: the tool refused, nothing was billed (released); any other error is charged.
                  if (op.kind === 'guard-throw') throw Object.assign(new Error('boom'), op.actualCents % 2 === 0 ? { status: 400 } : {});
                }, { name: 'g', cost: op.cents / 100 });
                try {
                  await fn();
                  expectedSpent += op.cents;
                } catch {
                  if (ran && op.actualCents % 2 === 1) expectedSpent += op.cents;
                }
              }
              const { spent, reserved } = session.report();
              if (Math.round((spent + reserved) * 100) > budgetCents) throw new Error('overspent');
            }),
          );
          const report = session.report();
          return Math.round(report.spent * 100) === expectedSpent && report.reserved === 0 && Math.round(report.spent * 100) <= budgetCents;
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('reservations', () => {
  it('reserve → commit the actual cost', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const r = await session.reserve(0.5, { source: 'llm' });
    expect(r.allowed).toBe(true);
    expect(session.report()).toMatchObject({ spent: 0, reserved: 0.5, remaining: 0.5 });
    expect((await session.checkCost(0.6, { source: 'other' })).decision).toBe('deny');
    await r.commit(0.2);
    expect(session.report()).toMatchObject({ spent: 0.2, reserved: 0, remaining: 0.8 });
    expect(r.decision.settlement).toEqual({ status: 'committed', estimated: 0.5, actual: 0.2 });
    await r.commit(0.4);
    expect(session.spent).toBe(0.2);
  });

  it('release charges nothing; commit() without a value charges the estimate', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const a = await session.reserve(0.3, { source: 'a' });
    await a.release();
    const b = await session.reserve(0.3, { source: 'b' });
    await b.commit();
    expect(session.report()).toMatchObject({ spent: 0.3, reserved: 0 });
    expect(session.report().costSummary.allowed.cost).toBe(0.3);
    expect(session.report().costSummary.attempted.cost).toBe(0.6);
  });

  it('fail(): a 4xx or a policy error releases; a 5xx, an abort or an unknown error charges the estimate', async () => {
    const session = new AgentPolicy({ budget: 10, blockedTools: ['x'] }).session();
    const denied = await session.checkTool('x');
    const cases: Array<[Parameters<Reservation['fail']>[0], 'released' | 'committed']> = [
      [{ status: 429 }, 'released'],
      [{ error: { statusCode: 400 } }, 'released'],
      [{ error: { status: 404 } }, 'released'],
      [{ error: new PolicyDeniedError(denied) }, 'released'],
      [{ status: 503 }, 'committed'],
      [{ error: new Error('socket hang up') }, 'committed'],
      [undefined, 'committed'],
    ];
    for (const [failure, status] of cases) {
      const r = await session.reserve(0.5, { source: 'llm' });
      const decision = await r.fail(failure);
      expect(decision.settlement?.status, JSON.stringify(failure)).toBe(status);
    }
    expect(session.report()).toMatchObject({ spent: 1.5, reserved: 0 });
  });

  it('an unreadable actual cost charges the estimate (spend is never lost)', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const r = await session.reserve(0.3, { source: 'a' });
    await r.commit(Number.NaN);
    expect(session.spent).toBe(0.3);
  });

  it('an actual cost above the estimate is recorded in full', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const r = await session.reserve(0.3, { source: 'a' });
    await r.commit(1.5);
    expect(session.report()).toMatchObject({ spent: 1.5, remaining: 0 });
  });

  it('a keyed repeat returns the same reservation (one settlement, one pending entry)', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const a = await session.reserveAction({ type: 'tool', name: 't', cost: 0.4, idempotencyKey: 'k' });
    const b = await session.reserveAction({ type: 'tool', name: 't', cost: 0.4, idempotencyKey: 'k' });
    expect(b).toBe(a);
    expect(session.pendingReservations).toBe(1);
    await a.commit(0.1);
    expect(session.pendingReservations).toBe(0);
    expect(session.report()).toMatchObject({ spent: 0.1, reserved: 0 });
  });

  it('end() charges reservations still open at their estimate', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    await session.reserve(0.25, { source: 'abandoned-stream' });
    expect(session.pendingReservations).toBe(1);
    const report = session.end();
    expect(report).toMatchObject({ spent: 0.25, reserved: 0 });
    expect(session.pendingReservations).toBe(0);
  });

  it('reserveModelCall prices the worst case and commits real usage', async () => {
    const policy = new AgentPolicy({ budget: 1, pricing: { 'my-model': { input: 1, output: 2 } } });
    const session = policy.session();
    const r = await session.reserveModelCall({ model: 'my-model', inputTokens: 1000, maxOutputTokens: 500 });
    expect(r.estimate).toBe(0.002);
    await r.commit({ inputTokens: 1000, outputTokens: 100 });
    expect(session.spent).toBe(0.0012);
    expect(r.decision.action).toMatchObject({ type: 'cost', source: 'model:my-model', metadata: { inputTokens: 1000, outputTokens: 100 } });
  });

  it('an unpriced model under a budget is denied before the call, saying how to add a price', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const r = await session.reserveModelCall({ model: 'acme-llm-9', inputTokens: 10, maxOutputTokens: 10 });
    expect(r.allowed).toBe(false);
    expect(r.decision).toMatchObject({ decision: 'deny', rule: { section: 'pricing', model: 'acme-llm-9' } });
    expect(r.decision.reason).toContain('pricing:');
    const free = new AgentPolicy({}).session();
    expect((await free.reserveModelCall({ model: 'acme-llm-9', inputTokens: 10 })).allowed).toBe(true);
  });
});

describe('token costs', () => {
  it('prices catalog models, dated names and provider prefixes', async () => {
    const session = new AgentPolicy({ budget: 10 }).session();
    await session.recordUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: 1_000_000, outputTokens: 1_000_000 });
    expect(session.spent).toBe(12.5);
    const s2 = new AgentPolicy({}).session();
    await s2.recordUsage({ model: 'gpt-4o-2024-08-06', inputTokens: 1_000_000, outputTokens: 0 });
    await s2.recordUsage({ model: 'openai/gpt-4o', inputTokens: 1_000_000, outputTokens: 0 });
    expect(s2.spent).toBe(5);
  });

  it('cached input tokens are cheaper', async () => {
    const session = new AgentPolicy({}).session();
    await session.recordUsage({ model: 'gpt-4o', provider: 'openai', inputTokens: 1_000_000, cachedInputTokens: 500_000, outputTokens: 0 });
    expect(session.spent).toBe(1.875);
  });

  it('policy overrides win, resolve dated and prefixed names, and are exact', async () => {
    const policy = AgentPolicy.fromDict({ pricing: { 'gpt-4o': { input: '0.000005', output: 1, cached_input: 0 } } });
    const session = policy.session();
    const d = await session.recordUsage({ model: 'openai/gpt-4o-2024-08-06', inputTokens: 1_000_000, outputTokens: 0 });
    expect(d.action.cost).toBe(0.000005);
    // 3 × $0.000005/M + 1 × $1/M = $0.000001000015, rounded up to the next nano-dollar.
    await session.recordUsage({ model: 'gpt-4o', inputTokens: 3, outputTokens: 1 });
    expect(session.spent).toBe(0.000006001);
  });

  it('usage that puts the session over budget is still recorded; later checks are denied', async () => {
    const session = new AgentPolicy({ budget: 0.01, pricing: { m: { input: 10, output: 10 } } }).session();
    const d = await session.recordUsage({ model: 'm', inputTokens: 2000, outputTokens: 0 });
    expect(d.reason).toContain('budget is now exceeded');
    expect(session.report()).toMatchObject({ spent: 0.02, remaining: 0 });
    expect((await session.checkCost(0.001, { source: 'x' })).decision).toBe('deny');
  });

  it('a model the catalog bills by the minute is unpriced for tokens, not free', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const d = await session.recordUsage({ model: 'whisper-1', provider: 'openai', inputTokens: 1000, outputTokens: 10 });
    expect(d).toMatchObject({ decision: 'deny', rule: { section: 'pricing', model: 'whisper-1' } });
  });

  it('invalid usage is denied, not crashed on', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const d = await session.recordUsage({ model: 'gpt-4o', inputTokens: -1, outputTokens: 0 });
    expect(d).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'usage' } });
    const e = await session.recordUsage(null as never);
    expect(e.decision).toBe('deny');
  });
});

describe('approver', () => {
  const policy = () => AgentPolicy.fromDict({ budget: { max_spend: 5 }, approval: { require_for: [{ tool: 'send_email' }] } });

  it('approve: allowed in place, audit records who and why', async () => {
    const approver = vi.fn(async (_request: ApprovalRequest) => ({ approved: true, by: 'alice', reason: 'looks fine' }));
    const session = policy().session({ approver });
    const decision = await session.checkTool('send_email', { cost: 0.5, metadata: { to: 'x@y.z' } });
    expect(decision).toMatchObject({ decision: 'allow', approved: true, approval: { via: 'approver', by: 'alice', reason: 'looks fine' } });
    expect(approver.mock.calls[0]?.[0]).toMatchObject({ action: { type: 'tool', name: 'send_email', cost: 0.5 }, decision: { decision: 'require_approval' } });
    expect(session.spent).toBe(0.5);
  });

  it('true approves', async () => {
    const session = policy().session({ approver: () => true });
    expect((await session.checkTool('send_email')).decision).toBe('allow');
  });

  it.each([
    ['rejects', () => false, 'rejected'],
    ['rejects with a reason', () => ({ approved: false, by: 'bob', reason: 'no' }), 'rejected'],
    ['throws', () => { throw new Error('pager down'); }, 'error'],
    ['returns nonsense', () => 'yes' as never, 'invalid'],
    ['returns approved: "true"', () => ({ approved: 'true' }) as never, 'invalid'],
  ])('an approver that %s denies', async (_label, approver, outcome) => {
    const session = policy().session({ approver });
    const decision = await session.checkTool('send_email', { cost: 1 });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome, index: 0 } });
    expect(session.spent).toBe(0);
    expect(session.report().reserved).toBe(0);
  });

  it('an approver that does not answer in time denies', async () => {
    let signal: AbortSignal | undefined;
    const session = policy().session({
      approvalTimeoutMs: 20,
      approver: (request) => {
        signal = request.signal;
        return new Promise(() => undefined);
      },
    });
    const decision = await session.checkTool('send_email');
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'timeout' } });
    expect(decision.reason).toContain('20 ms');
    expect(signal?.aborted).toBe(true);
  });

  it('holds the money while waiting, so concurrent checks cannot spend it', async () => {
    let release!: (v: boolean) => void;
    const session = policy().session({ approver: () => new Promise<boolean>((resolve) => (release = resolve)) });
    const pending = session.checkTool('send_email', { cost: 4 });
    await vi.waitFor(() => expect(release).toBeTypeOf('function'));
    expect((await session.checkCost(2, { source: 'other' })).decision).toBe('deny');
    release(true);
    expect((await pending).decision).toBe('allow');
    expect(session.spent).toBe(4);
  });

  it('the approver is not asked for blocked or over-budget actions', async () => {
    const approver = vi.fn(() => true);
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1 }, tools: { block: ['send_email'] }, approval: { require_for: [{ action: 'tool' }] } }).session({ approver });
    expect((await session.checkTool('send_email')).decision).toBe('deny');
    expect((await session.checkTool('other', { cost: 2 })).decision).toBe('deny');
    expect(approver).not.toHaveBeenCalled();
  });
});

describe('evaluate, enforce, guardTool', () => {
  it('evaluate records and spends nothing', () => {
    const session = seed().session();
    const decision = session.evaluate({ type: 'tool', name: 'read_file', cost: 1 });
    expect(decision.decision).toBe('allow');
    expect(session.evaluate({ type: 'tool', name: 'delete_prod_db' }).decision).toBe('deny');
    expect(session.evaluate({ type: 'http', url: 'https://twitter.com' }).decision).toBe('deny');
    expect(session.evaluate({ type: 'cost', cost: 2, source: 'x' }).decision).toBe('require_approval');
    expect(session.report()).toMatchObject({ spent: 0, decisionSummary: { total: 0 } });
  });

  it('enforce records and throws typed errors carrying the decision', async () => {
    const session = seed().session();
    await expect(session.enforce({ type: 'tool', name: 'read_file' })).resolves.toMatchObject({ decision: 'allow' });
    const denied = await session.enforce({ type: 'tool', name: 'delete_prod_db' }).catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(denied)).toBe(true);
    expect((denied as PolicyDeniedError).code).toBe('ACTION_DENIED');
    expect((denied as PolicyDeniedError).decision.rule).toMatchObject({ section: 'tools', list: 'block' });
    const over = await session.enforce({ type: 'cost', cost: 9, source: 'x' }).catch((e: unknown) => e);
    expect((over as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    const approval = await session.enforce({ type: 'tool', name: 'send_email' }).catch((e: unknown) => e);
    expect(ApprovalRequiredError.isInstance(approval)).toBe(true);
    expect(session.report().decisionSummary).toMatchObject({ allow: 1, deny: 2, require_approval: 1 });
  });

  it('guardTool never runs a denied function', async () => {
    const session = seed().session();
    const body = vi.fn(async (id: string) => `dropped ${id}`);
    const guarded = session.guardTool(body, { name: 'delete_prod_db' });
    await expect(guarded('db1')).rejects.toBeInstanceOf(PolicyDeniedError);
    expect(body).not.toHaveBeenCalled();
    const needsApproval = session.guardTool(body, { name: 'send_email' });
    await expect(needsApproval('x')).rejects.toBeInstanceOf(ApprovalRequiredError);
    expect(body).not.toHaveBeenCalled();
  });

  it('guardTool runs an allowed function and charges it; a throw is settled by the one tool-failure rule', async () => {
    const session = seed().session();
    const read_file = async (path: string) => `contents of ${path}`;
    const guarded = session.guardTool(read_file, { cost: 0.25 });
    await expect(guarded('a.txt')).resolves.toBe('contents of a.txt');
    expect(session.spent).toBe(0.25);
    // The tool refused the input (a 4xx): nothing was done, the cost is released.
    const refusing = session.guardTool(async () => {
      throw Object.assign(new Error('bad path'), { status: 422 });
    }, { name: 'read_file', cost: 0.25 });
    await expect(refusing()).rejects.toThrow('bad path');
    expect(session.report()).toMatchObject({ spent: 0.25, reserved: 0 });
    // Any other failure may have done (or billed) the work: the declared cost is charged.
    const failing = session.guardTool(async () => {
      throw new Error('disk');
    }, { name: 'read_file', cost: 0.25 });
    await expect(failing()).rejects.toThrow('disk');
    expect(session.report()).toMatchObject({ spent: 0.5, reserved: 0 });
    expect(session.report().decisions.map((d) => d.settlement?.status)).toEqual(['committed', 'released', 'committed']);
  });

  it('guardTool needs a name for anonymous functions', () => {
    const session = seed().session();
    expect(() => session.guardTool(() => 1)).toThrow(/name/);
  });
});

describe('options and actions that cannot be read', () => {
  // A proxy whose every read throws, and one that throws such a proxy (so even `instanceof Error` on it throws).
  const unreadable = (): object => {
    const boom = (): never => {
      throw new Error('trap');
    };
    return new Proxy({}, { get: boom, has: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom });
  };
  const throwsUnreadable = (): object => {
    const boom = (): never => {
      throw unreadable();
    };
    return new Proxy({}, { get: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom });
  };
  const getterThrows = () =>
    Object.defineProperty({}, 'cost', {
      enumerable: true,
      get() {
        throw new Error('getter');
      },
    });

  it('options that are not an object, or whose reading throws, are a recorded deny, never a throw', async () => {
    const session = seed().session();
    const calls: [string, () => Promise<Decision>][] = [
      ['checkTool null', () => session.checkTool('read_file', null as never)],
      ['checkTool string', () => session.checkTool('read_file', 'read_file' as never)],
      ['checkTool getter', () => session.checkTool('read_file', getterThrows())],
      ['checkTool proxy', () => session.checkTool('read_file', unreadable() as never)],
      ['checkHttp getter', () => session.checkHttp('https://docs.python.org', getterThrows())],
      ['checkCost null', () => session.checkCost(1, null as never)],
      ['checkCost getter', () => session.checkCost(1, getterThrows() as never)],
    ];
    for (const [what, call] of calls) {
      let promise: Promise<Decision> | undefined;
      expect(() => (promise = call()), what).not.toThrow();
      const decision = await (promise as Promise<Decision>);
      expect(decision, what).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'action' } });
      expect(decision.reason, what).toMatch(/^options (must be an object|cannot be read)/);
    }
    expect(session.decideTool('read_file', null as never)).toMatchObject({ decision: 'deny', action: { type: 'tool', name: 'read_file', cost: 0 } });
    const reserved = await session.reserve(1, getterThrows() as never);
    expect(reserved.allowed).toBe(false);
    expect(session.report()).toMatchObject({ spent: 0, reserved: 0, decisionSummary: { total: 9, deny: 9 } });
  });

  it('runTool with unreadable options rejects with the recorded deny and never runs the tool', async () => {
    const session = seed().session();
    const body = vi.fn(() => 'ran');
    await expect(session.runTool('read_file', getterThrows(), body)).rejects.toBeInstanceOf(PolicyDeniedError);
    await expect(session.runTool('read_file', null as never, body)).rejects.toBeInstanceOf(PolicyDeniedError);
    expect(body).not.toHaveBeenCalled();
  });

  it('guardTool refuses options that are not an object or cannot be read, and reads them once', async () => {
    const session = seed().session();
    const read_file = async () => 'ok';
    expect(() => session.guardTool(read_file, null as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => session.guardTool(read_file, unreadable() as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    let reads = 0;
    const guarded = session.guardTool(read_file, {
      get cost() {
        return reads++ === 0 ? 0.5 : 0;
      },
    });
    await guarded();
    await guarded();
    expect(session.spent).toBe(1);
  });

  it('an approval that throws a value whose every read throws is a recorded deny', async () => {
    const session = seed().session();
    let promise: Promise<Decision> | undefined;
    expect(() => (promise = session.checkTool('send_email', { approval: throwsUnreadable() as never }))).not.toThrow();
    const decision = await (promise as Promise<Decision>);
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error', message: 'an unreadable error' } });
    expect(session.report().decisions).toEqual([decision]);
  });

  it('evaluate of an action whose reading throws is a deny, not a throw', () => {
    const session = seed().session();
    expect(session.evaluate(unreadable() as never)).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'action' }, reason: 'the action cannot be read (trap); denied' });
  });

  it('session options whose stores or callbacks are not what they name are refused when the session opens', () => {
    const policy = seed();
    expect(() => policy.session({ store: {} as never })).toThrow(/store must be a BudgetStore \(it has no reserve, commit, release, charge, snapshot\)/);
    expect(() => policy.session({ halts: { halt: () => undefined } as never })).toThrow(/halts must be a HaltStore \(it has no halted\)/);
    expect(() => policy.session({ halts: 'file' as never })).toThrow(/halts must be a HaltStore/);
    expect(() => policy.session({ onDecision: 'log' as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => policy.session({ sinks: 'x' as never })).toThrow(/sinks must be a list/);
    expect(() => policy.session(null as never)).toThrow(/session options must be an object/);
    const unreadable = Object.defineProperty({}, 'store', { enumerable: true, get: () => { throw new Error('getter'); } });
    expect(() => policy.session(unreadable)).toThrow('session options cannot be read: getter');
  });

  it('session options are read once, when the session opens: a getter that changes its answer, or the caller changing its object later, changes nothing', async () => {
    const policy = new AgentPolicy({ approvalRules: [{ tool: 'deploy' }] });
    let reads = 0;
    const options: { id?: string; approver?: () => boolean } = {
      get id() {
        reads++;
        return reads === 1 ? 'first' : 'second';
      },
      approver: () => false,
    };
    const session = policy.session(options);
    expect(reads).toBe(1);
    expect(session.id).toBe('first');
    options.approver = () => true;
    expect(await session.checkTool('deploy')).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'rejected' } });
    expect(session.report().sessionId).toBe('first');
  });

  it('claim and consume of something that cannot be read are false', async () => {
    const session = seed().session();
    expect(session.consume(unreadable() as never)).toBe(false);
    expect(await session.claim(throwsUnreadable() as never)).toBe(false);
  });
});

describe('idempotency keys', () => {
  it('a repeat returns the first decision without recording or charging again', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const a = await session.checkTool('t', { cost: 0.5, idempotencyKey: 'call-1' });
    const b = await session.checkTool('t', { cost: 0.5, idempotencyKey: 'call-1' });
    expect(b).toBe(a);
    expect(session.spent).toBe(0.5);
    expect(session.report().decisionSummary.total).toBe(1);
  });

  it('a key is scoped to its action: the same key on another tool is another check', async () => {
    const session = new AgentPolicy({ blockedTools: ['drop'] }).session();
    expect((await session.checkTool('read', { idempotencyKey: 'call-1' })).decision).toBe('allow');
    expect((await session.checkTool('drop', { idempotencyKey: 'call-1' })).decision).toBe('deny');
    expect((await session.checkHttp('https://a.example/', { idempotencyKey: 'call-1' })).decision).toBe('allow');
    expect(session.report().decisionSummary.total).toBe(3);
  });

  it('keys are kept in bounded memory and recent ones stay idempotent', async () => {
    const session = new AgentPolicy({}).session({ maxDecisions: 0 });
    for (let i = 0; i < 25_000; i++) await session.checkTool('t', { idempotencyKey: `k${i}` });
    expect(session.report().decisionSummary.total).toBe(25_000);
    await session.checkTool('t', { idempotencyKey: 'k24999' });
    await session.checkTool('t', { idempotencyKey: 'k21000' });
    expect(session.report().decisionSummary.total).toBe(25_000);
    await session.checkTool('t', { idempotencyKey: 'k0' });
    expect(session.report().decisionSummary.total).toBe(25_001);
  });

  it('require_approval is decided again once approved, still honouring the budget', async () => {
    const session = new AgentPolicy({ budget: 1, approvalRules: [{ tool: 't' }] }).session();
    expect((await session.checkTool('t', { cost: 0.5, idempotencyKey: 'k' })).decision).toBe('require_approval');
    expect((await session.checkTool('t', { cost: 0.5, idempotencyKey: 'k' })).decision).toBe('require_approval');
    expect(session.report().decisionSummary.total).toBe(1);
    await session.checkCost(0.8, { source: 'meanwhile' });
    expect(await session.checkTool('t', { cost: 0.5, idempotencyKey: 'k', approved: true })).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
  });
});

describe('a human answer given outside the session (approval option)', () => {
  const policy = () => new AgentPolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] });

  it('an approval is recorded with who and why', async () => {
    const session = policy().session();
    const decision = await session.checkTool('send_email', { approval: { approved: true, by: 'carol', reason: 'ok for prod' } });
    expect(decision).toMatchObject({ decision: 'allow', approved: true, approval: { via: 'caller', by: 'carol', reason: 'ok for prod' } });
  });

  it('a rejection is recorded as a denial by the approver', async () => {
    const session = policy().session();
    const decision = await session.checkTool('send_email', { approval: { approved: false, by: 'dave', reason: 'wrong recipient' } });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'rejected', index: 0 } });
    expect(decision.reason).toContain('rejected by dave: wrong recipient');
    expect(session.report().policyHits.approvalRequired).toEqual(['send_email']);
  });

  it('anything but a real approval denies; a human no denies even an action no rule escalates', async () => {
    const session = policy().session();
    expect(await session.checkTool('send_email', { approval: 'yes' as never })).toMatchObject({ decision: 'deny', rule: { outcome: 'invalid' } });
    expect(await session.checkTool('other', { approval: false })).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'rejected' } });
  });

  it('an approval does not lift a block or the budget', async () => {
    const session = new AgentPolicy({ budget: 1, blockedTools: ['x'], approvalRules: [{ action: 'tool' }] }).session();
    expect((await session.checkTool('x', { approval: true })).rule).toMatchObject({ section: 'tools' });
    expect((await session.checkTool('y', { cost: 2, approval: true })).rule).toMatchObject({ section: 'budget' });
  });

  it('with an idempotency key, a pending require_approval is decided again by the answer', async () => {
    const session = policy().session();
    expect((await session.checkTool('send_email', { idempotencyKey: 'c1' })).decision).toBe('require_approval');
    expect((await session.checkTool('send_email', { idempotencyKey: 'c1', approval: false })).decision).toBe('deny');
    expect((await session.checkTool('send_email', { idempotencyKey: 'c1', approval: true })).decision).toBe('deny');
    expect(session.report().decisionSummary).toMatchObject({ require_approval: 1, deny: 1 });
  });
});

describe('audit trail and report', () => {
  it('every decision has the documented shape', async () => {
    const policy = seed();
    const session = policy.session({ id: 's1' });
    const decision = await session.checkHttp('https://user:pw@docs.python.org:443/3/', { metadata: { tool: 'fetch_docs' } });
    expect(decision).toEqual({
      id: 's1:1',
      sessionId: 's1',
      fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
      policyHash: policy.hash,
      decision: 'allow',
      reason: 'request to docs.python.org allowed',
      rule: { section: 'default' },
      action: { type: 'http', url: 'https://docs.python.org/3/', domain: 'docs.python.org', method: undefined, cost: 0, metadata: { tool: 'fetch_docs' } },
      approved: false,
      timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    } satisfies Decision | Record<string, unknown>);
  });

  it('the report counts, sums and lists hits', async () => {
    const session = seed().session({ id: 'r' });
    await session.checkTool('search_docs', { cost: 0.5 });
    await session.checkTool('delete_prod_db', { cost: 1 });
    await session.checkTool('send_email');
    await session.checkHttp('https://twitter.com/');
    await session.checkHttp('https://docs.python.org/');
    await session.checkCost(0.25, { source: 'llm' });
    const report = session.report();
    expect(report).toMatchObject({
      sessionId: 'r',
      policyHash: expect.stringMatching(/^[0-9a-f]{64}$/),
      budget: 5,
      spent: 0.75,
      remaining: 4.25,
      decisionSummary: {
        total: 6,
        allow: 3,
        deny: 2,
        require_approval: 1,
        byActionType: {
          tool: { allow: 1, deny: 1, require_approval: 1 },
          http: { allow: 1, deny: 1, require_approval: 0 },
          cost: { allow: 1, deny: 0, require_approval: 0 },
        },
      },
      costSummary: { allowed: { tool: 0.5, http: 0, cost: 0.25, total: 0.75 }, attempted: { tool: 1.5, http: 0, cost: 0.25, total: 1.75 } },
      policyHits: { deniedTools: ['delete_prod_db'], deniedDomains: ['twitter.com'], approvalRequired: ['send_email'] },
      decisionsDropped: 0,
      endedAt: null,
    });
    expect(report.decisions).toHaveLength(6);
    expect(report.durationSeconds).toBeGreaterThanOrEqual(0);
  });

  it('onDecision streams every recorded decision; with onDecisionError: warn a throwing sink only warns', async () => {
    const seen: string[] = [];
    const session = seed().session({
      onDecisionError: 'warn',
      onDecision: (d) => {
        seen.push(d.decision);
        throw new Error('listener bug');
      },
    });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    expect((await session.checkTool('read_file')).decision).toBe('allow');
    await session.checkTool('delete_prod_db');
    expect(warn).toHaveBeenCalledTimes(2);
    warn.mockRestore();
    expect(seen).toEqual(['allow', 'deny']);
  });

  it('a bound on kept decisions keeps summaries exact', async () => {
    const session = new AgentPolicy({ budget: 100 }).session({ maxDecisions: 10 });
    for (let i = 0; i < 25; i++) await session.checkTool(`t${i}`, { cost: 1 });
    const report = session.report();
    expect(report.decisions).toHaveLength(10);
    expect(report.decisions[0]?.action).toMatchObject({ name: 't15' });
    expect(report.decisions[9]?.action).toMatchObject({ name: 't24' });
    expect(report.decisionsDropped).toBe(15);
    expect(report.decisionSummary.allow).toBe(25);
    expect(report.spent).toBe(25);
  });

  it('soft limit fires once', async () => {
    const onSoftLimit = vi.fn();
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1, soft_limit: 0.8 } }).session({ onSoftLimit });
    await session.checkCost(0.5, { source: 'a' });
    expect(onSoftLimit).not.toHaveBeenCalled();
    await session.checkCost(0.3, { source: 'b' });
    await session.checkCost(0.1, { source: 'c' });
    expect(onSoftLimit).toHaveBeenCalledTimes(1);
    expect(onSoftLimit).toHaveBeenCalledWith({ sessionId: session.id, budgetKey: session.id, spent: 0.8, maxSpend: 1, softLimit: 0.8 });
  });

  it('exhausted() says why nothing more can be spent', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    expect(session.exhausted()).toBeUndefined();
    await session.checkCost(1, { source: 'all' });
    expect(session.exhausted()).toBe('the budget is used up (max_spend $1.00, spent $1.00)');
    expect(new AgentPolicy({}).session().exhausted()).toBeUndefined();
    const ended = new AgentPolicy({}).session();
    ended.end();
    expect(ended.exhausted()).toBe('the session has ended');
  });

  it('wouldExceed answers without recording', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    expect(session.wouldExceed(1)).toBe(false);
    expect(session.wouldExceed(1.01)).toBe(true);
    expect(session.wouldExceed(Number.NaN)).toBe(true);
    expect(session.report().decisionSummary.total).toBe(0);
  });

  it('ending a session fixes its duration and denies later checks', async () => {
    const policy = seed();
    const { result, report } = await policy.run(async (session) => {
      await session.checkTool('read_file');
      return 42;
    });
    expect(result).toBe(42);
    expect(report.endedAt).not.toBeNull();
    {
      await using session = policy.session();
      await session.checkTool('read_file');
      setTimeout(() => undefined, 0);
    }
    const session = policy.session();
    const first = session.end();
    await new Promise((resolve) => setTimeout(resolve, 15));
    expect(session.report().durationSeconds).toBe(first.durationSeconds);
    expect(await session.checkTool('read_file')).toMatchObject({ decision: 'deny', rule: { section: 'session', check: 'ended' } });
  });
});

describe('an allow not run yet when the session ends', () => {
  it('is refused when claimed or consumed after end(): the tool never runs, the refusal is recorded, its money stays charged at the estimate', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const reserved = await session.reserveAction({ type: 'tool', name: 'send_email', cost: 0.25, input: { to: 'a@b.c' } });
    const plain = await session.checkTool('search');
    expect(reserved.allowed).toBe(true);
    session.end();
    let ran = 0;
    await expect(Promise.resolve(session.claim(reserved.decision)).then(() => ran++)).rejects.toMatchObject({ decision: { decision: 'deny', rule: { section: 'session', check: 'ended' } } });
    expect(() => session.consume(plain)).toThrow(/the session has ended/);
    expect(ran).toBe(0);
    const refusals = session.report().decisions.filter((d) => d.rule.section === 'session');
    expect(refusals.map((d) => d.reason)).toEqual([`the session has ended; the allow ${reserved.decision.id} was not run`, `the session has ended; the allow ${plain.id} was not run`]);
    // end() charged the open reservation at its estimate (spend is never lost), and nothing more.
    expect(reserved.settled).toBe(true);
    expect(session.spent).toBe(0.25);
  });

  it('runTool racing end(): the tool does not run once the session has ended', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    let ran = 0;
    const run = session.runTool('search', { cost: 0.1 }, () => ran++);
    session.end();
    await expect(run).rejects.toMatchObject({ decision: { rule: { section: 'session', check: 'ended' } } });
    expect(ran).toBe(0);
  });
});

describe('waitForApproval', () => {
  const policy = AgentPolicy.fromDict({ approval: { require_for: [{ tool: 'deploy' }] } });

  it('refuses a NaN timeout (it would wait forever) and options of the wrong type, with a typed error', async () => {
    const session = policy.session();
    const requestId = (await session.checkTool('deploy')).approvalRequest?.id as string;
    for (const options of [{ timeoutMs: Number.NaN }, { intervalMs: '5' }, { signal: {} }, null, 'fast']) {
      await expect(session.waitForApproval(requestId, options as never), JSON.stringify(options)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    const unreadable = Object.defineProperty({}, 'timeoutMs', { get: () => { throw new Error('getter'); } });
    await expect(session.waitForApproval(requestId, unreadable)).rejects.toThrow('waitForApproval options cannot be read: getter');
    expect(await session.waitForApproval(requestId, { timeoutMs: 0 })).toMatchObject({ status: 'pending' });
  });

  it('resolves once the request is answered from elsewhere, and the answer then applies to exactly that action', async () => {
    const session = policy.session();
    const first = await session.checkTool('deploy', { input: { env: 'prod' } });
    const requestId = first.approvalRequest?.id as string;
    setTimeout(() => void session.resolveApproval(requestId, { approved: true, by: 'ada' }), 20);
    const state = await session.waitForApproval(requestId, { timeoutMs: 5_000, intervalMs: 5 });
    expect(state?.status).toBe('approved');
    const other = await session.checkTool('deploy', { input: { env: 'staging' }, approval: { requestId } });
    expect(other.decision).not.toBe('allow');
    const resumed = await session.checkTool('deploy', { input: { env: 'prod' }, approval: { requestId } });
    expect(resumed.decision).toBe('allow');
    expect(resumed.approval).toMatchObject({ via: 'request', requestId, by: 'ada' });
  });

  it('gives the pending state back on timeout or abort, and undefined for an unknown request', async () => {
    const session = policy.session();
    const first = await session.checkTool('deploy', { input: {} });
    const requestId = first.approvalRequest?.id as string;
    expect((await session.waitForApproval(requestId, { timeoutMs: 30, intervalMs: 5 }))?.status).toBe('pending');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 10);
    expect((await session.waitForApproval(requestId, { timeoutMs: 60_000, signal: controller.signal }))?.status).toBe('pending');
    expect(await session.waitForApproval('apr_nope', { timeoutMs: 10 })).toBeUndefined();
    expect(await policy.session().waitForApproval(requestId, { timeoutMs: 10 })).toBeUndefined();
  });
});
