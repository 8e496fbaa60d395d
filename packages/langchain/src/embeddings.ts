// The embeddings wrapper alone. It needs only `@langchain/core`: importing this entry never loads `langchain` or
// `@langchain/langgraph`.
export { policyEmbeddings, type PolicyEmbeddingsOptions } from './policy-embeddings.js';
