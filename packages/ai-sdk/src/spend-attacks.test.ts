import { APICallError, generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import type { LanguageModelV4StreamPart } from '@ai-sdk/provider';
import { describe, expect, it } from 'vitest';
import { policyMiddleware } from './policy-middleware.js';
import { makePolicy, modelDecisions, priceOf, pulledStream, textResult, textStreamParts, usage } from './test-utils.js';

// Retry at once (the SDK honours the provider's retry-after-ms).
const NO_WAIT = { 'retry-after-ms': '0' };
const serverError = (statusCode: number) =>
  new APICallError({ message: `status ${statusCode}`, url: 'https://api.test', requestBodyValues: {}, statusCode, responseHeaders: NO_WAIT, isRetryable: true });

describe('spend attacks through the AI SDK middleware', () => {
  it('maxRetries: every attempt is reserved and settled on its own (5xx and cut connections the estimate, 429 nothing)', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const failures: unknown[] = [serverError(500), serverError(429), Object.assign(new TypeError('fetch failed'), { isRetryable: true })];
    const base = new MockLanguageModelV4({
      doGenerate: async () => {
        const failure = failures.shift();
        if (failure) throw APICallError.isInstance(failure) ? failure : new APICallError({ message: 'cut', url: 'https://api.test', requestBodyValues: {}, responseHeaders: NO_WAIT, cause: failure, isRetryable: true });
        return textResult('ok', usage(30, 12));
      },
    });
    const model = wrapLanguageModel({ model: base, middleware: policyMiddleware(session) });
    await generateText({ model, prompt: 'Hello', maxOutputTokens: 100, maxRetries: 3 });
    expect(base.doGenerateCalls).toHaveLength(4);
    const settlements = modelDecisions(session.report().decisions).map((d) => d.settlement!);
    expect(settlements.map((s) => s.status)).toEqual(['committed', 'released', 'committed', 'committed']);
    const estimate = settlements[0]!.estimated;
    expect(settlements.map((s) => s.actual)).toEqual([estimate, 0, estimate, priceOf(30, 12)]);
    expect(session.spent).toBeCloseTo(2 * estimate + priceOf(30, 12), 9);
    expect(session.pendingReservations).toBe(0);
  });

  it('a retry the budget cannot cover is not sent', async () => {
    const probe = makePolicy({ budget: 1 }).session();
    const once = new MockLanguageModelV4({ doGenerate: [textResult('ok', usage(1, 1))] });
    await generateText({ model: wrapLanguageModel({ model: once, middleware: policyMiddleware(probe) }), prompt: 'Hello', maxOutputTokens: 100 });
    const estimate = modelDecisions(probe.report().decisions)[0]!.settlement!.estimated;
    const session = makePolicy({ budget: Math.round(estimate * 1.5 * 1e9) / 1e9 }).session();
    const base = new MockLanguageModelV4({
      doGenerate: async () => {
        throw serverError(503);
      },
    });
    const error = await generateText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'Hello', maxOutputTokens: 100, maxRetries: 3 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(base.doGenerateCalls).toHaveLength(1);
    expect(session.spent).toBe(estimate);
  });

  it('a stream that errors mid-way is charged its estimate, once', async () => {
    const session = makePolicy({ budget: 1 }).session();
    let sent = 0;
    const parts = textStreamParts(['a', 'b', 'c']).slice(0, 3);
    const base = new MockLanguageModelV4({
      doStream: async () => ({
        stream: new ReadableStream<LanguageModelV4StreamPart>({
          pull(controller) {
            if (sent < parts.length) controller.enqueue(parts[sent++]!);
            else controller.error(new TypeError('socket hang up'));
          },
        }),
      }),
    });
    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'Hello', maxOutputTokens: 100, onError: () => undefined });
    await (async () => {
      for await (const _ of result.fullStream) void _;
    })().catch(() => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    const [decision, ...rest] = modelDecisions(session.report().decisions);
    expect(rest).toHaveLength(0);
    expect(decision!.settlement).toMatchObject({ status: 'committed', actual: decision!.settlement!.estimated });
    expect(session.spent).toBe(decision!.settlement!.estimated);
    expect(session.pendingReservations).toBe(0);
  });

  it('a stream whose finish part reports no usage is charged its estimate, never zero', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const parts = textStreamParts(['a']);
    const finish = { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage: { inputTokens: { total: undefined, noCache: undefined, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: undefined, text: undefined, reasoning: undefined } } } as LanguageModelV4StreamPart;
    const base = new MockLanguageModelV4({ doStream: async () => ({ stream: pulledStream([...parts.slice(0, -1), finish]) }) });
    const result = streamText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'Hello', maxOutputTokens: 100 });
    await result.text;
    const [decision] = modelDecisions(session.report().decisions);
    expect(session.spent).toBe(decision!.settlement!.estimated);
    expect(session.spent).toBeGreaterThan(0);
  });

  it('50 parallel calls against a budget that fits 10: ten reach the model and nothing past the budget is held or spent', async () => {
    const probe = makePolicy({ budget: 1 }).session();
    const once = new MockLanguageModelV4({ doGenerate: [textResult('ok', usage(1, 1))] });
    await generateText({ model: wrapLanguageModel({ model: once, middleware: policyMiddleware(probe) }), prompt: 'Hello', maxOutputTokens: 100 });
    const estimate = modelDecisions(probe.report().decisions)[0]!.settlement!.estimated;
    const budget = Math.round(estimate * 10.5 * 1e9) / 1e9;
    const session = makePolicy({ budget }).session();
    let peak = 0;
    const base = new MockLanguageModelV4({
      doGenerate: async () => {
        const { spent, reserved } = session.report();
        peak = Math.max(peak, spent + reserved);
        await new Promise((resolve) => setTimeout(resolve, 5));
        return textResult('ok', usage(5, 50));
      },
    });
    const model = wrapLanguageModel({ model: base, middleware: policyMiddleware(session) });
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => generateText({ model, prompt: 'Hello', maxOutputTokens: 100, maxRetries: 0 })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    expect(base.doGenerateCalls).toHaveLength(10);
    expect(peak).toBeLessThanOrEqual(budget);
    expect(session.spent).toBeLessThanOrEqual(budget);
  });

  it('negative, NaN and huge token counts never crash and never charge less than the estimate', async () => {
    for (const tokens of [usage(-1000, -500), usage(Number.NaN, Number.NaN), usage(1e300, 1)]) {
      const session = makePolicy({ budget: 1 }).session();
      const base = new MockLanguageModelV4({ doGenerate: [textResult('ok', tokens)] });
      await generateText({ model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }), prompt: 'Hello', maxOutputTokens: 100 });
      const [decision] = modelDecisions(session.report().decisions);
      expect(session.spent).toBeGreaterThanOrEqual(decision!.settlement!.estimated);
    }
  });
});
