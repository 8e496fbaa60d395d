// `@agentpolicy/langchain/handler` and `/embeddings` must not load `langchain` or `@langchain/langgraph` (import, then require).
import { registerHooks, createRequire } from 'node:module';

const loaded = new Set();
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    loaded.add(result.url);
    return result;
  },
});
const heavy = () => [...loaded].filter((url) => /\/node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?(langchain|@langchain\/langgraph)\//.test(url));
const { AgentPolicyCallbackHandler } = await import('@agentpolicy/langchain/handler');
if (typeof AgentPolicyCallbackHandler !== 'function') throw new Error('smoke: the handler entry exports the handler');
if (heavy().length > 0) throw new Error(`smoke: the handler entry loaded ${heavy().join(', ')}`);
createRequire(import.meta.url)('@agentpolicy/langchain/handler');
if (heavy().length > 0) throw new Error(`smoke: require() of the handler entry loaded ${heavy().join(', ')}`);
const { policyEmbeddings } = await import('@agentpolicy/langchain/embeddings');
if (typeof policyEmbeddings !== 'function') throw new Error('smoke: the embeddings entry exports policyEmbeddings');
createRequire(import.meta.url)('@agentpolicy/langchain/embeddings');
if (heavy().length > 0) throw new Error(`smoke: the embeddings entry loaded ${heavy().join(', ')}`);
console.log('smoke ok: @agentpolicy/langchain/handler and /embeddings load neither langchain nor LangGraph (import time: pnpm bench)');
