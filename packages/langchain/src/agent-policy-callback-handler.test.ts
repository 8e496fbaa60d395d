import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentPolicy, ApprovalRequiredError, PolicyDeniedError, type AgentPolicyOptions } from '@agentpolicy/core';
import { ChatOpenAI } from '@langchain/openai';
import { AIMessage, AIMessageChunk, HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { InMemoryCache } from '@langchain/core/caches';
import { awaitAllCallbacks } from '@langchain/core/callbacks/promises';
import { LLM } from '@langchain/core/language_models/llms';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import type { CallbackManagerForLLMRun } from '@langchain/core/callbacks/manager';
import { ChatGenerationChunk, type ChatResult, type LLMResult } from '@langchain/core/outputs';
import { fakeModel } from '@langchain/core/testing';
import { DynamicStructuredTool, tool } from '@langchain/core/tools';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import { createAgent } from 'langchain';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { CALL_COST, PRICING, USAGE, aiMessage, toolCallMessage } from './test-support.js';


const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  await awaitAllCallbacks();
  await new Promise((resolve) => setImmediate(resolve));
  expect(unhandled.splice(0)).toEqual([]);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

function setup(options: AgentPolicyOptions = {}) {
  const policy = new AgentPolicy({ blockedTools: ['delete_*'], pricing: PRICING, ...options });
  const session = policy.session();
  const handler = new AgentPolicyCallbackHandler(session, { toolCosts: { send_email: 0.01 } });
  const runs = { delete_repo: 0, send_email: 0 };
  const deleteRepo = tool(
    async ({ name }) => {
      runs.delete_repo++;
      return `deleted ${name}`;
    },
    { name: 'delete_repo', description: 'Delete a repository', schema: z.object({ name: z.string() }) },
  );
  const sendEmail = tool(
    async ({ to }) => {
      runs.send_email++;
      return `sent to ${to}`;
    },
    { name: 'send_email', description: 'Send an email', schema: z.object({ to: z.string() }) },
  );
  return { policy, session, handler, runs, deleteRepo, sendEmail };
}

describe('AgentPolicyCallbackHandler: tools', () => {
  it('is built with the constructor flags that make LangChain await it and rethrow its errors', () => {
    const { handler } = setup();
    expect(handler.raiseError).toBe(true);
    expect(handler.awaitHandlers).toBe(true);
    expect(handler.copy()).toBe(handler);
  });

  it('a direct invoke of a blocked tool rejects and the tool body never runs', async () => {
    const { session, handler, runs, deleteRepo } = setup();
    const error = await deleteRepo.invoke({ name: 'core' }, { callbacks: [handler] }).catch((caught: unknown) => caught);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision.rule).toEqual({ section: 'tools', list: 'block', entry: 'delete_*' });
    expect(runs.delete_repo).toBe(0);
    const report = session.report();
    expect(report.decisions.map((d) => [d.action.type, d.decision])).toEqual([['tool', 'deny']]);
    expect(report.policyHits.deniedTools).toEqual(['delete_repo']);
  });

  it('an allowed tool runs and its declared cost is charged once', async () => {
    const { session, handler, runs, sendEmail } = setup({ budget: 1 });
    await expect(sendEmail.invoke({ to: 'bob@example.com' }, { callbacks: [handler] })).resolves.toBe('sent to bob@example.com');
    expect(runs.send_email).toBe(1);
    expect(session.spent).toBe(0.01);
    const [decision] = session.report().decisions;
    expect(decision).toMatchObject({ decision: 'allow', action: { type: 'tool', name: 'send_email', cost: 0.01 } });
  });

  it('a toolCosts function that throws denies the call and records why; the tool never runs and the caller gets the recorded denial', async () => {
    const { session, runs, sendEmail } = setup({ budget: 1 });
    const handler = new AgentPolicyCallbackHandler(session, {
      toolCosts: () => {
        throw new Error('no price for this recipient');
      },
    });
    const error = await sendEmail.invoke({ to: 'bob@example.com' }, { callbacks: [handler] }).catch((caught: unknown) => caught);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(runs.send_email).toBe(0);
    const [decision] = session.report().decisions;
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'cost' }, action: { name: 'send_email', metadata: { costError: 'no price for this recipient' } } });
    expect(session.spent).toBe(0);
  });

  it('blocks however it is attached', async () => {
    const attachments: Array<[string, (handler: AgentPolicyCallbackHandler, body: () => void) => Promise<unknown>]> = [
      ['invoke({ callbacks })', (handler, body) => blockedTool(body).invoke({ name: 'x' }, { callbacks: [handler] })],
      ['withConfig({ callbacks })', (handler, body) => blockedTool(body).withConfig({ callbacks: [handler] }).invoke({ name: 'x' })],
      [
        'constructor callbacks',
        (handler, body) =>
          new DynamicStructuredTool({
            name: 'delete_repo',
            description: 'Delete a repository',
            schema: z.object({ name: z.string() }),
            func: async () => {
              body();
              return 'deleted';
            },
            callbacks: [handler],
          }).invoke({ name: 'x' }),
      ],
      ['a ToolCall from an agent', (handler, body) => blockedTool(body).invoke({ name: 'delete_repo', args: { name: 'x' }, id: 'call_9', type: 'tool_call' }, { callbacks: [handler] })],
    ];
    for (const [how, run] of attachments) {
      const { session, handler } = setup();
      let ran = 0;
      await expect(run(handler, () => ran++), how).rejects.toSatisfy(PolicyDeniedError.isInstance);
      expect(ran, how).toBe(0);
      expect(session.report().decisionSummary.deny, how).toBe(1);
    }
  });

  it('denies a tool that needs approval when the session has no approver, and asks the approver when it has one', async () => {
    const policy = new AgentPolicy({ approvalRules: [{ tool: 'send_email' }] });
    const { runs, sendEmail } = setup();

    const plain = policy.session();
    const error = await sendEmail.invoke({ to: 'a@b.c' }, { callbacks: [new AgentPolicyCallbackHandler(plain)] }).catch((caught: unknown) => caught);
    expect(ApprovalRequiredError.isInstance(error)).toBe(true);
    expect(runs.send_email).toBe(0);

    const asked: string[] = [];
    const withApprover = policy.session({
      approver: (request) => {
        asked.push(request.action.type === 'tool' ? request.action.name : '?');
        return { approved: true, by: 'alice' };
      },
    });
    await sendEmail.invoke({ to: 'a@b.c' }, { callbacks: [new AgentPolicyCallbackHandler(withApprover)] });
    expect(asked).toEqual(['send_email']);
    expect(runs.send_email).toBe(1);
    expect(withApprover.report().decisions[0]).toMatchObject({ decision: 'allow', approval: { via: 'approver', by: 'alice' } });
  });

  it('decides a tool call once when two handlers on the same session see it', async () => {
    const { session, handler, runs, sendEmail } = setup({ budget: 1 });
    const second = new AgentPolicyCallbackHandler(session, { toolCosts: { send_email: 0.01 } });
    await sendEmail.invoke({ name: 'send_email', args: { to: 'a@b.c' }, id: 'call_1', type: 'tool_call' }, { callbacks: [handler, second] });
    expect(runs.send_email).toBe(1);
    expect(session.spent).toBe(0.01);
    expect(session.report().decisionSummary.total).toBe(1);
  });
});

