// What the callback handler and the middleware share about running a tool call. It imports nothing from
// `@langchain/langgraph`, so the handler entry (`@agentpolicy/langchain/handler`) never loads it.
import type { CheckToolOptions, Decision, PolicySession, Reservation } from '@agentpolicy/core';

/** A decided tool call: the decision, and the money it holds until the tool has run (a call with a cost). */
export interface ToolRun {
  readonly decision: Decision;
  readonly reservation: Reservation | undefined;
}

/**
 * Decides a tool call (with its input) and records it. A call with a cost holds it until the tool has run, so a
 * tool that throws is settled by core's one rule; a free call is simply recorded.
 */
export async function decide(session: PolicySession, name: string, check: CheckToolOptions): Promise<ToolRun> {
  if (check.cost === undefined || check.cost === 0) return { decision: await session.checkTool(name, check), reservation: undefined };
  const reservation = await session.reserveAction({ type: 'tool', name, ...check });
  return { decision: reservation.decision, reservation };
}

// Tool calls the middleware of a session is running now, by tool call id: a callback handler on the same session
// leaves them alone, so nothing is decided or charged twice.
const governed = new WeakMap<PolicySession, Set<string>>();

/** Whether `session`'s middleware is running the tool call with this id (and has decided and charged it). */
export function isGovernedToolCall(session: PolicySession, toolCallId: string | undefined): boolean {
  return toolCallId !== undefined && governed.get(session)?.has(toolCallId) === true;
}

/** Marks a tool call (by its id) as run by `session`'s middleware, or unmarks it. */
export function markGovernedToolCall(session: PolicySession, toolCallId: string, running: boolean): void {
  let calls = governed.get(session);
  if (calls === undefined) governed.set(session, (calls = new Set()));
  if (running) calls.add(toolCallId);
  else calls.delete(toolCallId);
}

/** Marks a tool run (by a callback handler's run id) as decided for `session`, or unmarks it. */
export function markToolRun(session: PolicySession, runId: string, running: boolean): void {
  let calls = governed.get(session);
  if (calls === undefined) governed.set(session, (calls = new Set()));
  if (running) calls.add(`run:${runId}`);
  else calls.delete(`run:${runId}`);
}

/** Whether a callback handler on `session` already decided the tool run with this run id. */
export function isDecidedToolRun(session: PolicySession, runId: string): boolean {
  return governed.get(session)?.has(`run:${runId}`) === true;
}
