import type { BudgetGrant, BudgetRef, BudgetSnapshot, BudgetStore, LeaseOutcome } from './budget-store.js';
import { formatUsd, nanosToUsd } from './money.js';
import type { Verdict } from './policy-evaluator.js';

/** Fired once, when spend first reaches the policy's `budget.soft_limit`. */
export interface SoftLimitEvent {
  readonly sessionId: string;
  /** The budget the spend counts against (the session id unless a `budgetKey` was given). */
  readonly budgetKey: string;
  readonly spent: number;
  readonly maxSpend: number;
  readonly softLimit: number;
}

/**
 * One session's view of its budget: the budget in the store (its key and period), the limit, and the soft-limit
 * warning. Amounts are nano-dollars. Each operation goes straight to the store, synchronously when the store answers
 * synchronously, so a check can reserve before its first `await`.
 */
export class BudgetLedger {
  private softLimitFired = false;
  /** The state the store last reported, for a shared store (whose snapshot may be stale). */
  readonly budget: BudgetRef;
  private exceededSeen = false;
  /**
   * True while this ledger has seen spend past the limit of a budget only the store can judge (shared, or with a
   * calendar period): every check, free ones included, first asks the store ({@link recheck}). False on the normal
   * path, so a free check costs no store round trip until an overrun has been seen.
   */
  recheckFirst = false;

  constructor(
    private readonly store: BudgetStore,
    readonly sessionId: string,
    budget: BudgetRef,
    /** Nanos, or null without a budget. */
    public limit: number | null,
    private softLimit: number | null,
    private readonly onSoftLimit: ((event: SoftLimitEvent) => void) | undefined,
    /** How long a lease lives unsettled before it is charged at its estimate. */
    readonly leaseTtlMs: number,
    /** False under `mode: shadow`: the budget is evaluated and recorded but never refuses a reservation. */
    private readonly enforced: boolean = true,
  ) {
    this.budget = budget;
  }

  /**
   * Whether only the store can say if money is left: other processes share it (its snapshot may be stale), or the
   * budget has a calendar period (the window may have rolled over since the snapshot).
   */
  get storeDecides(): boolean {
    return this.store.shared === true || this.budget.period !== 'session';
  }

  /** A reloaded policy's budget: later checks are held to it (spend already recorded stays). */
  retarget(limit: number | null, softLimit: number | null): void {
    this.limit = limit;
    this.softLimit = softLimit;
    if (this.exceededSeen && (limit === null || this.snapshot().spent <= limit)) this.setExceeded(false);
  }

  snapshot(): BudgetSnapshot {
    return this.store.snapshot(this.budget);
  }

  /** Holds `nanos` as a lease if the budget allows it. */
  reserve(nanos: number, ttlMs = this.leaseTtlMs): BudgetGrant | Promise<BudgetGrant> {
    return this.store.reserve(this.budget, nanos, this.enforced ? this.limit : null, ttlMs);
  }

  /** Charges `nanos` at once if the budget allows it (check and charge in one step). */
  spend(nanos: number): BudgetGrant | Promise<BudgetGrant> {
    const grant = this.store.charge(this.budget, nanos, this.enforced ? this.limit : null);
    if (grant instanceof Promise) return grant.then((settled) => this.afterCharge(settled));
    return this.afterCharge(grant);
  }

  /** Settles a lease at `actual`. */
  commit(lease: string, actual: number): LeaseOutcome | Promise<LeaseOutcome> {
    const done = this.store.commit(this.budget, lease, actual);
    if (done instanceof Promise) return done.then((outcome) => ((this.afterSpend(), outcome)));
    this.afterSpend();
    return done;
  }

  release(lease: string): LeaseOutcome | Promise<LeaseOutcome> {
    return this.store.release(this.budget, lease);
  }

  /** Gives back a `spend` whose action did not go ahead after all. */
  refund(nanos: number): void | Promise<void> {
    return this.store.refund(this.budget, nanos);
  }

  /** Charges spend that already happened; never refused. */
  charge(nanos: number): BudgetGrant | Promise<BudgetGrant> | undefined {
    if (!(nanos > 0)) return undefined;
    const grant = this.store.charge(this.budget, nanos, null);
    if (grant instanceof Promise) return grant.then((settled) => this.afterCharge(settled));
    return this.afterCharge(grant);
  }

  /** Settles expired leases in the store and reads the budget afresh. */
  reconcile(): BudgetSnapshot | Promise<BudgetSnapshot> {
    return this.store.reconcile(this.budget);
  }

  /**
   * True once this ledger has seen spend go past the limit (a real cost above its estimate, or usage recorded after
   * the fact). From then on every check is denied, free ones included: the run is over budget. On a shared or
   * calendar budget this is what the store said at the last {@link recheck} (made before each check while
   * {@link recheckFirst}): it ends when the store's current window is no longer over the limit (a new window began,
   * or the limit was raised).
   */
  get exceeded(): boolean {
    return this.exceededSeen;
  }