describe('AgentPolicyCallbackHandler: model calls', () => {
  it('records the real cost from usage_metadata, cache reads included', async () => {
    const { session, handler } = setup({ budget: 1 });
    const model = fakeModel()
      .respond(aiMessage({ content: 'hi', usage_metadata: USAGE }))
      .respond(
        aiMessage({
          content: 'cached',
          usage_metadata: { input_tokens: 1000, output_tokens: 100, total_tokens: 1100, input_token_details: { cache_read: 400 } },
        }),
      );
    await model.invoke([new HumanMessage('hello')], { callbacks: [handler] });
    expect(session.spent).toBe(CALL_COST);
    // 600 fresh input tokens at $1/M + 400 cached at $0.5/M + 100 output at $2/M = $0.001.
    await model.withConfig({ callbacks: [handler] }).invoke([new HumanMessage('again')]);
    expect(session.spent).toBe(CALL_COST + 0.001);
    const [first, second] = session.report().decisions;
    // The action keeps the reserved worst case; the settlement holds what was charged.
    expect(first).toMatchObject({
      decision: 'allow',
      action: { type: 'cost', source: 'model:FakeBuiltModel', metadata: { model: 'FakeBuiltModel', inputTokens: 10, outputTokens: 5 } },
      settlement: { status: 'committed', actual: CALL_COST },
    });
    expect(first?.settlement?.estimated).toBeGreaterThan(0.008);
    expect(second?.action.metadata).toMatchObject({ inputTokens: 1000, cachedInputTokens: 400, outputTokens: 100 });
    expect(session.report().reserved).toBe(0);
  });

  it('sends nothing when the budget cannot cover the call', async () => {
    const { session, handler } = setup({ budget: 0.001 });
    const model = fakeModel().respond(aiMessage({ content: 'hi', usage_metadata: USAGE }));
    const error = await model.invoke([new HumanMessage('hello')], { callbacks: [handler] }).catch((caught: unknown) => caught);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    expect(model.callCount).toBe(0);
    expect(session.spent).toBe(0);
    expect(session.report().decisions).toMatchObject([{ decision: 'deny', rule: { section: 'budget' } }]);
  });

  it('denies an unpriced model under a budget before the call', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const model = fakeModel().respond(aiMessage({ content: 'hi', usage_metadata: USAGE }));
    const error = await model.invoke([new HumanMessage('hello')], { callbacks: [new AgentPolicyCallbackHandler(session)] }).catch((caught: unknown) => caught);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision.rule).toEqual({ section: 'pricing', model: 'FakeBuiltModel' });
    expect(model.callCount).toBe(0);
    expect(model.calls).toEqual([]);
  });

  it('gates a model that carries the handler in its constructor', async () => {
    const { session, handler } = setup({ budget: 0.001 });
    const model = new FakeListChatModel({ responses: ['hi'], callbacks: [handler] });
    await expect(model.invoke('hello')).rejects.toSatisfy(PolicyDeniedError.isInstance);
    expect(model.i).toBe(0);
    expect(session.report().decisions[0]?.action).toMatchObject({ type: 'cost', source: 'model:FakeListChatModel' });
  });

  it('charges the estimate when a call without usage succeeds or fails in an unknown way, and nothing when the provider refused it', async () => {
    const { session, handler } = setup({ budget: 1 });
    const refused = Object.assign(new Error('rate limited'), { status: 429 });
    const model = fakeModel().respond(new AIMessage('no usage')).respond(new Error('connection reset')).respond(refused);

    await model.invoke([new HumanMessage('one')], { callbacks: [handler] });
    const afterNoUsage = session.spent;
    const [noUsage] = session.report().decisions;
    expect(afterNoUsage).toBeGreaterThan(0.008);
    expect(noUsage?.settlement).toEqual({ status: 'committed', estimated: afterNoUsage, actual: afterNoUsage });

    await expect(model.invoke([new HumanMessage('two')], { callbacks: [handler] })).rejects.toThrow('connection reset');
    const afterUnknown = session.spent;
    expect(afterUnknown).toBeGreaterThan(afterNoUsage);

    await expect(model.invoke([new HumanMessage('three')], { callbacks: [handler] })).rejects.toThrow('rate limited');
    expect(session.spent).toBe(afterUnknown);
    expect(session.report().decisions.at(-1)?.settlement?.status).toBe('released');
    expect(session.pendingReservations).toBe(0);
  });

  it('prices a model that names itself (ls_model_name, response_metadata.model_name) from the catalog', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const model = fakeModel().respond(aiMessage({ content: 'hi', usage_metadata: USAGE, response_metadata: { model_name: 'gpt-4o-mini-2024-07-18' } }));
    await model.invoke([new HumanMessage('hello')], { callbacks: [new AgentPolicyCallbackHandler(session)], metadata: { ls_model_name: 'gpt-4o-mini' } });
    const [decision] = session.report().decisions;
    expect(decision?.action).toMatchObject({ source: 'model:FakeBuiltModel/gpt-4o-mini', metadata: { model: 'gpt-4o-mini-2024-07-18', inputTokens: 10, outputTokens: 5 } });
    // gpt-4o-mini: $0.15 per 1M input tokens, $0.60 per 1M output tokens.
    expect(session.spent).toBe(0.0000045);
  });

  it('records usage it sees without a start (a handler attached mid-run)', async () => {
    const { session, handler } = setup({ budget: 1 });
    const message = aiMessage({ content: 'hi', usage_metadata: USAGE, response_metadata: { model_name: 'FakeBuiltModel' } });
    await handler.handleLLMEnd({ generations: [[{ text: 'hi', message } as never]] }, 'run-without-start');
    expect(session.spent).toBe(CALL_COST);
    expect(session.report().decisions[0]).toMatchObject({ decision: 'allow', action: { cost: CALL_COST, metadata: { runId: 'run-without-start' } } });
  });

  it('charges nothing for an answer from the LangChain cache', async () => {
    const { session, handler } = setup({ budget: 1 });
    const model = fakeModel().respond(aiMessage({ content: 'hi', usage_metadata: USAGE }));
    model.cache = new InMemoryCache();
    await model.invoke([new HumanMessage('same question')], { callbacks: [handler] });
    await model.invoke([new HumanMessage('same question')], { callbacks: [handler] });
    expect(model.callCount).toBe(1);
    expect(session.spent).toBe(CALL_COST);
    expect(session.report().decisions.map((d) => d.settlement?.status)).toEqual(['committed', 'released']);
  });

  it('falls back to llmOutput token usage for a legacy completion LLM', async () => {
    class TokenLLM extends LLM {
      _llmType() {
        return 'token-llm';
      }
      async _call() {
        return 'unused';
      }
      override async _generate(prompts: string[]): Promise<LLMResult> {
        return {
          generations: prompts.map((prompt) => [{ text: `echo ${prompt}` }]),
          llmOutput: { tokenUsage: { promptTokens: 10, completionTokens: 5, totalTokens: 15 } },
        };
      }
      override invocationParams() {
        return { model: 'token-llm', max_tokens: 64 };
      }
    }
    const { session, handler } = setup({ budget: 1 });
    await expect(new TokenLLM({}).invoke('hello', { callbacks: [handler] })).resolves.toBe('echo hello');
    expect(session.spent).toBe(CALL_COST);
    expect(session.report().decisions[0]?.action.metadata).toMatchObject({ model: 'token-llm', maxOutputTokens: 64, inputTokens: 10, outputTokens: 5 });
  });
});

