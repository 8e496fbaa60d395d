import { AgentPolicyError, signApprovalToken, type ApprovalRequest } from '@agentpolicy/core';

/** The two one-click links of a request. */
export interface ApprovalLinks {
  readonly approve: string;
  readonly reject: string;
}

/**
 * Signs an approve link and a reject link for a request, to send to whoever should answer (a chat message, an
 * email). Each opens the handler's confirmation page at `{handlerUrl}/link/{token}`; the token is core's approval
 * token, valid until the request expires, for that request's action only, and it answers once.
 *
 * @example
 * ```ts
 * const links = approvalLinks(request, { handlerUrl: 'https://ops.example.com/approvals', secret });
 * await chat.post(`${request.action.name} needs approval: ${links.approve} / ${links.reject}`);
 * ```
 */
export function approvalLinks(request: Pick<ApprovalRequest, 'id' | 'fingerprint' | 'expiresAt'>, options: { handlerUrl: string | URL; secret: string | Uint8Array }): ApprovalLinks {
  const expiresAt = Date.parse(request?.expiresAt);
  if (typeof request?.id !== 'string' || typeof request.fingerprint !== 'string' || !Number.isFinite(expiresAt)) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'approvalLinks needs an approval request (id, fingerprint, expiresAt)');
  }
  const base = String(options.handlerUrl).replace(/\/+$/, '');
  const link = (answer: 'approve' | 'reject') =>
    `${base}/link/${signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt, answer }, options.secret)}`;
  return Object.freeze({ approve: link('approve'), reject: link('reject') });
}
