import type { BudgetSnapshot, BudgetStore } from './budget-store.js';
import { formatUsd, nanosToUsd } from './money.js';
import type { Verdict } from './policy-evaluator.js';

/** Fired once, when spend first reaches the policy's `budget.soft_limit`. */
export interface SoftLimitEvent {
  readonly sessionId: string;
  readonly spent: number;
  readonly maxSpend: number;
  readonly softLimit: number;
}

/**
 * One session's money: its key in the budget store, the limit, and the soft-limit warning. Amounts are nano-dollars.
 * Each operation goes straight to the store, synchronously when the store answers synchronously, so a check can
 * reserve before its first `await`.
 */
export class BudgetLedger {
  private softLimitFired = false;
  private exceededSeen = false;

  constructor(
    private readonly store: BudgetStore,
    /** The store key: the session id. */
    readonly key: string,
    /** Nanos, or null without a budget. */
    public limit: number | null,
    private softLimit: number | null,
    private readonly onSoftLimit: ((event: SoftLimitEvent) => void) | undefined,
    /** False under `mode: shadow`: the budget is evaluated and recorded but never refuses a reservation. */
    private readonly enforced: boolean = true,
  ) {}

  /** A reloaded policy's budget: later checks are held to it (spend already recorded stays). */
  retarget(limit: number | null, softLimit: number | null): void {
    this.limit = limit;
    this.softLimit = softLimit;
    if (this.exceededSeen && (limit === null || this.snapshot().spent <= limit)) this.exceededSeen = false;
  }

  snapshot(): BudgetSnapshot {
    return this.store.snapshot(this.key);
  }

  /** Holds `nanos` if the budget allows it. */
  reserve(nanos: number): boolean | Promise<boolean> {
    return this.store.reserve(this.key, nanos, this.enforced ? this.limit : null);
  }

  /** Turns a reservation of `reserved` into a charge of `actual`. */
  commit(reserved: number, actual: number): void | Promise<void> {
    const done = this.store.commit(this.key, reserved, actual);
    if (done instanceof Promise) return done.then(() => this.afterSpend(actual > reserved));
    this.afterSpend(actual > reserved);
  }

  release(reserved: number): void | Promise<void> {
    return this.store.release(this.key, reserved);
  }

  /** Charges spend that already happened; never refused. */
  charge(nanos: number): void | Promise<void> {
    const done = nanos > 0 ? this.store.charge(this.key, nanos) : undefined;
    if (done instanceof Promise) return done.then(() => this.afterSpend(nanos > 0));
    this.afterSpend(nanos > 0);
  }

  /**
   * True once this ledger has seen spend go past the limit (a real cost above its estimate, or usage recorded after
   * the fact). From then on every check is denied, free ones included: the run is over budget.
   */
  get exceeded(): boolean {
    return this.exceededSeen;
  }

  private afterSpend(mayExceed: boolean): void {
    if (mayExceed && this.limit !== null && !this.exceededSeen && this.snapshot().spent > this.limit) this.exceededSeen = true;
    this.checkSoftLimit();
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
  overLimit(): boolean {
    return this.limit !== null && this.snapshot().spent > this.limit;
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
    const { spent, reserved } = this.snapshot();
    if (spent + reserved < this.limit) return undefined;
    return `the budget is used up (max_spend ${formatUsd(this.limit)}, spent ${formatUsd(spent)}${reserved > 0 ? `, reserved ${formatUsd(reserved)}` : ''})`;
  }

  /** The denial for a reservation the store refused (another check took the money first). */
  refusal(costNanos: number): Verdict {
    const { spent, reserved } = this.snapshot();
    const max = this.limit ?? 0;
    return {
      decision: 'deny',
      reason: `cost ${formatUsd(costNanos)} exceeds the remaining budget ${formatUsd(Math.max(0, max - spent - reserved))} (max_spend ${formatUsd(max)})`,
      rule: { section: 'budget', maxSpend: nanosToUsd(max), spent: nanosToUsd(spent), reserved: nanosToUsd(reserved), requested: nanosToUsd(costNanos) },
      approvedRule: false,
    };
  }

  private checkSoftLimit(): void {
    if (this.softLimitFired || this.limit === null) return;
    const soft = this.softLimit;
    if (soft === null || !this.onSoftLimit) return;
    const { spent } = this.snapshot();
    if (spent >= this.limit * soft) {
      this.softLimitFired = true;
      try {
        this.onSoftLimit({ sessionId: this.key, spent: nanosToUsd(spent), maxSpend: nanosToUsd(this.limit), softLimit: soft });
      } catch (error) {
        process.emitWarning(`agentpolicy: onSoftLimit threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
  }
}
