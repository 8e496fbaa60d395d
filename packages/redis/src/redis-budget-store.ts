import { randomUUID } from 'node:crypto';
import {
  AgentPolicyError,
  windowId,
  windowStart,
  type BudgetGrant,
  type BudgetPeriod,
  type BudgetRef,
  type BudgetSnapshot,
  type BudgetStore,
  type LeaseOutcome,
} from '@agentpolicy/core';
import { BUDGET_SCRIPT } from './budget-script.js';
import { clockOffset, ScriptRunner, type RedisStoreOptions } from './redis-client.js';

/** Options of {@link createRedisBudgetStore}. */
export interface RedisBudgetStoreOptions extends RedisStoreOptions {
  /**
   * How long a calendar window's keys are kept after the window ends, in ms (so the closed window's spend can still
   * be reported). Default 35 days. Session budgets are kept until deleted.
   */
  retentionMs?: number;
  /**
   * Added to the server's clock when picking a calendar window and timing leases. For tests that roll a window over;
   * leave it at 0 (the default) in production.
   */
  clockOffsetMs?: number;
}

const PERIODS: ReadonlySet<string> = new Set<BudgetPeriod>(['session', 'hour', 'day', 'week', 'month']);
const SNAPSHOTS_KEPT = 10_000;
const OUTCOMES: readonly LeaseOutcome[] = ['unknown', 'settled', 'late'];

/**
 * Budgets on Redis, shared by every process that uses the same Redis and prefix. Each operation is one Lua script
 * (one round trip) that reads the server's clock, settles expired leases, and checks and moves the money
 * atomically. See {@link BudgetStore} for the lease rules.
 */
export class RedisBudgetStore implements BudgetStore {
  readonly shared = true;
  private readonly runner: ScriptRunner;
  private readonly retention: string;
  private readonly offset: string;
  private readonly offsetMs: number;
  private readonly seen = new Map<string, BudgetSnapshot>();

