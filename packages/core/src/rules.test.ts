import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AgentPolicy } from './policy.js';
import { PolicySource } from './policy-source.js';
import { PolicyValidationError } from './errors.js';
import { validatePolicyDocument } from './policy-document.js';
import { InMemoryRateLimitStore, type RateLimitStore } from './rate-limit-store.js';

function issuesOf(document: unknown) {
  const result = validatePolicyDocument(document);
  if (result.ok) throw new Error('expected the policy to be invalid');
  return result.issues;
}

describe('rules: validation names the path and says what to write', () => {
  it.each([
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { regex: '.*' } } }] }, 'rules[0].if.input.a.regex', 'unknown key'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { gte: '100' } } }] }, 'rules[0].if.input.a.gte', 'must be a number'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { in: 'a' } } }] }, 'rules[0].if.input.a.in', 'non-empty list'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { in: [[1]] } } }] }, 'rules[0].if.input.a.in[0]', 'string, number or boolean'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { eq: { b: 1 } } } }] }, 'rules[0].if.input.a.eq', 'string, number or boolean'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { glob: '' } } }] }, 'rules[0].if.input.a.glob', 'glob'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { exists: 'yes' } } }] }, 'rules[0].if.input.a.exists', 'true or false'],
    [{ rules: [{ deny: 'x', tool: 't', unless: { 'input.a': { exists: false } } }] }, 'rules[0].unless.input.a.exists', 'can never satisfy an unless'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { domain: 'https://x.com/' } } }] }, 'rules[0].if.input.a.domain', 'bare domain'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { command: [] } } }] }, 'rules[0].if.input.a.command', 'command glob'],
    [{ rules: [{ deny: 'x', domain: 'a.com', if: { path: { command: 'rm*' } } }] }, 'rules[0].if.path.command', 'tool input'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'args.a': { eq: 1 } } }] }, 'rules[0].if.args.a', 'a path starts with input'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input..a': { eq: 1 } } }] }, 'rules[0].if.input..a', 'empty segment'],
    [{ rules: [{ deny: 'x', tool: 't', if: { method: { eq: 'GET' } } }] }, 'rules[0].if.method', 'only set for http'],
    [{ rules: [{ deny: 'x', domain: 'a.com', if: { 'input.a': { eq: 1 } } }] }, 'rules[0].if.input.a', 'only set for tool'],
    [{ rules: [{ deny: 'x', tool: 't', if: { cost: { gt: -1 } } }] }, 'rules[0].if.cost.gt', 'USD'],
    [{ rules: [{ deny: 'x', tool: 't', if: { 'input.a': 5 } }] }, 'rules[0].if.input.a', 'mapping of operators'],
    [{ rules: [{ deny: 'x', tool: 't', if: {} }] }, 'rules[0].if', 'mapping of paths'],
    [{ rules: [{ deny: 'x', tool: 't' }] }, 'rules[0]', 'needs if: or unless:'],
    [{ rules: [{ require_approval: 'x', tool: 't' }] }, 'rules[0]', 'approval.require_for'],
    [{ rules: [{ tool: 't', if: { 'input.a': { eq: 1 } } }] }, 'rules[0]', 'deny: "<reason>"'],
    [{ rules: [{ deny: 'x', require_approval: 'y', tool: 't', if: { 'input.a': { eq: 1 } } }] }, 'rules[0]', 'not both'],
    [{ rules: [{ deny: ' ', tool: 't', if: { 'input.a': { eq: 1 } } }] }, 'rules[0].deny', 'reason'],
    [{ rules: [{ deny: 'x', tool: 't', mode: 'dry-run', if: { 'input.a': { eq: 1 } } }] }, 'rules[0].mode', 'enforce or shadow'],
    [{ rules: [{ deny: 'x', tool: 't', iff: { 'input.a': { eq: 1 } } }] }, 'rules[0].iff', 'did you mean "if"'],
    [{ rules: [{ deny: 'x', tool: 't', domain: 'a.com', if: { cost: { gt: 1 } } }] }, 'rules[0]', 'never match'],
    [{ rules: { deny: 'x' } }, 'rules', 'list of rules'],
    [{ limits: [{ tool: 's', max_calls: 0, per: '1m' }] }, 'limits[0].max_calls', 'whole number'],
    [{ limits: [{ tool: 's', max_calls: 5, per: '1 minute' }] }, 'limits[0].per', 'a window like 30s'],
    [{ limits: [{ tool: 's', max_calls: 5, per: '01m' }] }, 'limits[0].per', 'a window like 30s'],
    [{ limits: [{ tool: 's', max_calls: 5, per: '400d' }] }, 'limits[0].per', 'at most 366d'],
    [{ limits: [{ tool: 's', max_calls: 5 }] }, 'limits[0].per', 'required'],
    [{ limits: [{ tool: 's', per: '1m' }] }, 'limits[0].max_calls', 'required'],
    [{ limits: [{ tool: 's', max_calls: 5, per: '1m', scope: 'global' }] }, 'limits[0].scope', 'budget'],
    [{ limits: [{ tool: 's', max_calls: 5, per: '1m', mode: 'off' }] }, 'limits[0].mode', 'enforce or shadow'],
    [{ mode: 'audit' }, 'mode', 'enforce or shadow'],
    [{ rules: null }, 'rules', 'has no value'],
    [{ limits: null }, 'limits', 'has no value'],
    [{ mode: null }, 'mode', 'has no value'],
    [{ rules: [{ deny: 'x', tool: null, if: { 'input.a': { eq: 1 } } }] }, 'rules[0].tool', 'must be a string'],
    [{ rules: [{ deny: 'x', tool: 't', if: null }] }, 'rules[0].if', 'mapping of paths'],
    [{ limits: [{ tool: 's', max_calls: 5, per: null }] }, 'limits[0].per', 'a window like 30s'],
  ])('%j → %s', (document, path, hint) => {
    const issues = issuesOf(document);
    const issue = issues.find((candidate) => candidate.path === path);
    expect(issue, JSON.stringify(issues)).toBeDefined();
    expect(issue?.message).toContain(hint);
  });

  it('reports every issue at once, with the file path in the error', () => {
    const yaml = `rules:\n  - deny: a\n    tool: t\n    if:\n      input.a: { regex: x }\n  - deny: b\n    tool: t\nlimits:\n  - tool: s\n    max_calls: -1\n    per: 1w\n`;
    try {
      AgentPolicy.fromYamlString(yaml, 'policy.yaml');
      expect.unreachable();
    } catch (error) {
      expect(PolicyValidationError.isInstance(error)).toBe(true);
      const issues = (error as PolicyValidationError).issues.map((issue) => issue.path);
      expect(issues).toEqual(['rules[0].if.input.a.regex', 'rules[1]', 'limits[0].max_calls', 'limits[0].per']);
      expect((error as Error).message).toContain('policy.yaml');
    }
  });

  it('round-trips through toDocument with the same hash, from YAML, a dict or constructor options', () => {
    const document = {
      rules: [{ deny: 'external', tool: 'send_email', unless: { 'input.to': { glob: '*@ourco.com' } }, mode: 'shadow' as const }],
      limits: [{ tool: 'search', max_calls: 5, per: '1m' }],
      mode: 'enforce' as const,
    };
    const a = AgentPolicy.fromDict(document);
    const b = AgentPolicy.fromDict(a.toDocument());
    const c = new AgentPolicy({ rules: document.rules, limits: document.limits });
    expect(b.hash).toBe(a.hash);
    expect(c.hash).toBe(a.hash);
    expect(a.toDocument().limits).toEqual([{ tool: 'search', max_calls: 5, per: '1m', scope: 'session' }]);
  });
});

