import { AgentPolicyError, PolicyDeniedError, decisionError, withdrawAllow, type BoundApprovalAnswer, type Decision, type PolicySession } from '@agentpolicy/core';
import { ToolMessage } from '@langchain/core/messages';
import { ToolInputParsingException } from '@langchain/core/tools';
import { getConfig, isGraphBubbleUp } from '@langchain/langgraph';
import type { ToolApprovalRequest } from './agent-policy-middleware.js';
import { decide, markGovernedToolCall, type ToolRun } from './tool-run.js';

export { decide, type ToolRun };

/** The interrupt value for a `require_approval` decision. */
export function approvalRequestOf(session: PolicySession, decision: Decision, tool: string, args: unknown, toolCallId: string | undefined): ToolApprovalRequest {
  const request = decision.approvalRequest;
  return {
    type: 'agentpolicy.approval',
    requestId: request?.id ?? '',
    fingerprint: decision.fingerprint,
    expiresAt: request?.expiresAt ?? '',
    tool,
    args: args ?? null,
    toolCallId: toolCallId ?? null,
    reason: decision.reason,
    decisionId: decision.id,
    rule: decision.rule,
    sessionId: session.id,
    cost: decision.action.cost,
  };
}

/** What the next `interrupt()` of this task will return, read before it is called. */
export interface WaitingResume {
  /**
   * `task`: a value given to this task (by interrupt id, or kept from an earlier run of it); `broadcast`: a bare
   * `Command({ resume })` value, which LangGraph hands to every pending interrupt (`value` holds it); `none`: nothing
   * is waiting, and the interrupt pauses the run.
   */
  readonly source: 'task' | 'broadcast' | 'none' | 'unknown';
  readonly value?: unknown;
}

