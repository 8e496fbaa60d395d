import { sweepIdle } from './idle-sweep.js';

/** May be a value or a promise of it, so a shared (networked) store can implement the same interface. */
export type MaybePromise<T> = T | Promise<T>;

/** Over which time a budget's `max_spend` applies: the whole budget's life, or one UTC calendar window. */
export type BudgetPeriod = 'session' | 'hour' | 'day' | 'week' | 'month';

/** Which budget an operation is about: its key (the session id, or a shared `budgetKey`) and its period. */
export interface BudgetRef {
  readonly key: string;
  readonly period: BudgetPeriod;
}

/** A window's spend, kept after the window has closed. */
export interface WindowSpend {
  /** The window's id, e.g. `day:2026-11-30` (see {@link windowId}). */
  readonly window: string;
  /** Nano-dollars. */
  readonly spent: number;
}

/** The state of one budget in its current window, in nano-dollars. */
export interface BudgetSnapshot {
  readonly spent: number;
  /** Held by open leases. */
  readonly reserved: number;
  /** The current window's id: `session` for a session budget. */
  readonly window: string;
  /** The window before this one, still reported after it closed (null for a session budget or none yet). */
  readonly previous: WindowSpend | null;
  /** Leases that expired unsettled and were charged at their estimate: how many, and how much in total. */
  readonly expired: { readonly count: number; readonly nanos: number };
}

/** A store's answer to `reserve` or `charge`: whether it took the money, and the state right after. */
export interface BudgetGrant {
  readonly ok: boolean;
  /** The lease id to commit or release, when a `reserve` was granted. */
  readonly lease?: string;
  readonly snapshot: BudgetSnapshot;
}

/** How a lease was settled: `settled` now, `late` after it had expired (it was already charged at its estimate), or `unknown` (already settled, or never granted). */
export type LeaseOutcome = 'settled' | 'late' | 'unknown';

/**
 * Where budgets keep their money. Amounts are integer nano-dollars. Every method is atomic for its budget:
 * `reserve` and `charge` check the limit and take the money in one step, so concurrent checks can never overspend.
 *
 * A reservation is a **lease**: an id, an amount and a time to live. `commit` and `release` are idempotent by
 * lease id (a retried commit charges once). A lease that outlives its TTL unsettled (its process died) is charged
 * at its amount, the estimate, by the next operation on that budget or by {@link BudgetStore.reconcile}, and
 * counted in `expired`: never silently given back. A late commit of an expired lease charges only what its actual
 * cost adds above the estimate; a late release changes nothing.
 *
 * With a calendar period the limit applies per UTC window: when a new window starts, its spend starts at zero,
 * open leases carry over (they are settled in the window they end in), and the closed window's spend is kept.
 *
 * The in-memory store answers synchronously, so a check reserves before its first `await`; a shared store (Redis,
 * SQL) returns promises and does the check-and-reserve on its side, with its own clock.
 */
