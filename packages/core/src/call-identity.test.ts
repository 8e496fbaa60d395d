import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import type { Decision } from './decision.js';
import { AgentPolicyError, ApprovalRequiredError, PolicyDeniedError } from './errors.js';
import { actionFingerprint, canonicalInput } from './action-fingerprint.js';
import { AgentPolicy } from './policy.js';

const policy = () =>
  AgentPolicy.fromDict({
    budget: { max_spend: 1000 },
    tools: { allow: ['search', 'send_email'] },
    approval: { require_for: [{ tool: 'send_email' }] },
  });

describe('a key is bound to the action, not only its name', () => {
  it('the same key with other input is a new action, decided and charged afresh', async () => {
    const session = policy().session();
    const first = await session.checkTool('search', { input: { q: 'cats' }, cost: 1, idempotencyKey: 'call_0' });
    const repeat = await session.checkTool('search', { input: { q: 'cats' }, cost: 1, idempotencyKey: 'call_0' });
    expect(repeat).toBe(first);
    expect(session.spent).toBe(1);
    const other = await session.checkTool('search', { input: { q: 'dogs' }, cost: 1, idempotencyKey: 'call_0' });
    expect(other.id).not.toBe(first.id);
    expect(other.fingerprint).not.toBe(first.fingerprint);
    expect(session.spent).toBe(2);
    const pricier = await session.checkTool('search', { input: { q: 'cats' }, cost: 5, idempotencyKey: 'call_0' });
    expect(pricier.id).not.toBe(first.id);
    expect(session.spent).toBe(7);
    expect(session.report().decisionSummary.total).toBe(3);
  });

  it('a 1 MB idempotency key works and is not kept whole', async () => {
    const session = policy().session();
    const key = 'k'.repeat(1_000_000);
    const first = await session.checkTool('search', { cost: 1, idempotencyKey: key });
    expect(await session.checkTool('search', { cost: 1, idempotencyKey: key })).toBe(first);
    expect(await session.checkTool('search', { cost: 1, idempotencyKey: `${key}!` })).not.toBe(first);
    expect(session.spent).toBe(2);
  });

  it('key order in the input does not matter; the values do', async () => {
    const session = policy().session();
    const a = session.evaluate({ type: 'tool', name: 'search', input: { q: 'x', page: 1 } });
    const b = session.evaluate({ type: 'tool', name: 'search', input: { page: 1, q: 'x' } });
    const c = session.evaluate({ type: 'tool', name: 'search', input: { page: 2, q: 'x' } });
    const none = session.evaluate({ type: 'tool', name: 'search' });
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(c.fingerprint).not.toBe(a.fingerprint);
    expect(none.fingerprint).not.toBe(a.fingerprint);
    expect(session.evaluate({ type: 'tool', name: 'Search' }).fingerprint).toBe(none.fingerprint);
    expect(session.evaluate({ type: 'tool', name: 'search', input: '1' }).fingerprint).not.toBe(session.evaluate({ type: 'tool', name: 'search', input: 1 }).fingerprint);
  });

  it('once its allow is used, the same call id is decided and charged again', async () => {
    const session = policy().session();
    const first = await session.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'call_0' });
    expect(session.consume(first)).toBe(true);
    expect(session.consume(first)).toBe(false);
    const rerun = await session.checkTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'call_0' });
    expect(rerun.id).not.toBe(first.id);
    expect(session.spent).toBe(2);
    expect(session.consume(rerun)).toBe(true);
  });

  it('consume refuses denials, approvals still needed, and other sessions’ decisions', async () => {
    const session = policy().session();
    const denied = await session.checkTool('rm_rf');
    const needs = await session.checkTool('send_email');
    const foreign = await policy().session().checkTool('search');
    expect([session.consume(denied), session.consume(needs), session.consume(foreign)]).toEqual([false, false, false]);
  });

  it('a human’s “no” to a repeat is not overturned by the first call’s approval', async () => {
    const session = policy().session();
    const first = await session.checkTool('send_email', { input: { to: 'a' }, idempotencyKey: 'call_0' });
    const requestId = first.approvalRequest?.id as string;
    await session.resolveApproval(requestId, { approved: true, by: 'alice' });
    const ran = await session.checkTool('send_email', { input: { to: 'a' }, idempotencyKey: 'call_0', approval: { requestId } });
    expect(session.consume(ran)).toBe(true);
    // The provider numbers calls per turn: call_0 again, now with other input. The old approval does not cover it.
    const next = await session.checkTool('send_email', { input: { to: 'everyone' }, idempotencyKey: 'call_0', approval: { requestId } });
    expect(next).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_action' } });
    const no = await session.checkTool('send_email', { input: { to: 'everyone' }, idempotencyKey: 'call_0', approval: { requestId: next.approvalRequest?.id as string, approved: false } });
    expect(no.decision).toBe('deny');
  });
});

