import { randomUUID } from 'node:crypto';
import type { MaybePromise } from './budget-store.js';
import type { Decision } from './decision.js';
import { AgentPolicyError } from './errors.js';

/** One keyed call: the session (its id), the caller's `idempotencyKey`, and the action's fingerprint. */
export interface CallKeyRef {
  readonly sessionId: string;
  readonly key: string;
  readonly fingerprint: string;
}

/** What a keyed check found, as {@link CallKeyStore.begin} tells it. */
export type CallKeyBegin =
  /** An earlier decision of this very call whose allow is still unused: it is the answer again. */
  | { readonly status: 'decided'; readonly decision: Decision; readonly token: string; readonly lease?: string }
  /** Nothing to hand back: the caller decides, holding the "being decided" marker `lock` until it remembers. */
  | { readonly status: 'new'; readonly lock: string }
  /** Another process is deciding this call right now and did not finish within the store's wait. */
  | { readonly status: 'busy' };

/** Options of {@link CallKeyStore.begin}. */
export interface CallKeyBeginOptions {
  /** Whether a remembered `require_approval` is handed back (false when the check carries an answer). */
  readonly reuseApproval: boolean;
  /** How long the "being decided" marker lives if its holder never remembers (it crashed). */
  readonly lockMs: number;
}

/**
 * Where keyed calls (`idempotencyKey`) keep their decisions when the same session runs in several processes (a
 * worker retried elsewhere, a pod restarted): the same session id, key and fingerprint get the first decision back
 * in any process, and the allow it carries runs at most once across all of them.
 *
 * The protocol, every step atomic in the store:
 * - {@link begin}: an unused earlier decision comes back (`decided`); otherwise the caller takes a short "being
 *   decided" marker (`new`) — a second process asking meanwhile waits for the first one's decision, or gets `busy`
 *   (and denies: one call is never decided and charged twice at once);
 * - {@link remember}: stores the decision under the call, replacing an older one, and lifts the marker; its token
 *   is the marker's value;
 * - {@link claim}: marks that decision used, once: true for exactly one claim of it, in any process. From then on
 *   {@link begin} finds nothing to hand back, so a repeat of the call is decided (and charged) afresh.
 *
 * Without one, a session keeps its keys in its own memory (the default: synchronous, nothing shared).
 * `@agentpolicy/redis` has one on Redis; {@link InMemoryCallKeyStore} shares keys between the sessions of one process.
 */
export interface CallKeyStore {
  /** Looks the call up; takes the "being decided" marker when there is nothing to hand back. */
  begin(call: CallKeyRef, options: CallKeyBeginOptions): MaybePromise<CallKeyBegin>;
  /**
   * Remembers `decision` (and its budget lease, if it holds one) under the call and lifts the marker `lock`. Returns
   * false, remembering nothing, when the marker is no longer the caller's (it expired and another process took it):
   * that decision can then never be claimed.
   */
  remember(call: CallKeyRef, lock: string, decision: Decision, lease: string | undefined): MaybePromise<boolean>;
  /** Lifts the marker without a decision (the check failed). */
  abandon(call: CallKeyRef, lock: string): MaybePromise<void>;
  /** Marks the decision remembered with `token` used: true once, false if it was used already or replaced. */
  claim(call: CallKeyRef, token: string): MaybePromise<boolean>;
}

/** The decision remembered under a call, as JSON, while its allow is unused. */
interface KeptCall {
  decision: string;
  token: string;
  lease: string | undefined;
  kind: Decision['decision'];
  expiresAt: number;
}

/** Options of {@link InMemoryCallKeyStore}. */
export interface InMemoryCallKeyStoreOptions {
  /** How long a remembered call is kept after it was decided, in ms, unless its allow is claimed first (then it is forgotten at once). Default 86,400,000 (a day). */
  ttlMs?: number;
  /**
   * How long a check waits for another session that is deciding the same call right now before it is denied, in ms.
   * Default 2,000. Only a check that finds the call being decided waits (and gets a promise); others answer at once.
   */
  waitMs?: number;
  /** The clock (`Date.now` by default); tests pass their own. */
  now?: () => number;
}

/**
 * A {@link CallKeyStore} in this process, shared by every session given it (sessions with the same id see each
 * other's keys, as processes do on Redis). Synchronous, except for a check that finds the call being decided by
 * another session: it waits (up to `waitMs`) for that decision. A decision is forgotten once its allow is claimed;
 * one never claimed (a deny, a `require_approval`, an allow not run) is kept `ttlMs`: expired entries are swept as
 * new ones come in.
 */
export class InMemoryCallKeyStore implements CallKeyStore {
  private readonly calls = new Map<string, KeptCall>();
  private readonly locks = new Map<string, { lock: string; until: number }>();
  private readonly ttlMs: number;
  private readonly waitMs: number;
  private readonly now: () => number;

