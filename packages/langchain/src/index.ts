// Everything: the callback handler and the `createAgent` middleware. Handler-only code can import
// `@agentpolicy/langchain/handler` instead, which does not load `langchain` or `@langchain/langgraph`.
export * from './handler.js';
export * from './middleware.js';
