// Type-checked only (nodenext / node16): the CommonJS types (`require` condition, `.d.cts`) of every package.
import core = require('@agentpolicy/core');
import aiSdk = require('@agentpolicy/ai-sdk');
import handler = require('@agentpolicy/langchain/handler');
import langchain = require('@agentpolicy/langchain');
import openaiAdapter = require('@agentpolicy/openai');

const session: core.PolicySession = new core.AgentPolicy({ budget: 1 }).session();
const decision: core.Decision = session.evaluate({ type: 'tool', name: 'search' });
const code: core.AgentPolicyErrorCode | undefined = core.findPolicyError(new Error('x'))?.code;
// With skipLibCheck (as most apps set it), a module whose types failed to resolve would be `any`: make that an error.
type NotAny<T> = 0 extends 1 & T ? never : T;
const typed: [NotAny<typeof core>, NotAny<typeof aiSdk>, NotAny<typeof handler>, NotAny<typeof langchain>, NotAny<typeof openaiAdapter>] = [
  core,
  aiSdk,
  handler,
  langchain,
  openaiAdapter,
];
export const checked = [
  typed,
  decision.decision,
  code,
  aiSdk.policyMiddleware(session),
  new handler.AgentPolicyCallbackHandler(session),
  langchain.agentPolicyMiddleware(session),
  openaiAdapter.wrapOpenAI,
];
