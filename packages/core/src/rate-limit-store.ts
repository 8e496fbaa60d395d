import type { MaybePromise } from './budget-store.js';

/** The answer of {@link RateLimitStore.take}. */
export type RateLimitTake = { ok: true; slot: string } | { ok: false; resetAtMs: number | null };

/**
 * Where a session counts the calls a `limits:` entry allows. `take` must be atomic for its key: it checks and takes
 * in one step, so concurrent checks never let more than `max` calls through. The in-memory store answers
 * synchronously; a shared store (Redis) returns promises and does the check-and-take on its side.
 */
export interface RateLimitStore {
  /** Atomically takes one slot under `key` if fewer than `max` are held in the window (windowMs null = no window: the
   *  whole session/budget). Returns a slot id to give back when the action ends up not allowed. */
  take(key: string, max: number, windowMs: number | null): MaybePromise<RateLimitTake>;
  /** Gives back a slot taken by `take` (idempotent). */
  giveBack(key: string, slot: string): MaybePromise<void>;
}

/** Options of {@link InMemoryRateLimitStore}. */
export interface InMemoryRateLimitStoreOptions {
  /** The clock, in milliseconds since the epoch (`Date.now` by default); tests pass their own. */
  now?: () => number;
}

// A windowed key: the slots it holds, oldest first, as parallel arrays read from `head` (compacted once the dead
// prefix is large). Memory per key is bounded by `max`.
interface WindowSlots {
  ids: number[];
  times: number[];
  head: number;
}

// A key without a window: a count, and the slots already given back (so giving back twice changes nothing), kept
// for the last few thousand give-backs.
interface CountSlots {
  held: number;
  givenBack: Set<number>;
  givenBackOld: Set<number>;
}

const GIVEN_BACK_GENERATION = 4096;

/**
 * The default store: counters in this process. A windowed key keeps the time of each slot it holds (a sliding
 * window: a slot frees `windowMs` after it was taken); a key without a window keeps a count.
 */
export class InMemoryRateLimitStore implements RateLimitStore {
  private readonly windows = new Map<string, WindowSlots>();
  private readonly counts = new Map<string, CountSlots>();
  private readonly now: () => number;
  private seq = 0;

  constructor(options: InMemoryRateLimitStoreOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  take(key: string, max: number, windowMs: number | null): RateLimitTake {
    if (windowMs === null) {
      let counted = this.counts.get(key);
      if (counted === undefined) {
        counted = { held: 0, givenBack: new Set(), givenBackOld: new Set() };
        this.counts.set(key, counted);
      }
      if (counted.held >= max) return { ok: false, resetAtMs: null };
      counted.held++;
      return { ok: true, slot: String(++this.seq) };
    }
    let slots = this.windows.get(key);
    if (slots === undefined) {
      slots = { ids: [], times: [], head: 0 };
      this.windows.set(key, slots);
    }
    const now = this.now();
    const oldest = now - windowMs;
    while (slots.head < slots.ids.length && (slots.times[slots.head] as number) <= oldest) slots.head++;
    if (slots.ids.length - slots.head >= max) {
      return { ok: false, resetAtMs: (slots.times[slots.head] as number) + windowMs };
    }
    if (slots.head > 64 && slots.head * 2 > slots.ids.length) {
      slots.ids = slots.ids.slice(slots.head);
      slots.times = slots.times.slice(slots.head);
      slots.head = 0;
    }
    const id = ++this.seq;
    slots.ids.push(id);
    slots.times.push(now);
    return { ok: true, slot: String(id) };
  }

  giveBack(key: string, slot: string): void {
    const id = Number(slot);
    const counted = this.counts.get(key);
    if (counted !== undefined) {
      if (counted.held === 0 || counted.givenBack.has(id) || counted.givenBackOld.has(id)) return;
      counted.held--;
      if (counted.givenBack.size >= GIVEN_BACK_GENERATION) {
        counted.givenBackOld = counted.givenBack;
        counted.givenBack = new Set();
      }
      counted.givenBack.add(id);
      return;
    }
    const slots = this.windows.get(key);
    if (slots === undefined) return;
    // Usually the slot just taken: search from the newest end.
    for (let i = slots.ids.length - 1; i >= slots.head; i--) {
      if (slots.ids[i] === id) {
        slots.ids.splice(i, 1);
        slots.times.splice(i, 1);
        return;
      }
    }
  }
}
