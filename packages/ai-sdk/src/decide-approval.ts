import { AgentPolicyError, decisionError, type Decision, type PolicySession } from '@agentpolicy/core';
import { checkToolCall, resolveToolCost, type ToolCallCheck, type ToolCallInfo } from './check-tool-call.js';
import { answersCall, approvalReason, findApprovalResponse, resumedFromLastMessage, type ApprovalResponse } from './find-approval-response.js';
import type { ToolCost } from './tool-settings.js';

/** What the approval hook should tell the AI SDK. */
export type ApprovalOutcome =
  /**
   * Run the tool without asking anyone (allowed, or approved by a human and allowed again on resume). `check`: the
   * allow recorded for a tool the wrapped `execute` runs, with the money it holds until then. `resuming`: the SDK
   * resumes this call from a human's approval in the history that did not count for it (the policy allowed the call
   * on its own); ai 6 runs such a call only while its `needsApproval` keeps the approval valid.
   */
  | { readonly kind: 'run'; readonly resumed: boolean; readonly check?: ToolCallCheck; readonly resuming?: true }
  /** Ask a human: the SDK emits a `tool-approval-request`. `decision`: the recorded `require_approval`, if any. */
  | { readonly kind: 'ask'; readonly reason: string | undefined; readonly decision?: Decision }
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
  /** Whether the wrapped `execute` runs the tool (and settles its cost), or the tool runs outside this package. */
  readonly runsTool: boolean;
}

function denial(decision: Decision, resumed: boolean): ApprovalOutcome {
  const error = decisionError(decision);
  return { kind: 'deny', resumed, reason: error.message, error };
}

function ask(decision: Decision): ApprovalOutcome {
  const request = decision.approvalRequest;
  return { kind: 'ask', reason: request ? approvalReason(decision.reason, request.id) : `agentpolicy: ${decision.reason}`, decision };
}

/**
 * The answer to a call the SDK resumes from an approval in the history that does not count (used, expired, for other
 * input). Resuming, the SDK takes every status but `denied` as a yes and runs the call, so asking again is a denial.
 */
function refusedResume(call: ToolCallInfo, asked: Extract<ApprovalOutcome, { kind: 'ask' }>, found: ApprovalResponse | undefined): ApprovalOutcome {
  const decision = asked.decision;
  const why =
    found?.approved === false
      ? 'a human rejected the request it answers'
      : (decision?.unusedAnswer?.detail ?? (decision === undefined ? 'it was used for one execution already, or answers a call with other input' : 'it answers another request'));
  const reason = `agentpolicy: tool ${JSON.stringify(call.toolName)}: the approval in the history does not count for this call (${why}); a new approval is needed`;
  const error = new AgentPolicyError('ACTION_DENIED', reason, decision === undefined ? undefined : { cause: decisionError(decision) });
  return { kind: 'deny', resumed: true, reason, error };
}

// Approvals that name no agentpolicy request (asked through a tool's `needsApproval`, which cannot give a reason)
// that have been used for their one execution, by session. Bounded: the oldest are forgotten first.
const usedApprovals = new WeakMap<PolicySession, Set<string>>();
const USED_APPROVALS = 4096;

/**
 * Whether an approval that names no agentpolicy request covers this call: it must answer a request raised for a
 * call with exactly this input (what the human saw) and not have been used for an execution yet.
 */
function covers(session: PolicySession, approval: ApprovalResponse, call: ToolCallInfo): boolean {
  return answersCall(approval, call) && usedApprovals.get(session)?.has(approval.approvalId) !== true;
}

function markUsed(session: PolicySession, approvalId: string): void {
  let used = usedApprovals.get(session);
  if (used === undefined) usedApprovals.set(session, (used = new Set()));
  if (used.size >= USED_APPROVALS) used.delete(used.values().next().value as string);
  used.add(approvalId);
}

/** The pending agentpolicy request raised for exactly this call (same fingerprint), if there is one. */
function fingerprintOf(session: PolicySession, call: ToolCallInfo, cost: ToolCost<never> | undefined): string {
  const resolved = resolveToolCost(cost, call.input).cost;
  return session.evaluate({ type: 'tool', name: call.toolName, input: call.input, ...(resolved !== undefined ? { cost: resolved } : {}) }).fingerprint;
}

/**
 * Whether a named answer that the history shows beside another call (other tool or input) names the agentpolicy
 * request of exactly this action: a request written beside a call the human did not see it for. It must not approve
 * this call. (When it names a request about another action, core records it as not counting.)
 */
async function misplacedFor(session: PolicySession, approval: ApprovalResponse, call: ToolCallInfo, cost: ToolCost<never> | undefined): Promise<boolean> {
  if (approval.requestId === undefined || answersCall(approval, call)) return false;
  try {
    const state = await session.getApproval(approval.requestId);
    return state !== undefined && state.fingerprint === fingerprintOf(session, call, cost);
  } catch {
    // The request cannot be read: the answer is not used (the human is asked again).
    return true;
  }
}

