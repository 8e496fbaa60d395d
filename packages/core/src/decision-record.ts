/**
 * A session's decision records: the ids it numbers them by, and the frozen decision objects themselves, each stamped
 * (privately) with the action's identity and the session that made it.
 */
import { ActionIdentity } from './action-fingerprint.js';
import type { Prepared } from './action-input.js';
import { isoAt, isoNow } from './audit-trail.js';
import { boundString } from './bounded-record.js';
import type { Action, ApprovalRecord, ApprovalRequestRef, Decision, RuleRef, Settlement, UnusedAnswer } from './decision.js';
import type { Verdict } from './policy-evaluator.js';

/** Extra fields a decision may carry. */
export interface DecisionExtra {
  readonly approvalRequest?: ApprovalRequestRef;
  readonly unusedAnswer?: UnusedAnswer;
  readonly settlement?: Settlement;
}

/** Numbers, stamps and freezes one session's decisions. */
export class DecisionRecords {
  private seq = 0;
  // The id nextId handed out last (its sequence number is `seq`).
  private lastId = '';
  // What this session's decisions name as their maker in their stamp: a token, not the session, so a decision kept
  // by the application never keeps the whole session (its audit trail, its stores) alive.
  private readonly owner: object = Object.freeze({});

  constructor(
    private readonly sessionId: string,
    // `<session id>:` (or `<session id>:<tag>.`), built once: a decision id is this and a sequence number.
    private readonly prefix: string,
  ) {}

  /** The sequence number of one of this session's decisions as its stamp says, or undefined for any other. */
  stampedSeq(decision: Decision): number | undefined {
    return DecisionStamp.seq(decision, this.owner);
  }

  /** Remembers the limit slots one of this session's allows took (kept on the decision itself). */
  holdSlots(decision: Decision, held: readonly (string | number)[]): void {
    DecisionStamp.hold(decision, this.owner, held);
  }

  /** The limit slots one of this session's allows holds, handed over once (the next call gets none). */
  takeSlots(decision: Decision): readonly (string | number)[] | undefined {
    const held = DecisionStamp.held(decision, this.owner);
    if (held !== undefined) DecisionStamp.hold(decision, this.owner, undefined);
    return held;
  }

  /** The id of the next decision: `<prefix><n>`. */
  nextId(): string {
    const id = this.prefix + ++this.seq;
    this.lastId = id;
    return id;
  }

  // The sequence number of one of this session's decisions (its id is `<session id>:<n>`), or 0. Read from the
  // decision's stamp when this session made it; parsed from the id otherwise (a settled copy, a decision read back).
  seqOf(decision: Decision): number {
    const stamped = DecisionStamp.seq(decision, this.owner);
    if (stamped !== undefined) return stamped;
    return this.parseSeq(decision.id);
  }

  private parseSeq(id: unknown): number {
    if (typeof id !== 'string' || id.length <= this.prefix.length || !id.startsWith(this.prefix)) return 0;
    const seq = Number(id.slice(this.prefix.length));
    return Number.isSafeInteger(seq) && seq > 0 && seq <= this.seq ? seq : 0;
  }

  // Decisions are frozen values: nothing outside the session can change what it recorded. `clockMs` is the instant
  // to stamp it with when the check already read the clock (0: read it now).
  // The fingerprint is a plain value once it has been worked out, and an accessor that works it out on first read
  // until then (see LazyDecision): most decisions are never asked for it.
  make(prepared: Prepared, verdict: Verdict, id: string, approval: ApprovalRecord | undefined, extra: DecisionExtra | undefined, clockMs: number): Decision {
    const reason = verdict.reason.length > 1024 ? boundString(verdict.reason) : verdict.reason;
    const rule = Object.isFrozen(verdict.rule) ? verdict.rule : Object.freeze(verdict.rule);
    const identity = prepared.identity;
    const timestamp = clockMs !== 0 ? isoAt(clockMs) : isoNow();
    const seq = id === this.lastId ? this.seq : this.parseSeq(id);
    let decision: Record<string, unknown>;
    if (!identity.hashed) {
      decision = new LazyDecision(id, this.sessionId, prepared.policyHash, verdict.decision, reason, rule, prepared.action, approval !== undefined, timestamp);
      if (approval !== undefined) decision['approval'] = approval;
    } else if (approval !== undefined) {
      decision = { id, sessionId: this.sessionId, fingerprint: identity.fingerprint, policyHash: prepared.policyHash, decision: verdict.decision, reason, rule, action: prepared.action, approved: true, timestamp, approval };
    } else {
      decision = { id, sessionId: this.sessionId, fingerprint: identity.fingerprint, policyHash: prepared.policyHash, decision: verdict.decision, reason, rule, action: prepared.action, approved: false, timestamp };
    }
    new DecisionStamp(decision, identity, this.owner, seq);
    if (extra !== undefined) Object.assign(decision, extra);
    const shadow = verdict.shadow;
    if (shadow !== undefined) decision['shadow'] = Object.freeze({ decision: shadow.decision, reason: shadow.reason, rule: Object.freeze(shadow.rule) });
    return Object.freeze(decision) as unknown as Decision;
  }
}

