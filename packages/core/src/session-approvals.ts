import { randomBytes } from 'node:crypto';
import type { Prepared } from './action-input.js';
import type { ApprovalRequest, ApprovalResolution, ApprovalState, ApprovalStore, ResolveResult } from './approval-store.js';
import { signApprovalToken, verifyApprovalToken } from './approval-token.js';
import type { ApprovalOutcome, BoundApprovalAnswer, Rejection } from './approvals.js';
import { boundString } from './bounded-record.js';
import type { ApprovalRequestRef, UnusedAnswer } from './decision.js';
import { AgentPolicyError, errorMessage } from './errors.js';
import { describe } from './money.js';
import type { Verdict } from './policy-evaluator.js';

/** What an answer that names a request amounts to for the action it came with. */
export type BoundOutcome =
  | { readonly kind: 'approved'; readonly requestId: string; readonly resolution: ApprovalResolution }
  | { readonly kind: 'refused'; readonly requestId: string; readonly rejection: Rejection }
  | { readonly kind: 'pending'; readonly request: ApprovalRequestRef; readonly unused?: UnusedAnswer }
  | { readonly kind: 'unused'; readonly unused: UnusedAnswer };

/** Why a token was refused before its request was looked at. */
export type TokenRefusal = { readonly ok: false; readonly problem: 'malformed' | 'forged' | 'expired' | 'other_action'; readonly detail: string };

/** An answer, who gave it and why. */
export interface AnswerInput {
  approved: boolean;
  by?: string;
  reason?: string;
}

const OPEN_REQUESTS = 4096;

/**
 * One session's side of its approval requests: raising them (an action already waiting on an open request is not
 * asked about twice), reading and answering them, signing and redeeming tokens, and judging an answer that names a
 * request. Every answer is checked against the session, the action's fingerprint, the expiry and single use; the
 * store makes each answer and each use atomic.
 */
export class SessionApprovals {
  // The open request of each action (fingerprint) raised without an approver: a repeat waits on it.
  private readonly open = new Map<string, string>();
  // The raise of each action (fingerprint) under way: the next raise of that action waits for it.
  private readonly raising = new Map<string, Promise<ApprovalRequest>>();

  constructor(
    private readonly store: ApprovalStore,
    private readonly sessionId: string,
    private readonly secret: string | Uint8Array | undefined,
    /** Whether an approval given with a check may answer a pending request (the session option `inlineApprovals`). */
    private readonly inline: boolean = true,
  ) {}

  /** This session's requests still waiting for an answer, oldest first. */
  pending(): Promise<readonly ApprovalState[]> | readonly ApprovalState[] {
    return this.store.listPending(this.sessionId, Date.now());
  }

  /** One of this session's requests, or undefined. */
  async get(requestId: string): Promise<ApprovalState | undefined> {
    // Request ids are strings: anything else names no request (and is never turned into text that could throw).
    if (typeof requestId !== 'string') return undefined;
    const state = await this.store.get(requestId, Date.now());
    return state?.sessionId === this.sessionId ? state : undefined;
  }

  /** Answers one of this session's requests (the first answer wins). */
  async resolve(requestId: string, answer: AnswerInput): Promise<ResolveResult> {
    const given = readAnswer(answer, 'resolveApproval');
    if (typeof given.approved !== 'boolean') throw new AgentPolicyError('INVALID_ARGUMENT', 'resolveApproval needs { approved: boolean, by?, reason? }');
    const state = await this.get(requestId);
    if (state === undefined) return { ok: false, problem: 'unknown' };
    return this.store.resolve(state.id, resolutionOf(given as AnswerInput), Date.now());
  }

  /** Signs a token that answers one pending request of this session. */
  async token(requestId: string, answer: 'approve' | 'reject'): Promise<string> {
    const secret = this.requireSecret();
    const state = await this.get(requestId);
    if (state === undefined) throw new AgentPolicyError('INVALID_ARGUMENT', `no approval request ${typeof requestId === 'string' ? JSON.stringify(boundString(requestId)) : `(${describe(requestId)})`} in this session`);
    if (state.status !== 'pending') throw new AgentPolicyError('INVALID_ARGUMENT', `approval request ${state.id} is ${state.status}, not pending`);
    return signApprovalToken({ requestId: state.id, fingerprint: state.fingerprint, expiresAt: Date.parse(state.expiresAt), answer }, secret);
  }

