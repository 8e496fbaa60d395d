export {
  createApprovalsHandler,
  signedLinksOnly,
  type ApprovalsAccess,
  type ApprovalsAuthorize,
  type ApprovalsHandler,
  type ApprovalsHandlerOptions,
  type ApprovalsPrincipal,
} from './approvals-handler.js';
export { toNodeHandler, type NodeHandler, type NodeHandlerOptions } from './node-handler.js';
export { approvalLinks, type ApprovalLinks } from './approval-links.js';
export { createWaitingApprover, type WaitingApproverOptions } from './create-waiting-approver.js';
export { CONTENT_SECURITY_POLICY } from './approvals-page.js';
export { escapeHtml } from './html.js';
