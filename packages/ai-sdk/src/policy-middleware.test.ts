import { PolicyDeniedError } from '@agentpolicy/core';
import { APICallError, generateText, isStepCount, streamText, tool, wrapLanguageModel } from 'ai';
import { convertArrayToReadableStream, MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyMiddleware } from './policy-middleware.js';
import { makePolicy, modelDecisions, priceOf, pulledStream, textResult, textStreamParts, toolCallResult, usage } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

describe('policyMiddleware', () => {
  it('reserves before a generate call and commits the real cost from its usage', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({ doGenerate: [textResult('hi', usage(30, 12))] });
    const model = wrapLanguageModel({ model: base, middleware: policyMiddleware(session) });

    await generateText({ model, prompt: 'Hello', maxOutputTokens: 100 });

    const [decision] = modelDecisions(session.report().decisions);
    expect(decision).toMatchObject({
      decision: 'allow',
      action: { type: 'cost', source: 'model:mock-provider/mock-model-id', metadata: { via: 'ai-sdk', call: 'generate', maxOutputTokens: 100, inputTokens: 30, outputTokens: 12 } },
      settlement: { status: 'committed', actual: priceOf(30, 12) },
    });
    expect(decision!.settlement!.estimated).toBeGreaterThan(priceOf(0, 100));
    expect(session.spent).toBe(priceOf(30, 12));
    expect(session.report().reserved).toBe(0);
  });

  it('maps cached and reasoning tokens onto core usage', async () => {
    const session = makePolicy({ pricing: { 'mock-model-id': { input: 1000, output: 2000, cachedInput: 100 } } }).session();
    const base = new MockLanguageModelV4({
      doGenerate: [{ ...textResult('hi'), usage: { inputTokens: { total: 100, noCache: 60, cacheRead: 40, cacheWrite: 0 }, outputTokens: { total: 50, text: 20, reasoning: 30 } } }],
    });
    await generateText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x' });

    const [decision] = modelDecisions(session.report().decisions);
    expect(decision!.action.metadata).toMatchObject({ inputTokens: 100, cachedInputTokens: 40, cacheWriteTokens: 0, outputTokens: 50, reasoningTokens: 30 });
    expect(session.spent).toBe((60 * 1000 + 40 * 100 + 50 * 2000) / 1_000_000);
  });

  it('stops further model calls once the budget cannot cover the next one', async () => {
    let runs = 0;
    // Each call reserves $0.002 for 100 output tokens at $20/M plus its growing prompt (about $0.0044, $0.0068, $0.0092)
    // and really costs $0.001: the third call no longer fits in $0.01.
    const session = makePolicy({ budget: 0.01 }).session();
    const base = new MockLanguageModelV4({
      doGenerate: [toolCallResult('step', 'call-1', {}, usage(40, 30)), toolCallResult('step', 'call-2', {}, usage(40, 30)), textResult('unreachable')],
    });
    const tools = wrapTools({ step: tool({ inputSchema: z.object({}), execute: async () => ++runs }) }, session);

    const error = await generateText({
      model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }),
      tools,
      stopWhen: isStepCount(5),
      maxOutputTokens: 100,
      prompt: 'loop',
    }).catch((e: unknown) => e);

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).code).toBe('BUDGET_EXCEEDED');
    expect(base.doGenerateCalls).toHaveLength(2);
    expect(runs).toBe(2);
    const models = modelDecisions(session.report().decisions);
    expect(models.map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
    expect(session.spent).toBe(2 * priceOf(40, 30));
    expect(session.report().reserved).toBe(0);
  });

  it('denies an unpriced model under a budget before calling it', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({ modelId: 'house-model-7', doGenerate: [textResult('never')] });

    const error = await generateText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x' }).catch((e: unknown) => e);

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision.rule).toEqual({ section: 'pricing', model: 'house-model-7' });
    expect((error as PolicyDeniedError).message).toContain('pricing:');
    expect(base.doGenerateCalls).toHaveLength(0);
  });

  it('releases the reservation when the provider answers with an HTTP error, and the error reaches the caller', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({
      doGenerate: async () => {
        throw new APICallError({ message: 'rate limited', url: 'https://api.test', requestBodyValues: {}, statusCode: 429, isRetryable: false });
      },
    });

    const error = await generateText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x', maxRetries: 0 }).catch((e: unknown) => e);

    expect(APICallError.isInstance(error)).toBe(true);
    expect(modelDecisions(session.report().decisions)[0]!.settlement).toMatchObject({ status: 'released', actual: 0 });
    expect(session.spent).toBe(0);
  });

  it('charges the estimate when a call fails without a provider answer (no spend is lost)', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({
      doGenerate: async () => {
        throw new TypeError('socket hang up');
      },
    });

    await generateText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x', maxRetries: 0 }).catch(() => undefined);

    const settlement = modelDecisions(session.report().decisions)[0]!.settlement!;
    expect(settlement.status).toBe('committed');
    expect(settlement.actual).toBe(settlement.estimated);
    expect(session.spent).toBe(settlement.estimated);
  });

  it('records streaming usage from the finish part', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({ doStream: [{ stream: convertArrayToReadableStream(textStreamParts(['Hel', 'lo'], usage(25, 9))) }] });

    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x', maxOutputTokens: 50 });

    expect(await result.text).toBe('Hello');
    const [decision] = modelDecisions(session.report().decisions);
    expect(decision).toMatchObject({ action: { metadata: { call: 'stream', inputTokens: 25, outputTokens: 9 } }, settlement: { status: 'committed', actual: priceOf(25, 9) } });
    expect(session.spent).toBe(priceOf(25, 9));
  });

  it('commits the stream usage as soon as the finish part passes, before the consumer is done', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({ doStream: [{ stream: pulledStream(textStreamParts(['a'], usage(25, 9))) }] });
    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x' });

    let spentAtFinish: number | undefined;
    for await (const part of result.fullStream) if (part.type === 'finish') spentAtFinish = session.spent;
    expect(spentAtFinish).toBe(priceOf(25, 9));
  });

  it('holds the reservation after an early break and charges the estimate at session.end()', async () => {
    const session = makePolicy({ budget: 1 }).session();
    // A long answer: the SDK reads a few parts ahead of its consumer, then waits (backpressure).
    const words = Array.from({ length: 100 }, (_, i) => `word${i} `);
    const base = new MockLanguageModelV4({ doStream: [{ stream: pulledStream(textStreamParts(words, usage(25, 9))) }] });
    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x', maxOutputTokens: 200 });

    for await (const delta of result.textStream) {
      expect(delta).toBe('word0 ');
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));

    const estimate = modelDecisions(session.report().decisions)[0]!.settlement!.estimated;
    expect(estimate).toBeGreaterThan(priceOf(0, 200));
    // Nothing reported usage, but the estimate is still held: other spending cannot use it meanwhile.
    expect(session.spent).toBe(0);
    expect(session.report().reserved).toBe(estimate);
    expect(session.pendingReservations).toBe(1);
    const tooBig = await session.checkTool('anything', { cost: 0.999 });
    expect(tooBig).toMatchObject({ decision: 'deny', rule: { section: 'budget', reserved: estimate } });

    const report = session.end();
    expect(report.spent).toBe(estimate);
    expect(report.reserved).toBe(0);
    expect(modelDecisions(report.decisions)[0]!.settlement).toEqual({ status: 'committed', estimated: estimate, actual: estimate });
  });

  it('a call whose signal is aborted before it is sent is not sent, and nothing is reserved or charged', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const base = new MockLanguageModelV4({ doGenerate: textResult('x'), doStream: { stream: convertArrayToReadableStream(textStreamParts(['x'])) } });
    const model = wrapLanguageModel({ model: base, middleware: policyMiddleware(session) });
    const signal = AbortSignal.abort();
    await expect(generateText({ model, prompt: 'x', abortSignal: signal, maxRetries: 0 })).rejects.toThrow();
    const streamed = streamText({ model, prompt: 'x', abortSignal: signal, maxRetries: 0, onError: () => undefined });
    await streamed.consumeStream();
    expect(base.doGenerateCalls).toHaveLength(0);
    expect(base.doStreamCalls).toHaveLength(0);
    expect(modelDecisions(session.report().decisions)).toEqual([]);
    expect(session.spent).toBe(0);
  });

  it('charges the estimate as soon as a stream is aborted', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const words = Array.from({ length: 100 }, (_, i) => `word${i} `);
    const base = new MockLanguageModelV4({ doStream: [{ stream: pulledStream(textStreamParts(words, usage(25, 9))) }] });
    const controller = new AbortController();
    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x', abortSignal: controller.signal });

    for await (const delta of result.textStream) {
      void delta;
      controller.abort();
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));

    const settlement = modelDecisions(session.report().decisions)[0]!.settlement!;
    expect(settlement.status).toBe('committed');
    expect(settlement.actual).toBe(settlement.estimated);
    expect(session.spent).toBe(settlement.estimated);
    expect(session.pendingReservations).toBe(0);
  });

  it('charges the estimate for a stream that ends without a finish part', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const parts = textStreamParts(['x']).filter((part) => part.type !== 'finish');
    const base = new MockLanguageModelV4({ doStream: [{ stream: convertArrayToReadableStream(parts) }] });
    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'x' });
    await result.consumeStream();

    const settlement = modelDecisions(session.report().decisions)[0]!.settlement!;
    expect(settlement).toMatchObject({ status: 'committed' });
    expect(settlement.actual).toBe(settlement.estimated);
  });

  it('denies a stream call over budget without calling the model', async () => {
    const session = makePolicy({ budget: 0.0001 }).session();
    const base = new MockLanguageModelV4({ doStream: [{ stream: convertArrayToReadableStream(textStreamParts(['x'])) }] });
    const errors: unknown[] = [];
    const result = streamText({
      model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }),
      prompt: 'x',
      onError: ({ error }) => void errors.push(error),
    });
    await result.consumeStream();

    expect(base.doStreamCalls).toHaveLength(0);
    expect(PolicyDeniedError.isInstance(errors[0])).toBe(true);
    expect(modelDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['deny']);
  });

  it('rejects a missing session', () => {
    expect(() => policyMiddleware(null as never)).toThrow(/needs a PolicySession/);
  });
});
