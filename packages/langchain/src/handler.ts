// The callback handler alone. It needs only `@langchain/core`: importing this entry never loads `langchain` or
// `@langchain/langgraph`, which the middleware needs.
export { AgentPolicyCallbackHandler, type AgentPolicyCallbackHandlerOptions } from './agent-policy-callback-handler.js';
export type { ToolCosts } from './tool-costs.js';
