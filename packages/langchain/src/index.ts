export { AgentPolicyCallbackHandler, type AgentPolicyCallbackHandlerOptions } from './agent-policy-callback-handler.js';
export {
  agentPolicyMiddleware,
  type AgentPolicyMiddlewareOptions,
  type ToolApprovalAnswer,
  type ToolApprovalDecision,
  type ToolApprovalRequest,
} from './agent-policy-middleware.js';
export type { ToolCosts } from './tool-costs.js';
