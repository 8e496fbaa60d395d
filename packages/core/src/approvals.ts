import type { ApprovalRequest } from './approval-store.js';
import { boundString } from './bounded-record.js';
import type { ApprovalRecord, Decision } from './decision.js';
import type { Verdict } from './policy-evaluator.js';

/** What the session's approver is asked: the stored request, the decision that raised it, and a timeout signal. */
export interface ApproverRequest extends ApprovalRequest {
  /** The `require_approval` decision that led here. */
  readonly decision: Decision;
  /** Aborted when the approval times out. */
  readonly signal: AbortSignal;
}

/** An answer. Only `true` or `{ approved: true }` approves; anything else is a denial. */
export type ApprovalAnswer = boolean | { approved: boolean; by?: string; reason?: string };

/**
 * An answer that names the approval request it answers (`decision.approvalRequest.id`). Without `approved` it
 * stands for the answer already stored for that request (given from another process, or by token).
 */
export interface BoundApprovalAnswer {
  requestId: string;
  approved?: boolean;
  by?: string;
  reason?: string;
}

/** Answers `require_approval` in place. Its answer resolves the request it was given, and only that one. */
export type Approver = (request: ApproverRequest) => Promise<ApprovalAnswer> | ApprovalAnswer;

/** Whether an `approval` option names a request. */
export function isBoundAnswer(answer: unknown): answer is BoundApprovalAnswer {
  return typeof answer === 'object' && answer !== null && typeof (answer as { requestId?: unknown }).requestId === 'string';
}

/** Why an action was not approved. */
export type Rejection = { approved: false; outcome: 'rejected' | 'expired' | 'error' | 'timeout' | 'invalid'; detail: string };

/** A human's answer, read once: approved (by whom, why) or a rejection. */
export type ApprovalOutcome = { approved: true; by?: string; reason?: string } | Rejection;

/** The record of a check made with `approved: true`. */
export const CALLER_APPROVAL: ApprovalRecord = Object.freeze({ via: 'caller' });

class ApprovalTimeout extends Error {}

/** Reads an answer: only `true` or `{ approved: true }` approves; anything else is a rejection that says why. */
export function normalizeAnswer(answer: unknown): { approved: true; by?: string; reason?: string } | { approved: false; outcome: 'rejected' | 'invalid'; detail: string } {
  if (answer === true) return { approved: true };
  if (answer === false) return { approved: false, outcome: 'rejected', detail: 'the approver rejected it' };
  if (typeof answer === 'object' && answer !== null && !Array.isArray(answer)) {
    const record = answer as { approved?: unknown; by?: unknown; reason?: unknown };
    const by = typeof record.by === 'string' ? boundString(record.by) : undefined;
    const reason = typeof record.reason === 'string' ? boundString(record.reason) : undefined;
    if (record.approved === true) return { approved: true, ...(by !== undefined ? { by } : {}), ...(reason !== undefined ? { reason } : {}) };
    if (record.approved === false) {
      return { approved: false, outcome: 'rejected', detail: `rejected${by ? ` by ${by}` : ''}${reason ? `: ${reason}` : ''}` };
    }
  }
  return { approved: false, outcome: 'invalid', detail: 'the approver returned no approval (only true or { approved: true } approves)' };
}

/** The denial a verdict turns into when no approval was given. */
export function rejection(verdict: Verdict, outcome: Rejection, requestId?: string): Verdict {
  const approvalRule = verdict.rule.section === 'approval' ? { index: verdict.rule.index, rule: verdict.rule.rule } : {};
  return {
    decision: 'deny',
    reason: `${verdict.reason}; ${outcome.detail}`,
    rule: Object.freeze({ section: 'approver', outcome: outcome.outcome, ...approvalRule, ...(requestId !== undefined ? { requestId } : {}) }),
    approvedRule: false,
  };
}

/** The allow a verdict turns into once approved. */
export function approvedVerdict(verdict: Verdict, outcome: { by?: string | undefined; reason?: string | undefined }): Verdict {
  const by = outcome.by ? ` by ${outcome.by}` : '';
  return { ...verdict, decision: 'allow', reason: `${verdict.reason.replace(/ requires approval.*$/, '')} approved${by}${outcome.reason ? `: ${outcome.reason}` : ''}`, approvedRule: true };
}

/** The record of an approval given in the check itself (`approval: { approved: true, by, reason }`). */
export function callerApproval(answer: { by?: string; reason?: string }): ApprovalRecord {
  return Object.freeze({ via: 'caller', ...(answer.by !== undefined ? { by: answer.by } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) });
}

/** The record of an approval given to a stored request (by the session's approver, or from anywhere by id). */
export function requestApproval(via: 'approver' | 'request', requestId: string, answer: { by?: string | undefined; reason?: string | undefined }): ApprovalRecord {
  return Object.freeze({ via, requestId, ...(answer.by !== undefined ? { by: answer.by } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) });
}

/**
 * Asks the session's approver and waits at most `timeoutMs`. Silence, an error or anything but a clear yes is a
 * rejection that says which; the request's signal is aborted on timeout.
 */
export async function consultApprover(
  approver: Approver,
  request: Omit<ApproverRequest, 'signal'>,
  timeoutMs: number,
): Promise<ApprovalOutcome> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const answer = await Promise.race([
      Promise.resolve().then(() => approver(Object.freeze({ ...request, signal: controller.signal }))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ApprovalTimeout()), timeoutMs);
      }),
    ]);
    return normalizeAnswer(answer);
  } catch (error) {
    if (error instanceof ApprovalTimeout) {
      controller.abort(error);
      return { approved: false, outcome: 'timeout', detail: `the approver did not answer within ${timeoutMs} ms` };
    }
    return { approved: false, outcome: 'error', detail: `the approver failed: ${(error as Error)?.message ?? String(error)}` };
  } finally {
    if (timer) clearTimeout(timer);
  }
}
