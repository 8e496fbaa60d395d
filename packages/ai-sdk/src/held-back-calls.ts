import { withdrawAllow, type PolicySession } from '@agentpolicy/core';
import type { ToolCallCheck } from './check-tool-call.js';
import { resumedFromLastMessage } from './find-approval-response.js';

// The AI SDK holds a step's tool calls back by tool call id: when the approval hook asks a human about a call, or
// denies it, no call with that id runs in that step, even one the hook allowed. A model that gives two calls of one
// step the same id (a provider numbering calls per turn, a scripted model) then leaves an allow the SDK never runs,
// with the money it reserved and the `limits:` slots it took. Left alone, that money is held until `session.end()`
// charges it (spend for a tool that never ran), and the slots count a call that never ran against `max_calls`. These
// functions give both back and spend the allow (so a repeat of the call is decided and charged anew).

/** An allow the approval hook gave to a call the wrapped `execute` runs, and the step (its messages) it was given in. */
interface HeldAllow {
  readonly check: ToolCallCheck;
  readonly step: unknown;
}

/** Allows the hook gave, by session and tool call id, until they ran. */
const heldAllows = new WeakMap<PolicySession, Map<string, HeldAllow[]>>();
/** Tool call ids the hook held back in a step, by the step's message array (the SDK passes one per step). */
const heldBackIds = new WeakMap<object, Set<string>>();
/** Tool call ids remembered per session (the oldest are forgotten first: those calls ran long ago). */
const HELD_ALLOWS = 1024;

/**
 * Called when the hook lets a call run that the wrapped `execute` will run: remembers its allow until then. If the
 * hook already held its tool call id back in this step, the SDK will not run it: its allow is given back at once.
 */
export async function allowedToRun(session: PolicySession, messages: readonly unknown[] | undefined, toolCallId: string | undefined, check: ToolCallCheck): Promise<void> {
  // A free call holds no money, but may hold limit slots: it is remembered too.
  if (toolCallId === undefined || check.reservation?.settled === true) return;
  if (typeof messages === 'object' && messages !== null && heldBackIds.get(messages)?.has(toolCallId) && !resumedFromLastMessage(messages, toolCallId)) {
    await withdrawAllow(session, check.decision, check.reservation);
    return;
  }
  let byId = heldAllows.get(session);
  if (byId === undefined) heldAllows.set(session, (byId = new Map()));
  // A free call has no settlement to say it ran: one from an earlier step is let go (it ran, or was given back then).
  const held = (byId.get(toolCallId) ?? []).filter((earlier) => (earlier.check.reservation === undefined ? earlier.step === messages : !earlier.check.reservation.settled));
  held.push({ check, step: messages });
  byId.delete(toolCallId);
  if (byId.size >= HELD_ALLOWS) byId.delete(byId.keys().next().value as string);
  byId.set(toolCallId, held);
}

/**
 * Called when the hook asks a human about a call or denies it: the SDK runs no call with that tool call id in this
 * step. Allows the hook gave to calls with that id that have not run (this step's, or one the SDK never ran) are given
 * back; if one is running after all (another run sharing the session), its `execute` finds it taken and decides the
 * call again.
 */
export async function heldBack(session: PolicySession, messages: readonly unknown[] | undefined, toolCallId: string | undefined): Promise<void> {
  if (toolCallId === undefined) return;
  // The SDK holds calls back by id among the calls of one model step. A call it resumes from an answer in the last
  // message is run on its own (and the application may pass the same history array to the next run): no mark.
  if (typeof messages === 'object' && messages !== null && !resumedFromLastMessage(messages, toolCallId)) {
    let ids = heldBackIds.get(messages);
    if (ids === undefined) heldBackIds.set(messages, (ids = new Set()));
    ids.add(toolCallId);
  }
  const byId = heldAllows.get(session);
  const held = byId?.get(toolCallId);
  if (held === undefined) return;
  byId!.delete(toolCallId);
  for (const { check } of held) await withdrawAllow(session, check.decision, check.reservation);
}

/**
 * Called when the hook ends the run (`onDeny: 'stop'` throws the policy error): the SDK runs none of this step's
 * calls, so every allow the hook gave in this step is given back.
 */
export async function runStopped(session: PolicySession, messages: readonly unknown[] | undefined): Promise<void> {
  const byId = heldAllows.get(session);
  if (byId === undefined || typeof messages !== 'object' || messages === null) return;
  // Deleting or replacing the entry being visited is safe while iterating a Map.
  for (const [toolCallId, held] of byId) {
    const stopped = held.filter((entry) => entry.step === messages);
    if (stopped.length === 0) continue;
    const rest = held.filter((entry) => entry.step !== messages);
    if (rest.length > 0) byId.set(toolCallId, rest);
    else byId.delete(toolCallId);
    for (const { check } of stopped) await withdrawAllow(session, check.decision, check.reservation);
  }
}