// A decision's identity, the session that made it and its sequence number ride on the decision itself, in private
// fields (stamped onto the plain object, so the decision stays a plain object: no prototype, no extra key, nothing
// JSON, spread or equality would see). A copy carries no stamp.
class ReturnTarget {
  constructor(target: object) {
    // Returning the target makes the subclass stamp its private field onto it.
    return target as ReturnTarget;
  }
}
class DecisionStamp extends ReturnTarget {
  readonly #identity: ActionIdentity;
  readonly #owner: object;
  readonly #seq: number;
  // The limit slots the allow took, until they are kept for good or given back (a private field: the decision stays
  // frozen to everything else).
  #held: readonly (string | number)[] | undefined = undefined;
  constructor(target: object, identity: ActionIdentity, owner: object, seq: number) {
    super(target);
    this.#identity = identity;
    this.#owner = owner;
    this.#seq = seq;
  }
  /** Sets (or, with undefined, clears) the limit slots of a decision `owner` made; false for any other. */
  static hold(target: object, owner: object, held: readonly (string | number)[] | undefined): boolean {
    if (!(#identity in target) || (target as DecisionStamp).#owner !== owner) return false;
    (target as DecisionStamp).#held = held;
    return true;
  }
  /** The limit slots of a decision `owner` made, or undefined. */
  static held(target: object, owner: object): readonly (string | number)[] | undefined {
    return #identity in target && (target as DecisionStamp).#owner === owner ? (target as DecisionStamp).#held : undefined;
  }
  static read(target: object): ActionIdentity | undefined {
    return #identity in target ? (target as DecisionStamp).#identity : undefined;
  }
  /** The sequence number of a decision `owner` made, or undefined for any other. */
  static seq(target: object, owner: object): number | undefined {
    return #identity in target && (target as DecisionStamp).#owner === owner ? (target as DecisionStamp).#seq : undefined;
  }
}

// One getter for every such decision, so they all share one shape.
const FINGERPRINT: PropertyDescriptor = Object.freeze({
  get(this: object): string {
    return (DecisionStamp.read(this) as ActionIdentity).fingerprint;
  },
  enumerable: true,
  configurable: false,
});

/**
 * A decision whose `fingerprint` is an own enumerable accessor that works the SHA-256 out on first read (from the
 * identity's frozen snapshot, so it is the fingerprint of the action as it was checked). JSON, spread, structured
 * clone and the audit sinks read it like a value. Built by a constructor whose instances are plain objects (their
 * prototype is Object.prototype): every field sits inside the object, where a literal extended afterwards would
 * allocate and grow a separate property store on every decision.
 */
function lazyDecision(
  this: Record<string, unknown>,
  id: string,
  sessionId: string,
  policyHash: string,
  value: Decision['decision'],
  reason: string,
  rule: RuleRef,
  action: Action,
  approved: boolean,
  timestamp: string,
): void {
  this['id'] = id;
  this['sessionId'] = sessionId;
  Object.defineProperty(this, 'fingerprint', FINGERPRINT);
  this['policyHash'] = policyHash;
  this['decision'] = value;
  this['reason'] = reason;
  this['rule'] = rule;
  this['action'] = action;
  this['approved'] = approved;
  this['timestamp'] = timestamp;
}
const LazyDecision = lazyDecision as unknown as new (...args: Parameters<typeof lazyDecision>) => Record<string, unknown>;
(LazyDecision as unknown as { prototype: object }).prototype = Object.prototype;

/** The identity of a decision a session made (read from its stamp), or one known only by its fingerprint. */
export function identityOf(decision: Decision): ActionIdentity {
  return DecisionStamp.read(decision) ?? ActionIdentity.known(decision.fingerprint);
}