describe('arrays resolve toward safety, for any array', () => {
  const policy = AgentPolicy.fromDict({
    rules: [
      { deny: 'any over 100', tool: 'pay_if', if: { 'input.amounts': { gt: 100 } } },
      { deny: 'unless all at most 100', tool: 'pay_unless', unless: { 'input.amounts': { lte: 100 } } },
    ],
  });
  const amounts = fc.array(fc.oneof(fc.integer({ min: -50, max: 250 }), fc.constantFrom('a lot', null, true, '150', '99.5', { n: 1 })), { maxLength: 8 });
  const judged = (value: unknown) => (typeof value === 'number' ? value : typeof value === 'string' && /^-?[0-9.]+$/.test(value) ? Number(value) : undefined);

  it('if: denied exactly when some element is over 100 or cannot be judged (missing values are skipped)', () => {
    fc.assert(
      fc.property(amounts, (values) => {
        const present = values.filter((value) => value !== null);
        const expected = present.some((value) => {
          const n = judged(value);
          return n === undefined || n > 100;
        });
        return (policy.session().evaluate({ type: 'tool', name: 'pay_if', input: { amounts: values } }).decision === 'deny') === expected;
      }),
      { numRuns: 1000 },
    );
  });

  it('unless: allowed exactly when there is at least one value and every value is judged at most 100', () => {
    fc.assert(
      fc.property(amounts, (values) => {
        const present = values.filter((value) => value !== null);
        const excepted = present.length > 0 && present.every((value) => {
          const n = judged(value);
          return n !== undefined && n <= 100;
        });
        return (policy.session().evaluate({ type: 'tool', name: 'pay_unless', input: { amounts: values } }).decision === 'allow') === excepted;
      }),
      { numRuns: 1000 },
    );
  });
});