describe('runTool: one allow, one execution, and one rule for a tool that throws', () => {
  it('two threads sharing a session and a call id run the call once per decision', async () => {
    const session = policy().session();
    const execute = vi.fn(async () => 'done');
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => session.runTool('search', { input: { q: 'x' }, cost: 1, idempotencyKey: 'call_0' }, execute)));
    // Each run either got its own (charged) allow, or found the shared allow already in use and did not run.
    const ran = results.filter((r) => r.status === 'fulfilled').length;
    expect(execute).toHaveBeenCalledTimes(ran);
    expect(session.spent).toBe(ran);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as AgentPolicyError).code).toBe('DECISION_USED');
  });

  it('throws the policy error and never runs a denied or unapproved call', async () => {
    const session = policy().session();
    const execute = vi.fn();
    await expect(session.runTool('rm_rf', {}, execute)).rejects.toBeInstanceOf(PolicyDeniedError);
    await expect(session.runTool('send_email', { input: { to: 'x' } }, execute)).rejects.toBeInstanceOf(ApprovalRequiredError);
    expect(execute).not.toHaveBeenCalled();
  });

  it('a tool that throws: used, rethrown unchanged; charged unless it refused (4xx) or agentpolicy stopped it', async () => {
    const session = policy().session();
    const refused = Object.assign(new Error('invalid query'), { status: 400 });
    await expect(session.runTool('search', { cost: 1, input: 1 }, () => Promise.reject(refused))).rejects.toBe(refused);
    expect(session.report()).toMatchObject({ spent: 0, reserved: 0 });
    const inner = new PolicyDeniedError((await session.checkTool('rm_rf')) as Decision);
    await expect(session.runTool('search', { cost: 1, input: 2 }, () => Promise.reject(inner))).rejects.toBe(inner);
    expect(session.report()).toMatchObject({ spent: 0, reserved: 0 });
    const crash = new Error('socket hang up');
    await expect(session.runTool('search', { cost: 1, input: 3, idempotencyKey: 'k' }, () => Promise.reject(crash))).rejects.toBe(crash);
    expect(session.report()).toMatchObject({ spent: 1, reserved: 0 });
    // The call ran (and failed): running the same call id again is a new, charged decision.
    await session.runTool('search', { cost: 1, input: 3, idempotencyKey: 'k' }, () => 'ok');
    expect(session.spent).toBe(2);
    const settled = session.report().decisions.map((d) => d.settlement?.status ?? null);
    expect(settled).toEqual(['released', null, 'released', 'committed', 'committed']);
  });

  it('guardTool binds each call to its arguments', async () => {
    const session = policy().session();
    const approvalsSeen: unknown[] = [];
    const guarded = session.guardTool(async (to: string) => `sent to ${to}`, { name: 'send_email' });
    await expect(guarded('a@example.com')).rejects.toBeInstanceOf(ApprovalRequiredError);
    const [pending] = await session.pendingApprovals();
    approvalsSeen.push(pending?.action);
    expect(pending?.action).toMatchObject({ name: 'send_email', input: ['a@example.com'] });
  });
});

