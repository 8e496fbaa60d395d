import { AgentPolicy, type PolicySession } from '@agentpolicy/core';
import { createOpenAI } from '@ai-sdk/openai';
import { startBillingServer, startFlakyServer, type BillingServer } from '@agentpolicy/test-servers';
import { embedMany, generateImage, generateText, InvalidPromptError, LoadAPIKeyError, streamText, UnsupportedFunctionalityError, wrapEmbeddingModel, wrapImageModel, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isRaisedBeforeSending } from './model-call-reservation.js';
import { policyEmbeddingMiddleware } from './policy-embedding-middleware.js';
import { policyImageMiddleware } from './policy-image-middleware.js';
import { policyMiddleware } from './policy-middleware.js';
import { makePolicy, modelDecisions } from './test-utils.js';

// A call that fails while the SDK builds its request sent nothing and was billed nothing: its reservation is
// released, not charged. Anything that fails after sending is still settled by core's rule.
describe('a model call that fails before it is sent is released', () => {
  let billing: BillingServer;
  let savedKey: string | undefined;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => {
    billing.reset();
    savedKey = process.env['OPENAI_API_KEY'];
    delete process.env['OPENAI_API_KEY'];
  });
  afterEach(() => {
    if (savedKey !== undefined) process.env['OPENAI_API_KEY'] = savedKey;
  });

  const settlements = (session: PolicySession) => modelDecisions(session.report().decisions).map((decision) => decision.settlement?.status);

  it('no API key (the real openai provider): generateText, streamText, embedMany and generateImage send nothing and charge nothing', async () => {
    const session = new AgentPolicy({ budget: 1, pricing: { 'dall-e-3': { perImage: { '1024x1024': 0.04 } } } }).session();
    const provider = createOpenAI({ baseURL: billing.baseURL });
    const chat = wrapLanguageModel({ model: provider.chat('gpt-4o-mini'), middleware: policyMiddleware(session) });
    const generated = await generateText({ model: chat, prompt: 'hello', maxOutputTokens: 50, maxRetries: 0 }).catch((error: unknown) => error);
    expect(LoadAPIKeyError.isInstance(generated)).toBe(true);

    let streamError: unknown;
    const streamed = streamText({ model: chat, prompt: 'hello', maxOutputTokens: 50, maxRetries: 0, onError: ({ error }) => void (streamError = error) });
    await streamed.consumeStream();
    expect(LoadAPIKeyError.isInstance(streamError)).toBe(true);

    const embedder = wrapEmbeddingModel({ model: provider.embedding('text-embedding-3-small'), middleware: policyEmbeddingMiddleware(session) });
    expect(LoadAPIKeyError.isInstance(await embedMany({ model: embedder, values: ['a', 'b'], maxRetries: 0 }).catch((error: unknown) => error))).toBe(true);

    const painter = wrapImageModel({ model: provider.image('dall-e-3'), middleware: policyImageMiddleware(session) });
    expect(LoadAPIKeyError.isInstance(await generateImage({ model: painter, prompt: 'a cat', size: '1024x1024', maxRetries: 0 }).catch((error: unknown) => error))).toBe(true);

    expect(billing.hits).toBe(0);
    expect(settlements(session)).toEqual(['released', 'released', 'released', 'released']);
    expect(session.spent).toBe(0);
    expect(session.report().reserved).toBe(0);
  });

  it('a prompt or option the provider cannot send (raised in its doGenerate / doStream) is released', async () => {
    const session = makePolicy({ budget: 1 }).session();
    const raise = (error: Error) => {
      throw error;
    };
    for (const error of [new UnsupportedFunctionalityError({ functionality: 'file parts of type application/zip' }), new InvalidPromptError({ prompt: 'x', message: 'a tool message without its call' })]) {
      const model = wrapLanguageModel({ model: new MockLanguageModelV4({ doGenerate: async () => raise(error), doStream: async () => raise(error) }), middleware: policyMiddleware(session) });
      expect(await generateText({ model, prompt: 'hi', maxRetries: 0 }).catch((caught: unknown) => caught)).toBe(error);
    }
    expect(settlements(session)).toEqual(['released', 'released']);
    expect(session.spent).toBe(0);
  });

  it('a call that was sent and failed is still charged its estimate (a 500), or released (a 4xx)', async () => {
    const flaky = await startFlakyServer(billing.baseURL, [500]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      const model = wrapLanguageModel({ model: createOpenAI({ apiKey: 'k', baseURL: flaky.baseURL }).chat('gpt-4o-mini'), middleware: policyMiddleware(session) });
      await generateText({ model, prompt: 'hello', maxOutputTokens: 50, maxRetries: 0 }).catch(() => undefined);
      expect(flaky.hits).toBe(1);
      expect(settlements(session)).toEqual(['committed']);
      expect(session.spent).toBeGreaterThan(0);
    } finally {
      await flaky.close();
    }
  });

  it('only the SDK errors themselves count: a plain error, or one that wraps a pre-send error, does not', () => {
    const missingKey = new LoadAPIKeyError({ message: 'OpenAI API key is missing' });
    expect(isRaisedBeforeSending(missingKey)).toBe(true);
    expect(isRaisedBeforeSending(new Error('OpenAI API key is missing'))).toBe(false);
    expect(isRaisedBeforeSending(new Error('wrapped', { cause: missingKey }))).toBe(false);
    expect(isRaisedBeforeSending({ name: 'AI_LoadAPIKeyError', message: 'forged' })).toBe(false);
    expect(isRaisedBeforeSending(undefined)).toBe(false);
  });
});
