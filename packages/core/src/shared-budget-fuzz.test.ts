/**
 * A model-based fuzz of several sessions spending from one budget key: per-request sessions as a server opens them,
 * on an `InMemoryBudgetStore` shared explicitly, on the policy's own keyed store, or opened from a live
 * `PolicySource` whose policy changes (max_spend raised or lowered, `budget.period` changed) while they run. Random
 * interleavings, one step at a time or racing, of checks, reservations and their settlement, claims, tool runs,
 * recorded usage, approvals answered from another session, halts by budget key, sessions ended or dropped with money
 * held, and a clock moved past the leases' TTL. After every step it checks what the engine promises:
 * - the budget's spent + reserved never passes the largest max_spend in force, but for the spend recorded past it
 *   on purpose (recorded usage, overruns of estimates);
 * - a `scope: budget` limit lets no more than max_calls calls through across every session of the key;
 * - a halt of the key stops every session on it, and none on another key;
 * - the in-memory stores stay bounded as sessions come and go;
 * and once everything is settled, what the sessions say they spent is what the budget holds (late releases and
 * commits of expired leases aside: the store charges those at their estimate on purpose).
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it, vi } from 'vitest';
import { InMemoryApprovalStore } from './approval-store.js';
import { InMemoryBudgetStore, type BudgetPeriod } from './budget-store.js';
import type { Decision } from './decision.js';
import { AgentPolicyError } from './errors.js';
import { AgentPolicy } from './policy.js';
import { PolicySource } from './policy-source.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';
import type { Reservation } from './reservation.js';
import type { PolicySession } from './session.js';
import { nanos, pastBudgetNanos, Violation } from './test-support/fuzz.js';

const KEY = 'tenant';
const OTHER = 'other-tenant';
const LEASE_TTL_MS = 1000;
const SEARCH_MAX = 3;
const START_MS = Date.UTC(2026, 10, 30, 12);

function document(maxSpend: number, period: BudgetPeriod): Record<string, unknown> {
  return {
    budget: { max_spend: maxSpend, period },
    tools: { block: ['rm'] },
    limits: [
      { tool: 'search', max_calls: SEARCH_MAX, per: 'session', scope: 'budget' },
      { tool: 'fetch', max_calls: 2, per: 'session' },
    ],
    approval: { require_for: [{ tool: 'pay' }] },
  };
}

type Mode = 'explicit' | 'keyed' | 'source';

type Op =
  | { op: 'check'; at: number; tool: string; cost: number }
  | { op: 'checkCost' | 'reserve'; at: number; cost: number }
  | { op: 'settle'; pick: number; how: 'commit' | 'release' | 'fail'; actual: number | undefined }
  | { op: 'claim'; pick: number }
  | { op: 'runTool'; at: number; tool: string; cost: number; throws: boolean }
  | { op: 'usage'; at: number }
  | { op: 'approve'; pick: number; by: number }
  | { op: 'end' | 'drop'; at: number }
  | { op: 'open' }
  | { op: 'halt'; key: 'tenant' | 'other' | 'all' }
  | { op: 'resume'; key: 'tenant' | 'other' | 'all' }
  | { op: 'update'; maxSpend: number; period: BudgetPeriod }
  | { op: 'reconcile'; at: number };

const AT = fc.nat(20);
const COST = fc.constantFrom(0, 0.5, 1, 2.5, 4);
const TOOL = fc.constantFrom('search', 'fetch', 'pay', 'other');
const anOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ op: fc.constant('check'), at: AT, tool: TOOL, cost: COST }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constantFrom('checkCost', 'reserve'), at: AT, cost: COST }) },
  { weight: 15, arbitrary: fc.record({ op: fc.constant('settle'), pick: fc.nat(50), how: fc.constantFrom('commit', 'release', 'fail'), actual: fc.constantFrom(undefined, 0, 0.3, 3, 20) }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('claim'), pick: fc.nat(50) }) },
  { weight: 12, arbitrary: fc.record({ op: fc.constant('runTool'), at: AT, tool: TOOL, cost: COST, throws: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('usage'), at: AT }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('approve'), pick: fc.nat(50), by: AT }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('end', 'drop'), at: AT }) },
  { weight: 4, arbitrary: fc.constant({ op: 'open' } as const) },
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom('halt', 'resume'), key: fc.constantFrom('tenant', 'other', 'all') }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('update'), maxSpend: fc.constantFrom(2, 5, 10, 20), period: fc.constantFrom<BudgetPeriod>('session', 'session', 'day') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('reconcile'), at: AT }) },
) as fc.Arbitrary<Op>;

/** A step, or a few racing; `advance` moves the clock by that many ms first (past the lease TTL when ≥ 1000). */
const aBatch = fc.record({ ops: fc.array(anOp, { minLength: 1, maxLength: 4 }), together: fc.boolean(), advance: fc.constantFrom(0, 0, 0, 0, 400, 1200) });

