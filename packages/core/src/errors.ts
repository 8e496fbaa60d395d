import type { Decision } from './decision.js';
import { boundString } from './bounded-record.js';

const MARKER = Symbol.for('agentpolicy.error');

/** Every error code agentpolicy raises. */
export type AgentPolicyErrorCode =
  | 'POLICY_INVALID'
  | 'POLICY_LOAD_FAILED'
  | 'ACTION_DENIED'
  | 'BUDGET_EXCEEDED'
  | 'APPROVAL_REQUIRED'
  | 'RESERVATION_SETTLED'
  | 'DECISION_USED'
  | 'CLAIM_REQUIRED'
  | 'INVALID_ARGUMENT'
  | 'STORE_UNAVAILABLE'
  | 'AUDIT_LOG_LOCKED'
  | 'AUDIT_LOG_INVALID'
  | 'AUDIT_LOG_WRITE_FAILED'
  | 'POLICY_TEST_FAILED';

/**
 * Base class of every error agentpolicy throws. Use {@link AgentPolicyError.isInstance} rather than `instanceof`
 * when several copies of the package may be installed.
 */
export class AgentPolicyError extends Error {
  readonly code: AgentPolicyErrorCode;
  private readonly [MARKER] = true;

  constructor(code: AgentPolicyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AgentPolicyError';
    this.code = code;
  }

  /** True for any agentpolicy error, from this copy of the package or another. */
  static isInstance(value: unknown): value is AgentPolicyError {
    try {
      return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MARKER] === true;
    } catch {
      // a proxy whose reads throw is no agentpolicy error
      return false;
    }
  }
}

/** One problem found while validating a policy. `path` is dotted (`tools.allow[2]`), `''` for the top level. */
export interface PolicyIssue {
  readonly path: string;
  readonly message: string;
}

/** A policy failed validation. `issues` lists every problem found, not only the first. */
export class PolicyValidationError extends AgentPolicyError {
  readonly issues: readonly PolicyIssue[];

  constructor(issues: readonly PolicyIssue[], options?: { source?: string; cause?: unknown }) {
    const where = options?.source ? ` in ${options.source}` : '';
    const lines = issues.map((issue) => `  - ${issue.path || '(top level)'}: ${issue.message}`);
    super(
      'POLICY_INVALID',
      `invalid policy${where} (${issues.length} issue${issues.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      options,
    );
    this.name = 'PolicyValidationError';
    this.issues = Object.freeze(issues.map((issue) => Object.freeze({ ...issue })));
  }

  static override isInstance(value: unknown): value is PolicyValidationError {
    return AgentPolicyError.isInstance(value) && value.code === 'POLICY_INVALID';
  }
}

/** An action was denied. Carries the whole decision. `code` is `BUDGET_EXCEEDED` when the budget denied it. */
export class PolicyDeniedError extends AgentPolicyError {
  readonly decision: Decision;

  constructor(decision: Decision) {
    super(decision.rule.section === 'budget' ? 'BUDGET_EXCEEDED' : 'ACTION_DENIED', `agentpolicy: ${decision.reason}`);
    this.name = 'PolicyDeniedError';
    this.decision = decision;
  }

  static override isInstance(value: unknown): value is PolicyDeniedError {
    return AgentPolicyError.isInstance(value) && (value.code === 'ACTION_DENIED' || value.code === 'BUDGET_EXCEEDED');
  }
}

/** An action needs a human's approval before it may run. Carries the `require_approval` decision. */
export class ApprovalRequiredError extends AgentPolicyError {
  readonly decision: Decision;

  constructor(decision: Decision) {
    super('APPROVAL_REQUIRED', `agentpolicy: ${decision.reason}`);
    this.name = 'ApprovalRequiredError';
    this.decision = decision;
  }

  static override isInstance(value: unknown): value is ApprovalRequiredError {
    return AgentPolicyError.isInstance(value) && value.code === 'APPROVAL_REQUIRED';
  }
}

/** Turns a non-allow decision into the error that matches it. */
export function decisionError(decision: Decision): PolicyDeniedError | ApprovalRequiredError {
  return decision.decision === 'require_approval' ? new ApprovalRequiredError(decision) : new PolicyDeniedError(decision);
}

/**
 * Finds an agentpolicy error in `error` or in the errors it wraps: its `cause` chain, and the attempts a retrying
 * framework gathers (the AI SDK's `RetryError.lastError` and `errors`, an `AggregateError`'s `errors`), the latest
 * attempt first. Returns `undefined` when there is none.
 */
export function findPolicyError(error: unknown): AgentPolicyError | undefined {
  // Depth first, the most recent wrapped error first; bounded, so a cycle or a huge tree ends the search.
  const pending: unknown[] = [error];
  const seen = new Set<unknown>();
  for (let visited = 0; pending.length > 0 && visited < 64; visited++) {
    const current = pending.pop();
    if (typeof current !== 'object' || current === null || seen.has(current)) continue;
    seen.add(current);
    if (AgentPolicyError.isInstance(current)) return current;
    try {
      const { cause, lastError, errors } = current as { cause?: unknown; lastError?: unknown; errors?: unknown };
      if (Array.isArray(errors)) for (let i = Math.max(0, errors.length - 32); i < errors.length; i++) pending.push(errors[i]);
      pending.push(cause);
      pending.push(lastError);
    } catch {
      // an error whose properties cannot be read wraps nothing we can see
    }
  }
  return undefined;
}

/**
 * The message of whatever was thrown, for a reason or a warning: an error's `message`, or the value as text. Never
 * throws itself (a thrown proxy whose every read throws, a value whose `toString` throws) and never returns more than
 * a recorded string holds.
 */
export function errorMessage(error: unknown): string {
  try {
    const message = error instanceof Error ? error.message : String(error);
    return typeof message === 'string' ? boundString(message) : 'an error without a message';
  } catch {
    return 'an unreadable error';
  }
}
