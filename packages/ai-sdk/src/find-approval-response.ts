/** A human's answer to a tool approval request, as found in the AI SDK message history. */
export interface ApprovalResponse {
  readonly approvalId: string;
  readonly approved: boolean;
  readonly reason?: string;
}

type Part = { readonly type?: unknown; readonly [key: string]: unknown };

function partsOf(message: unknown): readonly Part[] {
  if (typeof message !== 'object' || message === null) return [];
  const content = (message as { content?: unknown }).content;
  return Array.isArray(content) ? (content as Part[]).filter((part) => typeof part === 'object' && part !== null) : [];
}

/**
 * Finds the `tool-approval-response` a human gave for one tool call: the assistant message holds a
 * `tool-approval-request { approvalId, toolCallId }`, a later tool message the `tool-approval-response { approvalId,
 * approved, reason? }`. Like the AI SDK, only the first response for a call counts.
 */
export function findApprovalResponse(messages: readonly unknown[] | undefined, toolCallId: string | undefined): ApprovalResponse | undefined {
  if (!Array.isArray(messages) || messages.length === 0 || typeof toolCallId !== 'string' || toolCallId === '') return undefined;
  let approvalIds: Set<string> | undefined;
  for (const message of messages) {
    for (const part of partsOf(message)) {
      if (part.type === 'tool-approval-request' && part.toolCallId === toolCallId && typeof part.approvalId === 'string') {
        (approvalIds ??= new Set()).add(part.approvalId);
      }
    }
  }
  if (approvalIds === undefined) return undefined;
  for (const message of messages) {
    if ((message as { role?: unknown } | null)?.role !== 'tool') continue;
    for (const part of partsOf(message)) {
      if (part.type !== 'tool-approval-response' || typeof part.approvalId !== 'string' || !approvalIds.has(part.approvalId)) continue;
      return {
        approvalId: part.approvalId,
        // Only a literal `true` approves.
        approved: part.approved === true,
        ...(typeof part.reason === 'string' ? { reason: part.reason } : {}),
      };
    }
  }
  return undefined;
}
