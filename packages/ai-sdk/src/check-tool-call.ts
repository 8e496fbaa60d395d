import { AgentPolicyError, declaredCost, decisionError, type CheckToolOptions, type DeclaredCost, type Decision, type PolicySession, type Reservation } from '@agentpolicy/core';
import type { ApprovalResponse } from './find-approval-response.js';
import type { ToolCost } from './tool-settings.js';

/** The parts of an AI SDK tool call that a policy check needs. */
export interface ToolCallInfo {
  readonly toolName: string;
  readonly toolCallId: string | undefined;
  /** The tool's input as the SDK parsed it: part of the action's fingerprint. */
  readonly input: unknown;
}

/** A decided tool call: the decision, and the money it holds until the tool has run (a call with a cost). */
export interface ToolCallCheck {
  readonly decision: Decision;
  readonly reservation: Reservation | undefined;
}

/**
 * The idempotency key of a tool call: the approval hook and the execute wrapper share it, so a call is decided and
 * charged once. It is the SDK's own tool call id; core binds a key to the call's fingerprint (name, input, cost), so
 * the same id with other input is another call, and once the call ran the id is decided afresh.
 */
export function toolCallKey(call: ToolCallInfo): string | undefined {
  return typeof call.toolCallId === 'string' && call.toolCallId !== '' ? call.toolCallId : undefined;
}

/** Reads a tool's declared cost (core's one rule: a cost function that throws yields NaN, which the check denies). */
export function resolveToolCost(cost: ToolCost<never> | undefined, input: unknown): DeclaredCost {
  return declaredCost(cost as number | ((input: unknown) => number) | undefined, input);
}

/**
 * Decides one tool call with its input and records it, keyed by the tool call id. `approval` is a human's answer
 * found in the message history; it is passed to core bound to the agentpolicy request it answers, so it counts only
 * for that request and only while the call is the one the request was raised for. With `hold`, a call with a cost
 * holds it (`reservation`) until the tool has run and is settled by its outcome; otherwise (a tool this package does
 * not run) its cost is charged at once.
 */
export function checkToolCall(
  session: PolicySession,
  call: ToolCallInfo,
  cost: ToolCost<never> | undefined,
  approval: ApprovalResponse | undefined,
  hold: boolean,
): ToolCallCheck | Promise<ToolCallCheck> {
  const resolved = resolveToolCost(cost, call.input);
  const key = toolCallKey(call);
  // This runs before every tool execution: the usual call (an id, no answer, no cost error) is one literal each;
  // core reads an option that is undefined as absent.
  let metadata: Record<string, unknown>;
  if (approval === undefined && resolved.error === undefined) metadata = call.toolCallId !== undefined ? { via: 'ai-sdk', toolCallId: call.toolCallId } : { via: 'ai-sdk' };
  else {
    metadata = { via: 'ai-sdk' };
    if (call.toolCallId !== undefined) metadata['toolCallId'] = call.toolCallId;
    if (approval) metadata['approvalId'] = approval.approvalId;
    if (resolved.error !== undefined) metadata['costError'] = resolved.error;
  }
  const options = {
    input: call.input,
    metadata,
    cost: resolved.cost,
    idempotencyKey: key,
    approval:
      approval?.requestId !== undefined
        ? { requestId: approval.requestId, approved: approval.approved, ...(approval.reason !== undefined ? { reason: approval.reason } : {}) }
        : undefined,
  } as CheckToolOptions;
  if (!hold || resolved.cost === undefined || resolved.cost === 0) {
    // Decided without a promise while the session's stores answer at once (the in-memory defaults).
    const decided = session.decideTool(call.toolName, options);
    return decided instanceof Promise ? decided.then(unheld) : unheld(decided);
  }
  return session.reserveAction({ type: 'tool', name: call.toolName, ...options }).then(held);
}

function unheld(decision: Decision): ToolCallCheck {
  return { decision, reservation: undefined };
}

function held(reservation: Reservation): ToolCallCheck {
  return { decision: reservation.decision, reservation };
}

/**
 * Takes the one execution a tool call's allow authorises (core's `claim`, atomic across processes with a shared
 * call-key store), deciding the call again when its allow was already used — a call id that ran before, or the same
 * call run twice at once — so no call runs without an unused allow of its own. Throws the policy error when the call
 * may not run. Synchronous while the check and the claim are.
 */
export function acquireToolCall(
  session: PolicySession,
  call: ToolCallInfo,
  cost: ToolCost<never> | undefined,
  approval: ApprovalResponse | undefined,
  attempt = 0,
): ToolCallCheck | Promise<ToolCallCheck> {
  const check = checkToolCall(session, call, cost, approval, true);
  if (check instanceof Promise) return check.then((settled) => takeExecution(session, call, cost, approval, attempt, settled));
  return takeExecution(session, call, cost, approval, attempt, check);
}

function takeExecution(
  session: PolicySession,
  call: ToolCallInfo,
  cost: ToolCost<never> | undefined,
  approval: ApprovalResponse | undefined,
  attempt: number,
  check: ToolCallCheck,
): ToolCallCheck | Promise<ToolCallCheck> {
  if (check.decision.decision !== 'allow') throw decisionError(check.decision);
  const claimed = session.claim(check.decision);
  if (claimed === true) return check;
  if (claimed === false) return decideAgain(session, call, cost, approval, attempt);
  return claimed.then((taken) => (taken ? check : decideAgain(session, call, cost, approval, attempt)));
}

// The allow was taken by another run of the call: it is decided again, up to three times in all.
function decideAgain(session: PolicySession, call: ToolCallInfo, cost: ToolCost<never> | undefined, approval: ApprovalResponse | undefined, attempt: number): ToolCallCheck | Promise<ToolCallCheck> {
  if (attempt >= 2) {
    throw new AgentPolicyError('DECISION_USED', `agentpolicy: tool call ${JSON.stringify(call.toolCallId ?? '')} of ${JSON.stringify(call.toolName)} is being run more than once at the same time`);
  }
  return acquireToolCall(session, call, cost, approval, attempt + 1);
}
