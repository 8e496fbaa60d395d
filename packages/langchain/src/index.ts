// Everything: the callback handler, the `createAgent` middleware and the embeddings wrapper. Code that needs only
// the handler or the embeddings wrapper can import `@agentpolicy/langchain/handler` or
// `@agentpolicy/langchain/embeddings` instead, which do not load `langchain` or `@langchain/langgraph`.
export * from './handler.js';
export * from './middleware.js';
export * from './embeddings.js';
