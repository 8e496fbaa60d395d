// CommonJS entry of the smoke test: every package is loaded with require(), then the shared checks run on them.
const modules = {
  core: require('@agentpolicy/core'),
  aiSdk: require('@agentpolicy/ai-sdk'),
  langchain: require('@agentpolicy/langchain'),
  langchainHandler: require('@agentpolicy/langchain/handler'),
  openaiAdapter: require('@agentpolicy/openai'),
  ai: require('ai'),
  aiTest: require('ai/test'),
  langchainTools: require('@langchain/core/tools'),
  openai: require('openai'),
  otel: require('@opentelemetry/api'),
  mcp: require('@agentpolicy/mcp'),
  approvals: require('@agentpolicy/approvals'),
};
for (const name of ['@agentpolicy/core', '@agentpolicy/ai-sdk', '@agentpolicy/langchain', '@agentpolicy/langchain/handler', '@agentpolicy/openai', '@agentpolicy/mcp', '@agentpolicy/approvals']) {
  if (!require.resolve(name).endsWith('.cjs')) throw new Error(`smoke: require('${name}') did not load the CommonJS build`);
}
import('./run-smoke.mjs')
  .then(({ runSmoke }) => runSmoke(modules, process.argv[2] ?? 'commonjs'))
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