  /** Redeems a token: refused unless it is genuine, unexpired, for this session and for the request's action. */
  async redeem(token: string, answer: { by?: string; reason?: string }): Promise<ResolveResult | TokenRefusal> {
    const check = verifyApprovalToken(token, this.requireSecret(), Date.now());
    if (!check.ok) return check;
    const { claims } = check;
    const state = await this.get(claims.requestId);
    if (state === undefined) return { ok: false, problem: 'unknown' };
    if (state.fingerprint !== claims.fingerprint) return { ok: false, problem: 'other_action', detail: 'the token was signed for another action' };
    const { by, reason } = readAnswer(answer ?? {}, 'resolveApprovalToken');
    const given = { approved: claims.answer === 'approve', by: by ?? 'approval-token', ...(reason !== undefined ? { reason } : {}) };
    return this.store.resolve(state.id, resolutionOf(given), Date.now());
  }

  /** A new stored request for this action, answerable for `ttlMs`. */
  async create(prepared: Prepared, verdict: Verdict, ttlMs: number): Promise<ApprovalRequest> {
    const now = Date.now();
    const request: ApprovalRequest = Object.freeze({
      id: `apr_${randomBytes(16).toString('base64url')}`,
      sessionId: this.sessionId,
      fingerprint: prepared.identity.fingerprint,
      action: prepared.action,
      reason: boundString(verdict.reason),
      rule: Object.freeze(verdict.rule),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ttlMs).toISOString(),
    });
    await this.store.create(request);
    return request;
  }

  /**
   * The open request this action already waits on, or a new one. Raises for one action run one at a time, so two
   * checks of the same action at once (two tool calls of one model turn) wait on one request, not two.
   */
  raise(prepared: Prepared, verdict: Verdict, ttlMs: number): Promise<ApprovalRequest> {
    const fingerprint = prepared.identity.fingerprint;
    const raised = (this.raising.get(fingerprint) ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.raiseOne(prepared, verdict, ttlMs));
    this.raising.set(fingerprint, raised);
    const forget = (): void => {
      if (this.raising.get(fingerprint) === raised) this.raising.delete(fingerprint);
    };
    raised.then(forget, forget);
    return raised;
  }

  private async raiseOne(prepared: Prepared, verdict: Verdict, ttlMs: number): Promise<ApprovalRequest> {
    const openId = this.open.get(prepared.identity.fingerprint);
    if (openId !== undefined) {
      const open = await this.get(openId);
      if (open?.status === 'pending') return open;
    }
    const request = await this.create(prepared, verdict, ttlMs);
    if (this.open.size >= OPEN_REQUESTS) this.open.clear();
    this.open.set(prepared.identity.fingerprint, request.id);
    return request;
  }

  /**
   * Judges an answer that names a request, for the action it came with: it counts only for a request of this
   * session raised for exactly this fingerprint; given inline (`approved` set), it answers a pending request first.
   */
  async answer(bound: BoundApprovalAnswer, fingerprint: string): Promise<BoundOutcome> {
    const requestId = boundString(String(bound.requestId));
    let state = await this.store.get(String(bound.requestId), Date.now());
    if (state === undefined) return unused(requestId, 'unknown_request', 'no approval request has this id');
    if (state.sessionId !== this.sessionId) return unused(requestId, 'other_session', 'the request belongs to another session');
    if (state.fingerprint !== fingerprint) return unused(requestId, 'other_action', 'the request was raised for another action (its fingerprint differs)');
    // A rejection given with a check always answers (it can only stop the action); an approval only when the session
    // accepts approvals given that way.
    const refusedInline = bound.approved === true && !this.inline;
    if (typeof bound.approved === 'boolean' && state.status === 'pending' && !refusedInline) {
      const result = await this.store.resolve(state.id, resolutionOf({ approved: bound.approved, ...optionalText(bound) }), Date.now());
      state = result.request ?? (await this.store.get(state.id, Date.now()));
    }
    switch (state?.status) {
      case 'approved':
        return { kind: 'approved', requestId: state.id, resolution: state.resolution as ApprovalResolution };
      case 'rejected':
        return { kind: 'refused', requestId: state.id, rejection: rejectionOf(state.resolution) };
      case 'expired':
        return { kind: 'refused', requestId: state.id, rejection: expiredOf(state) };
      case 'pending':
        if (refusedInline) {
          const detail = 'approvals given with a check are not accepted by this session (inlineApprovals: false): the request stays pending until it is approved through the approval store (the approvals handler, a token link, resolveApproval)';
          return { kind: 'pending', request: refOf(state), unused: Object.freeze({ requestId: state.id, problem: 'pending', detail }) };
        }
        return { kind: 'pending', request: refOf(state) };
      default:
        return unused(requestId, 'already_used', 'the approval was already used for one execution');
    }
  }

  /** Uses an approved request for its one execution. True only for the one caller that did. */
  async use(requestId: string, fingerprint: string): Promise<boolean> {
    return this.store.consume(requestId, fingerprint, Date.now());
  }

  /**
   * Records the session approver's answer on the request it was given and reads back what stands: if another
   * process answered first, that answer wins. An approval is used at once for the execution being decided.
   */
  async settleApproverAnswer(request: ApprovalRequest, outcome: ApprovalOutcome): Promise<ApprovalOutcome> {
    if (!outcome.approved && outcome.outcome !== 'rejected') return outcome;
    const given = outcome.approved ? { approved: true, ...optionalText(outcome) } : { approved: false, ...optionalText(outcome as { by?: string; reason?: string }) };
    const state = (await this.store.resolve(request.id, resolutionOf(given), Date.now())).request;
    if (state?.status === 'approved' && (await this.use(request.id, request.fingerprint))) return { approved: true, ...optionalText(state.resolution ?? {}) };
    if (state?.status === 'rejected') return rejectionOf(state.resolution);
    if (state?.status === 'expired') return expiredOf(state);
    return outcome.approved ? { approved: false, outcome: 'invalid', detail: `the approval request is ${state?.status ?? 'unknown'}` } : outcome;
  }

  private requireSecret(): string | Uint8Array {
    if (this.secret === undefined) throw new AgentPolicyError('INVALID_ARGUMENT', 'approval tokens need the session option approvalSecret');
    return this.secret;
  }
}