/** The agentpolicy request the SDK was last asked to raise a `tool-approval-request` for under one tool call id. */
interface Asked {
  readonly requestId: string;
  /** The step it was asked in (the SDK passes one message array per step). */
  readonly step: unknown;
  /**
   * Whether another request was asked under the same id in that step: `generateText` then raises one SDK request (for
   * the last), `streamText` one for each, and an answer that names no request cannot say which it answers.
   */
  readonly ambiguous: boolean;
  /** The SDK requests under the id that the history held when it was asked: an answer to one of them predates it. */
  readonly earlier: ReadonlySet<unknown>;
}

/** The approval ids of the SDK requests under one tool call id that the messages hold. */
function requestsUnder(messages: unknown, toolCallId: string): Set<unknown> {
  const ids = new Set<unknown>();
  if (!Array.isArray(messages)) return ids;
  for (const message of messages as Array<{ role?: unknown; content?: unknown } | null>) {
    if (message?.role !== 'assistant' || !Array.isArray(message.content)) continue;
    for (const part of message.content as Array<{ type?: unknown; toolCallId?: unknown; approvalId?: unknown } | null>) {
      if (part?.type === 'tool-approval-request' && part.toolCallId === toolCallId) ids.add(part.approvalId);
    }
  }
  return ids;
}

// By session and tool call id. Bounded: the oldest ids are forgotten first.
const askedRequests = new WeakMap<PolicySession, Map<string, Asked>>();
const ASKED_REQUESTS = 4096;

function rememberAsked(session: PolicySession, toolCallId: string | undefined, decision: Decision | undefined, step: unknown): void {
  const requestId = decision?.approvalRequest?.id;
  if (toolCallId === undefined || requestId === undefined) return;
  let asked = askedRequests.get(session);
  if (asked === undefined) askedRequests.set(session, (asked = new Map()));
  const earlier = asked.get(toolCallId);
  const ambiguous = earlier !== undefined && step !== undefined && earlier.step === step && (earlier.ambiguous || earlier.requestId !== requestId);
  asked.delete(toolCallId);
  if (asked.size >= ASKED_REQUESTS) asked.delete(asked.keys().next().value as string);
  asked.set(toolCallId, { requestId, step, ambiguous, earlier: requestsUnder(step, toolCallId) });
}

/**
 * The agentpolicy request an approval that names none answers: the one the SDK was last asked about under this call's
 * tool call id (in another process: the newest pending request raised under that id), and only while it is pending
 * and about exactly this call, by an answer to an SDK request the history did not hold yet when it was asked; none
 * when that step asked about several requests under the id. The input the history
 * shows beside the SDK request can be edited, and ai 6 writes a step's calls that share an id with the first one's
 * input: an answer moved onto another input — that of an older request the human rejected (the SDK never tells the
 * policy) or never saw — approves nothing.
 */
async function pendingRequestFor(session: PolicySession, approval: ApprovalResponse, call: ToolCallInfo, cost: ToolCost<never> | undefined): Promise<string | undefined> {
  const fingerprint = fingerprintOf(session, call, cost);
  const asked = call.toolCallId === undefined ? undefined : askedRequests.get(session)?.get(call.toolCallId);
  if (asked !== undefined) {
    if (asked.ambiguous || asked.earlier.has(approval.approvalId)) return undefined;
    const state = await session.getApproval(asked.requestId);
    return state?.status === 'pending' && state.fingerprint === fingerprint ? asked.requestId : undefined;
  }
  const pending = await session.pendingApprovals();
  for (let i = pending.length - 1; i >= 0; i--) {
    const request = pending[i]!;
    if (request.action.type !== 'tool' || request.action.metadata?.['toolCallId'] !== call.toolCallId) continue;
    return request.fingerprint === fingerprint ? request.id : undefined;
  }
  return undefined;
}

/**
 * A tool this package does not run (not wrapped, or without `execute`) runs as soon as the hook lets it: its allow's
 * one execution is taken here (core's `claim`), so the same call id again is decided and charged again, and an allow
 * that another run took first does not run. A wrapped tool's `execute` takes it itself.
 */
async function run(session: PolicySession, check: ToolCallCheck, runsTool: boolean, resumed: boolean): Promise<ApprovalOutcome> {
  const decision = check.decision;
  if (runsTool) return { kind: 'run', resumed, check };
  if (await session.claim(decision)) return { kind: 'run', resumed };
  // Another run of this call (in this process or another one sharing its call keys) took the allow first.
  const error = new AgentPolicyError('DECISION_USED', `agentpolicy: the allow ${decision.id} was already used for one execution`);
  return { kind: 'deny', resumed, reason: error.message, error };
}

