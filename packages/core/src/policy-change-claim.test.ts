import { describe, expect, it } from 'vitest';
import { AgentPolicy, findPolicyError, InMemoryBudgetStore, InMemoryCallKeyStore, PolicyDeniedError, PolicySource, type Decision, type PolicySession } from './index.js';

// Code that decides now and runs later (a job queue, a run waiting on something): when the policy is tightened in
// between (an update or a reload of its file), the allow is judged again by the policy in force before it runs.
function sourceOf(document: Record<string, unknown>): PolicySource {
  return new PolicySource(AgentPolicy.fromDict(document));
}

// The recorded deny a stopped claim threw.
function stoppedBy(outcome: unknown): Decision | undefined {
  const error = findPolicyError(outcome);
  return error instanceof PolicyDeniedError ? error.decision : undefined;
}

async function claimOutcome(session: PolicySession, decision: Decision): Promise<boolean | Error> {
  try {
    return await session.claim(decision);
  } catch (error) {
    return error as Error;
  }
}

describe('a policy change stops an allow that has not run yet when the new policy would not allow it', () => {
  it('claim rejects with the recorded deny of the new policy; the allow stays unused and runs once allowed again', async () => {
    const source = sourceOf({ tools: { allow: ['refund'] } });
    const session = source.session();
    const decision = await session.checkTool('refund', { input: { amount: 500 } });
    expect(decision.decision).toBe('allow');
    source.update({ tools: { block: ['refund'] } });

    const refused = await claimOutcome(session, decision);
    expect(findPolicyError(refused)).toBeInstanceOf(PolicyDeniedError);
    const denied = session.report().decisions.at(-1);
    expect(denied).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block', entry: 'refund' }, action: decision.action, policyHash: source.current.hash });
    expect(denied?.reason).toContain('the policy changed');
    expect(denied?.reason).toContain(`the allow ${decision.id} was not run`);

    // Not used: the policy allowing it again lets it run, once.
    source.update({ tools: { allow: ['refund'] } });
    expect(await session.claim(decision)).toBe(true);
    expect(await session.claim(decision)).toBe(false);
  });

  it('consume throws it the same way', async () => {
    const source = sourceOf({});
    const session = source.session();
    const decision = await session.checkTool('drop_db');
    source.update({ tools: { block: ['drop_*'] } });
    let ran = 0;
    expect(() => {
      if (session.consume(decision)) ran++;
    }).toThrow(PolicyDeniedError);
    expect(ran).toBe(0);
  });

  it('judges the recorded input against new rules: only the calls the new rule covers are stopped', async () => {
    const source = sourceOf({});
    const session = source.session();
    const small = await session.checkTool('refund', { input: { amount: 50 } });
    const large = await session.checkTool('refund', { input: { amount: 500 } });
    source.update({ rules: [{ deny: 'large refunds', tool: 'refund', if: { 'input.amount': { gt: 100 } } }] });
    expect(await session.claim(small)).toBe(true);
    const refused = await claimOutcome(session, large);
    expect(stoppedBy(refused)).toMatchObject({ decision: 'deny', rule: { section: 'rules', index: 0, reason: 'large refunds' } });
  });

  it('a new approval rule stops an unapproved allow; an allow a human approved runs while the new policy would still only ask', async () => {
    const source = sourceOf({ approval: { require_for: [{ tool: 'refund' }] } });
    const session = source.session();
    const plain = await session.checkTool('send_email', { input: { to: 'a@ourco.com' } });
    const asked = await session.checkTool('refund', { input: { amount: 5 } });
    expect(asked.decision).toBe('require_approval');
    const requestId = asked.approvalRequest?.id as string;
    const approved = await session.checkTool('refund', { input: { amount: 5 }, approval: { requestId, approved: true, by: 'alice' } });
    expect(approved).toMatchObject({ decision: 'allow', approved: true });
    const alsoApproved = await session.checkTool('refund', { input: { amount: 6 }, approved: true });
    expect(alsoApproved).toMatchObject({ decision: 'allow', approved: true });

    source.update({ approval: { require_for: [{ tool: 'refund' }, { tool: 'send_email' }] } });
    const refused = await claimOutcome(session, plain);
    expect(stoppedBy(refused)).toMatchObject({ decision: 'deny', rule: { section: 'approval', index: 1 } });
    expect(stoppedBy(refused)?.reason).toContain('requires approval');
    expect(await session.claim(approved)).toBe(true);

    // A block is not something an approval answers.
    source.update({ tools: { block: ['refund'] } });
    expect(stoppedBy(await claimOutcome(session, alsoApproved))?.rule).toMatchObject({ section: 'tools', list: 'block' });
  });

  it('gives back the money reserved for the stopped allow', async () => {
    const source = sourceOf({ budget: { max_spend: 1 } });
    const session = source.session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'deploy', cost: 0.4 });
    expect(reservation.allowed).toBe(true);
    source.update({ budget: { max_spend: 1 }, tools: { block: ['deploy'] } });
    expect(findPolicyError(await claimOutcome(session, reservation.decision))).toBeInstanceOf(PolicyDeniedError);
    expect(reservation.settled).toBe(true);
    expect(session.report().reserved).toBe(0);
    expect(session.spent).toBe(0);
  });

  it('stops HTTP allows a new block covers, and lets through what a shadowed rule alone would deny', async () => {
    const source = sourceOf({});
    const session = source.session();
    const metadata = await session.checkHttp('http://169.254.169.254/latest/meta-data/');
    const search = await session.checkTool('search', { input: { q: 'x' } });
    source.update({ network: { block: ['169.254.0.0/16'] }, rules: [{ deny: 'trying it out', tool: 'search', if: { 'input.q': { exists: true } }, mode: 'shadow' }] });
    const refused = await claimOutcome(session, metadata);
    expect(stoppedBy(refused)?.rule).toMatchObject({ section: 'network', list: 'block' });
    expect(await session.claim(search)).toBe(true);
  });

  it('an action the record cut cannot be judged again: it is stopped, saying to check it again', async () => {
    const source = sourceOf({});
    const session = source.session();
    const decision = await session.checkTool('send_email', { input: { body: 'x'.repeat(5000) } });
    source.update({ tools: { block: ['delete_*'] } });
    const refused = await claimOutcome(session, decision);
    expect(stoppedBy(refused)?.reason).toContain('cannot be judged again');
    // The same call checked again is decided (and allowed) under the new policy.
    const again = await session.checkTool('send_email', { input: { body: 'x'.repeat(5000) } });
    expect(await session.claim(again)).toBe(true);
  });

  it('a reload to the same policy judges nothing again', async () => {
    const source = sourceOf({ tools: { allow: ['search'] } });
    const session = source.session();
    const decision = await session.checkTool('search', { input: { q: 'x' } });
    source.update({ tools: { allow: ['search'] } });
    const before = session.report().decisions.length;
    expect(await session.claim(decision)).toBe(true);
    expect(session.report().decisions.length).toBe(before);
  });

  it('runTool on an allow from before the change does not run the tool', async () => {
    const source = sourceOf({});
    const session = source.session();
    const decision = await session.checkTool('wire_money', { input: { to: 'acct-1' }, idempotencyKey: 'job-7' });
    expect(decision.decision).toBe('allow');
    source.update({ tools: { block: ['wire_money'] } });
    let ran = 0;
    // The queued job runs the same call (same key, same input): the repeat gets the earlier allow, which the new
    // policy stops before the tool runs.
    const outcome = await session
      .runTool('wire_money', { input: { to: 'acct-1' }, idempotencyKey: 'job-7' }, () => {
        ran++;
        return 'sent';
      })
      .catch((error: unknown) => error);
    expect(findPolicyError(outcome)).toBeInstanceOf(PolicyDeniedError);
    expect(ran).toBe(0);
  });
});

