import type { CheckToolOptions, Decision, PolicySession } from '@agentpolicy/core';
import type { ApprovalResponse } from './find-approval-response.js';
import type { ToolCost } from './tool-settings.js';

/** The parts of an AI SDK tool call that a policy check needs. */
export interface ToolCallInfo {
  readonly toolName: string;
  readonly toolCallId: string | undefined;
  readonly input: unknown;
}

/**
 * The idempotency key of a tool call: the approval hook and the execute wrapper share it, so a call is charged once.
 * It is the SDK's own tool call id (core scopes keys by tool name), so no new string is built per call.
 */
export function toolCallKey(call: ToolCallInfo): string | undefined {
  return typeof call.toolCallId === 'string' && call.toolCallId !== '' ? call.toolCallId : undefined;
}

/** Reads a declared cost. A cost function that throws yields NaN, which core denies as an invalid cost. */
const NO_COST = Object.freeze({ cost: undefined });

export function resolveToolCost(cost: ToolCost<never> | undefined, input: unknown): { cost: number | undefined; error?: string } {
  if (cost === undefined) return NO_COST;
  if (typeof cost !== 'function') return { cost };
  try {
    return { cost: (cost as (input: unknown) => number)(input) };
  } catch (error) {
    return { cost: Number.NaN, error: (error as Error)?.message ?? String(error) };
  }
}

/**
 * Decides one tool call and records it (idempotently, keyed by the tool call id). With a human's `approval`, a
 * `require_approval` is decided again with that answer: a blocked or over-budget call stays denied.
 */
export function checkToolCall(
  session: PolicySession,
  call: ToolCallInfo,
  cost: ToolCost<never> | undefined,
  approval: ApprovalResponse | undefined,
): Promise<Decision> {
  const resolved = resolveToolCost(cost, call.input);
  const key = toolCallKey(call);
  // Built by assignment, not spreads: this runs before every tool execution.
  const metadata: Record<string, unknown> = { via: 'ai-sdk' };
  if (call.toolCallId !== undefined) metadata['toolCallId'] = call.toolCallId;
  if (approval) metadata['approvalId'] = approval.approvalId;
  if (resolved.error !== undefined) metadata['costError'] = resolved.error;
  const options: CheckToolOptions = { metadata };
  if (resolved.cost !== undefined) options.cost = resolved.cost;
  if (key !== undefined) options.idempotencyKey = key;
  // The human's answer is recorded by core with the decision (approval.via 'caller', reason), or as a rejection.
  if (approval) options.approval = approval.reason !== undefined ? { approved: approval.approved, reason: approval.reason } : { approved: approval.approved };
  return session.checkTool(call.toolName, options);
}
