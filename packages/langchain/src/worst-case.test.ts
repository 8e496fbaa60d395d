import { AgentPolicy, PolicyDeniedError, findPolicyError, type PolicySession } from '@agentpolicy/core';
import { HumanMessage } from '@langchain/core/messages';
import { Document } from '@langchain/core/documents';
import type { Embeddings } from '@langchain/core/embeddings';
import { FakeVectorStore } from '@langchain/core/utils/testing';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { createAgent } from 'langchain';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware } from './agent-policy-middleware.js';
import { policyEmbeddings } from './policy-embeddings.js';
import { runBurst, startBillingServer, type BillingServer } from '@agentpolicy/test-servers';

const IMAGE_MESSAGE = () =>
  new HumanMessage({ content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'https://images.example/cat.png', detail: 'high' } }] });

interface Family {
  readonly name: string;
  readonly model: Record<string, unknown>;
  readonly message: () => HumanMessage;
}

const FAMILIES: readonly Family[] = [
  { name: 'chat with n: 3 and no output limit', model: { n: 3 }, message: () => new HumanMessage('Write a poem') },
  { name: 'chat with a high-detail image', model: { maxTokens: 50 }, message: IMAGE_MESSAGE },
  { name: 'Responses with an image and no output limit', model: { useResponsesApi: true }, message: IMAGE_MESSAGE },
];

type Way = 'callback handler' | 'middleware';
const CASES: ReadonlyArray<[string, Way, Family]> = FAMILIES.flatMap((family) => (['callback handler', 'middleware'] as const).map((way) => [family.name, way, family] as [string, Way, Family]));

type EmbeddingsCall = (embeddings: Embeddings) => Promise<unknown>;
const EMBEDDINGS_CALLS: ReadonlyArray<[string, EmbeddingsCall]> = [
  ['embedQuery', (embeddings) => embeddings.embedQuery('What does the policy allow?')],
  ['embedDocuments', (embeddings) => embeddings.embedDocuments(['first passage', 'second passage\nwith a newline', 'third'])],
  ['a vector store adding documents (it calls embedDocuments itself)', (embeddings) => FakeVectorStore.fromDocuments([new Document({ pageContent: 'a passage' }), new Document({ pageContent: 'another' })], embeddings)],
];

const isDenial = (reason: unknown): boolean => findPolicyError(reason) instanceof PolicyDeniedError;

describe('worst-case estimates under a concurrent burst (LangChain)', () => {
  let billing: BillingServer;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => billing.reset());

  const setup = (budget: number, way: Way, family: Family): { session: PolicySession; call: () => Promise<unknown> } => {
    const session = new AgentPolicy({ budget }).session();
    const model = new ChatOpenAI({ model: 'gpt-4o', apiKey: 'k', maxRetries: 0, configuration: { baseURL: billing.baseURL }, ...family.model });
    if (way === 'callback handler') {
      const handler = new AgentPolicyCallbackHandler(session);
      return { session, call: () => model.invoke([family.message()], { callbacks: [handler] }) };
    }
    const agent = createAgent({ model, tools: [], middleware: [agentPolicyMiddleware(session, { exitBehavior: 'error' })] });
    return { session, call: () => agent.invoke({ messages: [family.message()] }) };
  };

  it.each(CASES)('%s, %s: a budget for 3 worst cases lets at most 3 calls reach the server and never overspends', async (_name, way, family) => {
    const burst = await runBurst(billing, (budget) => setup(budget, way, family), { isDenial });
    expect(burst.problems).toEqual([]);
  });

  it.each(EMBEDDINGS_CALLS)('OpenAIEmbeddings, %s: a budget for 3 worst cases lets at most 3 calls reach the server and never overspends', async (_name, call) => {
    const burst = await runBurst(
      billing,
      (budget) => {
        const session = new AgentPolicy({ budget }).session();
        const embeddings = policyEmbeddings(new OpenAIEmbeddings({ model: 'text-embedding-3-small', apiKey: 'k', maxRetries: 0, configuration: { baseURL: billing.baseURL } }), session);
        return { session, call: () => call(embeddings) };
      },
      { isDenial },
    );
    expect(burst.problems).toEqual([]);
  });
});
