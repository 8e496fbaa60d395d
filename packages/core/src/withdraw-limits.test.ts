import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InMemoryCallKeyStore } from './call-key-store.js';
import type { Decision } from './decision.js';
import { AgentPolicy } from './policy.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';
import { withdrawAllow } from './reservation.js';

const WINDOW_MS = 60_000;

function limited(maxCalls: number, extra: Record<string, unknown> = {}) {
  return AgentPolicy.fromDict({ tools: { allow: ['search'] }, budget: { max_spend: 100 }, limits: [{ tool: 'search', max_calls: maxCalls, per: '1m', ...extra }] });
}

function clocked(start = 1_000_000) {
  const clock = { now: start };
  return { clock, store: new InMemoryRateLimitStore({ now: () => clock.now }) };
}

describe('withdraw gives back the limit slots of an allow whose call never ran', () => {
  it('a withdrawn allow frees its max_calls slot: the next call is allowed', async () => {
    const session = limited(1).session();
    const first = await session.checkTool('search', { input: { q: 'a' } });
    expect(first.decision).toBe('allow');
    expect((await session.checkTool('search', { input: { q: 'b' } })).rule).toMatchObject({ section: 'limits' });
    expect(await session.withdraw(first)).toBe(true);
    const next = await session.checkTool('search', { input: { q: 'c' } });
    expect(next.decision).toBe('allow');
    expect(session.consume(next)).toBe(true);
    expect((await session.checkTool('search', { input: { q: 'd' } })).rule).toMatchObject({ section: 'limits' });
  });

  it('withdrawAllow gives back both the money and the slot, once', async () => {
    const session = limited(1).session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'search', input: { q: 'a' }, cost: 2 });
    expect(reservation.allowed).toBe(true);
    expect(await withdrawAllow(session, reservation.decision, reservation)).toBe(true);
    expect(reservation.decision.settlement).toMatchObject({ status: 'released', actual: 0 });
    expect(await withdrawAllow(session, reservation.decision, reservation)).toBe(false);
    const next = await session.checkTool('search', { input: { q: 'b' } });
    expect(next.decision).toBe('allow');
    expect((await session.checkTool('search', { input: { q: 'c' } })).rule).toMatchObject({ section: 'limits' });
  });

  it('a withdraw after the call ran gives nothing back', async () => {
    const session = limited(1).session();
    const first = await session.checkTool('search', { input: { q: 'a' } });
    expect(await session.claim(first)).toBe(true);
    expect(await session.withdraw(first)).toBe(false);
    expect(await withdrawAllow(session, first)).toBe(false);
    expect((await session.checkTool('search', { input: { q: 'b' } })).rule).toMatchObject({ section: 'limits' });
  });

  it('a second withdraw gives back nothing more (two slots held, one withdrawn twice: one more call, not two)', async () => {
    const session = limited(2).session();
    const a = await session.checkTool('search', { input: { q: 'a' } });
    const b = await session.checkTool('search', { input: { q: 'b' } });
    expect(session.consume(b)).toBe(true);
    const withdrawn = await Promise.all([session.withdraw(a), session.withdraw(a), withdrawAllow(session, a)]);
    expect(withdrawn.filter(Boolean)).toHaveLength(1);
    const c = await session.checkTool('search', { input: { q: 'c' } });
    expect(c.decision).toBe('allow');
    expect((await session.checkTool('search', { input: { q: 'd' } })).rule).toMatchObject({ section: 'limits' });
  });

  it('a withdraw racing the run: exactly one of them takes the allow, and a slot comes back only if the call did not run', async () => {
    for (const withdrawFirst of [true, false]) {
      // A shared call-key store answers later, so the claim and the withdraw really are in flight together.
      const session = limited(1).session({ callKeys: new InMemoryCallKeyStore() });
      const first = await session.checkTool('search', { input: { q: 'a' }, idempotencyKey: 'call-1' });
      expect(first.decision).toBe('allow');
      const [withdrawn, ran] = withdrawFirst
        ? await Promise.all([session.withdraw(first), session.claim(first)])
        : await Promise.all([session.claim(first), session.withdraw(first)]).then(([r, w]) => [w, r]);
      expect([withdrawn, ran].filter(Boolean)).toHaveLength(1);
      const next = await session.checkTool('search', { input: { q: 'b' }, idempotencyKey: 'call-2' });
      expect(next.decision).toBe(withdrawn ? 'allow' : 'deny');
    }
  });

  it('another session cannot withdraw an allow to free a slot: not a session with another id, nor one opened again with the same id', async () => {
    const policy = limited(1);
    const { store } = clocked();
    const owner = policy.session({ id: 'run-1', limitStore: store });
    const allow = await owner.checkTool('search', { input: { q: 'a' } });
    const other = policy.session({ id: 'run-2', limitStore: store });
    expect(await other.withdraw(allow)).toBe(false);
    // The same session id opened again (its own object, its own numbering): whatever its claim says, it holds no slot
    // of the allow and gives none back.
    const again = policy.session({ id: 'run-1', limitStore: store });
    await again.checkTool('search', { input: { q: 'x' } });
    await again.withdraw(allow);
    expect((await owner.checkTool('search', { input: { q: 'b' } })).rule).toMatchObject({ section: 'limits' });
    expect(owner.consume(allow)).toBe(true);
  });

  it('a shared count (scope: budget): another session cannot free it; the owner withdrawing does, across the budget key', async () => {
    const policy = limited(1, { scope: 'budget' });
    const { store } = clocked();
    const a = policy.session({ budgetKey: 'tenant', limitStore: store });
    const b = policy.session({ budgetKey: 'tenant', limitStore: store });
    const allow = await a.checkTool('search', { input: { q: 'a' } });
    expect((await b.checkTool('search', { input: { q: 'b' } })).rule).toMatchObject({ section: 'limits', scope: 'budget' });
    expect(await b.withdraw(allow)).toBe(false);
    expect((await b.checkTool('search', { input: { q: 'b' } })).rule).toMatchObject({ section: 'limits' });
    expect(await a.withdraw(allow)).toBe(true);
    const next = await b.checkTool('search', { input: { q: 'b' } });
    expect(next.decision).toBe('allow');
    expect((await a.checkTool('search', { input: { q: 'c' } })).rule).toMatchObject({ section: 'limits' });
  });

  it('a withdraw after the window rolled over gives nothing to the new window', async () => {
    const { clock, store } = clocked();
    const session = limited(1).session({ limitStore: store });
    const old = await session.checkTool('search', { input: { q: 'a' } });
    clock.now += WINDOW_MS;
    const fresh = await session.checkTool('search', { input: { q: 'b' } });
    expect(fresh.decision).toBe('allow');
    expect(session.consume(fresh)).toBe(true);
    // The old allow never ran: withdrawing it takes it, but its slot already freed with its window.
    expect(await session.withdraw(old)).toBe(true);
    expect((await session.checkTool('search', { input: { q: 'c' } })).rule).toMatchObject({ section: 'limits' });
  });

  it('a shadowed limit counts the same way: a withdrawn call is not a would-be call', async () => {
    const session = limited(1, { mode: 'shadow' }).session();
    const first = await session.checkTool('search', { input: { q: 'a' } });
    expect(first.shadow).toBeUndefined();
    expect(await session.withdraw(first)).toBe(true);
    const second = await session.checkTool('search', { input: { q: 'b' } });
    expect(second.shadow).toBeUndefined();
    const third = await session.checkTool('search', { input: { q: 'c' } });
    expect(third.decision).toBe('allow');
    expect(third.shadow).toMatchObject({ decision: 'deny', rule: { section: 'limits' } });
  });

  it('a claim whose signal aborted as it took the allow withdraws it: false, its money and slot given back', async () => {
    const session = limited(1).session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'search', input: { q: 'a' }, cost: 1 });
    const cancel = new AbortController();
    cancel.abort();
    expect(await session.claim(reservation.decision, { signal: cancel.signal })).toBe(false);
    expect(reservation.decision.settlement).toMatchObject({ status: 'released' });
    expect(await session.claim(reservation.decision)).toBe(false);
    const next = await session.checkTool('search', { input: { q: 'b' } });
    expect(await session.claim(next, { signal: new AbortController().signal })).toBe(true);
    expect((await session.checkTool('search', { input: { q: 'c' } })).rule).toMatchObject({ section: 'limits' });
    expect(() => session.claim(next, { signal: 'no' as never })).toThrow(/AbortSignal/);
  });

  it('an allow stopped by a halt, its money given back, frees its slot too (it can never run)', async () => {
    const policy = limited(1);
    const session = policy.session();
    const reservation = await session.reserveAction({ type: 'tool', name: 'search', input: { q: 'a' }, cost: 1 });
    await policy.halt('incident');
    await expect(Promise.resolve().then(() => session.claim(reservation.decision))).rejects.toThrow(/incident/);
    await policy.resume();
    expect(await session.claim(reservation.decision)).toBe(false);
    const next = await session.checkTool('search', { input: { q: 'b' } });
    expect(next.decision).toBe('allow');
  });

  it('a keyed repeat of a withdrawn call is decided anew and takes a slot of its own', async () => {
    const session = limited(1).session();
    const first = await session.checkTool('search', { input: { q: 'a' }, idempotencyKey: 'call-1' });
    expect(await session.withdraw(first)).toBe(true);
    const repeat = await session.checkTool('search', { input: { q: 'a' }, idempotencyKey: 'call-1' });
    expect(repeat.decision).toBe('allow');
    expect(repeat.id).not.toBe(first.id);
    expect((await session.checkTool('search', { input: { q: 'b' }, idempotencyKey: 'call-2' })).rule).toMatchObject({ section: 'limits' });
  });
});

