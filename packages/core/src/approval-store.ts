import type { MaybePromise } from './budget-store.js';
import type { Action, RuleRef } from './decision.js';

/**
 * An approval request: what a human is asked to approve, with an identity. Raised by a `require_approval` decision,
 * answered by naming its `id`, valid only for the action whose `fingerprint` it carries and only until `expiresAt`.
 * Frozen: nothing outside the store changes it.
 */
export interface ApprovalRequest {
  /** Unguessable (128 random bits). */
  readonly id: string;
  readonly sessionId: string;
  /** The fingerprint of the action it asks about. */
  readonly fingerprint: string;
  /** The action, as recorded (bounded, frozen). */
  readonly action: Action;
  /** Why approval is required. */
  readonly reason: string;
  /** The rule that asked for it. */
  readonly rule: RuleRef;
  /** ISO 8601. */
  readonly createdAt: string;
  /** ISO 8601; unanswered after this, the request is expired and no answer counts. */
  readonly expiresAt: string;
}

/** A human's answer to a request, as stored. */
export interface ApprovalResolution {
  readonly approved: boolean;
  /** Who answered. */
  readonly by?: string;
  /** Why. */
  readonly reason?: string;
  /** ISO 8601. */
  readonly at: string;
}

/**
 * `pending`: waiting for an answer; `approved` / `rejected`: answered; `used`: approved, and the one execution it
 * authorises has been decided; `expired`: unanswered (or approved but unused) past `expiresAt`.
 */
export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'used' | 'expired';

/** A request and where it stands. */
export interface ApprovalState extends ApprovalRequest {
  readonly status: ApprovalStatus;
  readonly resolution?: ApprovalResolution;
}

/** What {@link ApprovalStore.resolve} did. */
export type ResolveResult =
  | { readonly ok: true; readonly request: ApprovalState }
  | {
      readonly ok: false;
      /** `unknown`: no such request; `expired`: too late; `answered`: it already has an answer (the first wins). */
      readonly problem: 'unknown' | 'expired' | 'answered';
      readonly request?: ApprovalState;
    };

/**
 * Where approval requests live, so one raised in one process can be answered from another (a web handler, a Slack
 * action) and the agent can resume after a restart. Every method must be atomic for its request: `resolve` stores
 * the first answer only, `consume` turns an approved request into a used one once. `now` is the caller's clock in
 * milliseconds; a request is expired when `now` is past its `expiresAt`. In-memory by default; a shared store
 * (Redis, SQL, files) returns promises.
 */
export interface ApprovalStore {
  /** Stores a new pending request. */
  create(request: ApprovalRequest): MaybePromise<void>;
  /** The request and its status, or undefined when unknown. */
  get(id: string, now: number): MaybePromise<ApprovalState | undefined>;
  /** Pending, unexpired requests (of one session, or all), oldest first. */
  listPending(sessionId: string | undefined, now: number): MaybePromise<readonly ApprovalState[]>;
  /** Answers a pending, unexpired request. The first answer wins; later ones are refused with `answered`. */
  resolve(id: string, resolution: ApprovalResolution, now: number): MaybePromise<ResolveResult>;
  /** Marks an approved, unexpired request with this fingerprint as used. True only for the one call that did. */
  consume(id: string, fingerprint: string, now: number): MaybePromise<boolean>;
}

/** The status a stored request has at `now`. */
export function statusAt(status: Exclude<ApprovalStatus, 'expired'>, expiresAt: string, now: number): ApprovalStatus {
  if ((status === 'pending' || status === 'approved') && now > Date.parse(expiresAt)) return 'expired';
  return status;
}

interface Entry {
  request: ApprovalRequest;
  status: Exclude<ApprovalStatus, 'expired'>;
  resolution: ApprovalResolution | undefined;
}

/**
 * The default store: requests in a Map in this process. Bounded: past `maxRequests` it forgets expired, used and
 * answered requests first, then the oldest pending ones (a forgotten request answers as unknown, so its action
 * stays unapproved).
 */
export class InMemoryApprovalStore implements ApprovalStore {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxRequests = 10_000) {}

  create(request: ApprovalRequest): void {
    if (this.entries.size >= this.maxRequests) this.prune(Date.now());
    this.entries.set(request.id, { request: Object.freeze({ ...request }), status: 'pending', resolution: undefined });
  }

  get(id: string, now: number): ApprovalState | undefined {
    const entry = this.entries.get(id);
    return entry === undefined ? undefined : view(entry, now);
  }

  listPending(sessionId: string | undefined, now: number): readonly ApprovalState[] {
    const out: ApprovalState[] = [];
    for (const entry of this.entries.values()) {
      if (sessionId !== undefined && entry.request.sessionId !== sessionId) continue;
      const state = view(entry, now);
      if (state.status === 'pending') out.push(state);
    }
    return out;
  }

  resolve(id: string, resolution: ApprovalResolution, now: number): ResolveResult {
    const entry = this.entries.get(id);
    if (entry === undefined) return { ok: false, problem: 'unknown' };
    const status = statusAt(entry.status, entry.request.expiresAt, now);
    if (status === 'expired') return { ok: false, problem: 'expired', request: view(entry, now) };
    if (status !== 'pending') return { ok: false, problem: 'answered', request: view(entry, now) };
    entry.status = resolution.approved ? 'approved' : 'rejected';
    entry.resolution = Object.freeze({ ...resolution });
    return { ok: true, request: view(entry, now) };
  }

  consume(id: string, fingerprint: string, now: number): boolean {
    const entry = this.entries.get(id);
    if (entry === undefined || entry.request.fingerprint !== fingerprint) return false;
    if (statusAt(entry.status, entry.request.expiresAt, now) !== 'approved') return false;
    entry.status = 'used';
    return true;
  }

  private prune(now: number): void {
    for (const [id, entry] of this.entries) {
      if (statusAt(entry.status, entry.request.expiresAt, now) !== 'pending') this.entries.delete(id);
    }
    for (const id of this.entries.keys()) {
      if (this.entries.size < this.maxRequests) break;
      this.entries.delete(id);
    }
  }
}

function view(entry: Entry, now: number): ApprovalState {
  const status = statusAt(entry.status, entry.request.expiresAt, now);
  return Object.freeze(entry.resolution === undefined ? { ...entry.request, status } : { ...entry.request, status, resolution: entry.resolution });
}
