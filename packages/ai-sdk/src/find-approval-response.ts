import { canonicalInput } from '@agentpolicy/core';

/** A human's answer to a tool approval request, as found in the AI SDK message history. */
export interface ApprovalResponse {
  /** The SDK's approval id: the `tool-approval-request` the answer names. */
  readonly approvalId: string;
  readonly approved: boolean;
  readonly reason?: string;
  /**
   * The agentpolicy approval request the SDK request was raised for (named in the request's `reason`), when the
   * policy asked for the approval; absent when the tool's own `needsApproval` asked.
   */
  readonly requestId?: string;
  /** The tool and input of the call the request was raised for, as the history holds them (what the human saw). */
  readonly toolName?: unknown;
  readonly input?: unknown;
  /** Whether the history holds that tool call (and so `input`). */
  readonly hasInput: boolean;
  /** Whether the SDK resumes a call with this tool call id from the last message ({@link resumedFromLastMessage}). */
  readonly resumes: boolean;
}

type Part = { readonly type?: unknown; readonly [key: string]: unknown };

function partsOf(message: unknown): readonly Part[] {
  if (typeof message !== 'object' || message === null) return [];
  const content = (message as { content?: unknown }).content;
  return Array.isArray(content) ? (content as Part[]).filter((part) => typeof part === 'object' && part !== null) : [];
}

const REQUEST_MARK = ' (approval request ';

/** The reason of an SDK approval request raised for the agentpolicy approval request `requestId`. */
export function approvalReason(reason: string, requestId: string): string {
  return `agentpolicy: ${reason}${REQUEST_MARK}${requestId})`;
}

/** The agentpolicy approval request named at the end of a reason written by {@link approvalReason}. */
function requestIdOf(reason: unknown): string | undefined {
  if (typeof reason !== 'string' || !reason.endsWith(')')) return undefined;
  const at = reason.lastIndexOf(REQUEST_MARK);
  if (at < 0) return undefined;
  const id = reason.slice(at + REQUEST_MARK.length, -1);
  return id !== '' && !/[\s()]/.test(id) ? id : undefined;
}

interface RequestInfo {
  /** The tool call the request asks about, and where in the history it was raised. */
  readonly toolCallId: string;
  readonly at: number;
  readonly requestId: string | undefined;
  readonly toolName: unknown;
  readonly input: unknown;
  readonly hasInput: boolean;
}

/**
 * Whether the SDK resumes a call with this tool call id from the last message of the history: that message is a tool
 * message holding a yes to a `tool-approval-request` for this id, and no result for the id. The SDK reads only the
 * last message and takes any yes there — a replayed answer, a second answer to a request the human already rejected,
 * an answer to one of its own automatic requests — and then runs the call unless the approval hook answers `denied`
 * (ai 7) or the tool's `needsApproval` answers `false` (ai 6, which then runs nothing).
 */
export function resumedFromLastMessage(messages: readonly unknown[] | undefined, toolCallId: string | undefined): boolean {
  if (!Array.isArray(messages) || typeof toolCallId !== 'string' || toolCallId === '') return false;
  const last = messages[messages.length - 1] as { role?: unknown } | null | undefined;
  if (last?.role !== 'tool') return false;
  let yes: Set<unknown> | undefined;
  for (const part of partsOf(last)) {
    if (part.type === 'tool-result' && part.toolCallId === toolCallId) return false;
    if (part.type === 'tool-approval-response' && part.approved) (yes ??= new Set()).add(part.approvalId);
  }
  if (yes === undefined) return false;
  for (const message of messages) {
    if ((message as { role?: unknown } | null)?.role !== 'assistant') continue;
    for (const part of partsOf(message)) if (part.type === 'tool-approval-request' && part.toolCallId === toolCallId && yes.has(part.approvalId)) return true;
  }
  return false;
}

/**
 * Finds the human's latest answer to an approval request raised for one tool call id: the assistant message holds a
 * `tool-approval-request { approvalId, toolCallId, reason }` beside the `tool-call` it asks about, a later tool
 * message the `tool-approval-response { approvalId, approved, reason? }`. The answer is returned with what it is
 * bound to — the agentpolicy request id and the tool call's input — so the caller can make it count only for the
 * request it answers and the call the human saw. A tool call id that a provider or a scripted model reuses across
 * turns can have several answers in the history: the latest (the first response to each request counts, as in the
 * AI SDK) is the one given for the newest request.
 */