describe('a keyed repeat after a policy change', () => {
  it('gets its earlier allow back only while the policy in force still allows it; a deny is decided again', async () => {
    const source = sourceOf({});
    const session = source.session();
    const allowed = await session.checkTool('deploy', { input: { env: 'prod' }, idempotencyKey: 'k1' });
    const denied = await session.checkTool('drop_db', { idempotencyKey: 'k2' });
    expect(denied.decision).toBe('allow');
    source.update({ tools: { block: ['deploy'] } });
    const repeat = await session.checkTool('deploy', { input: { env: 'prod' }, idempotencyKey: 'k1' });
    expect(repeat).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
    expect(repeat.id).not.toBe(allowed.id);
    // Still allowed under the new policy: the same allow comes back, not a second one.
    expect((await session.checkTool('drop_db', { idempotencyKey: 'k2' })).id).toBe(denied.id);

    // A deny from the old policy is not handed out under a policy that allows the call.
    source.update({});
    const blockedBefore = await session.checkTool('deploy', { input: { env: 'prod' }, idempotencyKey: 'k1' });
    expect(blockedBefore.decision).toBe('allow');
  });
});

describe('an allow whose money was given back when it was stopped never runs for free', () => {
  it('claimed again once the policy allows it again, it is refused; the budget holds', async () => {
    const source = sourceOf({ budget: { max_spend: 1 } });
    const session = source.session();
    const first = await session.reserveAction({ type: 'tool', name: 'deploy', cost: 0.8 });
    source.update({ budget: { max_spend: 1 }, tools: { block: ['deploy'] } });
    expect(findPolicyError(await claimOutcome(session, first.decision))).toBeInstanceOf(PolicyDeniedError);
    // The money went back: another 0.8 fits the budget.
    const second = await session.reserveAction({ type: 'tool', name: 'build', cost: 0.8 });
    expect(second.allowed).toBe(true);

    source.update({ budget: { max_spend: 1 } });
    expect(await session.claim(second.decision)).toBe(true);
    await second.commit();
    // The first allow holds nothing any more: running it would spend 0.8 the budget never counted.
    expect(await session.claim(first.decision)).toBe(false);
    expect(session.spent).toBeCloseTo(0.8, 9);
  });

  it('a keyed repeat of it is decided and charged again, and refused when the budget cannot cover it', async () => {
    const source = sourceOf({ budget: { max_spend: 1 } });
    const session = source.session();
    let ran = 0;
    const job = () => session.runTool('deploy', { input: { env: 'prod' }, cost: 0.8, idempotencyKey: 'job-1' }, () => ran++).catch((error: unknown) => error);
    // Decided (and 0.8 held) when the job was queued; run later by the worker under the same key.
    const queued = await session.reserveAction({ type: 'tool', name: 'deploy', input: { env: 'prod' }, cost: 0.8, idempotencyKey: 'job-1' });
    expect(queued.allowed).toBe(true);
    source.update({ budget: { max_spend: 1 }, tools: { block: ['deploy'] } });
    expect(findPolicyError(await claimOutcome(session, queued.decision))).toBeInstanceOf(PolicyDeniedError);

    source.update({ budget: { max_spend: 1 } });
    expect(await session.runTool('build', { cost: 0.8 }, () => 'built')).toBe('built');
    // The repeat of job-1 is a new decision: 0.8 more does not fit.
    expect(findPolicyError(await job())).toMatchObject({ code: 'BUDGET_EXCEEDED' });
    expect(ran).toBe(0);
    expect(session.spent).toBeLessThanOrEqual(1);
  });
});