describe('property: no action runs without a matching, unused allow', () => {
  type Op =
    | { kind: 'call'; tool: 'search' | 'send_email'; input: number; key: number; answer: number | null; via: 'check' | 'runTool'; delay: number }
    | { kind: 'answer'; pick: number; approve: boolean; delay: number };

  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constant('call' as const),
      tool: fc.constantFrom('search' as const, 'send_email' as const),
      input: fc.integer({ min: 0, max: 2 }),
      key: fc.integer({ min: 0, max: 2 }),
      answer: fc.option(fc.integer({ min: 0, max: 20 }), { nil: null }),
      via: fc.constantFrom('check' as const, 'runTool' as const),
      delay: fc.integer({ min: 0, max: 2 }),
    }),
    fc.record({ kind: fc.constant('answer' as const), pick: fc.integer({ min: 0, max: 20 }), approve: fc.boolean(), delay: fc.integer({ min: 0, max: 2 }) }),
  );

  it('random interleavings of checks, replays, answers and executions', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const session = policy().session();
        const tick = (n: number) => new Promise((resolve) => setTimeout(resolve, n));
        const requests: string[] = [];
        const approvedFor = new Map<string, string>(); // request id → fingerprint a human approved
        const runs: { fingerprint: string; decision: Decision | undefined }[] = [];
        const expected = (tool: string, input: number) => session.evaluate({ type: 'tool', name: tool, input: { n: input }, cost: 0.01 }).fingerprint;
        await Promise.all(
          ops.map(async (o) => {
            await tick(o.delay);
            if (o.kind === 'answer') {
              const id = requests[o.pick % Math.max(1, requests.length)];
              if (id === undefined) return;
              const result = await session.resolveApproval(id, { approved: o.approve, by: 'h' });
              if (result.ok && o.approve) approvedFor.set(id, result.request.fingerprint);
              return;
            }
            const options = {
              input: { n: o.input },
              cost: 0.01,
              idempotencyKey: `call_${o.key}`,
              ...(o.answer !== null && requests.length > 0 ? { approval: { requestId: requests[o.answer % requests.length] as string } } : {}),
            };
            const fingerprint = expected(o.tool, o.input);
            if (o.via === 'check') {
              const decision = await session.checkTool(o.tool, options);
              if (decision.approvalRequest) requests.push(decision.approvalRequest.id);
              await tick(o.delay);
              if (decision.decision === 'allow' && session.consume(decision)) runs.push({ fingerprint, decision });
            } else {
              try {
                await session.runTool(o.tool, options, () => {
                  runs.push({ fingerprint, decision: undefined });
                });
              } catch (error) {
                const decision = (error as { decision?: Decision }).decision;
                if (decision?.approvalRequest) requests.push(decision.approvalRequest.id);
              }
            }
          }),
        );
        const report = session.report();
        const allows = report.decisions.filter((d) => d.decision === 'allow');
        // Executions of each action never outnumber the allows for exactly that action…
        for (const fingerprint of new Set(runs.map((r) => r.fingerprint))) {
          const executed = runs.filter((r) => r.fingerprint === fingerprint).length;
          expect(executed).toBeLessThanOrEqual(allows.filter((d) => d.fingerprint === fingerprint).length);
          // …and for an action that needs approval, the approvals a human gave for exactly that action.
          if (allows.some((d) => d.fingerprint === fingerprint && d.action.type === 'tool' && d.action.name === 'send_email')) {
            expect(executed).toBeLessThanOrEqual([...approvedFor.values()].filter((f) => f === fingerprint).length);
          }
        }
        // A decision handed to an execution was an allow for what ran, used once.
        const ids = runs.flatMap((r) => (r.decision ? [r.decision.id] : []));
        expect(new Set(ids).size).toBe(ids.length);
        for (const r of runs) if (r.decision) expect(r.decision).toMatchObject({ decision: 'allow', fingerprint: r.fingerprint });
        // Every approval-needing allow came from a request approved for that action, each request used once.
        const approvalIds = allows.flatMap((d) => (d.action.type === 'tool' && d.action.name === 'send_email' ? [d.approval?.requestId] : []));
        for (const id of approvalIds) expect(approvedFor.has(id as string)).toBe(true);
        expect(new Set(approvalIds).size).toBe(approvalIds.length);
        // Every allow was charged once, and nothing else was.
        expect(Math.round(report.spent * 100)).toBe(allows.length);
        expect(report.reserved).toBe(0);
      }),
      { numRuns: 120 },
    );
  });
});