/**
 * Decides a tool call at approval time (before `execute`), the way both the `toolApproval` option (ai 7) and a
 * tool's `needsApproval` (ai 6) are asked:
 * - a human's approval in `messages` for the agentpolicy request raised for this call: core decides again with that
 *   answer, bound to its request (other input, a used or expired request: it does not count, and a new request is
 *   raised);
 * - the tool asks for approval on its own: a policy denial is recorded, otherwise a human is asked (an allow is
 *   recorded only after the human approved exactly this input, so a rejected call is never charged);
 * - otherwise the policy decides: allow runs, deny denies, require_approval asks a human.
 * Every recorded check is keyed by the tool call id and bound to the call's input, so the execute wrapper finds the
 * same decision and does not record or charge it again.
 */
export async function decideApproval(session: PolicySession, input: ApprovalInput): Promise<ApprovalOutcome> {
  const found = findApprovalResponse(input.messages, input.call.toolCallId);
  const outcome = await decideCall(session, input, found);
  if (outcome.kind !== 'ask' && (outcome.kind !== 'run' || outcome.resumed)) return outcome;
  // Whether the SDK resumes this call from a yes in the last message, whichever answer counts here.
  const resuming = found !== undefined ? found.resumes : resumedFromLastMessage(input.messages, input.call.toolCallId);
  if (!resuming) {
    // The SDK raises a `tool-approval-request` for the call: its answer will answer this request.
    if (outcome.kind === 'ask') rememberAsked(session, input.call.toolCallId, outcome.decision, input.messages);
    return outcome;
  }
  // A tool this package does not run has no second check in `execute`: the hook's answer is all there is.
  if (outcome.kind === 'ask') return input.runsTool ? outcome : refusedResume(input.call, outcome, found);
  return { ...outcome, resuming: true };
}

async function decideCall(session: PolicySession, input: ApprovalInput, found: ApprovalResponse | undefined): Promise<ApprovalOutcome> {
  const { call } = input;
  let approval = found?.approved === true ? found : undefined;
  // Without an agentpolicy request named in it (ai 6 and `needsApproval` give the SDK request no reason), an
  // approval counts only for exactly the call the human saw, once; it answers the request the SDK was last asked
  // about under that call id, if that request is about exactly this call.
  const unnamed = approval !== undefined && approval.requestId === undefined;
  if (approval !== undefined && !unnamed && (await misplacedFor(session, approval, call, input.cost))) approval = undefined;
  if (approval !== undefined && unnamed) {
    if (!covers(session, approval, call)) approval = undefined;
    else {
      const requestId = await pendingRequestFor(session, approval, call, input.cost);
      if (requestId !== undefined) approval = { ...approval, requestId };
    }
  }
  // The tool's own approval function is the application's code: its errors propagate as they would without us.
  const app = input.appNeedsApproval;
  const appAsks =
    approval === undefined &&
    (typeof app === 'function'
      ? Boolean(await (app as (input: unknown, options: unknown) => unknown)(call.input, input.appNeedsApprovalOptions))
      : app === true);
  try {
    if (approval !== undefined) {
      const check = await checkToolCall(session, call, input.cost, approval, input.runsTool);
      const { decision } = check;
      // `resumed` only where the SDK resumes the call from this answer: a status of `approved` for any other call
      // would make the SDK write an automatic approval of its own into the history.
      if (decision.decision === 'allow') {
        const outcome = await run(session, check, input.runsTool, approval.resumes);
        if (unnamed && outcome.kind === 'run') markUsed(session, approval.approvalId);
        return outcome;
      }
      // The answer did not count (another call's request, used, expired): ask again, for this call.
      if (decision.decision === 'require_approval') return ask(decision);
      return denial(decision, approval.resumes);
    }
    if (appAsks) {
      const cost = resolveToolCost(input.cost, call.input).cost;
      const preview = session.evaluate({ type: 'tool', name: call.toolName, input: call.input, ...(cost !== undefined ? { cost } : {}) });
      if (preview.decision === 'allow') return { kind: 'ask', reason: undefined };
      const { decision } = await checkToolCall(session, call, input.cost, undefined, input.runsTool);
      if (decision.decision === 'deny') return denial(decision, false);
      return decision.decision === 'require_approval' ? ask(decision) : { kind: 'ask', reason: undefined };
    }

    const check = await checkToolCall(session, call, input.cost, undefined, input.runsTool);
    const { decision } = check;
    if (decision.decision === 'allow') {
      return run(session, check, input.runsTool, false);
    }
    if (decision.decision === 'require_approval') return ask(decision);
    return denial(decision, false);
  } catch (cause) {
    if (AgentPolicyError.isInstance(cause)) return { kind: 'deny', resumed: false, reason: cause.message, error: cause };
    const error = new AgentPolicyError('ACTION_DENIED', `agentpolicy: the policy check of tool ${JSON.stringify(call.toolName)} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    return { kind: 'deny', resumed: false, reason: error.message, error };
  }
}
