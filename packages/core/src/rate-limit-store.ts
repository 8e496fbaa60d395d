import type { MaybePromise } from './budget-store.js';
import { sweepIdle } from './idle-sweep.js';

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

// A windowed key: the slots it holds, oldest first, as runs in a ring of typed arrays (no garbage per call). A run
// is the slots taken within one short span (at most `windowMs / RUNS_PER_WINDOW`, and within one millisecond for
// windows up to ~4 s): it holds their count and is timed by its newest slot, so it frees when its newest slot would,
// never earlier. So the ring holds at most about RUNS_PER_WINDOW + 1 runs whatever `max` is and however fast calls
// come, and a slot is held at most one span longer than exactly (never shorter: the limit is never exceeded).
interface WindowSlots {
  /** Time of each run's first slot (the span starts there). */
  firsts: Float64Array;
  /** Time of each run's newest slot (the run frees `windowMs` after it). */
  lasts: Float64Array;
  /** The sequence number of each run's first slot (slots are numbered in the order they are taken). */
  seqs: Float64Array;
  /** Slots each run still holds. */
  counts: Float64Array;
  start: number;
  size: number;
  /** Slots held in all runs. */
  held: number;
  /** When every slot taken under the key has freed (the newest slot's time plus the window). */
  freeAt: number;
  givenBack: Set<number>;
  givenBackOld: Set<number>;
}

/** Runs per window: the most a windowed key keeps (each a few numbers), and a slot's most extra holding time is `windowMs` / this. */
const RUNS_PER_WINDOW = 4096;

// A key without a window: a count, and the slots already given back (so giving back twice changes nothing), kept
// for the last few thousand give-backs.
interface CountSlots {
  held: number;
  givenBack: Set<number>;
  givenBackOld: Set<number>;
}

const GIVEN_BACK_GENERATION = 4096;

/**
 * The default store: counters in this process. A windowed key is a sliding window: a slot frees `windowMs` after it
 * was taken. Slots taken close together are kept as one run timed by its newest slot (within the same millisecond
 * for windows up to ~4 s, within `windowMs / 4096` for longer ones), so a key's memory stays bounded however large
 * `max` is, and a slot may free that much later than exactly, never earlier. A key without a window keeps a count.
 */
export class InMemoryRateLimitStore implements RateLimitStore {
  private readonly windows = new Map<string, WindowSlots>();
  private readonly counts = new Map<string, CountSlots>();
  private readonly now: () => number;
  private seq = 0;
  /** When the window of the key {@link takeAt} last refused reopens (null: a key without a window never does). */
  lastResetAtMs: number | null = null;

  constructor(options: InMemoryRateLimitStoreOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  take(key: string, max: number, windowMs: number | null): RateLimitTake {
    const slot = this.takeAt(key, max, windowMs, windowMs === null ? 0 : this.now());
    return slot > 0 ? { ok: true, slot: String(slot) } : { ok: false, resetAtMs: this.lastResetAtMs };
  }

  /**
   * The store's clock (its `now` option, `Date.now` by default): read once by a session for all the limits of one
   * check, and passed to {@link takeAt}.
   */
  clock(): number {
    return this.now();
  }

  /** Whether {@link clock} is the system clock (`Date.now`), so a session may use the time it read for its record too. */
  get systemClock(): boolean {
    return this.now === Date.now;
  }

  /**
   * {@link take} without allocating, at a time read from {@link clock}: the slot id (> 0), or 0 when the key is full
   * ({@link lastResetAtMs} says when it reopens). Give the slot back with {@link giveBackAt}.
   */
  takeAt(key: string, max: number, windowMs: number | null, now: number): number {
    if (windowMs === null) {
      let counted = this.counts.get(key);
      if (counted === undefined) {
        counted = { held: 0, givenBack: new Set(), givenBackOld: new Set() };
        this.counts.set(key, counted);
      }
      if (counted.held >= max) {
        this.lastResetAtMs = null;
        return 0;
      }
      counted.held++;
      return ++this.seq;
    }
    let slots = this.windows.get(key);
    if (slots === undefined) {
      this.sweep(now);
      slots = newWindow(8);
      this.windows.set(key, slots);
    }
    const oldest = now - windowMs;
    let mask = slots.lasts.length - 1;
    while (slots.size > 0 && (slots.lasts[slots.start] as number) <= oldest) {
      slots.held -= slots.counts[slots.start] as number;
      slots.start = (slots.start + 1) & mask;
      slots.size--;
    }
    if (slots.held >= max) {
      this.lastResetAtMs = firstToFree(slots, mask) + windowMs;
      return 0;
    }
    const id = ++this.seq;
    slots.held++;
    if (now + windowMs > slots.freeAt) slots.freeAt = now + windowMs;
    if (slots.size > 0) {
      const newest = (slots.start + slots.size - 1) & mask;
      // Within the newest run's span: joins it (and the run is now timed by this slot, the later one).
      // A clock that stepped back joins it too: the run keeps its later time, so it frees no earlier.
      if (now - (slots.firsts[newest] as number) < Math.ceil(windowMs / RUNS_PER_WINDOW)) {
        if (now > (slots.lasts[newest] as number)) slots.lasts[newest] = now;
        slots.counts[newest]! += 1;
        return id;
      }
    }
    if (slots.size === slots.lasts.length) {
      growWindow(slots);
      mask = slots.lasts.length - 1;
    }
    const at = (slots.start + slots.size) & mask;
    slots.firsts[at] = now;
    slots.lasts[at] = now;
    slots.seqs[at] = id;
    slots.counts[at] = 1;
    slots.size++;
    return id;
  }

  // A key whose slots have all freed holds nothing a later take would count, so it is removed as new keys come (a key
  // per session is made for every session that counts a per-session limit: without this, a server opening a session
  // per request would keep one for every request it ever served).
  private sweep(now: number): void {
    sweepIdle(this.windows, (slots) => slots.freeAt <= now);
  }

  /** Keys the store holds counts for (windowed keys whose slots have all freed are removed as new keys come). */
  get size(): number {
    return this.windows.size + this.counts.size;
  }

  /** Drops a key and every slot it holds (the counts of a session that has ended for good). */
  forget(key: string): void {
    this.counts.delete(key);
    this.windows.delete(key);
  }

  giveBack(key: string, slot: string): void {
    this.giveBackAt(key, Number(slot));
  }

  /** {@link giveBack} for a slot id from {@link takeAt}. */
  giveBackAt(key: string, id: number): void {
    const counted = this.counts.get(key);
    if (counted !== undefined) {
      if (counted.held === 0 || counted.givenBack.has(id) || counted.givenBackOld.has(id)) return;
      counted.held--;
      rememberGivenBack(counted, id);
      return;
    }
    const slots = this.windows.get(key);
    if (slots === undefined || slots.size === 0 || !(id > 0) || id > this.seq || slots.givenBack.has(id) || slots.givenBackOld.has(id)) return;
    const mask = slots.lasts.length - 1;
    // The run the slot was taken in: the newest run that started at or before it (usually the newest run). A slot
    // older than the oldest run kept has already freed.
    for (let j = slots.size - 1; j >= 0; j--) {
      const at = (slots.start + j) & mask;
      if ((slots.seqs[at] as number) > id) continue;
      if ((slots.counts[at] as number) === 0) return;
      slots.counts[at]! -= 1;
      slots.held--;
      rememberGivenBack(slots, id);
      return;
    }
  }
}

function rememberGivenBack(slots: { givenBack: Set<number>; givenBackOld: Set<number> }, id: number): void {
  if (slots.givenBack.size >= GIVEN_BACK_GENERATION) {
    slots.givenBackOld = slots.givenBack;
    slots.givenBack = new Set();
  }
  slots.givenBack.add(id);
}

// When the first slot frees: the end of the oldest run that still holds one.
function firstToFree(slots: WindowSlots, mask: number): number {
  for (let j = 0; j < slots.size; j++) {
    const at = (slots.start + j) & mask;
    if ((slots.counts[at] as number) > 0) return slots.lasts[at] as number;
  }
  return slots.lasts[(slots.start + slots.size - 1) & mask] as number;
}

function newWindow(capacity: number): WindowSlots {
  return {
    firsts: new Float64Array(capacity),
    lasts: new Float64Array(capacity),
    seqs: new Float64Array(capacity),
    counts: new Float64Array(capacity),
    start: 0,
    size: 0,
    held: 0,
    freeAt: 0,
    givenBack: new Set(),
    givenBackOld: new Set(),
  };
}

function growWindow(slots: WindowSlots): void {
  const capacity = slots.lasts.length;
  const grown = newWindow(capacity * 2);
  for (let i = 0; i < slots.size; i++) {
    const from = (slots.start + i) & (capacity - 1);
    grown.firsts[i] = slots.firsts[from] as number;
    grown.lasts[i] = slots.lasts[from] as number;
    grown.seqs[i] = slots.seqs[from] as number;
    grown.counts[i] = slots.counts[from] as number;
  }
  slots.firsts = grown.firsts;
  slots.lasts = grown.lasts;
  slots.seqs = grown.seqs;
  slots.counts = grown.counts;
  slots.start = 0;
}