/** A chat model that streams three chunks, reporting each to its run as LangChain's integrations do; the last carries `usage`. */
class UsageStreamModel extends BaseChatModel {
  constructor(private readonly usage: Record<string, unknown>) {
    super({});
  }
  _llmType() {
    return 'usage-stream';
  }
  async _generate(): Promise<ChatResult> {
    throw new Error('streamed only');
  }
  override async *_streamResponseChunks(_messages: BaseMessage[], _options: unknown, runManager?: CallbackManagerForLLMRun): AsyncGenerator<ChatGenerationChunk> {
    for (const [index, text] of ['o', 'k', '!'].entries()) {
      const chunk = new ChatGenerationChunk({ text, message: new AIMessageChunk({ content: text, ...(index === 2 ? { usage_metadata: this.usage as never } : {}) }) });
      await runManager?.handleLLMNewToken(text, { prompt: 0, completion: 0 }, undefined, undefined, undefined, { chunk });
      yield chunk;
    }
  }
}

describe('AgentPolicyCallbackHandler: streamed usage', () => {
  const streamed = async (usage: Record<string, unknown>) => {
    const session = new AgentPolicy({ budget: 1, pricing: { UsageStreamModel: { input: 1, output: 2, maxOutputTokens: 4096 } } }).session();
    let text = '';
    for await (const chunk of await new UsageStreamModel(usage).stream([new HumanMessage('hello')], { callbacks: [new AgentPolicyCallbackHandler(session)] })) text += String(chunk.content);
    expect(text).toBe('ok!');
    const [decision] = session.report().decisions;
    expect(session.pendingReservations).toBe(0);
    return decision!.settlement!;
  };

  it('a stream whose chunks report both counts is charged them', async () => {
    expect(await streamed({ ...USAGE })).toMatchObject({ status: 'committed', actual: CALL_COST });
  });

  it('a stream whose chunks leave out the output count is charged its estimate, not the 0 LangChain merges in for it', async () => {
    // LangChain merges the chunks into one message with output_tokens: 0; the count was never reported.
    const settlement = await streamed({ input_tokens: 10 });
    expect(settlement.status).toBe('committed');
    expect(settlement.actual).toBe(settlement.estimated);
    expect(settlement.actual).toBeGreaterThan(0.008);
  });

  it('counts reported in separate chunks of one stream are both reports', async () => {
    const session = new AgentPolicy({ budget: 1, pricing: { SplitUsageModel: { input: 1, output: 2, maxOutputTokens: 4096 } } }).session();
    class SplitUsageModel extends UsageStreamModel {
      override async *_streamResponseChunks(_messages: BaseMessage[], _options: unknown, runManager?: CallbackManagerForLLMRun): AsyncGenerator<ChatGenerationChunk> {
        for (const usage of [{ input_tokens: 10 }, { output_tokens: 5 }]) {
          const chunk = new ChatGenerationChunk({ text: 'x', message: new AIMessageChunk({ content: 'x', usage_metadata: usage as never }) });
          await runManager?.handleLLMNewToken('x', { prompt: 0, completion: 0 }, undefined, undefined, undefined, { chunk });
          yield chunk;
        }
      }
    }
    for await (const _chunk of await new SplitUsageModel({}).stream('hello', { callbacks: [new AgentPolicyCallbackHandler(session)] })) {
      // read to the end
    }
    expect(session.spent).toBe(CALL_COST);
  });
});

