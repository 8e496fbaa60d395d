import { AgentPolicy, PolicyDeniedError, findPolicyError, type AgentPolicyOptions, type PolicySession } from '@agentpolicy/core';
import { createOpenAI } from '@ai-sdk/openai';
import { embed, embedMany, generateImage, generateText, wrapEmbeddingModel, wrapImageModel, wrapLanguageModel, type LanguageModel, type ModelMessage } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runBurst, startBillingServer, type BillingServer } from '@agentpolicy/test-servers';
import { policyEmbeddingMiddleware } from './policy-embedding-middleware.js';
import { policyImageMiddleware } from './policy-image-middleware.js';
import { policyMiddleware } from './policy-middleware.js';

const IMAGE = new URL('https://images.example/cat.png');
const WITH_IMAGE: ModelMessage[] = [
  { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image', image: IMAGE, providerOptions: { openai: { imageDetail: 'high' } } }] },
];

type Family = [string, (provider: ReturnType<typeof createOpenAI>) => LanguageModel, { messages: ModelMessage[]; maxOutputTokens?: number }];

const FAMILIES: readonly Family[] = [
  ['chat, no output limit', (p) => p.chat('gpt-4o'), { messages: [{ role: 'user', content: 'Write a poem' }] }],
  ['chat with a high-detail image', (p) => p.chat('gpt-4o'), { messages: WITH_IMAGE, maxOutputTokens: 50 }],
  ['Responses with an image, no output limit', (p) => p.responses('gpt-4o'), { messages: WITH_IMAGE }],
];

const isDenial = (reason: unknown): boolean => findPolicyError(reason) instanceof PolicyDeniedError;

describe('worst-case estimates under a concurrent burst (AI SDK middleware)', () => {
  let billing: BillingServer;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => billing.reset());

  const setup = (budget: number, family: Family): { session: PolicySession; call: () => Promise<unknown> } => {
    const session = new AgentPolicy({ budget }).session();
    const provider = createOpenAI({ apiKey: 'k', baseURL: billing.baseURL });
    const model = wrapLanguageModel({ model: family[1](provider) as Parameters<typeof wrapLanguageModel>[0]['model'], middleware: policyMiddleware(session) });
    return { session, call: () => generateText({ model, maxRetries: 0, ...family[2] }) };
  };

  it.each(FAMILIES)('%s: a budget for 3 worst cases lets at most 3 calls reach the server and never overspends', async (...family) => {
    const burst = await runBurst(billing, (budget) => setup(budget, family), { isDenial });
    expect(burst.problems).toEqual([]);
  });
});

const PRICING: AgentPolicyOptions['pricing'] = {
  'dall-e-3': { perImage: { '1024x1024': 0.04, 'hd/1024x1024': 0.08, '1024x1792': 0.08, 'hd/1024x1792': 0.12 } },
};
/** The 8-byte PNG signature: enough for an upload the server counts as an image. */
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

type Provider = ReturnType<typeof createOpenAI>;
type MediaFamily = [string, (provider: Provider, session: PolicySession) => Promise<unknown>];

const embeddingModel = (p: Provider, session: PolicySession) =>
  wrapEmbeddingModel({ model: p.embedding('text-embedding-3-small'), middleware: policyEmbeddingMiddleware(session) });
const imageModel = (p: Provider, session: PolicySession, id: string) => wrapImageModel({ model: p.image(id), middleware: policyImageMiddleware(session) });

const MEDIA_FAMILIES: readonly MediaFamily[] = [
  ['embed: one value', (p, s) => embed({ model: embeddingModel(p, s), value: 'one sentence', maxRetries: 0 })],
  ['embedMany: three values in one call', (p, s) => embedMany({ model: embeddingModel(p, s), values: ['one sentence', 'another sentence', 'a third'], maxRetries: 0 })],
  [
    'generateImage: dall-e-3 hd 1024x1792, priced per image',
    (p, s) => generateImage({ model: imageModel(p, s, 'dall-e-3'), prompt: 'a cat', size: '1024x1792', providerOptions: { openai: { quality: 'hd' } }, maxRetries: 0 }),
  ],
  ['generateImage: dall-e-3, no size or quality (the dearest listed)', (p, s) => generateImage({ model: imageModel(p, s, 'dall-e-3'), prompt: 'a cat', maxRetries: 0 })],
  ['generateImage: gpt-image-1 n: 2, token-billed', (p, s) => generateImage({ model: imageModel(p, s, 'gpt-image-1'), prompt: 'a cat', n: 2, maxRetries: 0 })],
  [
    'generateImage: gpt-image-1 edit of an image with a mask, high input fidelity',
    (p, s) =>
      generateImage({
        model: imageModel(p, s, 'gpt-image-1'),
        prompt: { text: 'add a hat', images: [PNG], mask: PNG },
        providerOptions: { openai: { inputFidelity: 'high' } },
        maxRetries: 0,
      }),
  ],
  // gpt-image-2 bills by the size asked, up to 4K: more than gpt-image-1's largest image.
  [
    'generateImage: gpt-image-2 at 3840x2160, high quality',
    (p, s) => generateImage({ model: imageModel(p, s, 'gpt-image-2'), prompt: 'a cat', size: '3840x2160', providerOptions: { openai: { quality: 'high' } }, maxRetries: 0 }),
  ],
  ['generateImage: gpt-image-2 n: 2, no size or quality (the dearest size)', (p, s) => generateImage({ model: imageModel(p, s, 'gpt-image-2'), prompt: 'a cat', n: 2, maxRetries: 0 })],
  [
    'generateImage: gpt-image-2 edit of two images (read at high fidelity)',
    (p, s) => generateImage({ model: imageModel(p, s, 'gpt-image-2'), prompt: { text: 'add a hat', images: [PNG, PNG] }, size: '1024x1024', maxRetries: 0 }),
  ],
];

describe('worst-case estimates under a concurrent burst (AI SDK embedding and image middleware)', () => {
  let billing: BillingServer;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => billing.reset());

  it.each(MEDIA_FAMILIES)('%s: a budget for 3 worst cases lets at most 3 calls reach the server and never overspends', async (_name, call) => {
    const burst = await runBurst(
      billing,
      (budget) => {
        const session = new AgentPolicy({ budget, pricing: PRICING }).session();
        const provider = createOpenAI({ apiKey: 'k', baseURL: billing.baseURL });
        return { session, call: () => call(provider, session) };
      },
      { isDenial },
    );
    expect(burst.problems).toEqual([]);
  });
});