/** The reference a decision carries to its request. */
export function refOf(request: ApprovalRequest): ApprovalRequestRef {
  return Object.freeze({ id: request.id, fingerprint: request.fingerprint, expiresAt: request.expiresAt });
}

function unused(requestId: string, problem: UnusedAnswer['problem'], detail: string): BoundOutcome {
  return { kind: 'unused', unused: Object.freeze({ requestId, problem, detail }) };
}

function optionalText(answer: { by?: unknown; reason?: unknown }): { by?: string; reason?: string } {
  return {
    ...(typeof answer.by === 'string' ? { by: boundString(answer.by) } : {}),
    ...(typeof answer.reason === 'string' ? { reason: boundString(answer.reason) } : {}),
  };
}

/**
 * An answer read once (each field once: a getter that changes its answer cannot make the check and the record differ),
 * `by` and `reason` kept only when they are strings. A value that is not an object, or whose reading throws, is an
 * {@link AgentPolicyError} (`INVALID_ARGUMENT`) naming the method.
 */
function readAnswer(answer: unknown, method: string): { approved: unknown; by?: string; reason?: string } {
  if (typeof answer !== 'object' || answer === null) throw new AgentPolicyError('INVALID_ARGUMENT', `${method} needs an answer object, got ${describe(answer)}`);
  let approved: unknown;
  let by: unknown;
  let reason: unknown;
  try {
    ({ approved, by, reason } = answer as { approved?: unknown; by?: unknown; reason?: unknown });
  } catch (error) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${method} cannot read its answer: ${errorMessage(error)}`, { cause: error });
  }
  return { approved, ...(typeof by === 'string' ? { by } : {}), ...(typeof reason === 'string' ? { reason } : {}) };
}

function resolutionOf(answer: { approved: boolean; by?: string; reason?: string }): ApprovalResolution {
  return Object.freeze({ approved: answer.approved === true, ...optionalText(answer), at: new Date().toISOString() });
}

function rejectionOf(resolution: ApprovalResolution | undefined): Rejection {
  const by = resolution?.by ? ` by ${resolution.by}` : '';
  return { approved: false, outcome: 'rejected', detail: `rejected${by}${resolution?.reason ? `: ${resolution.reason}` : ''}` };
}

function expiredOf(state: ApprovalState): Rejection {
  return { approved: false, outcome: 'expired', detail: `approval request ${state.id} expired at ${state.expiresAt} without an answer that can be used` };
}