describe('conditions resist hostile input', () => {
  const policy = AgentPolicy.fromDict({
    rules: [
      { deny: 'admins only by humans', tool: 'grant', if: { 'input.role': { eq: 'admin' } } },
      { deny: 'only ourco', tool: 'mail', unless: { 'input.to': { glob: '*@ourco.com' } } },
    ],
  });

  it('reads own properties only: __proto__ and constructor never resolve', async () => {
    const session = policy.session();
    const input = JSON.parse('{"__proto__": {"to": "a@ourco.com"}}');
    expect((await session.checkTool('mail', { input })).decision).toBe('deny');
    expect((await session.checkTool('mail', { input: Object.create({ to: 'a@ourco.com' }) })).decision).toBe('deny');
  });

  it('an input whose getter throws is denied with the error, not allowed', async () => {
    const session = policy.session();
    const input = {
      get role(): string {
        throw new Error('boom');
      },
    };
    const decision = await session.checkTool('grant', { input });
    expect(decision.decision).toBe('deny');
    expect(decision.rule).toEqual({ section: 'error', message: 'boom' });
  });

  it('a self-containing array is judged toward safety instead of recursing forever', async () => {
    const session = policy.session();
    const loop: unknown[] = [];
    loop.push(loop);
    expect((await session.checkTool('grant', { input: { role: loop } })).decision).toBe('deny');
    expect((await session.checkTool('mail', { input: { to: loop } })).decision).toBe('deny');
  });

  it('a huge array is read in one pass', async () => {
    const session = policy.session();
    const to = Array.from({ length: 200_000 }, () => 'a@ourco.com');
    expect((await session.checkTool('mail', { input: { to } })).decision).toBe('allow');
    to.push('x@evil.com');
    expect((await session.checkTool('mail', { input: { to } })).decision).toBe('deny');
  });

  it('the input of a memoised name does not leak into the next call', async () => {
    const session = policy.session();
    expect((await session.checkTool('grant', { input: { role: 'user' } })).decision).toBe('allow');
    expect((await session.checkTool('grant', { input: { role: 'admin' } })).decision).toBe('deny');
    expect((await session.checkTool('grant', { input: { role: 'user' } })).decision).toBe('allow');
  });

  it('a keyed replay returns the first decision; a new input under a new key is decided afresh', async () => {
    const session = policy.session();
    expect((await session.checkTool('grant', { input: { role: 'admin' }, idempotencyKey: 'k1' })).decision).toBe('deny');
    expect((await session.checkTool('grant', { input: { role: 'admin' }, idempotencyKey: 'k2' })).decision).toBe('deny');
  });

  it('evaluate decides rules the same way without recording', () => {
    const session = policy.session();
    expect(session.evaluate({ type: 'tool', name: 'grant', input: { role: 'admin' } }).decision).toBe('deny');
    expect(session.report().decisionSummary.total).toBe(0);
  });
});

