import { describe, expect, it } from 'vitest';
import { AgentPolicy, InMemoryBudgetStore, type Approver, type BudgetStore, type HaltStore } from './index.js';

describe('halt: what is in flight when it is set', () => {
  it('an approval a human gives after the halt was set does not let the action run, and its held money goes back', async () => {
    const policy = AgentPolicy.fromDict({ budget: { max_spend: 5 }, approval: { require_for: [{ tool: 'send_email' }] } });
    let answer: (yes: boolean) => void = () => undefined;
    let asked: () => void = () => undefined;
    const askedNow = new Promise<void>((resolve) => (asked = resolve));
    const approver: Approver = () => {
      asked();
      return new Promise<boolean>((done) => (answer = done));
    };
    const session = policy.session({ approver });
    let ran = 0;
    const run = session.runTool('send_email', { cost: 1 }, () => ran++);
    await askedNow;
    expect(session.report().reserved).toBe(1);
    policy.halt('incident: stop everything');
    answer(true);
    await expect(run).rejects.toThrow(/halted: incident/);
    expect(ran).toBe(0);
    expect(session.report()).toMatchObject({ spent: 0, reserved: 0 });
    const last = session.report().decisions.at(-1)!;
    expect(last).toMatchObject({ decision: 'deny', rule: { section: 'halt' } });
  });

  it('a halt store that fails while an approver decides denies the approved action', async () => {
    let failing = false;
    const halts: HaltStore = {
      halted: () => {
        if (failing) throw new Error('halt store down');
        return undefined;
      },
      halt: () => undefined,
      resume: () => false,
      list: () => [],
    };
    const session = AgentPolicy.fromDict({ approval: { require_for: [{ tool: 'deploy' }] } }).session({
      halts,
      approver: async () => {
        failing = true;
        return true;
      },
    });
    const decision = await session.checkTool('deploy');
    expect(decision.decision).toBe('deny');
    expect(decision.reason).toContain('halt store down');
  });

  it('a check begun before the halt on an asynchronous budget store was decided before it; checks begun after are denied and charge nothing', async () => {
    const inner = new InMemoryBudgetStore();
    let gate: () => void = () => undefined;
    const opened = new Promise<void>((resolve) => (gate = resolve));
    const store: BudgetStore = {
      reserve: async (k, a, l, t) => {
        await opened;
        return inner.reserve(k, a, l, t);
      },
      commit: async (k, r, a) => inner.commit(k, r, a),
      release: async (k, r) => inner.release(k, r),
      charge: async (k, a, l) => {
        await opened;
        return inner.charge(k, a, l);
      },
      refund: async (k, a) => inner.refund(k, a),
      reconcile: (k) => inner.reconcile(k),
      snapshot: (k) => inner.snapshot(k),
    };
    const policy = new AgentPolicy({ budget: 100 });
    const session = policy.session({ store });
    const before = Array.from({ length: 10 }, () => session.checkTool('search', { cost: 1 }));
    policy.halt('stop');
    const after = Array.from({ length: 10 }, () => session.checkTool('search', { cost: 1 }));
    gate();
    expect((await Promise.all(after)).every((d) => d.decision === 'deny' && d.rule.section === 'halt')).toBe(true);
    const early = await Promise.all(before);
    expect(early.every((d) => d.decision === 'allow')).toBe(true);
    expect(inner.snapshot({ key: session.id, period: 'session' }).spent).toBe(10 * 1e9);
  });
});
