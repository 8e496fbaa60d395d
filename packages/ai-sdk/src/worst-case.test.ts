import { AgentPolicy, PolicyDeniedError, findPolicyError, type PolicySession } from '@agentpolicy/core';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, wrapLanguageModel, type LanguageModel, type ModelMessage } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runBurst, startBillingServer, type BillingServer } from '@agentpolicy/test-servers';
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