interface Opened {
  session: PolicySession;
  key: string;
  period: BudgetPeriod;
  /** No longer used by the caller: ended, or dropped with whatever it held. */
  gone: boolean;
  ended: boolean;
}

interface Held {
  reservation: Reservation;
  owner: Opened;
}

interface World {
  mode: Mode;
  policy: AgentPolicy;
  source: PolicySource | undefined;
  store: InMemoryBudgetStore | undefined;
  limitStore: InMemoryRateLimitStore | undefined;
  approvals: InMemoryApprovalStore;
  sessions: Opened[];
  reservations: Held[];
  allows: Decision[];
  /** max_spend (nanos) in force, and the largest in force during the current batch (a grant in it may be held to that). */
  maxSpend: number;
  period: BudgetPeriod;
  bound: number;
  /** What each budget (by the period its sessions keep) held after the last batch, less spend recorded past it on purpose. */
  held: Map<BudgetPeriod, number>;
  /** What is halted, by the model: every key, or these keys. */
  halted: Set<string>;
  sessionsOpened: number;
}

const policyOf = (maxSpend: number, period: BudgetPeriod) => AgentPolicy.fromDict(document(maxSpend, period));

function open(world: World, key: string): Opened {
  const options = { budgetKey: key, leaseTtlMs: LEASE_TTL_MS, approvals: world.approvals };
  const session =
    world.mode === 'source'
      ? (world.source as PolicySource).session(options)
      : world.mode === 'keyed'
        ? world.policy.session(options)
        : world.policy.session({ ...options, store: world.store as InMemoryBudgetStore, limitStore: world.limitStore as InMemoryRateLimitStore });
  const opened = { session, key, period: session.report().period, gone: false, ended: false };
  world.sessions.push(opened);
  world.sessionsOpened++;
  return opened;
}

const tenants = (world: World) => world.sessions.filter((s) => s.key === KEY);
function live(world: World, at: number): Opened | undefined {
  const list = tenants(world).filter((s) => !s.gone);
  return list.length === 0 ? undefined : list[at % list.length];
}

/** A typed agentpolicy error is an answer; anything else is a violation. */
async function attempt<T>(where: string, call: () => T | Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    if (AgentPolicyError.isInstance(error) || error instanceof ToolError) return undefined;
    throw new Violation(`${where} threw ${String(error)}`);
  }
}
class ToolError extends Error {}

async function step(world: World, op: Op): Promise<void> {
  switch (op.op) {
    case 'check': {
      const s = live(world, op.at);
      if (s) await attempt('checkTool', () => s.session.checkTool(op.tool, { cost: op.cost, input: { q: op.at } }));
      return;
    }
    case 'checkCost': {
      const s = live(world, op.at);
      if (s) await attempt('checkCost', () => s.session.checkCost(op.cost, { source: 'model:x' }));
      return;
    }
    case 'reserve': {
      const s = live(world, op.at);
      if (!s) return;
      const reservation = await attempt('reserve', () => s.session.reserve(op.cost, { source: 'model:x' }));
      if (reservation?.allowed) world.reservations.push({ reservation, owner: s });
      return;
    }
    case 'settle': {
      const open = world.reservations.filter((h) => !h.reservation.settled && !h.owner.gone);
      const held = open[op.pick % Math.max(1, open.length)];
      if (!held) return;
      await attempt('settle', () =>
        op.how === 'commit' ? held.reservation.commit(op.actual) : op.how === 'release' ? held.reservation.release() : held.reservation.fail({ status: op.actual === 0 ? 400 : 500 }),
      );
      return;
    }
    case 'claim': {
      const allows = world.allows;
      const decision = allows[op.pick % Math.max(1, allows.length)];
      const owner = decision && world.sessions.find((s) => s.session.id === decision.sessionId);
      if (decision && owner) await attempt('claim', () => owner.session.claim(decision));
      return;
    }
    case 'runTool': {
      const s = live(world, op.at);
      if (!s) return;
      await attempt('runTool', () =>
        s.session.runTool(op.tool, { cost: op.cost, input: { q: op.at } }, () => {
          if (op.throws) throw new ToolError('tool failed');
          return 'done';
        }),
      );
      return;
    }
    case 'usage': {
      const s = live(world, op.at);
      if (s) await attempt('recordUsage', () => s.session.recordUsage({ model: 'gpt-4o', inputTokens: 100_000, outputTokens: 100_000 }));
      return;
    }
    case 'approve': {
      // A request raised by one session, answered from another session on the same approval store; then the agent
      // of the first resumes with the request id.
      const raised = tenants(world).flatMap((s) => s.session.report().decisions.filter((d) => d.approvalRequest !== undefined).map((d) => ({ s, d })));
      const pick = raised[op.pick % Math.max(1, raised.length)];
      const answerer = live(world, op.by);
      if (!pick || !answerer) return;
      const id = pick.d.approvalRequest?.id as string;
      await attempt('resolveApproval', () => answerer.session.resolveApproval(id, { approved: true, by: 'alice' }));
      if (pick.s.gone || pick.d.action.type !== 'tool') return;
      const action = pick.d.action;
      await attempt('approved check', () => pick.s.session.checkTool(action.name, { cost: action.cost, input: action.input, approval: { requestId: id } }));
      return;
    }
    case 'end': {
      const s = live(world, op.at);
      if (s) {
        s.gone = true;
        s.ended = true;
        s.session.end();
      }
      return;
    }
    case 'drop': {
      const s = live(world, op.at);
      if (s) s.gone = true;
      return;
    }
    case 'open':
      open(world, KEY);
      return;
    case 'halt':
    case 'resume': {
      const target = world.source ?? world.policy;
      const options = op.key === 'all' ? {} : { budgetKey: op.key === 'tenant' ? KEY : OTHER };
      if (op.op === 'halt') {
        await target.halt('stop', options);
        world.halted.add(op.key === 'all' ? '*' : (options.budgetKey as string));
      } else {
        await target.resume(options);
        world.halted.delete(op.key === 'all' ? '*' : (options.budgetKey as string));
      }
      return;
    }
    case 'update': {
      if (world.source === undefined) return;
      const result = world.source.update(document(op.maxSpend, op.period));
      if (!result.ok) throw new Violation(`update refused: ${JSON.stringify(result)}`);
      world.maxSpend = nanos(op.maxSpend);
      world.period = op.period;
      world.bound = Math.max(world.bound, world.maxSpend);
      return;
    }
    case 'reconcile': {
      const s = live(world, op.at);
      if (s) await attempt('reconcile', () => s.session.reconcile());
      return;
    }
  }
}