describe('AgentPolicyCallbackHandler in a createAgent loop', () => {
  it.each(['invoke({ callbacks })', 'withConfig({ callbacks })'])('a blocked tool never runs, the model sees why and the run finishes; the report matches (%s)', async (how) => {
    const { session, handler, runs, deleteRepo, sendEmail } = setup({ budget: 1 });
    const model = fakeModel()
      .respond(toolCallMessage('delete_repo', { name: 'core' }, 'call_1'))
      .respond(aiMessage({ content: 'I may not delete it.', usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [deleteRepo, sendEmail] });
    const input = { messages: [new HumanMessage('delete core')] };

    const result = how === 'withConfig({ callbacks })' ? await agent.withConfig({ callbacks: [handler] }).invoke(input) : await agent.invoke(input, { callbacks: [handler] });

    expect(runs.delete_repo).toBe(0);
    expect(model.callCount).toBe(2);
    const toolMessage = result.messages.find((message) => ToolMessage.isInstance(message));
    expect(toolMessage?.status).toBe('error');
    expect(String(toolMessage?.content)).toContain('blocked by tools.block entry "delete_*"');
    expect(result.messages.at(-1)?.content).toBe('I may not delete it.');

    const report = session.report();
    expect(report.decisions.map((d) => `${d.action.type}:${d.decision}`)).toEqual(['cost:allow', 'tool:deny', 'cost:allow']);
    expect(report.decisions[1]?.action.metadata).toMatchObject({ toolCallId: 'call_1' });
    expect(report.spent).toBe(2 * CALL_COST);
    expect(report.costSummary.allowed.cost).toBe(2 * CALL_COST);
    expect(report.reserved).toBe(0);
  });

  it('hard-stops the agent when the budget cannot cover the next model call', async () => {
    const { session, handler, runs, sendEmail } = setup({ budget: 0.015 });
    const model = fakeModel()
      .respond(toolCallMessage('send_email', { to: 'a@b.c' }, 'call_1'))
      .respond(aiMessage({ content: 'done', usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [sendEmail] });
    await expect(agent.invoke({ messages: [new HumanMessage('email')] }, { callbacks: [handler] })).rejects.toSatisfy(PolicyDeniedError.isInstance);
    expect(runs.send_email).toBe(1);
    expect(model.callCount).toBe(1);
    expect(session.report().decisions.map((d) => `${d.action.type}:${d.decision}`)).toEqual(['cost:allow', 'tool:allow', 'cost:deny']);
  });
});

function blockedTool(body: () => void) {
  return tool(
    async () => {
      body();
      return 'deleted';
    },
    { name: 'delete_repo', description: 'Delete a repository', schema: z.object({ name: z.string() }) },
  );
}

describe('a provider refusal LangChain rewraps', () => {
  it('a context overflow (a 400 LangChain turns into a ContextOverflowError) releases the reservation: nothing was billed', async () => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(400, { 'content-type': 'application/json' }).end(
          JSON.stringify({ error: { message: "This model's maximum context length is 128000 tokens.", type: 'invalid_request_error', code: 'context_length_exceeded' } }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      const handler = new AgentPolicyCallbackHandler(session);
      const model = new ChatOpenAI({ model: 'gpt-4o', apiKey: 'k', maxRetries: 0, configuration: { baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` } });
      const error = await model.invoke('hello', { callbacks: [handler] }).catch((caught: unknown) => caught);
      expect((error as Error).name).toBe('ContextOverflowError');
      const [decision] = session.report().decisions;
      expect(decision?.settlement?.status).toBe('released');
      expect(session.spent).toBe(0);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
