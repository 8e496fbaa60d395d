import { decisionError, splitPromptMedia, type Decision, type ModelCallEstimate, type PolicySession, type RuleRef } from '@agentpolicy/core';
import { AIMessage, ToolMessage } from '@langchain/core/messages';
import { convertToOpenAITool } from '@langchain/core/utils/function_calling';
import { interrupt, isGraphBubbleUp } from '@langchain/langgraph';
import { answerFor, approvalRequestOf, decide, refuseAmbiguous, resumeWaiting, runAllowed } from './tool-call.js';
import { createMiddleware, type AgentMiddleware } from 'langchain';
import { ModelAttempts, meterModelAttempts } from './model-attempts.js';
import { runGated } from './model-gate.js';
import { modelInfoFromModel, promptOf, usageFromMessage } from './model-call.js';
import { toolCallKey, toolCost, type ToolCosts } from './tool-costs.js';
import { rememberWaiting, waitingToolInputOf } from './tool-input.js';

/** Options of {@link agentPolicyMiddleware}. */
export interface AgentPolicyMiddlewareOptions {
  /** Declared USD cost per tool call, charged when the call is allowed. */
  toolCosts?: ToolCosts;
  /**
   * What happens when the budget cannot cover a model call. `'end'` (default): no request is sent and the run ends
   * with an AI message that says why. `'error'`: the run is stopped with a {@link PolicyDeniedError}.
   */
  exitBehavior?: 'end' | 'error';
  /** The middleware's name; it must be unique among an agent's middleware. Default `AgentPolicyMiddleware`. */
  name?: string;
}

/** The value of the `interrupt()` raised for a tool call that needs approval (it is JSON). */
export interface ToolApprovalRequest {
  readonly type: 'agentpolicy.approval';
  /** The agentpolicy approval request: an answer names it (see {@link ToolApprovalAnswer}). */
  readonly requestId: string;
  /** The fingerprint of the call the request was raised for; an answer counts only for that call. */
  readonly fingerprint: string;
  /** ISO 8601: unanswered after this, the request is expired. */
  readonly expiresAt: string;
  readonly tool: string;
  readonly args: unknown;
  readonly toolCallId: string | null;
  /** Why approval is needed, e.g. `tool "send_email" requires approval (approval.require_for[0] ...)`. */
  readonly reason: string;
  /** Id of the recorded `require_approval` decision. */
  readonly decisionId: string;
  readonly rule: RuleRef;
  readonly sessionId: string;
  /** Declared USD cost of the call. */
  readonly cost: number;
}

/** One answer: only `true` or `{ approved: true }` approves; anything else rejects. */
export type ToolApprovalDecision = boolean | { approved: boolean; by?: string; reason?: string };

/**
 * The resume value of approvals, `new Command({ resume })`. Each answer is matched to the request it answers:
 * - by request id: `{ [request.requestId]: answer }` (one value can answer several requests, each by its id), or
 *   `{ requestId, approved?, by?, reason? }` (without `approved`, the answer already given for the request from
 *   anywhere — `session.resolveApproval`, a signed token — is used);
 * - by interrupt id, LangGraph's own map: `{ [interrupt.id]: answer }`;
 * - a bare `answer` only while exactly one approval request of the session is pending; with several pending it is
 *   refused with an error, so one value never approves requests the human did not see.
 */
export type ToolApprovalAnswer =
  | ToolApprovalDecision
  | { requestId: string; approved?: boolean; by?: string; reason?: string }
  | { readonly [requestId: string]: ToolApprovalDecision };

/**
 * A langchain v1 `createAgent` middleware that enforces a session's policy inside the agent loop.
 *
 * - `wrapToolCall` checks every tool call. A denied call does not run: the model gets an error `ToolMessage` that
 *   says why, and the agent goes on. A call that needs approval raises a LangGraph `interrupt()` carrying a
 *   {@link ToolApprovalRequest}; resume with answers matched to their requests
 *   (`new Command({ resume: { [request.requestId]: true } })`, see {@link ToolApprovalAnswer}). An approved call is
 *   decided again, so a blocked or over-budget call stays denied, and counts for exactly that call, once. Decisions
 *   are keyed by tool call id and bound to the call's input, so the re-run a resume causes records and charges nothing
 *   twice, and a call id seen again with other input, or after it ran, is decided afresh. Interrupts need a
 *   checkpointer and a `thread_id`; a session with an `approver` answers in place instead.
 * - `beforeModel` ends the run with an AI message once the budget is used up; `wrapModelCall` reserves the worst-case
 *   cost of each model call before it is sent (over budget: no request, the run ends with a message) and charges the
 *   real cost from the answer's `usage_metadata`. Every request the model sends for the call, its own retries
 *   (`maxRetries`) included, is reserved before it is sent and settled by its own outcome: a retry the budget cannot
 *   cover is not sent and denies the call, a failed attempt is released (4xx) or charged its estimate (5xx, timeout,
 *   reset connection), the attempt that answered is charged its usage.
 *
 * @example
 * ```ts
 * const session = policy.session();
 * const agent = createAgent({ model, tools, middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });
 * const config = { configurable: { thread_id: 't1' } };
 * let result = await agent.invoke({ messages: [{ role: 'user', content: 'Email Bob' }] }, config);
 * const request = result.__interrupt__?.[0]?.value as ToolApprovalRequest | undefined;
 * if (request) result = await agent.invoke(new Command({ resume: { [request.requestId]: { approved: true, by: 'alice' } } }), config);
 * ```
 */
