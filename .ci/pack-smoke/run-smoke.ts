// The checks every throwaway app runs against the installed tarballs. The modules come in as arguments, so the same
// checks exercise whichever build the app loaded: `import` (ESM, TypeScript) or `require` (CommonJS). Offline: mock
// models, and an OpenAI stand-in on 127.0.0.1.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type * as CoreModule from '@agentpolicy/core';
import type * as AiSdkModule from '@agentpolicy/ai-sdk';
import type * as LangChainHandlerModule from '@agentpolicy/langchain/handler';
import type * as LangChainModule from '@agentpolicy/langchain';
import type * as OpenAIAdapterModule from '@agentpolicy/openai';
import type * as AiModule from 'ai';
import type * as LangChainToolsModule from '@langchain/core/tools';
import type * as OpenAIModule from 'openai';
import type * as OtelModule from '@opentelemetry/api';
import type * as McpModule from '@agentpolicy/mcp';
import type * as ApprovalsModule from '@agentpolicy/approvals';

// With skipLibCheck (as most apps set it), a module whose types failed to resolve would be `any`: make that an error.
type NotAny<T> = 0 extends 1 & T ? never : T;

export interface SmokeModules {
  core: NotAny<typeof CoreModule>;
  aiSdk: NotAny<typeof AiSdkModule>;
  ai: typeof AiModule;
  /** `ai/test`: its mock model class is V3 in ai 6 and V4 in ai 7. */
  aiTest: Record<string, unknown>;
  langchainHandler: NotAny<typeof LangChainHandlerModule>;
  langchain: NotAny<typeof LangChainModule>;
  langchainTools: typeof LangChainToolsModule;
  openaiAdapter: NotAny<typeof OpenAIAdapterModule>;
  openai: typeof OpenAIModule;
  /** core's optional peer, loaded by core itself when installed (both builds). */
  otel: typeof OtelModule;
  mcp: NotAny<typeof McpModule>;
  approvals: NotAny<typeof ApprovalsModule>;
}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`smoke: ${message}`);
}

async function rejects(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('smoke: expected a rejection');
}

function coreCheck({ core }: SmokeModules): void {
  const policy = core.AgentPolicy.fromYamlString('budget:\n  max_spend: 1.00\ntools:\n  block: [delete_prod_db]\n');
  const session = policy.session();
  check(session.evaluate({ type: 'tool', name: 'delete_prod_db' }).decision === 'deny', 'a blocked tool is denied');
  check(session.evaluate({ type: 'tool', name: 'search', cost: 0.4 }).decision === 'allow', 'an allowed tool is allowed');
  const invalid = (() => {
    try {
      core.AgentPolicy.fromDict({ toools: {} });
    } catch (error) {
      return error;
    }
    return undefined;
  })();
  check(core.PolicyValidationError.isInstance(invalid), 'an invalid policy throws PolicyValidationError');
  check(invalid.code === 'POLICY_INVALID' && invalid.issues.length > 0, 'the validation error lists its issues');
}

async function telemetryCheck({ core, otel }: SmokeModules): Promise<void> {
  // A minimal tracer provider: core must find the installed @opentelemetry/api and report each decision as a span.
  const spans: string[] = [];
  const span = { setStatus: () => span, end: () => undefined, isRecording: () => false, addEvent: () => span };
  const tracer = { startSpan: (name: string) => (spans.push(name), span), startActiveSpan: () => undefined };
  check(otel.trace.setGlobalTracerProvider({ getTracer: () => tracer } as never), 'the tracer provider registered');
  try {
    await new core.AgentPolicy({ blockedTools: ['delete_prod_db'] }).session().checkTool('delete_prod_db');
    check(spans.length === 1, `OpenTelemetry saw the decision (spans: ${spans.join(', ') || 'none'})`);
  } finally {
    otel.trace.disable();
  }
}