export interface BudgetStore {
  /** Holds `amount` as a lease of `ttlMs` if `spent + reserved + amount <= limit` (`limit` null = no limit). */
  reserve(budget: BudgetRef, amount: number, limit: number | null, ttlMs: number): MaybePromise<BudgetGrant>;
  /** Settles a lease, charging `actual` (which may differ from the amount held). Idempotent. */
  commit(budget: BudgetRef, lease: string, actual: number): MaybePromise<LeaseOutcome>;
  /** Gives back a lease, charging nothing. Idempotent. */
  release(budget: BudgetRef, lease: string): MaybePromise<LeaseOutcome>;
  /** Charges `amount` if it fits under `limit`; with `limit` null it is never refused (spend that already happened). */
  charge(budget: BudgetRef, amount: number, limit: number | null): MaybePromise<BudgetGrant>;
  /**
   * Gives back `amount` taken by a granted `charge` whose action did not go ahead after all (its audit record could
   * not be written). Spend never goes below zero.
   */
  refund(budget: BudgetRef, amount: number): MaybePromise<void>;
  /** Settles expired leases and returns the budget's current state, read from the store itself. */
  reconcile(budget: BudgetRef): MaybePromise<BudgetSnapshot>;
  /** The state, synchronously: exact for a store in this process, the last state seen for a shared one. */
  snapshot(budget: BudgetRef): BudgetSnapshot;
  /**
   * True when other processes share this store, so `snapshot` may be stale: the session then leaves every
   * budget check to `reserve` and `charge` instead of denying on its own view.
   */
  readonly shared?: boolean;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** The UTC start (ms since the epoch) of the window of `period` holding `nowMs`; 0 for a session budget. */
export function windowStart(period: BudgetPeriod, nowMs: number): number {
  switch (period) {
    case 'session':
      return 0;
    case 'hour':
      return Math.floor(nowMs / HOUR_MS) * HOUR_MS;
    case 'day':
      return Math.floor(nowMs / DAY_MS) * DAY_MS;
    case 'week': {
      // ISO weeks start on Monday; 1970-01-01 was a Thursday, so Monday 1969-12-29 is day -3.
      const days = Math.floor(nowMs / DAY_MS);
      return (days - ((((days + 3) % 7) + 7) % 7)) * DAY_MS;
    }
    case 'month': {
      const date = new Date(nowMs);
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
    }
  }
}

/** The UTC end (exclusive) of the window starting at `start`; Infinity for a session budget. */
export function windowEnd(period: BudgetPeriod, start: number): number {
  switch (period) {
    case 'session':
      return Number.POSITIVE_INFINITY;
    case 'hour':
      return start + HOUR_MS;
    case 'day':
      return start + DAY_MS;
    case 'week':
      return start + 7 * DAY_MS;
    case 'month': {
      const date = new Date(start);
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
    }
  }
}

/**
 * A window's id from its start: `session`, `hour:2026-11-30T14`, `day:2026-11-30`, `week:2026-11-30` (the Monday),
 * `month:2026-11`.
 */
export function windowId(period: BudgetPeriod, start: number): string {
  if (period === 'session') return 'session';
  const iso = new Date(start).toISOString();
  if (period === 'hour') return `hour:${iso.slice(0, 13)}`;
  if (period === 'month') return `month:${iso.slice(0, 7)}`;
  return `${period}:${iso.slice(0, 10)}`;
}

/** Options of {@link InMemoryBudgetStore}. */
export interface InMemoryBudgetStoreOptions {
  /** The clock, in ms since the epoch (`Date.now` by default); tests move it to roll a calendar window over. */
  now?: () => number;
}

interface MemoryLease {
  readonly entry: MemoryEntry;
  readonly amount: number;
  readonly expiresAt: number;
}

interface MemoryEntry {
  spent: number;
  reserved: number;
  /** Start of the current window (0 for a session budget) and its end. */
  start: number;
  end: number;
  window: string;
  previous: WindowSpend | null;
  expiredCount: number;
  expiredNanos: number;
  /** Leases that expired and were charged at their estimate, for a late commit. Cleared when it grows large. */
  readonly lapsed: Map<string, number>;
  /** Until when the lapsed leases are kept for a late commit (a day after the last one lapsed, as on Redis). */
  lapsedUntil: number;
  /** Leases of this budget still open (they hold this entry, whatever window it is in now). */
  open: number;
  readonly period: BudgetPeriod;
}

const LAPSED_KEPT = 10_000;
const LAPSED_KEPT_MS = 86_400_000;

/**
 * The default store: budgets in a Map in this process, answering synchronously. Leases live in insertion order,
 * which is expiry order, so settling the expired ones costs nothing until one has expired. A calendar budget (`hour`,
 * `day`, `week`, `month`) idle for a whole window after its last one, with no lease open, is removed as new keys come;
 * a `session` budget is kept for as long as the store lives.
 */
export class InMemoryBudgetStore implements BudgetStore {
  private readonly entries = new Map<string, MemoryEntry>();
  private readonly leases = new Map<string, MemoryLease>();
  private readonly leasesByTtl = new Map<number, Map<string, MemoryLease>>();
  private readonly now: () => number;
  private nextLease = 0;

  constructor(options: InMemoryBudgetStoreOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  private entry(budget: BudgetRef, nowMs: number): MemoryEntry {
    const mapKey = budget.period === 'session' ? budget.key : `${budget.period}\u0000${budget.key}`;
    let entry = this.entries.get(mapKey);
    if (!entry) {
      this.sweep(nowMs);
      const start = windowStart(budget.period, nowMs);
      entry = {
        spent: 0,
        reserved: 0,
        start,
        end: windowEnd(budget.period, start),
        window: windowId(budget.period, start),
        previous: null,
        expiredCount: 0,
        expiredNanos: 0,
        lapsed: new Map(),
        lapsedUntil: 0,
        open: 0,
        period: budget.period,
      };
      this.entries.set(mapKey, entry);
    } else if (nowMs >= entry.end || nowMs < entry.start) {
      const start = windowStart(budget.period, nowMs);
      entry.previous = { window: entry.window, spent: entry.spent };
      entry.spent = 0;
      entry.start = start;
      entry.end = windowEnd(budget.period, start);
      entry.window = windowId(budget.period, start);
    }
    return entry;
  }

  // A calendar budget idle for a whole window after its last one holds nothing a later operation would read: its
  // spend belongs to a window that is neither current nor the one just before it (the report's `previous`), no lease
  // of it is open, and a late commit of a lapsed one is no longer waited for. Such a budget is removed as new keys
  // come, so a store given a key per conversation or per user keeps only the budgets still in use. A `session` budget
  // is never removed: its spend is the session's for good (its id may be opened again).
  private sweep(nowMs: number): void {
    sweepIdle(this.entries, (entry) => entry.period !== 'session' && entry.open === 0 && (entry.lapsed.size === 0 || nowMs >= entry.lapsedUntil) && nowMs >= windowEnd(entry.period, entry.end));
  }

  /** Budgets the store holds (calendar budgets idle for a whole window are removed as new keys come). */
  get size(): number {
    return this.entries.size;
  }

  /** Charges every expired lease at its amount. */
  private expire(nowMs: number): void {
    for (const leases of this.leasesByTtl.values()) {
      for (const [id, lease] of leases) {
        if (lease.expiresAt > nowMs) break;
        leases.delete(id);
        this.leases.delete(id);
        const entry = lease.entry;
        entry.open--;
        entry.reserved -= lease.amount;
        entry.spent = Math.min(entry.spent + lease.amount, Number.MAX_SAFE_INTEGER);
        entry.expiredCount++;
        entry.expiredNanos += lease.amount;
        if (entry.lapsed.size >= LAPSED_KEPT) entry.lapsed.clear();
        entry.lapsed.set(id, lease.amount);
        entry.lapsedUntil = nowMs + LAPSED_KEPT_MS;
      }
    }
  }

  private view(entry: MemoryEntry): BudgetSnapshot {
    return {
      spent: entry.spent,
      reserved: entry.reserved,
      window: entry.window,
      previous: entry.previous,
      expired: { count: entry.expiredCount, nanos: entry.expiredNanos },
    };
  }

  reserve(budget: BudgetRef, amount: number, limit: number | null, ttlMs: number): BudgetGrant {
    const nowMs = this.now();
    if (this.leases.size > 0) this.expire(nowMs);
    const entry = this.entry(budget, nowMs);
    const total = entry.spent + entry.reserved + amount;
    if ((limit !== null && total > limit) || total > Number.MAX_SAFE_INTEGER) return { ok: false, snapshot: this.view(entry) };
    entry.reserved += amount;
    entry.open++;
    const id = `m${++this.nextLease}`;
    const lease = { entry, amount, expiresAt: nowMs + ttlMs };
    this.leases.set(id, lease);
    let byTtl = this.leasesByTtl.get(ttlMs);
    if (!byTtl) {
      byTtl = new Map();
      this.leasesByTtl.set(ttlMs, byTtl);
    }
    byTtl.set(id, lease);
    return { ok: true, lease: id, snapshot: this.view(entry) };
  }

  private settle(budget: BudgetRef, id: string, actual: number | null): LeaseOutcome {
    const nowMs = this.now();
    if (this.leases.size > 0) this.expire(nowMs);
    const lease = this.leases.get(id);
    const entry = this.entry(budget, nowMs);
    if (lease === undefined || lease.entry !== entry) {
      const lapsed = entry.lapsed.get(id);
      if (lapsed === undefined) return 'unknown';
      entry.lapsed.delete(id);
      if (actual !== null && actual > lapsed) entry.spent = Math.min(entry.spent + actual - lapsed, Number.MAX_SAFE_INTEGER);
      return 'late';
    }
    this.leases.delete(id);
    for (const leases of this.leasesByTtl.values()) if (leases.delete(id)) break;
    entry.open--;
    entry.reserved -= lease.amount;
    if (actual !== null) entry.spent = Math.min(entry.spent + actual, Number.MAX_SAFE_INTEGER);
    return 'settled';
  }

  commit(budget: BudgetRef, lease: string, actual: number): LeaseOutcome {
    return this.settle(budget, lease, actual);
  }

  release(budget: BudgetRef, lease: string): LeaseOutcome {
    return this.settle(budget, lease, null);
  }

  charge(budget: BudgetRef, amount: number, limit: number | null): BudgetGrant {
    const nowMs = this.now();
    if (this.leases.size > 0) this.expire(nowMs);
    const entry = this.entry(budget, nowMs);
    if (limit !== null && entry.spent + entry.reserved + amount > limit) return { ok: false, snapshot: this.view(entry) };
    entry.spent = Math.min(entry.spent + amount, Number.MAX_SAFE_INTEGER);
    return { ok: true, snapshot: this.view(entry) };
  }

  refund(budget: BudgetRef, amount: number): void {
    const entry = this.entry(budget, this.now());
    entry.spent = Math.max(0, entry.spent - amount);
  }

  reconcile(budget: BudgetRef): BudgetSnapshot {
    const nowMs = this.now();
    if (this.leases.size > 0) this.expire(nowMs);
    return this.view(this.entry(budget, nowMs));
  }

  snapshot(budget: BudgetRef): BudgetSnapshot {
    return this.reconcile(budget);
  }
}
