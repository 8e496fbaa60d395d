import { AgentPolicyError, decisionError, type Decision, type PolicySession } from '@agentpolicy/core';
import { checkToolCall, resolveToolCost, type ToolCallInfo } from './check-tool-call.js';
import { findApprovalResponse } from './find-approval-response.js';
import type { ToolCost } from './tool-settings.js';

/** What the approval hook should tell the AI SDK. */
export type ApprovalOutcome =
  /** Run the tool without asking anyone (allowed, or approved by a human and allowed again on resume). */
  | { readonly kind: 'run'; readonly resumed: boolean }
  /** Ask a human: the SDK emits a `tool-approval-request`. */
  | { readonly kind: 'ask'; readonly reason: string | undefined }
  /** Do not run the tool. */
  | { readonly kind: 'deny'; readonly resumed: boolean; readonly reason: string; readonly error: AgentPolicyError };

/** What {@link decideApproval} needs to know about one tool call. */
export interface ApprovalInput {
  readonly call: ToolCallInfo;
  readonly messages: readonly unknown[] | undefined;
  readonly cost: ToolCost<never> | undefined;
  /** The tool's own `needsApproval` (boolean or function), honoured alongside the policy. */
  readonly appNeedsApproval: unknown;
  /** The options object to call the tool's own `needsApproval` function with. */
  readonly appNeedsApprovalOptions: unknown;
}

function denial(decision: Decision, resumed: boolean): ApprovalOutcome {
  const error = decisionError(decision);
  return { kind: 'deny', resumed, reason: error.message, error };
}

/**
 * Decides a tool call at approval time (before `execute`), the way both the `toolApproval` option (ai 7) and a
 * tool's `needsApproval` (ai 6) are asked:
 * - a human's approval for this call in `messages` (a resume): decided again with `approved: true`;
 * - the tool asks for approval on its own: a policy denial is recorded, otherwise a human is asked (an allow is
 *   recorded only after the human approved, so a rejected call is never charged);
 * - otherwise the policy decides: allow runs, deny denies, require_approval asks a human.
 * Every recorded check is keyed by the tool call id, so the execute wrapper does not record or charge it again.
 */
export async function decideApproval(session: PolicySession, input: ApprovalInput): Promise<ApprovalOutcome> {
  const { call } = input;
  const approval = findApprovalResponse(input.messages, call.toolCallId);
  // The tool's own approval function is the application's code: its errors propagate as they would without us.
  const app = input.appNeedsApproval;
  const appAsks =
    approval?.approved !== true &&
    (typeof app === 'function'
      ? Boolean(await (app as (input: unknown, options: unknown) => unknown)(call.input, input.appNeedsApprovalOptions))
      : app === true);
  try {
    if (approval?.approved) {
      const decision = await checkToolCall(session, call, input.cost, approval);
      return decision.decision === 'allow' ? { kind: 'run', resumed: true } : denial(decision, true);
    }
    if (appAsks) {
      const cost = resolveToolCost(input.cost, call.input).cost;
      const preview = session.evaluate({ type: 'tool', name: call.toolName, ...(cost !== undefined ? { cost } : {}) });
      if (preview.decision === 'allow') return { kind: 'ask', reason: undefined };
      const decision = await checkToolCall(session, call, input.cost, undefined);
      if (decision.decision === 'deny') return denial(decision, false);
      return { kind: 'ask', reason: decision.decision === 'require_approval' ? `agentpolicy: ${decision.reason}` : undefined };
    }

    const decision = await checkToolCall(session, call, input.cost, undefined);
    if (decision.decision === 'allow') return { kind: 'run', resumed: false };
    if (decision.decision === 'require_approval') return { kind: 'ask', reason: `agentpolicy: ${decision.reason}` };
    return denial(decision, false);
  } catch (cause) {
    if (AgentPolicyError.isInstance(cause)) return { kind: 'deny', resumed: false, reason: cause.message, error: cause };
    const error = new AgentPolicyError('ACTION_DENIED', `agentpolicy: the policy check of tool ${JSON.stringify(call.toolName)} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    return { kind: 'deny', resumed: false, reason: error.message, error };
  }
}