/** Every decision of the sessions of `key` (their reports keep them all: far fewer than maxDecisions). */
function decisionsOf(world: World, key: string): Decision[] {
  return world.sessions.filter((s) => s.key === key).flatMap((s) => s.session.report().decisions as Decision[]);
}

function invariants(world: World, where: string): void {
  const byPeriod = new Map<BudgetPeriod, { spent: number; reserved: number }>();
  for (const s of tenants(world)) {
    const report = s.session.report();
    if (report.decisionsDropped !== 0) throw new Violation(`after ${where}: decisions dropped`);
    byPeriod.set(s.period, { spent: nanos(report.spent), reserved: nanos(report.reserved) });
  }
  const decisions = decisionsOf(world, KEY);
  for (const [period, { spent, reserved }] of byPeriod) {
    const past = decisions.filter((d) => world.sessions.find((s) => s.session.id === d.sessionId)?.period === period).reduce((sum, d) => sum + pastBudgetNanos(d), 0);
    // Money granted in this batch was granted under one of the max_spends in force during it: the budget may hold up
    // to the largest of them. Money held before stays (a lowered max_spend takes nothing back), but nothing more may
    // be granted past the lower one.
    const held = spent + reserved - past;
    if (held > world.bound + 10 && held > (world.held.get(period) ?? 0) + 10) {
      throw new Violation(`after ${where}: budget ${KEY} (${period}) holds spent ${spent / 1e9} + reserved ${reserved / 1e9}, past max_spend ${world.bound / 1e9} in force (+ ${past / 1e9} recorded past it on purpose), up from ${(world.held.get(period) ?? 0) / 1e9}`);
    }
    world.held.set(period, held);
  }
  world.bound = world.maxSpend;
  // A `scope: budget` limit counts the calls allowed across every session of the key (a slot comes back only when
  // the allow is never used: a released reservation, say; those are not counted here).
  const searches = decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool' && d.action.name === 'search' && d.settlement?.status !== 'released');
  if (searches.length > SEARCH_MAX) throw new Violation(`after ${where}: ${searches.length} search calls allowed across the sessions of ${KEY}; limits[0] allows ${SEARCH_MAX}`);
  // The stores hold the budgets of two keys (a budget per period a session keeps), the `scope: budget` counts of the
  // two keys, and the `per: session` count of each session not yet ended (an ended session's are let go).
  if (world.store && world.store.size > 4) throw new Violation(`after ${where}: the budget store holds ${world.store.size} budgets for 2 keys`);
  if (world.limitStore) {
    const notEnded = world.sessions.filter((s) => !s.ended).length;
    if (world.limitStore.size > notEnded + 2) throw new Violation(`after ${where}: the limit store holds ${world.limitStore.size} counts with ${notEnded} sessions not ended (${world.sessionsOpened} opened)`);
  }
}