export function findApprovalResponse(messages: readonly unknown[] | undefined, toolCallId: string | undefined): ApprovalResponse | undefined {
  if (!Array.isArray(messages) || messages.length === 0 || typeof toolCallId !== 'string' || toolCallId === '') return undefined;
  // Every SDK request of the history (a rejection of an agentpolicy request counts whichever call it was asked for).
  let requests: Map<string, RequestInfo> | undefined;
  let forThisCall = false;
  messages.forEach((message, at) => {
    if ((message as { role?: unknown } | null)?.role !== 'assistant') return;
    const parts = partsOf(message);
    for (const part of parts) {
      if (part.type !== 'tool-approval-request' || typeof part.approvalId !== 'string' || typeof part.toolCallId !== 'string') continue;
      // The SDK's record of an approval hook's own answer (`approved` / `denied`), not a question to a human.
      if (part.isAutomatic === true) continue;
      const requestId = requestIdOf(part.reason);
      if (part.toolCallId !== toolCallId && requestId === undefined) continue;
      forThisCall ||= part.toolCallId === toolCallId;
      // The call it asks about is the tool call with this id in the same assistant message.
      const call = parts.find((candidate) => candidate.type === 'tool-call' && candidate.toolCallId === part.toolCallId);
      (requests ??= new Map()).set(part.approvalId, {
        toolCallId: part.toolCallId,
        at,
        requestId,
        toolName: call?.['toolName'],
        input: call?.['input'],
        hasInput: call !== undefined && Object.hasOwn(call, 'input'),
      });
    }
  });
  if (requests === undefined || !forThisCall) return undefined;
  let found: ApprovalResponse | undefined;
  let foundAt = -1;
  // Where the last rejection of each agentpolicy request was given.
  const rejectedAt = new Map<string, number>();
  const answered = new Set<string>();
  const resumes = resumedFromLastMessage(messages, toolCallId);
  messages.forEach((message, at) => {
    if ((message as { role?: unknown } | null)?.role !== 'tool') return;
    const parts = partsOf(message);
    for (const part of parts) {
      if (part.type !== 'tool-approval-response' || typeof part.approvalId !== 'string') continue;
      const request = requests!.get(part.approvalId);
      // Like the AI SDK, only the first response to an approval request counts.
      if (request === undefined || answered.has(part.approvalId)) continue;
      answered.add(part.approvalId);
      // Only a literal `true` approves.
      const approved = part.approved === true;
      if (!approved && request.requestId !== undefined) rejectedAt.set(request.requestId, at);
      if (request.toolCallId !== toolCallId) continue;
      foundAt = request.at;
      found = {
        approvalId: part.approvalId,
        approved,
        ...(typeof part.reason === 'string' ? { reason: part.reason } : {}),
        ...(request.requestId !== undefined ? { requestId: request.requestId } : {}),
        ...(request.hasInput ? { toolName: request.toolName, input: request.input } : {}),
        hasInput: request.hasInput,
        resumes,
      };
    }
  });
  // A human's no to an agentpolicy request stands against every yes to it asked before that no (another SDK request
  // written into the history for the same request, answered beside the rejection): only a request raised after the
  // rejection (the call asked about again) can be approved.
  if (found?.approved && found.requestId !== undefined && (rejectedAt.get(found.requestId) ?? -1) > foundAt) return { ...found, approved: false };
  return found;
}

function sameInput(a: unknown, b: unknown): boolean {
  try {
    return canonicalInput(a) === canonicalInput(b);
  } catch {
    return false;
  }
}

/**
 * Whether the SDK request an answer belongs to was raised for this call: the history holds it beside a call of this
 * tool with exactly this input (what the human saw). An answer to a request written beside another call approves
 * nothing else, even when the agentpolicy request it names is about the same action.
 */
export function answersCall(approval: ApprovalResponse, call: { readonly toolName: string; readonly input: unknown }): boolean {
  return approval.hasInput && approval.toolName === call.toolName && sameInput(approval.input, call.input);
}