/** Reads what the next `interrupt()` of this task will return, without taking it. */
export function resumeWaiting(): WaitingResume {
  let scratchpad: unknown;
  try {
    scratchpad = (getConfig()?.configurable as Record<string, unknown> | undefined)?.['__pregel_scratchpad'];
  } catch {
    scratchpad = undefined;
  }
  // Another LangGraph version: nothing can be told apart, so a bare value is checked once it is taken.
  if (typeof scratchpad !== 'object' || scratchpad === null) return { source: 'unknown' };
  const pad = scratchpad as { resume?: unknown; nullResume?: unknown; interruptCounter?: unknown };
  const next = (typeof pad.interruptCounter === 'number' ? pad.interruptCounter : -1) + 1;
  if (Array.isArray(pad.resume) && pad.resume.length > next) return { source: 'task' };
  return pad.nullResume !== undefined ? { source: 'broadcast', value: pad.nullResume } : { source: 'none' };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** One answer, bound to the request it was matched to. Only `true` or `{ approved: true }` approves. */
function bind(requestId: string, value: unknown): BoundApprovalAnswer {
  if (value === true || value === false) return { requestId, approved: value };
  if (isRecord(value) && typeof value['approved'] === 'boolean') {
    return {
      requestId,
      approved: value['approved'],
      ...(typeof value['by'] === 'string' ? { by: value['by'] } : {}),
      ...(typeof value['reason'] === 'string' ? { reason: value['reason'] } : {}),
    };
  }
  return { requestId, approved: false, reason: 'the resume value is not an answer (only true or { approved: true } approves)' };
}

/** Whether a resume value names the request(s) it answers (`{ requestId }`, or answers by request id). */
function namesRequests(value: unknown): boolean {
  return isRecord(value) && (typeof value['requestId'] === 'string' || !Object.hasOwn(value, 'approved'));
}

/**
 * Refuses a bare resume value (one that names no request) before it is taken while more than one approval request
 * of the session is pending: LangGraph hands a bare value to every pending interrupt, and one value must never
 * approve requests the human did not see. With one pending, every interrupt of the step takes it alike: the call of
 * that request is answered, and a call whose request was answered already (elsewhere, or before) gets that answer,
 * so no call of the step refuses a value another one ran on. Checked before `interrupt()` takes the value, so a
 * refused value is not kept for a later run.
 */
export async function refuseAmbiguous(session: PolicySession, waiting: WaitingResume): Promise<void> {
  if ((waiting.source !== 'broadcast' && waiting.source !== 'unknown') || namesRequests(waiting.value)) return;
  const pending = await session.pendingApprovals();
  if (pending.length <= 1) return;
  const ids = pending.map((request) => request.id);
  throw new AgentPolicyError(
    'INVALID_ARGUMENT',
    `agentpolicy: one resume value cannot answer ${ids.length} pending approval requests (${ids.join(', ')}); answer each by its id: new Command({ resume: { [requestId]: true } }) or LangGraph's { [interrupt.id]: answer }`,
  );
}

/**
 * Reads a resume value for the approval request `requestId`: the answer bound to it, or `undefined` when the value
 * answers other requests only (this one stays unanswered). A bare value was checked by {@link refuseAmbiguous}
 * before it was taken. See {@link ToolApprovalAnswer} for the forms.
 */
export function answerFor(value: unknown, requestId: string): BoundApprovalAnswer | undefined {
  if (isRecord(value) && typeof value['requestId'] === 'string') {
    // An answer that names its request.
    if (value['requestId'] !== requestId) return undefined;
    return {
      requestId,
      ...(typeof value['approved'] === 'boolean' ? { approved: value['approved'] } : {}),
      ...(typeof value['by'] === 'string' ? { by: value['by'] } : {}),
      ...(typeof value['reason'] === 'string' ? { reason: value['reason'] } : {}),
    };
  }
  // Answers by request id.
  if (namesRequests(value)) return Object.hasOwn(value as object, requestId) ? bind(requestId, (value as Record<string, unknown>)[requestId]) : undefined;
  return bind(requestId, value);
}

/** How many runs of one tool call at once (the same id and input) each get a decision of their own. */
const SAME_CALL_RUNS = 16;

interface ToolLike {
  invoke(input: unknown, config?: unknown): Promise<unknown>;
}

const isToolLike = (value: unknown): value is ToolLike => typeof value === 'object' && value !== null && typeof (value as { invoke?: unknown }).invoke === 'function';

/**
 * Runs an allowed tool call through the rest of the middleware chain, taking the allow's one execution when the tool
 * itself is invoked (so a middleware further in that interrupts or answers on its own uses nothing). An allow that
 * another run of the same call already used is decided again (and charged) before the tool runs. A tool that throws
 * is settled by core's rule (`Reservation.fail`) and its error passed on; `rejectedInput` (the tool's schema rejects
 * the arguments) releases the money when the tool throws its `ToolInputParsingException`.
 */
export async function runAllowed<R>(
  session: PolicySession,
  first: ToolRun,
  request: { toolCall: { name: string; args?: unknown; id?: string | undefined }; tool?: unknown },
  handler: (request: never) => R | Promise<R>,
  redecide: () => Promise<ToolRun>,
  rejectedInput = false,
): Promise<R | ToolMessage> {
  const original = request.tool;
  const refused = (decision: Decision): ToolMessage =>
    new ToolMessage({
      content: decisionError(decision).message,
      tool_call_id: request.toolCall.id ?? '',
      name: request.toolCall.name,
      status: 'error',
      response_metadata: { agentpolicy: { decisionId: decision.id, decision: decision.decision, rule: decision.rule.section } },
    });
  const take = async (): Promise<ToolRun | ToolMessage> => {
    // A claim stopped before the run (a halt, or a policy changed since the decision that would not allow it now)
    // is a recorded deny: the model gets it like any other, and the rest of the turn goes on.
    const claim = async (decision: Decision): Promise<boolean | ToolMessage> => {
      try {
        return await session.claim(decision);
      } catch (error) {
        if (PolicyDeniedError.isInstance(error) && error.decision.sessionId === session.id) return refused(error.decision);
        throw error;
      }
    };
    const firstTaken = await claim(first.decision);
    if (firstTaken instanceof ToolMessage) return firstTaken;
    if (firstTaken) return first;
    // The same call ran under this allow already (a replayed call id, a second thread, the call repeated in one
    // model turn): a new decision. Another run of the same call may take that one first (three of them at once):
    // then it is used, and deciding again gives a new one.
    for (let attempt = 0; attempt < SAME_CALL_RUNS; attempt++) {
      const again = await redecide();
      if (again.decision.decision !== 'allow') return refused(again.decision);
      const againTaken = await claim(again.decision);
      if (againTaken instanceof ToolMessage) return againTaken;
      if (againTaken) return again;
    }
    throw new AgentPolicyError('DECISION_USED', `agentpolicy: tool call ${JSON.stringify(request.toolCall.id ?? '')} is being run more than once at the same time`);
  };
  const settle = async (run: ToolRun, error: unknown, failed: boolean): Promise<void> => {
    if (!run.reservation) return;
    if (!failed) await run.reservation.commit();
    // An interrupt raised inside the tool ends nothing: it runs again on resume.
    else if (isGraphBubbleUp(error)) await run.reservation.release();
    // Arguments the tool's own schema rejected (checked before the call was decided, and rejected again by the tool)
    // never reached its body: a refused input, a 4xx under core's one rule for a tool that throws.
    else await run.reservation.fail(rejectedInput && error instanceof ToolInputParsingException ? { status: 422, error } : { error });
  };
  let attempted = false;
  const invoke = async (tool: ToolLike, input: unknown, config: unknown): Promise<unknown> => {
    attempted = true;
    const run = await take();
    if (run instanceof ToolMessage) return run;
    const id = request.toolCall.id;
    if (id !== undefined) markGovernedToolCall(session, id, true);
    let output: unknown;
    try {
      output = await tool.invoke(input, config);
    } catch (error) {
      await settle(run, error, true);
      throw error;
    } finally {
      if (id !== undefined) markGovernedToolCall(session, id, false);
    }
    await settle(run, undefined, false);
    return output;
  };
  if (!isToolLike(original)) {
    // No tool object to guard (a tool a middleware provides further in): the allow is taken before the chain runs.
    return invoke({ invoke: async () => handler(request as never) }, undefined, undefined) as Promise<R | ToolMessage>;
  }
  const guarded = Object.create(original, {
    invoke: { value: (input: unknown, config: unknown) => invoke(original, input, config), configurable: true, writable: true },
  }) as object;
  const result = await handler({ ...request, tool: guarded } as never);
  // The tool never ran (a middleware further in answered on its own): nothing was spent, and the allow is spent so
  // that no later run of the call can use it without paying.
  // Its money goes back only if this run took the allow: one that another run (or process) took is settled there.
  if (!attempted) await withdrawAllow(session, first.decision, first.reservation);
  return result;
}
