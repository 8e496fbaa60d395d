/** May be a value or a promise of it, so a shared (networked) store can implement the same interface. */
export type MaybePromise<T> = T | Promise<T>;

/** The ledger's state for one session, in nano-dollars. */
export interface BudgetSnapshot {
  readonly spent: number;
  readonly reserved: number;
}

/**
 * Where a session keeps its money. Every method must be atomic for its key: `reserve` checks and reserves in one
 * step, so concurrent checks can never overspend. The in-memory store answers synchronously, so a check reserves
 * before its first `await`; a shared store (Redis, SQL) returns promises and does the check-and-reserve on its side.
 */
export interface BudgetStore {
  /** Reserves `amount` if `spent + reserved + amount <= limit` (`limit` null = no limit). Returns whether it did. */
  reserve(key: string, amount: number, limit: number | null): MaybePromise<boolean>;
  /** Turns a reservation of `reserved` into a charge of `actual` (which may differ). */
  commit(key: string, reserved: number, actual: number): MaybePromise<void>;
  /** Gives back a reservation of `reserved`, charging nothing. */
  release(key: string, reserved: number): MaybePromise<void>;
  /** Charges `amount` directly (spend that already happened); never refused. */
  charge(key: string, amount: number): MaybePromise<void>;
  /** Current state, synchronously: the value the last write left in this process. */
  snapshot(key: string): BudgetSnapshot;
}

/** The default store: a Map in this process. */
export class InMemoryBudgetStore implements BudgetStore {
  private readonly entries = new Map<string, { spent: number; reserved: number }>();

  private entry(key: string): { spent: number; reserved: number } {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { spent: 0, reserved: 0 };
      this.entries.set(key, entry);
    }
    return entry;
  }

  reserve(key: string, amount: number, limit: number | null): boolean {
    const entry = this.entry(key);
    if (limit !== null && entry.spent + entry.reserved + amount > limit) return false;
    if (entry.spent + entry.reserved + amount > Number.MAX_SAFE_INTEGER) return false;
    entry.reserved += amount;
    return true;
  }

  commit(key: string, reserved: number, actual: number): void {
    const entry = this.entry(key);
    entry.reserved -= reserved;
    entry.spent = Math.min(entry.spent + actual, Number.MAX_SAFE_INTEGER);
  }

  release(key: string, reserved: number): void {
    this.entry(key).reserved -= reserved;
  }

  charge(key: string, amount: number): void {
    const entry = this.entry(key);
    entry.spent = Math.min(entry.spent + amount, Number.MAX_SAFE_INTEGER);
  }

  snapshot(key: string): BudgetSnapshot {
    const entry = this.entries.get(key);
    return entry ? { spent: entry.spent, reserved: entry.reserved } : { spent: 0, reserved: 0 };
  }
}
