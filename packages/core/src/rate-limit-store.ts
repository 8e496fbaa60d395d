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

// A windowed key: the slots it holds, oldest first, in a ring of typed arrays (no garbage per call; the ring
// doubles when full, so its size stays within twice the calls held in the window, and never above twice `max`).
interface WindowSlots {
  times: Float64Array;
  ids: Float64Array;
  start: number;
  size: number;
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
      slots = { times: new Float64Array(8), ids: new Float64Array(8), start: 0, size: 0 };
      this.windows.set(key, slots);
    }
    const now = this.now();
    const oldest = now - windowMs;
    let mask = slots.times.length - 1;
    while (slots.size > 0 && (slots.times[slots.start] as number) <= oldest) {
      slots.start = (slots.start + 1) & mask;
      slots.size--;
    }
    if (slots.size >= max) return { ok: false, resetAtMs: (slots.times[slots.start] as number) + windowMs };
    if (slots.size === slots.times.length) {
      grow(slots);
      mask = slots.times.length - 1;
    }
    const id = ++this.seq;
    const at = (slots.start + slots.size) & mask;
    slots.times[at] = now;
    slots.ids[at] = id;
    slots.size++;
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
    const mask = slots.times.length - 1;
    // Usually the slot just taken: search from the newest end, then close the gap.
    for (let j = slots.size - 1; j >= 0; j--) {
      if (slots.ids[(slots.start + j) & mask] !== id) continue;
      for (let k = j; k < slots.size - 1; k++) {
        const to = (slots.start + k) & mask;
        const from = (slots.start + k + 1) & mask;
        slots.times[to] = slots.times[from] as number;
        slots.ids[to] = slots.ids[from] as number;
      }
      slots.size--;
      return;
    }
  }
}

function grow(slots: WindowSlots): void {
  const capacity = slots.times.length;
  const times = new Float64Array(capacity * 2);
  const ids = new Float64Array(capacity * 2);
  for (let i = 0; i < slots.size; i++) {
    const from = (slots.start + i) & (capacity - 1);
    times[i] = slots.times[from] as number;
    ids[i] = slots.ids[from] as number;
  }
  slots.times = times;
  slots.ids = ids;
  slots.start = 0;
}
