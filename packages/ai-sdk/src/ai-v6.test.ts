// The same adapter under ai 6 (spec V3 models, tool-level needsApproval), through the `ai-v6` alias of ai@6.
import { PolicyDeniedError } from '@agentpolicy/core';
import { embedMany, generateImage, generateText, stepCountIs, streamText, tool, wrapEmbeddingModel, wrapImageModel, wrapLanguageModel, type ModelMessage } from 'ai-v6';
import { convertArrayToReadableStream, MockEmbeddingModelV3, MockImageModelV3, MockLanguageModelV3 } from 'ai-v6/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyEmbeddingMiddleware } from './policy-embedding-middleware.js';
import { policyImageMiddleware } from './policy-image-middleware.js';
import { policyMiddleware } from './policy-middleware.js';
import { lastToolOutput, makePolicy, modelDecisions, priceOf, textResult, textStreamParts, toolCallResult, toolDecisions, usage } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

type MockOptions = NonNullable<ConstructorParameters<typeof MockLanguageModelV3>[0]>;
type V6GenerateResult = Exclude<MockOptions['doGenerate'], ((...args: never[]) => unknown) | unknown[] | undefined>;
type V6Middleware = Parameters<typeof wrapLanguageModel>[0]['middleware'];
type V6EmbeddingMiddleware = Parameters<typeof wrapEmbeddingModel>[0]['middleware'];
type V6ImageMiddleware = Parameters<typeof wrapImageModel>[0]['middleware'];

// The fixtures are written in spec V4 terms; the shapes used here are the same in spec V3.
const v3 = (result: unknown) => result as V6GenerateResult;
const mockModel = (results: unknown[]) => new MockLanguageModelV3({ doGenerate: results.map(v3) });
// This package's types resolve `ai` to the installed major: with ai 6 installed, policyMiddleware() is typed as ai 6's
// LanguageModelMiddleware. This test project has ai 7 as `ai`, hence the cast.
const middlewareFor = (session: Parameters<typeof policyMiddleware>[0]) => policyMiddleware(session) as unknown as V6Middleware;

function makeTools(counters: Record<string, number>) {
  const count = (name: string) => {
    counters[name] = (counters[name] ?? 0) + 1;
  };
  return {
    search: tool({
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => {
        count('search');
        return `3 results for ${query}`;
      },
    }),
    send_email: tool({
      inputSchema: z.object({ to: z.string() }),
      execute: async ({ to }) => {
        count('send_email');
        return `sent to ${to}`;
      },
    }),
    drop_table: tool({
      inputSchema: z.object({ name: z.string() }),
      execute: async () => {
        count('drop_table');
        return 'dropped';
      },
    }),
  };
}

const prompt: ModelMessage[] = [{ role: 'user', content: 'Mail the report to Ada.' }];

/** A copy of response messages whose tool calls a client edited to mail Eve (what the human saw is gone). */
function toEve(messages: readonly ModelMessage[]): ModelMessage[] {
  const edited = structuredClone(messages) as ModelMessage[];
  for (const message of edited) {
    if (message.role !== 'assistant' || typeof message.content === 'string') continue;
    for (const part of message.content) if (part.type === 'tool-call') part.input = { to: 'eve@evil.example' };
  }
  return edited;
}