export function agentPolicyMiddleware(session: PolicySession, options: AgentPolicyMiddlewareOptions = {}): AgentMiddleware {
  const exitBehavior = options.exitBehavior ?? 'end';
  meterModelAttempts();
  const refuse = (decision: Decision): AIMessage => {
    if (exitBehavior === 'error') throw decisionError(decision);
    return new AIMessage({ content: `agentpolicy: model call denied: ${decision.reason}`, response_metadata: policyMetadata(decision) });
  };
  return createMiddleware({
    name: options.name ?? 'AgentPolicyMiddleware',

    beforeModel: {
      canJumpTo: ['end'],
      hook: () => {
        if (exitBehavior === 'error') return undefined;
        const reason = session.exhausted();
        return reason === undefined ? undefined : { jumpTo: 'end' as const, messages: [new AIMessage({ content: `agentpolicy: ${reason}` })] };
      },
    },

    wrapModelCall: async (request, handler) => {
      const info = modelInfoFromModel(request.model);
      const threadId = request.runtime?.configurable?.thread_id;
      const estimate: ModelCallEstimate = {
        model: info.model,
        ...(info.provider !== undefined ? { provider: info.provider } : {}),
        ...splitPromptMedia({ system: request.systemMessage?.content ?? request.systemPrompt, messages: promptOf(request.messages), tools: toolSpecs(request.tools) }),
        ...(info.maxOutputTokens !== undefined ? { maxOutputTokens: info.maxOutputTokens } : {}),
        ...(info.n !== undefined ? { n: info.n } : {}),
        metadata: { middleware: true, ...(typeof threadId === 'string' ? { threadId } : {}) },
      };
      const reservation = await session.reserveModelCall(estimate);
      if (!reservation.allowed) return refuse(reservation.decision);
      // Every request the model sends for this call (its own retries included) is reserved and settled on its own.
      const attempts = new ModelAttempts(session, estimate, reservation);
      let response: AIMessage;
      try {
        response = await runGated(session, () => attempts.run(async () => handler(request)));
      } catch (error) {
        // An interrupt raised further in sent nothing; any other failure is settled by core's rule.
        await attempts.failed(error, isGraphBubbleUp(error));
        // A retry the budget could not cover ended the call: the same denial as a call refused before it started.
        const refused = attempts.refusalIn(error);
        if (refused !== undefined && exitBehavior === 'end') return refuse(refused);
        throw error;
      }
      try {
        await attempts.succeeded(usageFromMessage(response));
      } catch (error) {
        // The reservation stays open and session.end() charges its estimate: no spend is lost.
        process.emitWarning(`agentpolicy: recording model usage failed: ${(error as Error)?.message ?? String(error)}`);
      }
      return response;
    },

    wrapToolCall: async (request, handler) => {
      const { name, id, args: raw } = request.toolCall;
      // What the tool will run with (its zod schema's defaults and transforms applied): what the rules, the approval
      // request, the fingerprint and the declared cost all read. The tool still parses the model's arguments itself.
      const parsed = await waitingToolInputOf(session, request.tool, name, id, raw);
      const { input: args, rejected } = parsed;
      const key = toolCallKey(id);
      const { cost, error: costError } = toolCost(options.toolCosts, name, args);
      const check = {
        input: args,
        ...(cost !== undefined ? { cost } : {}),
        metadata: { ...(id !== undefined ? { toolCallId: id } : {}), ...(costError !== undefined ? { costError } : {}) },
        ...(key !== undefined ? { idempotencyKey: key } : {}),
      };
      // On a resume, the requests pending before the call is decided again: one raised now was never shown.
      const resumed = resumeWaiting().source;
      const shown = resumed === 'task' || resumed === 'broadcast' ? new Set((await session.pendingApprovals()).map((r) => r.id)) : undefined;
      let run = await decide(session, name, check);
      // A re-run after an approval finds the approved allow (not yet used: a middleware further in interrupted, say):
      // take this call's interrupt slot again, so the answers further in keep their places.
      if (run.decision.decision === 'allow' && run.decision.approval?.via === 'request' && resumeWaiting().source === 'task') interrupt(approvalRequestOf(session, run.decision, name, args, id));
      // A resume runs this hook again: the call is decided again on the input the human is shown.
      rememberWaiting(session, name, id, raw, parsed, run.decision.decision === 'require_approval');
      // The request the call showed was settled since (another call of the same tool and input used it), and the call
      // is asked about anew: under a request raised now, or one shown only in another thread (the same call id there).
      // The answer waiting was given for the request shown, never for this one. Not run.
      const thread = request.runtime?.configurable?.thread_id;
      if (shown !== undefined && (await raisedNow(session, run.decision, shown))) return refuseUnshown(session, request.toolCall, run.decision, true);
      if (shown !== undefined && shownElsewhereOnly(session, run.decision, thread)) return refuseUnshown(session, request.toolCall, run.decision, false);
      while (run.decision.decision === 'require_approval' && run.decision.approvalRequest) {
        const waiting = resumeWaiting();
        if (waiting.source === 'broadcast') await refuseAmbiguous(session, waiting);
        markShown(session, run.decision, thread);
        const value = interrupt<ToolApprovalRequest, unknown>(approvalRequestOf(session, run.decision, name, args, id));
        if (waiting.source === 'unknown') await refuseAmbiguous(session, { source: 'unknown', value });
        const answer = answerFor(value, run.decision.approvalRequest.id);
        // An answer for another request leaves this one unanswered: ask again.
        if (answer === undefined) continue;
        // Core decides again with the answer bound to its request: a rejection is a recorded denial with who and
        // why; an approval counts only for this call and still loses to a block or an exhausted budget.
        const before = new Set((await session.pendingApprovals()).map((r) => r.id));
        run = await decide(session, name, { ...check, approval: answer });
        rememberWaiting(session, name, id, raw, parsed, run.decision.decision === 'require_approval');
        // The answer did not count (its approval was used by another call of the same tool and input, say) and core
        // raised a new request: the call is not run. Asking again here would put the new request behind the answer
        // LangGraph keeps for this interrupt, which a resume hands back first; the model can call again.
        if (run.decision.decision === 'require_approval' && run.decision.approvalRequest?.id !== answer.requestId) {
          return refuseUnshown(session, request.toolCall, run.decision, await raisedNow(session, run.decision, before));
        }
      }
      if (run.decision.decision !== 'allow') return denial(request.toolCall, run.decision, decisionError(run.decision).message);
      return runAllowed(session, run, request, handler, () => decide(session, name, check), rejected);
    },
  }) as AgentMiddleware;
}