/** After a halt or resume: each session in use stops exactly when the model says its key is halted. */
async function probeHalts(world: World, where: string): Promise<void> {
  for (const s of world.sessions) {
    if (s.gone) continue;
    const decision = await s.session.checkTool('probe', {});
    const halted = world.halted.has('*') || world.halted.has(s.key);
    const byHalt = decision.decision === 'deny' && decision.rule.section === 'halt';
    if (halted !== byHalt) throw new Violation(`after ${where}: session of ${s.key} ${byHalt ? 'halted' : 'not halted'} (${decision.decision}: ${decision.reason}) but the halts are ${[...world.halted].join(',') || 'none'}`);
  }
}

/** Once every session has ended and every lease has been settled or charged, what the sessions spent is what the store holds. */
async function settledAccounts(world: World): Promise<void> {
  for (const s of world.sessions) s.session.end();
  await new Promise((resolve) => setTimeout(resolve, 0));
  vi.setSystemTime(Date.now() + 2 * LEASE_TTL_MS);
  for (const s of world.sessions) {
    const open = s.session.report().decisions.find((d) => d.settlement?.status === 'pending');
    if (open) throw new Violation(`settled: session ${s.session.id} ended with decision ${open.id} (${open.reason}) still pending`);
  }
  for (const key of [KEY, OTHER]) {
    const periods = new Set(world.sessions.filter((s) => s.key === key).map((s) => s.period));
    for (const period of periods) {
      const group = world.sessions.filter((s) => s.key === key && s.period === period);
      const report = await (group[0] as Opened).session.reconcile();
      const told = group.reduce((sum, s) => sum + nanos(s.session.report().costSummary.allowed.total), 0);
      // A lease that expired unsettled was charged at its estimate; settled later, it adds only a cost above that (a
      // late release gives nothing back). So the store may keep up to the expired estimates more than the sessions say.
      const expired = nanos(report.expiredLeases.amount);
      const tolerance = 10 * (group.length + 1);
      const extra = nanos(report.spent) - told;
      if (extra < -tolerance || extra > expired + tolerance || report.reserved !== 0) {
        throw new Violation(`settled: ${key} (${period}) holds spent ${report.spent}, reserved ${report.reserved}; its ${group.length} sessions say ${told / 1e9} (leases expired: ${expired / 1e9})`);
      }
    }
  }
}

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_201 : Number(process.env['FUZZ_SEED']);
const RUNS = process.env['FUZZ_RUNS'] === undefined ? 500 : Number(process.env['FUZZ_RUNS']);

beforeAll(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
});
afterAll(() => {
  vi.useRealTimers();
});

describe('shared budget fuzz: sessions on one budget key keep the budget, the limits and the halts', () => {
  it('random interleavings across 2–5 sessions, stores, live policy changes and expiring leases', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<Mode>('explicit', 'keyed', 'source'), fc.integer({ min: 2, max: 5 }), fc.constantFrom(5, 10), fc.array(aBatch, { minLength: 1, maxLength: 20 }), async (mode, count, maxSpend, batches) => {
        vi.setSystemTime(START_MS);
        const policy = policyOf(maxSpend, 'session');
        const source = mode === 'source' ? new PolicySource(policy) : undefined;
        const world: World = {
          mode,
          policy,
          source,
          store: mode === 'explicit' ? new InMemoryBudgetStore() : undefined,
          limitStore: mode === 'explicit' ? new InMemoryRateLimitStore() : undefined,
          approvals: new InMemoryApprovalStore(),
          sessions: [],
          reservations: [],
          allows: [],
          maxSpend: nanos(maxSpend),
          period: 'session',
          bound: nanos(maxSpend),
          held: new Map(),
          halted: new Set(),
          sessionsOpened: 0,
        };
        for (let i = 0; i < count; i++) open(world, KEY);
        open(world, OTHER);
        try {
          for (const { ops, together, advance } of batches) {
            if (advance > 0) vi.setSystemTime(Date.now() + advance);
            if (together) await Promise.all(ops.map((op) => step(world, op)));
            else for (const op of ops) await step(world, op);
            world.allows = world.sessions.flatMap((s) => s.session.report().decisions.filter((d) => d.decision === 'allow'));
            const where = ops.map((op) => op.op).join(together ? '+' : ',');
            invariants(world, where);
            if (ops.some((op) => op.op === 'halt' || op.op === 'resume')) await probeHalts(world, where);
          }
          await settledAccounts(world);
        } finally {
          source?.close();
          await (source ?? policy).resume();
        }
      }),
      { seed: SEED, numRuns: RUNS, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false },
    );
  }, 60_000);
});
