// The `createAgent` middleware alone (it needs `langchain` and `@langchain/langgraph`).
export {
  agentPolicyMiddleware,
  type AgentPolicyMiddlewareOptions,
  type ToolApprovalAnswer,
  type ToolApprovalDecision,
  type ToolApprovalRequest,
} from './agent-policy-middleware.js';
export type { ToolCosts } from './tool-costs.js';