type Step =
  | { op: 'check'; reserve: boolean; by: number }
  | { op: 'run'; pick: number; by: number }
  | { op: 'withdraw'; pick: number; by: number }
  | { op: 'wait'; seconds: number };

// `by`: which of two sessions sharing the count (`scope: budget`) acts.
const by = fc.integer({ min: 0, max: 1 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('check' as const), reserve: fc.boolean(), by }),
  fc.record({ op: fc.constant('run' as const), pick: fc.nat(), by }),
  fc.record({ op: fc.constant('withdraw' as const), pick: fc.nat(), by }),
  fc.record({ op: fc.constant('wait' as const), seconds: fc.integer({ min: 0, max: 75 }) }),
);

describe('withdraw and max_calls, any interleaving', () => {
  it('never more than max_calls calls run per window, and every withdrawn call that never ran frees its slot', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(step, { maxLength: 60 }), async (maxCalls, steps) => {
        const { clock, store } = clocked();
        const policy = limited(maxCalls, { scope: 'budget' });
        const sessions = [policy.session({ limitStore: store, budgetKey: 'shared' }), policy.session({ limitStore: store, budgetKey: 'shared' })];
        const allows: { decision: Decision; owner: number; at: number; ran: boolean; withdrawn: boolean }[] = [];
        const ran: number[] = [];
        for (const s of steps) {
          if (s.op === 'wait') clock.now += s.seconds * 1000;
          else if (s.op === 'check') {
            const session = sessions[s.by]!;
            // The model: the slots held are those of allows not withdrawn, taken within the window.
            const held = allows.filter((a) => !a.withdrawn && a.at > clock.now - WINDOW_MS).length;
            const decision = s.reserve
              ? (await session.reserveAction({ type: 'tool', name: 'search', input: { n: allows.length }, cost: 0.01 })).decision
              : await session.checkTool('search', { input: { n: allows.length } });
            expect(decision.decision).toBe(held < maxCalls ? 'allow' : 'deny');
            if (decision.decision === 'allow') allows.push({ decision, owner: s.by, at: clock.now, ran: false, withdrawn: false });
          } else if (allows.length > 0) {
            const allow = allows[s.pick % allows.length]!;
            const session = sessions[s.by]!;
            // Only the session that made an allow can run or withdraw it.
            const unused = !allow.ran && !allow.withdrawn && s.by === allow.owner;
            if (s.op === 'run') {
              expect(await session.claim(allow.decision)).toBe(unused);
              if (unused) {
                allow.ran = true;
                ran.push(allow.at);
              }
            } else {
              expect(await session.withdraw(allow.decision)).toBe(unused);
              if (unused) allow.withdrawn = true;
            }
          }
        }
        // Calls that ran, by when they were allowed: never more than max_calls in one window.
        for (const at of ran) expect(ran.filter((other) => other <= at && other > at - WINDOW_MS).length).toBeLessThanOrEqual(maxCalls);
      }),
      { numRuns: 300 },
    );
  });
});
