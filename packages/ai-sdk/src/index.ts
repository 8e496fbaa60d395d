export { wrapTools, type AnyToolSet, type ToolInput, type WrapToolsOptions } from './wrap-tools.js';
export {
  policyToolApproval,
  type PolicyToolApproval,
  type PolicyToolApprovalOptions,
  type PolicyToolApprovalRequest,
  type PolicyToolApprovalStatus,
} from './policy-tool-approval.js';
export { policyMiddleware } from './policy-middleware.js';
export { policyEmbeddingMiddleware } from './policy-embedding-middleware.js';
export { policyImageMiddleware } from './policy-image-middleware.js';
export type { OnDeny, ToolCost } from './tool-settings.js';