describe('a keyed repeat the policy in force denies', () => {
  it('gives back the money the earlier, unrun allow holds; that allow can no longer run', async () => {
    const source = sourceOf({ budget: { max_spend: 1 } });
    const session = source.session();
    const queued = await session.reserveAction({ type: 'tool', name: 'deploy', input: { env: 'prod' }, cost: 0.4, idempotencyKey: 'job-1' });
    source.update({ budget: { max_spend: 1 }, tools: { block: ['deploy'] } });
    const repeat = await session.reserveAction({ type: 'tool', name: 'deploy', input: { env: 'prod' }, cost: 0.4, idempotencyKey: 'job-1' });
    expect(repeat.decision).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
    // Not held until the session ends (and then charged) for a call that will not run.
    expect(queued.settled).toBe(true);
    expect(session.report().reserved).toBe(0);
    source.update({ budget: { max_spend: 1 } });
    expect(await session.claim(queued.decision)).toBe(false);
    await session.end();
    expect(session.spent).toBe(0);
  });
});

describe('a policy change while an approver decides', () => {
  const asks = { approval: { require_for: [{ tool: 'wire_money' }, { tool: 'refund' }] } };

  it('the approved action is judged again by the policy in force: denied if it would not allow it, its money given back', async () => {
    const updates: Record<string, unknown>[] = [
      { budget: { max_spend: 1 }, ...asks, tools: { block: ['wire_money'] } },
      { budget: { max_spend: 1 }, ...asks, tools: { block: ['wire_money', 'drop_db'] } },
      { budget: { max_spend: 1 }, ...asks, tools: { block: ['wire_money', 'drop_db'] }, rules: [{ deny: 'tiny refunds only', tool: 'refund', if: { 'input.amount': { gt: 10 } } }] },
    ];
    const source = sourceOf({ budget: { max_spend: 1 }, ...asks });
    const session = source.session({
      approver: () => {
        // The policy is reloaded while the human looks at the request; then they approve what they saw.
        source.update(updates.shift() as Record<string, unknown>);
        return { approved: true, by: 'alice' };
      },
    });
    const wire = await session.reserveAction({ type: 'tool', name: 'wire_money', input: { to: 'acct-9' }, cost: 0.5 });
    expect(wire.decision).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' }, policyHash: source.current.hash });
    expect(wire.decision.reason).toContain('while the approver decided');
    expect(wire.decision.reason).toContain('alice');
    expect(session.report().reserved).toBe(0);
    // Still allowed by the changed policy (its approval rule asks, and it has the approval): it runs.
    const refund = await session.checkTool('refund', { input: { amount: 5 } });
    expect(refund).toMatchObject({ decision: 'allow', approval: { via: 'approver', by: 'alice' } });
    expect(await session.claim(refund)).toBe(true);
    // A new rule on its input, loaded while the human decided.
    const large = await session.checkTool('refund', { input: { amount: 50 } });
    expect(large).toMatchObject({ decision: 'deny', rule: { section: 'rules', reason: 'tiny refunds only' } });
    expect(updates).toEqual([]);
  });
});

