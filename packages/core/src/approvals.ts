import type { Action, ApprovalRecord, Decision, RuleRef } from './decision.js';
import type { Verdict } from './policy-evaluator.js';

/** What an approver is asked. */
export interface ApprovalRequest {
  readonly sessionId: string;
  /** The `require_approval` decision that led here. */
  readonly decision: Decision;
  readonly action: Action;
  readonly reason: string;
  readonly rule: RuleRef;
  /** Aborted when the approval times out. */
  readonly signal: AbortSignal;
}

/** An approver's answer. Only `true` or `{ approved: true }` approves; anything else is a denial. */
export type ApprovalAnswer = boolean | { approved: boolean; by?: string; reason?: string };

export type Approver = (request: ApprovalRequest) => Promise<ApprovalAnswer> | ApprovalAnswer;

/** Why an action was not approved. */
export type Rejection = { approved: false; outcome: 'rejected' | 'error' | 'timeout' | 'invalid'; detail: string };

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
    const by = typeof record.by === 'string' ? record.by : undefined;
    const reason = typeof record.reason === 'string' ? record.reason : undefined;
    if (record.approved === true) return { approved: true, ...(by !== undefined ? { by } : {}), ...(reason !== undefined ? { reason } : {}) };
    if (record.approved === false) {
      return { approved: false, outcome: 'rejected', detail: `rejected${by ? ` by ${by}` : ''}${reason ? `: ${reason}` : ''}` };
    }
  }
  return { approved: false, outcome: 'invalid', detail: 'the approver returned no approval (only true or { approved: true } approves)' };
}

/** The denial a verdict turns into when no approval was given. */
export function rejection(verdict: Verdict, outcome: Rejection): Verdict {
  const approvalRule = verdict.rule.section === 'approval' ? { index: verdict.rule.index, rule: verdict.rule.rule } : {};
  return {
    decision: 'deny',
    reason: `${verdict.reason}; ${outcome.detail}`,
    rule: { section: 'approver', outcome: outcome.outcome, ...approvalRule },
    approvedRule: false,
  };
}

/** The allow a verdict turns into once approved. */
export function approvedVerdict(verdict: Verdict, outcome: { by?: string; reason?: string }): Verdict {
  const by = outcome.by ? ` by ${outcome.by}` : '';
  return { ...verdict, decision: 'allow', reason: `${verdict.reason.replace(/ requires approval.*$/, '')} approved${by}${outcome.reason ? `: ${outcome.reason}` : ''}`, approvedRule: true };
}

/** The record of an approval given in the check itself (`approval: { approved: true, by, reason }`). */
export function callerApproval(answer: { by?: string; reason?: string }): ApprovalRecord {
  return { via: 'caller', ...(answer.by !== undefined ? { by: answer.by } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) };
}

/** The record of an approval the session's approver gave. */
export function approverApproval(answer: { by?: string; reason?: string }): ApprovalRecord {
  return { via: 'approver', ...(answer.by !== undefined ? { by: answer.by } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) };
}

/**
 * Asks the session's approver and waits at most `timeoutMs`. Silence, an error or anything but a clear yes is a
 * rejection that says which; the request's signal is aborted on timeout.
 */
export async function consultApprover(
  approver: Approver,
  request: Omit<ApprovalRequest, 'signal'>,
  timeoutMs: number,
): Promise<ApprovalOutcome> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const answer = await Promise.race([
      Promise.resolve().then(() => approver({ ...request, signal: controller.signal })),
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