async function aiSdkCheck({ core, aiSdk, ai, aiTest }: SmokeModules): Promise<void> {
  const MockModel = (aiTest['MockLanguageModelV4'] ?? aiTest['MockLanguageModelV3']) as new (options: unknown) => unknown;
  check(typeof MockModel === 'function', 'ai/test has a mock language model');
  const usage = { inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 5, text: 5, reasoning: 0 } };
  const results = [
    {
      content: [{ type: 'tool-call', toolCallId: 'call-1', toolName: 'delete_prod_db', input: '{}' }],
      finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
      usage,
      warnings: [],
    },
    { content: [{ type: 'text', text: 'done' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] },
  ];
  // A function rather than an array of results: ai 6.0.0's mock reads the array from the second entry on.
  let calls = 0;
  const model = new MockModel({ doGenerate: async () => results[calls++] });
  const session = new core.AgentPolicy({ budget: 1, blockedTools: ['delete_prod_db'], pricing: { 'mock-model-id': { input: 10, output: 20, maxOutputTokens: 1000 } } }).session();
  let ran = 0;
  const tools = aiSdk.wrapTools(
    {
      delete_prod_db: ai.tool({
        inputSchema: ai.jsonSchema<Record<string, never>>({ type: 'object', properties: {} }),
        execute: async () => {
          ran++;
          return 'deleted';
        },
      }),
    },
    session,
  );
  const loose = ai as unknown as Record<string, (...args: unknown[]) => unknown>;
  const stepCount = loose['isStepCount'] ?? loose['stepCountIs'];
  check(stepCount, 'ai has a step-count stop condition');
  const result = (await (ai.generateText as (options: unknown) => Promise<{ text: string }>)({
    model: ai.wrapLanguageModel({ model: model as never, middleware: aiSdk.policyMiddleware(session) as never }),
    tools,
    stopWhen: stepCount(3),
    prompt: 'clean up',
  })) as { text: string };
  check(ran === 0, 'the AI SDK never ran the blocked tool');
  check(result.text === 'done', 'the agent loop carried on after the denial');
  const report = session.end();
  check(report.policyHits.deniedTools.includes('delete_prod_db'), 'the denial is in the report');
  check(report.spent > 0, 'the model calls were charged');
}

async function langchainCheck({ core, langchainHandler, langchain, langchainTools }: SmokeModules): Promise<void> {
  check(langchain.AgentPolicyCallbackHandler === langchainHandler.AgentPolicyCallbackHandler || typeof langchain.agentPolicyMiddleware === 'function', 'the full entry exports the handler and the middleware');
  const session = new core.AgentPolicy({ blockedTools: ['delete_repo'] }).session();
  const handler = new langchainHandler.AgentPolicyCallbackHandler(session);
  let ran = 0;
  const make = (name: string) =>
    new langchainTools.DynamicTool({
      name,
      description: name,
      func: async () => {
        ran++;
        return 'done';
      },
    });
  check((await make('search').invoke('x', { callbacks: [handler] })) === 'done', 'an allowed LangChain tool runs');
  // LangChain logs the error of a raising handler ("Error in handler AgentPolicyCallbackHandler, …") before it
  // rethrows it; that line is expected here.
  const log = console.error;
  console.error = (...args: unknown[]) => {
    if (!String(args[0]).startsWith('Error in handler AgentPolicyCallbackHandler')) log(...args);
  };
  const error = await rejects(make('delete_repo').invoke('prod', { callbacks: [handler] })).finally(() => {
    console.error = log;
  });
  check(core.PolicyDeniedError.isInstance(error), 'a blocked LangChain tool rejects with PolicyDeniedError');
  check(ran === 1, 'the blocked LangChain tool never ran');
  check(typeof langchain.agentPolicyMiddleware(session) === 'object', 'the createAgent middleware builds');
}

async function openaiCheck({ core, openaiAdapter, openai }: SmokeModules): Promise<void> {
  let requests = 0;
  const server = createServer((request, response) => {
    requests++;
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 0,
          model: 'smoke-model',
          choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'hi', refusal: null } }],
          usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const policy = new core.AgentPolicy({ budget: 1, allowedDomains: ['127.0.0.1'], pricing: { 'smoke-model': { input: 1, output: 2 } } });
    const session = policy.session();
    const client = openaiAdapter.wrapOpenAI(new openai.OpenAI({ apiKey: 'test', baseURL, maxRetries: 0 }), session);
    const reply = await client.chat.completions.create({ model: 'smoke-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 600 });
    check(reply.choices[0]?.message.content === 'hi', 'the governed OpenAI call answered');
    check(session.report().spent === 0.002, `the real usage was charged (spent ${session.report().spent})`);

    const blocked = new core.AgentPolicy({ allowedDomains: ['api.openai.com'] }).session();
    const denied = openaiAdapter.wrapOpenAI(new openai.OpenAI({ apiKey: 'test', baseURL, maxRetries: 0 }), blocked);
    const error = await rejects(denied.chat.completions.create({ model: 'smoke-model', messages: [{ role: 'user', content: 'hi' }] }));
    check(core.PolicyDeniedError.isInstance(core.findPolicyError(error)), 'a host outside the allow-list is refused');
    check(requests === 1, 'the refused request was never sent');
  } finally {
    server.close();
  }
}

function siblingsLoad({ mcp, approvals }: SmokeModules): void {
  check(typeof mcp.wrapMcpTransport === 'function' && typeof mcp.gateMcpServer === 'function', '@agentpolicy/mcp loads');
  check(typeof approvals.createApprovalsHandler === 'function', '@agentpolicy/approvals loads');
}

export async function runSmoke(modules: SmokeModules, label: string): Promise<void> {
  coreCheck(modules);
  siblingsLoad(modules);
  await telemetryCheck(modules);
  await aiSdkCheck(modules);
  await langchainCheck(modules);
  await openaiCheck(modules);
  console.log(`smoke ok (${label}): core check, OpenTelemetry, AI SDK, LangChain handler, OpenAI client; MCP and approvals load`);
}