// The threads each approval request was shown in (by this process), per session.
const shownIn = new WeakMap<PolicySession, Map<string, Set<unknown>>>();
const SHOWN_REQUESTS = 4096;

function markShown(session: PolicySession, decision: Decision, thread: unknown): void {
  const id = decision.approvalRequest?.id;
  if (id === undefined) return;
  let requests = shownIn.get(session);
  if (requests === undefined) shownIn.set(session, (requests = new Map()));
  if (requests.size >= SHOWN_REQUESTS && !requests.has(id)) requests.clear();
  requests.set(id, (requests.get(id) ?? new Set()).add(thread));
}

/** Whether `decision` waits on a request shown in other threads only (known in this process). */
function shownElsewhereOnly(session: PolicySession, decision: Decision, thread: unknown): boolean {
  const id = decision.decision === 'require_approval' ? decision.approvalRequest?.id : undefined;
  const threads = id === undefined ? undefined : shownIn.get(session)?.get(id);
  return threads !== undefined && !threads.has(thread);
}

/** Whether `decision` waits on an approval request raised by this check: pending now, and not before it. */
async function raisedNow(session: PolicySession, decision: Decision, before: ReadonlySet<string>): Promise<boolean> {
  const request = decision.decision === 'require_approval' ? decision.approvalRequest : undefined;
  if (request === undefined || before.has(request.id)) return false;
  return (await session.getApproval(request.id))?.status === 'pending';
}

/**
 * Refuses a call whose approval request was raised where no human will see it (see above), and closes that request
 * as rejected, saying why: left pending, another call of the same tool and input (the same call id in another thread)
 * would be decided under it, and an answer given for the request that call showed would approve it.
 */
async function refuseUnshown(session: PolicySession, toolCall: { name: string; id?: string | undefined }, decision: Decision, raised: boolean): Promise<ToolMessage> {
  const id = decision.approvalRequest?.id;
  // Only a request this check raised: an open one (shown to another thread's human) stays theirs to answer.
  if (raised && id !== undefined) {
    const reason = 'agentpolicy: raised for a tool call that was refused: the answer it was given was for another request, already used';
    await session.resolveApproval(id, { approved: false, by: 'agentpolicy', reason });
  }
  return denial(toolCall, decision, decisionError(decision).message);
}

function denial(toolCall: { name: string; id?: string | undefined }, decision: Decision, content: string): ToolMessage {
  return new ToolMessage({ content, tool_call_id: toolCall.id ?? '', name: toolCall.name, status: 'error', response_metadata: policyMetadata(decision) });
}

function policyMetadata(decision: Decision): Record<string, unknown> {
  return { agentpolicy: { decisionId: decision.id, decision: decision.decision, rule: decision.rule.section } };
}

function toolSpecs(tools: readonly unknown[] | undefined): unknown[] {
  return (tools ?? []).map((tool) => {
    try {
      return convertToOpenAITool(tool as Parameters<typeof convertToOpenAITool>[0]);
    } catch {
      const bag = (typeof tool === 'object' && tool !== null ? tool : {}) as Record<string, unknown>;
      return { name: bag['name'], description: bag['description'] };
    }
  });
}