describe('processes of one session on two policy versions, sharing call keys', () => {
  it('a call decided by the old policy and checked again by the new one that blocks it is decided anew; it runs in neither', async () => {
    const callKeys = new InMemoryCallKeyStore();
    const budget = new InMemoryBudgetStore();
    const old = AgentPolicy.fromDict({ budget: { max_spend: 1 } }).session({ id: 'rolling', callKeys, store: budget });
    const next = AgentPolicy.fromDict({ budget: { max_spend: 1 }, tools: { block: ['refund'] } }).session({ id: 'rolling', callKeys, store: budget });
    const call = { type: 'tool' as const, name: 'refund', input: { order: 'A1' }, cost: 0.4, idempotencyKey: 'call_1' };
    const decided = await old.reserveAction(call);
    const retried = await next.reserveAction(call);
    expect(retried.decision).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
    expect(await old.claim(decided.decision)).toBe(false);
    expect((await next.reconcile()).reserved).toBe(0);
  });
});

describe('a budget lowered before reserved allows run', () => {
  it('allows that would take spend past the new max_spend are stopped, their money given back; the rest run', async () => {
    const source = sourceOf({ budget: { max_spend: 10 } });
    const session = source.session();
    const queued = [];
    for (let i = 0; i < 3; i++) queued.push(await session.reserveAction({ type: 'tool', name: 'render', input: { frame: i }, cost: 3 }));
    expect(queued.every((r) => r.allowed)).toBe(true);
    // An emergency cap: $4 from now on.
    source.update({ budget: { max_spend: 4 } });

    const outcomes: Array<boolean | Error> = [];
    for (const reservation of queued) {
      const outcome = await claimOutcome(session, reservation.decision);
      outcomes.push(outcome);
      if (outcome === true) await reservation.commit();
    }
    expect(outcomes.filter((o) => o === true)).toHaveLength(1);
    const stopped = outcomes.filter((o): o is Error => o instanceof Error).map(stoppedBy);
    expect(stopped).toHaveLength(2);
    expect(stopped[0]).toMatchObject({ decision: 'deny', rule: { section: 'budget', maxSpend: 4 } });
    expect(stopped[0]?.reason).toContain('the policy changed');
    expect(session.spent).toBe(3);
    expect(session.report().reserved).toBe(0);
  });

  it('a raised budget, or a change that leaves room for them, stops nothing', async () => {
    const source = sourceOf({ budget: { max_spend: 10 } });
    const session = source.session();
    const a = await session.reserveAction({ type: 'tool', name: 'render', cost: 3 });
    const b = await session.reserveAction({ type: 'tool', name: 'render', cost: 3 });
    source.update({ budget: { max_spend: 6 } });
    expect(await session.claim(a.decision)).toBe(true);
    expect(await session.claim(b.decision)).toBe(true);
  });
});