  /**
   * Asks the store whether its current window is still over the limit (settling expired leases first); clears
   * {@link exceeded} when it is not. Rejects when the store cannot answer (the check is then denied).
   */
  recheck(): void | Promise<void> {
    const snapshot = this.store.reconcile(this.budget);
    if (snapshot instanceof Promise) return snapshot.then((read) => this.afterRecheck(read));
    this.afterRecheck(snapshot);
  }

  private afterRecheck(snapshot: BudgetSnapshot): void {
    if (!this.overLimit(snapshot)) this.setExceeded(false);
  }

  /** A refusal from the store shows the budget past its limit (another process's overrun): later checks recheck. */
  noteRefusal(snapshot: BudgetSnapshot): void {
    if (!this.exceededSeen && this.overLimit(snapshot)) this.setExceeded(true);
  }

  private setExceeded(exceeded: boolean): void {
    this.exceededSeen = exceeded;
    this.recheckFirst = exceeded && this.storeDecides;
  }

  private afterSpend(snapshot: BudgetSnapshot = this.snapshot()): void {
    if (this.limit !== null && !this.exceededSeen && snapshot.spent > this.limit) this.setExceeded(true);
    this.checkSoftLimit(snapshot);
  }

  /** The denial of every check once spending has passed the limit. */
  exceededVerdict(costNanos: number): Verdict {
    const { spent, reserved } = this.snapshot();
    const max = this.limit ?? 0;
    return {
      decision: 'deny',
      reason: `spending has passed the budget (spent ${formatUsd(spent)} of max_spend ${formatUsd(max)}); every further call is denied`,
      rule: { section: 'budget', maxSpend: nanosToUsd(max), spent: nanosToUsd(spent), reserved: nanosToUsd(reserved), requested: nanosToUsd(costNanos) },
      approvedRule: false,
    };
  }

  /** Whether spend is now past the limit (recorded usage can go over it: it happened). */
  overLimit(snapshot: BudgetSnapshot = this.snapshot()): boolean {
    return this.limit !== null && snapshot.spent > this.limit;
  }

  /** Nanos left, or null without a budget. */
  remaining(): number | null {
    if (this.limit === null) return null;
    const { spent, reserved } = this.snapshot();
    return Math.max(0, this.limit - spent - reserved);
  }

  /** Why nothing more can be spent, or undefined while something can. */
  exhausted(): string | undefined {
    if (this.limit === null || !this.enforced) return undefined;
    const { spent, reserved, window } = this.snapshot();
    if (spent + reserved < this.limit) return undefined;
    return `the budget is used up (max_spend ${formatUsd(this.limit)}${window === 'session' ? '' : ` for ${window}`}, spent ${formatUsd(spent)}${reserved > 0 ? `, reserved ${formatUsd(reserved)}` : ''})`;
  }

  /**
   * The denial of an allow that already holds `heldNanos` in a reservation, when spend and every reservation together
   * are past the limit (a limit lowered since it was reserved); undefined while they fit, or without a limit.
   */
  heldPastLimit(heldNanos: number): Verdict | undefined {
    if (this.limit === null || !this.enforced) return undefined;
    const snapshot = this.snapshot();
    if (snapshot.spent + snapshot.reserved <= this.limit) return undefined;
    return this.refusal(heldNanos, { ...snapshot, reserved: Math.max(0, snapshot.reserved - heldNanos) });
  }

  /** The denial for money the store refused (another check took it first); `snapshot` is the store's state then. */
  refusal(costNanos: number, snapshot: BudgetSnapshot): Verdict {
    const { spent, reserved, window } = snapshot;
    const max = this.limit ?? 0;
    const scope = window === 'session' ? '' : ` for ${window}`;
    return {
      decision: 'deny',
      reason: `cost ${formatUsd(costNanos)} exceeds the remaining budget ${formatUsd(Math.max(0, max - spent - reserved))} (max_spend ${formatUsd(max)}${scope})`,
      rule: { section: 'budget', maxSpend: nanosToUsd(max), spent: nanosToUsd(spent), reserved: nanosToUsd(reserved), requested: nanosToUsd(costNanos) },
      approvedRule: false,
    };
  }

  private afterCharge(grant: BudgetGrant): BudgetGrant {
    if (grant.ok) this.afterSpend(grant.snapshot);
    return grant;
  }

  private checkSoftLimit(snapshot?: BudgetSnapshot): void {
    if (this.softLimitFired || this.limit === null) return;
    const soft = this.softLimit;
    if (soft === null || !this.onSoftLimit) return;
    const { spent } = snapshot ?? this.snapshot();
    if (spent >= this.limit * soft) {
      this.softLimitFired = true;
      try {
        this.onSoftLimit({ sessionId: this.sessionId, budgetKey: this.budget.key, spent: nanosToUsd(spent), maxSpend: nanosToUsd(this.limit), softLimit: soft });
      } catch (error) {
        process.emitWarning(`agentpolicy: onSoftLimit threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
  }
}