  constructor(options: InMemoryCallKeyStoreOptions = {}) {
    const ttlMs = options.ttlMs ?? 86_400_000;
    if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', 'ttlMs must be a whole number of milliseconds > 0');
    this.ttlMs = ttlMs;
    const waitMs = options.waitMs ?? 2000;
    if (!(Number.isFinite(waitMs) && waitMs >= 0)) throw new AgentPolicyError('INVALID_ARGUMENT', 'waitMs must be a number of milliseconds ≥ 0');
    this.waitMs = waitMs;
    this.now = options.now ?? Date.now;
  }

  begin(call: CallKeyRef, options: CallKeyBeginOptions): CallKeyBegin | Promise<CallKeyBegin> {
    const begun = this.tryBegin(call, options);
    if (begun.status !== 'busy' || this.waitMs === 0) return begun;
    return this.waitFor(call, options, Date.now() + this.waitMs);
  }

  private async waitFor(call: CallKeyRef, options: CallKeyBeginOptions, deadline: number): Promise<CallKeyBegin> {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const begun = this.tryBegin(call, options);
      if (begun.status !== 'busy' || Date.now() >= deadline) return begun;
    }
  }

  private tryBegin(call: CallKeyRef, options: CallKeyBeginOptions): CallKeyBegin {
    const id = idOf(call);
    const now = this.now();
    const kept = this.live(id, now);
    if (kept !== undefined && (options.reuseApproval || kept.kind !== 'require_approval')) {
      return { status: 'decided', decision: parseDecision(kept.decision), token: kept.token, ...(kept.lease !== undefined ? { lease: kept.lease } : {}) };
    }
    const held = this.locks.get(id);
    if (held !== undefined && held.until > now) return { status: 'busy' };
    const lock = randomUUID();
    this.locks.set(id, { lock, until: now + options.lockMs });
    return { status: 'new', lock };
  }

  remember(call: CallKeyRef, lock: string, decision: Decision, lease: string | undefined): boolean {
    const id = idOf(call);
    if (this.locks.get(id)?.lock !== lock) return false;
    this.locks.delete(id);
    const now = this.now();
    if (this.calls.size > 0 && this.calls.size % 1024 === 0) this.sweep(now);
    this.calls.delete(id);
    this.calls.set(id, { decision: JSON.stringify(decision), token: lock, lease, kind: decision.decision, expiresAt: now + this.ttlMs });
    return true;
  }

  abandon(call: CallKeyRef, lock: string): void {
    const id = idOf(call);
    if (this.locks.get(id)?.lock === lock) this.locks.delete(id);
  }

  // A used decision is forgotten at once: nothing would hand it back again (begin decides afresh, a second claim is
  // refused), exactly as if it were gone, so keeping it for ttlMs only held ~1 KB for every call ever allowed.
  claim(call: CallKeyRef, token: string): boolean {
    const id = idOf(call);
    const kept = this.live(id, this.now());
    if (kept === undefined || kept.token !== token) return false;
    this.calls.delete(id);
    return true;
  }

  /** Calls the store remembers a decision of that can still be handed back (used ones are forgotten when claimed). */
  get size(): number {
    return this.calls.size;
  }

  private live(id: string, now: number): KeptCall | undefined {
    const kept = this.calls.get(id);
    if (kept !== undefined && kept.expiresAt <= now) {
      this.calls.delete(id);
      return undefined;
    }
    return kept;
  }

  private sweep(now: number): void {
    for (const [id, kept] of this.calls) if (kept.expiresAt <= now) this.calls.delete(id);
    for (const [id, held] of this.locks) if (held.until <= now) this.locks.delete(id);
  }
}

function idOf(call: CallKeyRef): string {
  return JSON.stringify([call.sessionId, call.key, call.fingerprint]);
}

/**
 * A decision read back from a store (JSON, as {@link CallKeyStore.remember} was given it): frozen through and
 * through, like the decision the session recorded. Throws a typed error for anything that is not a decision.
 */
export function parseDecision(json: string): Decision {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new AgentPolicyError('STORE_UNAVAILABLE', 'a decision kept in the call-key store cannot be read', { cause: error });
  }
  const decision = value as Partial<Decision> | null;
  if (
    typeof decision !== 'object' ||
    decision === null ||
    typeof decision.id !== 'string' ||
    typeof decision.sessionId !== 'string' ||
    typeof decision.fingerprint !== 'string' ||
    typeof decision.reason !== 'string' ||
    (decision.decision !== 'allow' && decision.decision !== 'deny' && decision.decision !== 'require_approval') ||
    typeof decision.rule !== 'object' ||
    decision.rule === null ||
    typeof decision.action !== 'object' ||
    decision.action === null
  ) {
    throw new AgentPolicyError('STORE_UNAVAILABLE', 'a decision kept in the call-key store is not a decision');
  }
  return deepFreeze(decision) as Decision;
}

function deepFreeze(value: object): object {
  for (const key of Object.keys(value)) {
    const inner = (value as Record<string, unknown>)[key];
    if (typeof inner === 'object' && inner !== null) deepFreeze(inner);
  }
  return Object.freeze(value);
}