  constructor(options: RedisBudgetStoreOptions) {
    this.runner = new ScriptRunner(
      options,
      'createRedisBudgetStore',
      'set the field to the right value, or delete the key (the budget then starts again from zero)',
    );
    const retentionMs = options.retentionMs ?? 35 * 86_400_000;
    if (!(Number.isSafeInteger(retentionMs) && retentionMs >= 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `retentionMs must be a whole number of ms ≥ 0, got ${String(retentionMs)}`);
    this.retention = String(retentionMs);
    this.offset = clockOffset(options);
    this.offsetMs = Number(this.offset);
  }

  /** The four keys of a budget, sharing one hash tag (the script's fifth, `<first>:ran`, holds recent charge markers). */
  keys(budget: BudgetRef): string[] {
    if (typeof budget?.key !== 'string' || budget.key === '' || !PERIODS.has(budget?.period)) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'a budget needs a non-empty key and a period of session, hour, day, week or month');
    }
    const base = this.runner.tagged(`budget:${budget.period}`, budget.key);
    return [base, `${base}:leases`, `${base}:amounts`, `${base}:expired`];
  }

  /** One run of the budget script; `id` is the lease (reserve, commit, release, cancel) or the operation (refund). */
  private async run(budget: BudgetRef, op: string, amount: number, limit: number | null, ttlMs: number, id: string): Promise<{ ok: boolean; outcome: LeaseOutcome; snapshot: BudgetSnapshot }> {
    const keys = this.keys(budget);
    const reply = await this.runner.run(BUDGET_SCRIPT, [...keys, `${keys[0]!}:ran`], [
      op,
      budget.period,
      this.offset,
      String(amount),
      limit === null ? '-1' : String(limit),
      String(ttlMs),
      id,
      this.retention,
    ]);
    if (!Array.isArray(reply) || reply.length !== 9) throw new AgentPolicyError('STORE_UNAVAILABLE', 'Redis answered the budget script with something unexpected');
    const [ok, outcome, spent, reserved, start, previousStart, previousSpent, expiredCount, expiredNanos] = reply.map(Number) as number[] as [
      number, number, number, number, number, number, number, number, number,
    ];
    const snapshot: BudgetSnapshot = {
      spent,
      reserved,
      window: windowId(budget.period, start),
      previous: previousStart < 0 || budget.period === 'session' ? null : { window: windowId(budget.period, previousStart), spent: previousSpent },
      expired: { count: expiredCount, nanos: expiredNanos },
    };
    const cacheKey = keys[0]!;
    if (this.seen.size >= SNAPSHOTS_KEPT && !this.seen.has(cacheKey)) this.seen.clear();
    this.seen.set(cacheKey, snapshot);
    return { ok: ok === 1, outcome: OUTCOMES[outcome] ?? 'unknown', snapshot };
  }

  async reserve(budget: BudgetRef, amount: number, limit: number | null, ttlMs: number): Promise<BudgetGrant> {
    checkAmount(amount);
    if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `a lease TTL must be a whole number of ms > 0, got ${String(ttlMs)}`);
    const lease = randomUUID();
    let result: Awaited<ReturnType<RedisBudgetStore['run']>>;
    try {
      result = await this.run(budget, 'reserve', amount, limit, ttlMs, lease);
    } catch (error) {
      // The reserve may still reach Redis after this check was denied (a slow server, a reply lost): cancel it, so
      // it is given back if it ran and refused if it runs later, instead of holding money until its lease expires.
      // Sent until Redis has it: a dropped connection fails it at first.
      this.runEventually(budget, 'cancel', 0, lease);
      throw error;
    }
    return result.ok ? { ok: true, lease, snapshot: result.snapshot } : { ok: false, snapshot: result.snapshot };
  }

  async commit(budget: BudgetRef, lease: string, actual: number): Promise<LeaseOutcome> {
    checkAmount(actual);
    return (await this.run(budget, 'commit', actual, null, 1, checkLease(lease))).outcome;
  }

  async release(budget: BudgetRef, lease: string): Promise<LeaseOutcome> {
    return (await this.run(budget, 'release', 0, null, 1, checkLease(lease))).outcome;
  }

  /**
   * Charges `amount` if it fits under `limit`. Not marked by an id (that would cost every check a write in Redis): a
   * charge whose reply was lost runs once or twice (ioredis sends it again on reconnect), and one that failed here
   * may have run. Either way it errs on the side of recording more spend, never less.
   */
  async charge(budget: BudgetRef, amount: number, limit: number | null): Promise<BudgetGrant> {
    checkAmount(amount);
    const result = await this.run(budget, 'charge', amount, limit, 1, '');
    return { ok: result.ok, snapshot: result.snapshot };
  }

  /** Gives back once, even when the command runs twice; one that fails here is sent again until Redis has it. */
  async refund(budget: BudgetRef, amount: number): Promise<void> {
    checkAmount(amount);
    const id = randomUUID();
    try {
      await this.run(budget, 'refund', amount, null, 1, id);
    } catch (error) {
      this.runEventually(budget, 'refund', amount, id);
      throw error;
    }
  }

  private runEventually(budget: BudgetRef, op: 'cancel' | 'refund', amount: number, id: string): void {
    const keys = this.keys(budget);
    this.runner.runEventually(BUDGET_SCRIPT, [...keys, `${keys[0]!}:ran`], [op, budget.period, this.offset, String(amount), '-1', '1', id, this.retention]);
  }

  /** Settles the budget's expired leases and reads it: the documented reconcile call. */
  async reconcile(budget: BudgetRef): Promise<BudgetSnapshot> {
    return (await this.run(budget, 'read', 0, null, 1, '')).snapshot;
  }

  /** The state the last operation from this process saw (zero before the first one). */
  snapshot(budget: BudgetRef): BudgetSnapshot {
    const seen = this.seen.get(this.keys(budget)[0]!);
    if (seen !== undefined) return seen;
    return { spent: 0, reserved: 0, window: windowId(budget.period, windowStart(budget.period, Date.now() + this.offsetMs)), previous: null, expired: { count: 0, nanos: 0 } };
  }
}

function checkAmount(amount: number): void {
  if (!(Number.isSafeInteger(amount) && amount >= 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `amounts are whole nano-dollars ≥ 0, got ${String(amount)}`);
}

function checkLease(lease: string): string {
  if (typeof lease !== 'string' || lease === '') throw new AgentPolicyError('INVALID_ARGUMENT', 'a lease id must be a non-empty string');
  return lease;
}

/**
 * A {@link BudgetStore} on Redis ≥ 7, through your own connected client (node-redis 5/6 or ioredis 5/6, single
 * node or cluster).
 *
 * @example
 * ```ts
 * import { createClient } from 'redis';
 * const client = await createClient({ url: process.env.REDIS_URL }).connect();
 * const store = createRedisBudgetStore({ client });
 * const session = policy.session({ store, budgetKey: `tenant:${tenantId}` });
 * ```
 */
export function createRedisBudgetStore(options: RedisBudgetStoreOptions): RedisBudgetStore {
  return new RedisBudgetStore(options);
}