describe('limits', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a window reopens as the oldest call ages out, and the denial says when', async () => {
    vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
    const session = AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 2, per: '1m' }] }).session();
    expect((await session.checkTool('search')).decision).toBe('allow');
    vi.advanceTimersByTime(20_000);
    expect((await session.checkTool('search')).decision).toBe('allow');
    const denied = await session.checkTool('search');
    expect(denied.decision).toBe('deny');
    expect(denied.rule).toEqual({ section: 'limits', index: 0, maxCalls: 2, per: '1m', scope: 'session', resetAt: '2026-01-01T00:01:00.000Z' });
    expect(denied.reason).toBe('tool "search" reached limits[0]: 2 calls per 1m; the window reopens at 2026-01-01T00:01:00.000Z (in 40s)');
    vi.advanceTimersByTime(40_000);
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect((await session.checkTool('search')).decision).toBe('deny');
  });

  it('counts carry across policy changes: reordered limits keep their own counts, a lowered max applies to the calls already made', async () => {
    const source = new PolicySource(AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 1000, per: 'session' }] }));
    const session = source.session();
    expect((await session.checkTool('search')).decision).toBe('allow');
    // A limit put where another one was counted has counts of its own (not the other's).
    source.update({ limits: [{ tool: 'deploy', max_calls: 1, per: 'session' }] });
    expect((await session.checkTool('deploy')).decision).toBe('allow');
    source.update({ limits: [{ tool: 'search', max_calls: 1000, per: 'session' }, { tool: 'deploy', max_calls: 1, per: 'session' }] });
    expect((await session.checkTool('deploy')).rule).toMatchObject({ section: 'limits', index: 1 });
    expect((await session.checkTool('search')).decision).toBe('allow');

    // 2 searches made; tightened to 2 per session: the next one is over it, not the first of a new count.
    source.update({ limits: [{ tool: 'search', max_calls: 2, per: 'session' }] });
    expect((await session.checkTool('search')).rule).toMatchObject({ section: 'limits', index: 0, maxCalls: 2 });
  });

  it('two limits counting the same calls in the same window keep separate counts', async () => {
    const session = AgentPolicy.fromDict({
      limits: [
        { tool: 'search', max_calls: 2, per: '1m' },
        { tool: 'search', max_calls: 2, per: '1m', scope: 'session' },
      ],
    }).session();
    // Shared counts would hold 2 slots after the first call and refuse the second.
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect((await session.checkTool('search')).rule).toMatchObject({ section: 'limits', index: 0 });
  });

  it('every decision is stamped with the time it was made, limits counted or not, approvals waited for or not', async () => {
    vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z'), toFake: ['Date'] });
    let release: ((answer: boolean) => void) | undefined;
    const session = AgentPolicy.fromDict({
      limits: [{ tool: 'search', max_calls: 100, per: '1m' }],
      approval: { require_for: [{ tool: 'search', cost_gt: 1 }] },
    }).session({ approver: () => new Promise<boolean>((resolve) => (release = resolve)) });
    expect((await session.checkTool('search')).timestamp).toBe('2026-01-01T00:00:00.000Z');
    vi.setSystemTime(Date.parse('2026-01-01T00:00:05Z'));
    expect((await session.checkTool('other')).timestamp).toBe('2026-01-01T00:00:05.000Z');
    // A call that waits for its approver after its limits were counted: later decisions are stamped with their own time.
    const waiting = session.checkTool('search', { cost: 2 });
    vi.setSystemTime(Date.parse('2026-01-01T00:00:09Z'));
    expect((await session.checkTool('other')).timestamp).toBe('2026-01-01T00:00:09.000Z');
    vi.setSystemTime(Date.parse('2026-01-01T00:00:12Z'));
    while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
    release(true);
    expect((await waiting).timestamp).toBe('2026-01-01T00:00:12.000Z');
    expect((await session.checkTool('search')).timestamp).toBe('2026-01-01T00:00:12.000Z');
  });

  it('a per-session limit never reopens; another session has its own count', async () => {
    const policy = AgentPolicy.fromDict({ limits: [{ tool: '*', max_calls: 1, per: 'session' }] });
    const one = policy.session();
    expect((await one.checkTool('a')).decision).toBe('allow');
    const denied = await one.checkTool('b');
    expect(denied.decision).toBe('deny');
    expect(denied.reason).toContain('no more such calls in this session');
    expect((await policy.session().checkTool('a')).decision).toBe('allow');
  });

  it('concurrent checks never let more calls through than the limit', async () => {
    const session = AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 7, per: '1h' }] }).session();
    const decisions = await Promise.all(Array.from({ length: 50 }, () => session.checkTool('search')));
    expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(7);
  });

  it('scope: budget counts across the sessions sharing a store and key; scope: session does not', async () => {
    const policy = AgentPolicy.fromDict({
      limits: [
        { tool: 'search', max_calls: 3, per: 'session', scope: 'budget' },
        { tool: 'fetch', max_calls: 1, per: 'session' },
      ],
    });
    const store = new InMemoryRateLimitStore();
    const a = policy.session({ id: 'team-1', limitStore: store });
    const b = policy.session({ id: 'team-1', limitStore: store });
    expect((await a.checkTool('search')).decision).toBe('allow');
    expect((await b.checkTool('search')).decision).toBe('allow');
    expect((await a.checkTool('search')).decision).toBe('allow');
    const denied = await b.checkTool('search');
    expect(denied.decision).toBe('deny');
    expect(denied.reason).toContain('across sessions sharing the budget');
    expect((await policy.session({ id: 'team-2', limitStore: store }).checkTool('search')).decision).toBe('allow');
  });

  it('scope: budget is counted per budget key: sessions with their own ids share it, in memory without a store given', async () => {
    const policy = AgentPolicy.fromDict({
      limits: [
        { tool: 'search', max_calls: 2, per: 'session', scope: 'budget' },
        { tool: 'fetch', max_calls: 1, per: 'session' },
      ],
    });
    const a = policy.session({ id: 'worker-a', budgetKey: 'tenant-1' });
    const b = policy.session({ id: 'worker-b', budgetKey: 'tenant-1' });
    expect((await a.checkTool('search')).decision).toBe('allow');
    expect((await b.checkTool('search')).decision).toBe('allow');
    expect((await a.checkTool('search')).rule).toMatchObject({ section: 'limits', scope: 'budget' });
    // scope: session stays per session id, even on a shared budget key.
    expect((await a.checkTool('fetch')).decision).toBe('allow');
    expect((await b.checkTool('fetch')).decision).toBe('allow');
    expect((await policy.session({ id: 'worker-c', budgetKey: 'tenant-2' }).checkTool('search')).decision).toBe('allow');
  });

  it('only allowed calls count: a require_approval without approver, a rejection or a budget denial gives the slot back', async () => {
    const policy = AgentPolicy.fromDict({
      budget: { max_spend: 1 },
      approval: { require_for: [{ tool: 'pay', cost_gt: 0.5 }] },
      limits: [{ tool: 'pay', max_calls: 1, per: 'session' }],
    });
    const session = policy.session({ approver: () => false });
    expect((await session.checkTool('pay', { cost: 0.6 })).decision).toBe('deny'); // approver said no
    expect((await session.checkTool('pay', { cost: 2 })).decision).toBe('deny'); // budget
    expect((await session.checkTool('pay', { cost: 0.1, approval: false })).decision).toBe('deny'); // a human said no
    const allowed = await session.checkTool('pay', { cost: 0.1 });
    expect(allowed.decision).toBe('allow');
    expect((await session.checkTool('pay', { cost: 0.1 })).rule).toMatchObject({ section: 'limits' });
    const noApprover = policy.session();
    expect((await noApprover.checkTool('pay', { cost: 0.6 })).decision).toBe('require_approval');
    expect((await noApprover.checkTool('pay', { cost: 0.1 })).decision).toBe('allow');
  });

  it('a slot is held while the approver decides, so concurrent calls cannot take it', async () => {
    let answer: (value: boolean) => void = () => undefined;
    const policy = AgentPolicy.fromDict({
      approval: { require_for: [{ tool: 'pay' }] },
      limits: [{ tool: 'pay', max_calls: 1, per: 'session' }],
    });
    const session = policy.session({ approver: () => new Promise<boolean>((resolve) => (answer = resolve)) });
    const first = session.checkTool('pay');
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await session.checkTool('pay', { approved: true });
    expect(second.rule).toMatchObject({ section: 'limits' });
    answer(false);
    expect((await first).decision).toBe('deny');
    expect((await session.checkTool('pay', { approved: true })).decision).toBe('allow');
  });

  it('a rule require_approval raises a stored request for exactly that input; its answer runs under the limits', async () => {
    const session = AgentPolicy.fromDict({
      rules: [{ require_approval: 'large refunds', tool: 'refund', if: { 'input.amount': { gt: 100 } } }],
      limits: [{ tool: 'refund', max_calls: 1, per: 'session' }],
    }).session();
    const asked = await session.checkTool('refund', { input: { amount: 500 } });
    expect(asked.decision).toBe('require_approval');
    const requestId = (asked as { approvalRequest?: { id: string } }).approvalRequest?.id as string;
    expect(requestId).toBeTypeOf('string');
    expect(await session.resolveApproval(requestId, { approved: true, by: 'alice' })).toMatchObject({ ok: true });
    // The approval covers 500, not 5,000.
    expect((await session.checkTool('refund', { input: { amount: 5000 }, approval: { requestId } })).decision).toBe('require_approval');
    // Waiting took no slot: the approved call is allowed and counted; the next one meets the limit.
    const approved = await session.checkTool('refund', { input: { amount: 500 }, approval: { requestId } });
    expect(approved).toMatchObject({ decision: 'allow', approved: true });
    expect((await session.checkTool('refund', { input: { amount: 5 } })).rule).toMatchObject({ section: 'limits', index: 0 });
  });

  it('works with a store that answers with promises, and fails closed when it throws', async () => {
    const inner = new InMemoryRateLimitStore();
    const slow: RateLimitStore = {
      take: async (key, max, windowMs) => inner.take(key, max, windowMs),
      giveBack: async (key, slot) => inner.giveBack(key, slot),
    };
    const policy = AgentPolicy.fromDict({
      tools: { block: ['never'] },
      limits: [
        { tool: 'search', max_calls: 2, per: 'session' },
        { tool: '*', max_calls: 3, per: 'session' },
      ],
    });
    const session = policy.session({ limitStore: slow });
    const decisions = await Promise.all(Array.from({ length: 5 }, () => session.checkTool('search')));
    expect(decisions.map((d) => d.decision).sort()).toEqual(['allow', 'allow', 'deny', 'deny', 'deny']);
    // The second limit gave back the slots of the denied calls: one more non-search call fits.
    expect((await session.checkTool('other')).decision).toBe('allow');
    expect((await session.checkTool('other')).rule).toMatchObject({ section: 'limits', index: 1 });

    const broken: RateLimitStore = { take: () => Promise.reject(new Error('store down')), giveBack: () => undefined };
    const failing = policy.session({ limitStore: broken });
    const denied = await failing.checkTool('search');
    expect(denied.decision).toBe('deny');
    expect(denied.rule).toEqual({ section: 'error', message: 'store down' });
  });

  it('a blocked or rule-denied call takes no slot at all', async () => {
    const taken: string[] = [];
    const inner = new InMemoryRateLimitStore();
    const spy: RateLimitStore = {
      take: (key, max, windowMs) => {
        taken.push(key);
        return inner.take(key, max, windowMs);
      },
      giveBack: (key, slot) => inner.giveBack(key, slot),
    };
    const session = AgentPolicy.fromDict({
      tools: { block: ['rm'] },
      rules: [{ deny: 'no prod', tool: 'deploy', if: { 'input.env': { eq: 'prod' } } }],
      limits: [{ tool: '*', max_calls: 10, per: '1m' }],
    }).session({ limitStore: spy });
    await session.checkTool('rm');
    await session.checkTool('deploy', { input: { env: 'prod' } });
    expect(taken).toHaveLength(0);
    await session.checkTool('deploy', { input: { env: 'dev' } });
    expect(taken).toHaveLength(1);
  });
});

