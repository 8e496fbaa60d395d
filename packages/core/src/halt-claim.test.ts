import { describe, expect, it, vi } from 'vitest';
import { AgentPolicy, findPolicyError, InMemoryHaltStore, PolicyDeniedError, type HaltState, type HaltStore } from './index.js';

// Code that decides now and runs later (a job queue, a run waiting on something): a halt set in between stops the run.
describe('a halt stops an allow that has not run yet', () => {
  it('consume throws the recorded halt deny; the allow stays unused and runs once the halt is lifted', async () => {
    const policy = new AgentPolicy({ allowedTools: ['send_email'] });
    const session = policy.session();
    const decision = await session.checkTool('send_email', { input: { to: 'a@ourco.com' } });
    expect(decision.decision).toBe('allow');
    policy.halt('bad deploy', { by: 'oncall' });
    let ran = 0;
    const run = () => {
      if (decision.decision === 'allow' && session.consume(decision)) ran++;
    };
    expect(run).toThrow(PolicyDeniedError);
    expect(ran).toBe(0);
    const denied = session.report().decisions.at(-1);
    expect(denied).toMatchObject({ decision: 'deny', rule: { section: 'halt', reason: 'bad deploy', by: 'oncall' }, action: decision.action });
    expect(denied?.reason).toContain(`the allow ${decision.id} was not run`);
    policy.resume();
    run();
    expect(ran).toBe(1);
    // One execution per allow, as always.
    expect(session.consume(decision)).toBe(false);
  });

  it('claim rejects and gives back the money reserved for the allow', async () => {
    const policy = new AgentPolicy({ budget: 1 });
    const session = policy.session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'deploy', cost: 0.4 });
    expect(reservation.allowed).toBe(true);
    expect(session.report().reserved).toBeCloseTo(0.4, 9);
    policy.halt('freeze');
    const refused = await Promise.resolve(session.claim(reservation.decision)).catch((error: unknown) => error);
    expect(findPolicyError(refused)).toBeInstanceOf(PolicyDeniedError);
    expect(reservation.settled).toBe(true);
    expect(session.report().reserved).toBe(0);
    expect(session.spent).toBe(0);
  });

  it('a halt of another budget key stops nothing here; one of this key does', async () => {
    const policy = new AgentPolicy({ budget: 5 });
    const session = policy.session({ budgetKey: 'tenant-a' });
    const first = await session.checkTool('search');
    const second = await session.checkTool('search');
    policy.halt('tenant b is over quota', { budgetKey: 'tenant-b' });
    expect(await session.claim(first)).toBe(true);
    policy.halt('tenant a is over quota', { budgetKey: 'tenant-a' });
    await expect(Promise.resolve(session.claim(second))).rejects.toBeInstanceOf(PolicyDeniedError);
  });

  it('a shared halt store that answers later: claim reads it again for an allow over a second old; consume cannot', async () => {
    const memory = new InMemoryHaltStore();
    let reads = 0;
    const later: HaltStore = {
      halted: async (key: string) => {
        reads++;
        return memory.halted(key) as HaltState | undefined;
      },
      halt: async (state: HaltState) => memory.halt(state),
      resume: async (key?: string) => memory.resume(key) as boolean,
      list: async () => memory.list() as readonly HaltState[],
    };
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const session = new AgentPolicy().session({ halts: later });
      const old = await session.checkTool('search');
      const other = await session.checkTool('search');
      vi.setSystemTime(Date.now() + 1500);
      const fresh = await session.checkTool('search');
      await later.halt({ reason: 'stop', at: new Date().toISOString() });
      const before = reads;
      await expect(Promise.resolve(session.claim(old))).rejects.toBeInstanceOf(PolicyDeniedError);
      expect(reads).toBe(before + 1);
      // Decided this second, after its check read the store: taken without another round trip.
      expect(await session.claim(fresh)).toBe(true);
      expect(reads).toBe(before + 1);
      expect(session.consume(other)).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('anything but an allow of this session is refused as before, halt or not', async () => {
    const policy = new AgentPolicy({ blockedTools: ['drop_db'] });
    const session = policy.session();
    const denied = await session.checkTool('drop_db');
    const other = await policy.session().checkTool('search');
    policy.halt('stop');
    expect(session.claim(denied)).toBe(false);
    expect(session.claim(other)).toBe(false);
    expect(session.consume(null as never)).toBe(false);
  });

  it('a keyed call denied under a halt is decided anew once the halt is lifted, not handed the halt deny again', async () => {
    const policy = new AgentPolicy({});
    const session = policy.session();
    const before = await session.checkTool('search', { idempotencyKey: 'job-1' });
    policy.halt('incident');
    expect((await session.checkTool('search', { idempotencyKey: 'job-1' })).rule).toMatchObject({ section: 'halt' });
    expect((await session.checkTool('export', { idempotencyKey: 'job-2' })).rule).toMatchObject({ section: 'halt' });
    policy.resume();
    // The allow from before the halt, still unused, comes back; a call first seen under the halt is decided now.
    expect((await session.checkTool('search', { idempotencyKey: 'job-1' })).id).toBe(before.id);
    expect((await session.checkTool('export', { idempotencyKey: 'job-2' })).decision).toBe('allow');
  });
});