describe('ai 6', () => {
  it('runs an allowed tool, never runs a blocked one, and the model sees the denial', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, blockedTools: ['drop_table'] }).session();
    const model = mockModel([toolCallResult('search', 'call-1', { query: 'q' }), toolCallResult('drop_table', 'call-2', { name: 'users' }), textResult('done')]);

    const result = await generateText({
      model: wrapLanguageModel({ model, middleware: middlewareFor(session) }),
      tools: wrapTools(makeTools(counters), session, { costs: { search: 0.01 } }),
      stopWhen: stepCountIs(4),
      messages: prompt,
    });

    expect(result.text).toBe('done');
    expect(counters).toEqual({ search: 1 });
    expect((lastToolOutput(model.doGenerateCalls[2]!.prompt) as { value: string }).value).toContain('agentpolicy: tool "drop_table" is blocked');
    expect(toolDecisions(session.report().decisions).map((d) => [d.action.type === 'tool' ? d.action.name : '', d.decision])).toEqual([
      ['search', 'allow'],
      ['drop_table', 'deny'],
    ]);
    const models = modelDecisions(session.report().decisions);
    expect(models.map((d) => d.settlement?.actual)).toEqual([priceOf(10, 5), priceOf(10, 5), priceOf(20, 7)]);
    expect(session.spent).toBe(0.01 + 2 * priceOf(10, 5) + priceOf(20, 7));
  });

  it('asks for approval through needsApproval and resumes with an approving and a rejecting response', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { send_email: 0.2 } });

    const first = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })]), tools, messages: prompt });
    const request = first.content.find((part) => part.type === 'tool-approval-request');
    expect(request).toBeDefined();
    expect(counters.send_email).toBeUndefined();

    const rejected = mockModel([textResult('Not sent.')]);
    await generateText({
      model: rejected,
      tools,
      messages: [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request!.approvalId, approved: false, reason: 'no' }] }],
    });
    expect(counters.send_email).toBeUndefined();
    expect(lastToolOutput(rejected.doGenerateCalls[0]!.prompt)).toEqual({ type: 'execution-denied', reason: 'no' });
    expect(session.spent).toBe(0);

    const approved = mockModel([textResult('Sent.')]);
    await generateText({
      model: approved,
      tools,
      messages: [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request!.approvalId, approved: true }] }],
    });
    expect(counters.send_email).toBe(1);
    expect(lastToolOutput(approved.doGenerateCalls[0]!.prompt)).toEqual({ type: 'text', value: 'sent to ada@example.com' });
    expect(toolDecisions(session.report().decisions).map((d) => [d.decision, d.approved])).toEqual([
      ['require_approval', false],
      ['allow', true],
    ]);
    expect(session.spent).toBe(0.2);
  });

  it('binds an approval to the call the human saw: the same call id later, with other input or again, is asked anew', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session);
    const first = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })]), tools, messages: prompt });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;
    const history: ModelMessage[] = [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] }];

    // The resume runs the approved call; the next step reuses `call-1` for another recipient.
    const other = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to: 'eve@evil.example' }), textResult('x')]), tools, stopWhen: stepCountIs(3), messages: history });
    expect(counters.send_email).toBe(1);
    expect(other.content.find((part) => part.type === 'tool-approval-request')?.toolCall.input).toEqual({ to: 'eve@evil.example' });

    // The same history sent again (the used approval replayed), and the same call again: neither runs.
    const again = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to: 'ada@example.com' }), textResult('x')]), tools, stopWhen: stepCountIs(3), messages: history });
    expect(counters.send_email).toBe(1);
    expect(again.content.find((part) => part.type === 'tool-approval-request')?.toolCall.input).toEqual({ to: 'ada@example.com' });
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(1);
  });

  it('denies an approved call on resume when the budget ran out in between', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { send_email: 0.2, search: 0.9 } });
    const first = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })]), tools, messages: prompt });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;
    await generateText({ model: mockModel([toolCallResult('search', 'call-9', { query: 'big' })]), tools, prompt: 'search' });

    const model = mockModel([textResult('Out of budget.')]);
    await generateText({
      model,
      tools,
      messages: [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] }],
    });

    expect(counters.send_email).toBeUndefined();
    expect((lastToolOutput(model.doGenerateCalls[0]!.prompt) as { value: string }).value).toMatch(/agentpolicy: cost \$0\.20 exceeds the remaining budget \$0\.10/);
    expect(toolDecisions(session.report().decisions).at(-1)).toMatchObject({ decision: 'deny', rule: { section: 'budget' }, action: { name: 'send_email' } });
    expect(session.spent).toBe(0.9);
  });

  describe('a resume the SDK makes for another call with the approved call id', () => {
    // ai 6 resumes the last tool call with the approved request's id: with two calls of one step under one id, that
    // is not the call the human saw. The policy decides it on its own, and ai 6 runs it only while needsApproval
    // keeps the approval valid.
    const twoCallStream = (calls: Array<[string, unknown]>) =>
      [
        { type: 'stream-start', warnings: [] },
        ...calls.map(([toolName, input]) => ({ type: 'tool-call', toolCallId: 'c3', toolName, input: JSON.stringify(input) })),
        { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage: usage(10, 5) },
      ] as never[];

    for (const streamed of [false, true]) {
      it(`${streamed ? 'streamText' : 'generateText'}: an allowed call resumed from an approval that does not count for it runs and is charged; nothing stays held`, async () => {
        const counters: Record<string, number> = {};
        const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
        const tools = wrapTools(makeTools(counters), session, { costs: { search: 0.15 } });
        // The first turn streams: ai 6 runs the allowed `search` there (it holds no call back by id when streaming).
        const stream = streamText({
          model: new MockLanguageModelV3({ doStream: [{ stream: convertArrayToReadableStream(twoCallStream([['send_email', { to: 'ada@example.com' }], ['search', { query: 'q' }]])) }] }),
          tools,
          messages: prompt,
        });
        const first = { content: await stream.content, response: await stream.response };
        const request = first.content.find((part) => part.type === 'tool-approval-request')!;
        expect(request.toolCall.toolName).toBe('send_email');
        expect(counters).toEqual({ search: 1 });
        const history: ModelMessage[] = [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] }];

        if (streamed) {
          const model = new MockLanguageModelV3({ doStream: [{ stream: convertArrayToReadableStream(textStreamParts(['ok']) as never[]) }] });
          const result = streamText({ model, tools, messages: history });
          await result.consumeStream();
          await result.response;
        } else await generateText({ model: mockModel([textResult('ok')]), tools, messages: history });

        // The SDK resumed `search` (the last call with id c3 in the history), not the email the human approved: the
        // approval does not count for it, the policy allows it on its own, so it runs again (as ai 7 runs it) and is
        // charged again. Before, its allow was left holding $0.15 for a run that never came, charged at the end.
        expect(counters).toEqual({ search: 2 });
        expect(session.report()).toMatchObject({ spent: 0.3, reserved: 0 });
        expect(session.end().spent).toBeCloseTo(0.3, 9);
      });
    }
  });

  it('a used approval replayed in the last message: the allowed call the SDK resumes from it runs and is charged, nothing stays held', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { search: 0.15 } });
    const first = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })]), tools, messages: prompt });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;
    const approve: ModelMessage = { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] };
    let history: ModelMessage[] = [...prompt, ...first.response.messages, approve];
    // The approved mail runs; the model then searches under the same call id (a provider numbering calls per turn).
    const second = await generateText({ model: mockModel([toolCallResult('search', 'call-1', { query: 'q' }), textResult('done')]), tools, stopWhen: stepCountIs(3), messages: history });
    expect(counters).toEqual({ send_email: 1, search: 1 });
    // The client sends the used approval again: ai 6 resumes the last call with id call-1, the search.
    history = [...history, ...second.response.messages, approve];
    await generateText({ model: mockModel([textResult('again')]), tools, messages: history });

    expect(counters).toEqual({ send_email: 1, search: 2 });
    expect(session.report()).toMatchObject({ spent: 0.3, reserved: 0 });
  });

  it('two calls of one step under one id, both asked: the approval of the request the human saw runs neither the other call nor a repeat of it', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session);
    const both = v3({
      content: ['ada@example.com', 'eve@evil.example'].map((to) => ({ type: 'tool-call', toolCallId: 'c3', toolName: 'send_email', input: JSON.stringify({ to }) })),
      finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
      usage: usage(10, 5),
      warnings: [],
    });
    const first = await generateText({ model: mockModel([both]), tools, messages: prompt });
    // The human is shown the last call with the id (Eve); ai 6 writes both calls of the id into the history with the
    // first one's input (Ada), and resumes that one.
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;
    expect(request.toolCall.input).toEqual({ to: 'eve@evil.example' });
    const history: ModelMessage[] = [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] }];
    // The resume, then the model mails Ada again under the same id.
    const again = await generateText({ model: mockModel([toolCallResult('send_email', 'c3', { to: 'ada@example.com' }), textResult('x')]), tools, stopWhen: stepCountIs(3), messages: history });

    expect(counters.send_email).toBeUndefined();
    expect(again.content.find((part) => part.type === 'tool-approval-request')?.toolCall.input).toEqual({ to: 'ada@example.com' });
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(0);
  });

  it('streamText asks about two calls of one step under one id: an answer to one, moved onto the other in the history, approves nothing', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session);
    const parts = [
      { type: 'stream-start', warnings: [] },
      ...['ada@example.com', 'eve@evil.example'].map((to) => ({ type: 'tool-call', toolCallId: 'c3', toolName: 'send_email', input: JSON.stringify({ to }) })),
      { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage: usage(10, 5) },
    ] as never[];
    const stream = streamText({ model: new MockLanguageModelV3({ doStream: [{ stream: convertArrayToReadableStream(parts) }] }), tools, messages: prompt });
    const requests = (await stream.content).filter((part) => part.type === 'tool-approval-request');
    expect(requests.map((part) => part.toolCall.input)).toEqual([{ to: 'ada@example.com' }, { to: 'eve@evil.example' }]);
    // The human approves the mail to Ada and leaves Eve's unanswered; the client moves the call Ada's request sits
    // beside onto Eve's address.
    const messages = toEve((await stream.response).messages);
    const history: ModelMessage[] = [...prompt, ...messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: requests[0]!.approvalId, approved: true }] }];
    await generateText({ model: mockModel([toolCallResult('send_email', 'c3', { to: 'eve@evil.example' }), textResult('x')]), tools, stopWhen: stepCountIs(3), messages: history });

    expect(counters.send_email).toBeUndefined();
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(0);
  });

  it('an answer given before a request was asked does not approve it: a moved answer replayed for the newer request runs nothing', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session);
    const first = await generateText({ model: mockModel([toolCallResult('send_email', 'c2', { to: 'ada@example.com' })]), tools, messages: prompt });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;
    // The human approves the mail to Ada; the client moves the call onto Eve's address.
    const messages = toEve(first.response.messages);
    const approve: ModelMessage = { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] };
    let history: ModelMessage[] = [...prompt, ...messages, approve];
    // Nothing runs on the resume; the model mails Eve under the same id and is asked about; the client sends the old
    // answer again instead of the human's.
    const second = await generateText({ model: mockModel([toolCallResult('send_email', 'c2', { to: 'eve@evil.example' }), textResult('x')]), tools, stopWhen: stepCountIs(3), messages: history });
    expect(second.content.find((part) => part.type === 'tool-approval-request')?.toolCall.input).toEqual({ to: 'eve@evil.example' });
    history = [...history, ...second.response.messages, approve];
    await generateText({ model: mockModel([textResult('x')]), tools, messages: history });

    expect(counters.send_email).toBeUndefined();
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(0);
  });

  it('an approval moved in the history onto the input of a request the human rejected does not approve it', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session);
    const ask = async (messages: ModelMessage[], to: string) => {
      const result = await generateText({ model: mockModel([toolCallResult('send_email', 'call-1', { to })]), tools, messages });
      return { result, request: result.content.find((part) => part.type === 'tool-approval-request')! };
    };
    const answer = (approvalId: string, approved: boolean): ModelMessage => ({ role: 'tool', content: [{ type: 'tool-approval-response', approvalId, approved }] });

    // The human rejects the mail to Eve, then approves the mail to Ada (asked under the same call id).
    const eve = await ask(prompt, 'eve@evil.example');
    let history: ModelMessage[] = [...prompt, ...eve.result.response.messages, answer(eve.request.approvalId, false)];
    const ada = await ask(history, 'ada@example.com');
    // The client moves the approval onto Eve's address: the call beside the approved request now names Eve.
    const edited = toEve(ada.result.response.messages);
    history = [...history, ...edited, answer(ada.request.approvalId, true)];
    await generateText({ model: mockModel([textResult('x')]), tools, messages: history });

    expect(counters.send_email).toBeUndefined();
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(0);
  });

  it("onDeny: 'stop' rejects generateText with the policy error", async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ blockedTools: ['drop_table'] }).session();
    const model = mockModel([toolCallResult('drop_table', 'call-1', { name: 'users' }), textResult('unreachable')]);

    const error = await generateText({ model, tools: wrapTools(makeTools(counters), session, { onDeny: 'stop' }), stopWhen: stepCountIs(3), messages: prompt }).catch((e: unknown) => e);

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(counters.drop_table).toBeUndefined();
    expect(model.doGenerateCalls).toHaveLength(1);
  });

  it('records streaming usage from the finish part', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const model = new MockLanguageModelV3({
      doStream: [{ stream: convertArrayToReadableStream(textStreamParts(['Hel', 'lo'], usage(25, 9)) as never[]) }],
    });
    const result = streamText({ model: wrapLanguageModel({ model, middleware: middlewareFor(session) }), prompt: 'x', maxOutputTokens: 50 });

    expect(await result.text).toBe('Hello');
    expect(modelDecisions(session.report().decisions)[0]!.settlement).toMatchObject({ status: 'committed', actual: priceOf(25, 9) });
    expect(session.spent).toBe(priceOf(25, 9));
  });

  it('stops model calls once the budget is exhausted', async () => {
    const session = makePolicy({ budget: 0.0001 }).session();
    const model = mockModel([textResult('never')]);
    const error = await generateText({ model: wrapLanguageModel({ model, middleware: middlewareFor(session) }), prompt: 'x' }).catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(model.doGenerateCalls).toHaveLength(0);
  });

  it('meters embedding models: each chunk reserved, the reported tokens charged', async () => {
    const session = makePolicy({ budget: 1, pricing: { 'embed-v6': { input: 10, output: 0 } } }).session();
    const model = new MockEmbeddingModelV3({
      modelId: 'embed-v6',
      maxEmbeddingsPerCall: 1,
      doEmbed: async ({ values }) => ({ embeddings: values.map(() => [0]), usage: { tokens: 7 }, warnings: [] }),
    });
    const middleware = policyEmbeddingMiddleware(session) as unknown as V6EmbeddingMiddleware;
    await embedMany({ model: wrapEmbeddingModel({ model, middleware }), values: ['a', 'b'] });
    const decisions = modelDecisions(session.report().decisions);
    expect(decisions.map((d) => d.settlement)).toMatchObject([
      { status: 'committed', actual: 7e-5 },
      { status: 'committed', actual: 7e-5 },
    ]);
    expect(session.spent).toBe(1.4e-4);
  });

  it('meters image models: a call past the budget is not made, a made one is charged per image', async () => {
    const session = makePolicy({ budget: 0.05, pricing: { 'paint-v6': { perImage: 0.03 } } }).session();
    const model = new MockImageModelV3({
      modelId: 'paint-v6',
      maxImagesPerCall: 1,
      doGenerate: async () => ({ images: ['AA=='], warnings: [], response: { timestamp: new Date(0), modelId: 'paint-v6', headers: undefined } }),
    });
    const wrapped = wrapImageModel({ model, middleware: policyImageMiddleware(session) as unknown as V6ImageMiddleware });
    await generateImage({ model: wrapped, prompt: 'a cat', maxRetries: 0 });
    const error = await generateImage({ model: wrapped, prompt: 'a cat', maxRetries: 0 }).catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(modelDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['allow', 'deny']);
    expect(session.spent).toBe(0.03);
  });
});