describe('shadow mode', () => {
  it('the report counts shadow outcomes apart from the enforced ones', async () => {
    const policy = AgentPolicy.fromDict({
      mode: 'shadow',
      tools: { block: ['rm'] },
      rules: [{ require_approval: 'large refunds', tool: 'refund', if: { 'input.amount': { gt: 100 } } }],
      limits: [{ tool: 'search', max_calls: 1, per: 'session' }],
    });
    const session = policy.session({ approver: () => expect.unreachable('shadow never asks a human') });
    await session.checkTool('rm');
    await session.checkTool('refund', { input: { amount: 500 } });
    await session.checkTool('refund', { input: { amount: 5 } });
    await session.checkTool('search');
    await session.checkTool('search');
    const report = session.report();
    expect(report.decisionSummary).toMatchObject({ total: 5, allow: 5, deny: 0 });
    expect(report.shadowSummary).toEqual({ total: 3, allow: 0, deny: 2, require_approval: 1, byRule: { 'tools.block': 1, 'rules[0]': 1, 'limits[0]': 1 } });
  });

  it('under mode: shadow the budget is recorded as it would have decided but spending goes on', async () => {
    const session = AgentPolicy.fromDict({ mode: 'shadow', budget: { max_spend: 1 } }).session();
    expect((await session.checkTool('a', { cost: 0.8 })).decision).toBe('allow');
    const over = await session.checkTool('a', { cost: 0.8 });
    expect(over.decision).toBe('allow');
    expect(over.shadow).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
    expect(session.spent).toBeCloseTo(1.6, 9);
    expect(session.exhausted()).toBeUndefined();
  });

  it('under mode: shadow no tool is left out of listings as never allowed; enforced, a blocked one is', () => {
    const document = { tools: { block: ['rm'] }, rules: [{ deny: 'no prod', tool: 'deploy', if: { 'input.env': { eq: 'prod' } } }] };
    expect(AgentPolicy.fromDict({ ...document, mode: 'shadow' }).neverAllowsTool('rm')).toBeUndefined();
    expect(AgentPolicy.fromDict(document).neverAllowsTool('rm')).toContain('tools.block');
    // A rule depends on the input: it never makes a tool never-allowed.
    expect(AgentPolicy.fromDict(document).neverAllowsTool('deploy')).toBeUndefined();
  });

  it('a shadow rule hides no enforced deny: the enforced rule still stops the call', async () => {
    const session = AgentPolicy.fromDict({
      rules: [
        { deny: 'trial', tool: 'send', mode: 'shadow', if: { 'input.to': { glob: '*@x.com' } } },
        { deny: 'enforced', tool: 'send', if: { 'input.to': { glob: '*@x.com' } } },
      ],
    }).session();
    const decision = await session.checkTool('send', { input: { to: 'a@x.com' } });
    expect(decision.decision).toBe('deny');
    expect(decision.rule).toMatchObject({ section: 'rules', index: 1 });
    expect(decision.shadow).toMatchObject({ decision: 'deny', rule: { section: 'rules', index: 0 } });
  });
});

describe('explainAction', () => {
  it('shows which rules and limits an action meets and what would be decided', () => {
    const policy = AgentPolicy.fromDict({
      rules: [
        { require_approval: 'large refunds', tool: 'refund', if: { 'input.amount': { gt: 100 } } },
        { deny: 'no shell', tool: 'shell', if: { 'input.command': { command: 'rm -r*' } } },
      ],
      limits: [
        { tool: 'refund', max_calls: 3, per: '1h' },
        { tool: 'search', max_calls: 5, per: '1m', mode: 'shadow' },
      ],
    });
    const explained = policy.explainAction({ type: 'tool', name: 'refund', input: { amount: 250 } });
    expect(explained).toMatchObject({
      decision: { decision: 'require_approval', rule: { section: 'rules', index: 0 } },
      rules: [
        { index: 0, require_approval: 'large refunds', mode: 'enforce', selects: true, applies: true },
        { index: 1, deny: 'no shell', mode: 'enforce', selects: false, applies: false },
      ],
      limits: [
        { index: 0, max_calls: 3, per: '1h', scope: 'session', mode: 'enforce', counts: true },
        { index: 1, mode: 'shadow', counts: false },
      ],
    });
  });
});