describe('the fingerprint is worked out when asked for, from the input as it was checked', () => {
  it('equals the SHA-256 of the canonical action, whenever and however it is read', async () => {
    const session = policy().session();
    const input = { q: 'cats', page: 2 };
    const decision = await session.checkTool('search', { input });
    const expected = actionFingerprint({ type: 'tool', name: 'search', costNanos: 0, input: canonicalInput(input) });
    input.q = 'dogs'; // changed after the check: the decision is about what was checked
    expect(decision.fingerprint).toBe(expected);
    expect(Object.keys(decision)).toContain('fingerprint');
    expect(JSON.parse(JSON.stringify(decision)).fingerprint).toBe(expected);
    expect({ ...decision }.fingerprint).toBe(expected);
    expect(structuredClone(decision).fingerprint).toBe(expected);
    expect(Object.isFrozen(decision)).toBe(true);
    expect(() => Object.defineProperty(decision, 'fingerprint', { value: 'x' })).toThrow(TypeError);
    expect(session.evaluate({ type: 'tool', name: 'search', input: { page: 2, q: 'cats' } }).fingerprint).toBe(expected);
  });

  it('an input changed in place after a require_approval is another action: the approval does not cover it', async () => {
    const session = policy().session();
    const input = { to: 'ada@ourco.com' };
    const asked = await session.checkTool('send_email', { input, idempotencyKey: 'call_1' });
    expect(asked.decision).toBe('require_approval');
    const requestId = asked.approvalRequest?.id as string;
    await session.resolveApproval(requestId, { approved: true, by: 'ops' });
    input.to = 'mallory@evil.example';
    const swapped = await session.checkTool('send_email', { input, approval: { requestId }, idempotencyKey: 'call_1' });
    expect(swapped.decision).toBe('require_approval');
    expect(swapped.unusedAnswer?.problem).toBe('other_action');
    input.to = 'ada@ourco.com';
    const approved = await session.checkTool('send_email', { input, approval: { requestId }, idempotencyKey: 'call_1' });
    expect(approved).toMatchObject({ decision: 'allow', approved: true, fingerprint: asked.fingerprint });
  });

  it('a key repeated with the same object changed in place is a new action; long inputs are compared by fingerprint', async () => {
    const session = policy().session();
    const input = { q: 'cats' };
    const first = await session.checkTool('search', { input, cost: 1, idempotencyKey: 'k' });
    input.q = 'dogs';
    const second = await session.checkTool('search', { input, cost: 1, idempotencyKey: 'k' });
    expect(second.id).not.toBe(first.id);
    expect(session.spent).toBe(2);
    const long = { body: 'x'.repeat(5_000) };
    const a = await session.checkTool('search', { input: long, cost: 1, idempotencyKey: 'long' });
    expect(await session.checkTool('search', { input: { body: 'x'.repeat(5_000) }, cost: 1, idempotencyKey: 'long' })).toBe(a);
    const b = await session.checkTool('search', { input: { body: `${'x'.repeat(4_999)}y` }, cost: 1, idempotencyKey: 'long' });
    expect(b.id).not.toBe(a.id);
    expect(b.fingerprint).not.toBe(a.fingerprint);
  });

  it('a getter in the input is read once: what is decided, recorded and fingerprinted is the same value', async () => {
    const rules = AgentPolicy.fromDict({ rules: [{ deny: 'too large', tool: 'refund', if: { 'input.amount': { gt: 1000 } } }] });
    let reads = 0;
    const input = {
      get amount() {
        reads++;
        return reads === 1 ? 5000 : 50;
      },
    };
    const decision = await rules.session().checkTool('refund', { input });
    expect(reads).toBe(1);
    expect(decision).toMatchObject({ decision: 'deny', action: { input: { amount: 5000 } } });
    expect(decision.fingerprint).toBe(actionFingerprint({ type: 'tool', name: 'refund', costNanos: 0, input: '{"amount":5000}' }));
  });
});
