import { AgentPolicyError, type PolicySession } from '@agentpolicy/core';
import { decideApproval } from './decide-approval.js';
import { allowedToRun, heldBack, runStopped } from './held-back-calls.js';
import { readOnDeny, toolSettings, type OnDeny, type ToolCost } from './tool-settings.js';

/** Options of {@link policyToolApproval}. */
export interface PolicyToolApprovalOptions {
  /**
   * USD per call by tool name, for tools that {@link wrapTools} did not wrap (a wrapped tool's own cost wins, so
   * both checks of a call agree).
   */
  costs?: Readonly<Record<string, ToolCost<never>>>;
  /**
   * `continue` (default): a denied call gets the SDK's `denied` status; the model receives `execution-denied` with
   * the policy's reason and the loop continues. `stop`: the function throws the policy error, so `generateText`
   * rejects with it and `streamText`'s stream errors with it.
   */
  onDeny?: OnDeny;
}

/** The statuses the policy answers with: a subset of the AI SDK's `ToolApprovalStatus`. */
export type PolicyToolApprovalStatus =
  | 'not-applicable'
  | { type: 'approved'; reason?: string }
  | { type: 'denied'; reason?: string }
  | { type: 'user-approval'; reason?: string };

/** The arguments the AI SDK passes to a generic `toolApproval` function; only these fields are read. */
export interface PolicyToolApprovalRequest {
  toolCall: { toolName: string; toolCallId: string; input: unknown };
  tools?: Readonly<Record<string, unknown>> | undefined;
  toolsContext?: unknown;
  messages: readonly unknown[];
}

/** A generic `toolApproval` function for `generateText`, `streamText` and `ToolLoopAgent` (ai 7). */
export type PolicyToolApproval = (request: PolicyToolApprovalRequest) => Promise<PolicyToolApprovalStatus>;

/**
 * A `toolApproval` function (ai 7) that lets the session decide every tool call and answers in the SDK's own
 * statuses: allow → `not-applicable` (runs, no approval parts), deny → `denied` with the reason (the model receives
 * `execution-denied`), require_approval → `user-approval` (the SDK emits a `tool-approval-request`).
 *
 * When the run resumes with the human's `tool-approval-response`, the SDK calls this function again: the policy
 * decides again with the approval, so a tool that became blocked or over budget meanwhile stays denied. A tool's
 * own `needsApproval` is honoured as well.
 *
 * @example
 * ```ts
 * const result = await generateText({
 *   model,
 *   tools: wrapTools(tools, session),
 *   toolApproval: policyToolApproval(session),
 *   stopWhen: isStepCount(5),
 *   messages,
 * });
 * // result.content has a 'tool-approval-request' when a human must decide; resume with the
 * // { role: 'tool', content: [{ type: 'tool-approval-response', approvalId, approved }] } message.
 * ```
 */
export function policyToolApproval(session: PolicySession, options: PolicyToolApprovalOptions = {}): PolicyToolApproval {
  if (typeof session?.checkTool !== 'function') {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'policyToolApproval needs a PolicySession: policyToolApproval(policy.session())');
  }
  const onDeny = readOnDeny(options.onDeny, 'policyToolApproval');
  const costs = options.costs ?? {};
  return async ({ toolCall, tools, toolsContext, messages }) => {
    const toolName = toolCall.toolName;
    const tool = tools && Object.hasOwn(tools, toolName) ? tools[toolName] : undefined;
    const settings = typeof tool === 'object' && tool !== null ? toolSettings.get(tool) : undefined;
    const cost = settings ? settings.cost : Object.hasOwn(costs, toolName) ? costs[toolName] : undefined;
    // A wrapped tool's `needsApproval` is the policy itself; use the application's original one instead.
    const appNeedsApproval = settings ? settings.needsApproval : (tool as { needsApproval?: unknown } | undefined)?.needsApproval;
    const context = typeof toolsContext === 'object' && toolsContext !== null ? (toolsContext as Record<string, unknown>)[toolName] : undefined;
    const outcome = await decideApproval(session, {
      call: { toolName, toolCallId: toolCall.toolCallId, input: toolCall.input },
      messages,
      cost,
      appNeedsApproval,
      appNeedsApprovalOptions: { toolCallId: toolCall.toolCallId, messages, context },
      runsTool: settings !== undefined && typeof (settings.original as { execute?: unknown }).execute === 'function',
    });
    // The SDK runs no call of this step with a tool call id it was told to ask about or deny.
    if (outcome.kind === 'run') {
      if (outcome.check) await allowedToRun(session, messages, toolCall.toolCallId, outcome.check);
    } else await heldBack(session, messages, toolCall.toolCallId);
    switch (outcome.kind) {
      case 'run':
        return outcome.resumed ? { type: 'approved' } : 'not-applicable';
      case 'ask':
        return outcome.reason !== undefined ? { type: 'user-approval', reason: outcome.reason } : { type: 'user-approval' };
      case 'deny':
        if (onDeny === 'stop') {
          await runStopped(session, messages);
          throw outcome.error;
        }
        return { type: 'denied', reason: outcome.reason };
    }
  };
}
