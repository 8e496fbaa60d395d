import { AgentPolicy, PolicyDeniedError, findPolicyError, type Decision, type PolicySession } from '@agentpolicy/core';
import { AIMessage, type BaseMessage } from '@langchain/core/messages';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { startBillingServer, startFlakyServer, type BillingServer, type FlakyFailure, type FlakyServer } from '@agentpolicy/test-servers';
import { createAgent, createMiddleware, modelRetryMiddleware, type AgentMiddleware } from 'langchain';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';
import { agentPolicyMiddleware, type AgentPolicyMiddlewareOptions } from './agent-policy-middleware.js';
import { policyEmbeddings } from './policy-embeddings.js';
import { EMBEDDING_MODEL } from './test-support.js';

// Every test runs against its own servers: a billing server that answers the OpenAI chat completions API, behind a
// flaky one that fails the first requests as each test says. LangChain waits 1 to 2 s before a first retry and 2 to
// 4 s before a second, so the tests run side by side.

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  await new Promise((resolve) => setImmediate(resolve));
  expect(unhandled.splice(0)).toEqual([]);
});

const OUTPUT_LIMIT = 100;
type Fields = NonNullable<ConstructorParameters<typeof ChatOpenAI>[0]>;

interface Servers {
  billing: BillingServer;
  flaky: FlakyServer;
  close(): Promise<void>;
}

/** The text of the request's user message: which session it comes from. */
const userText = (body: Record<string, unknown>): string => {
  const messages = Array.isArray(body['messages']) ? (body['messages'] as Array<{ role?: unknown; content?: unknown }>) : [];
  const user = messages.find((message) => message.role === 'user');
  return typeof user?.content === 'string' ? user.content : '';
};

async function servers(failures: readonly FlakyFailure[], failuresOf: Readonly<Record<string, readonly FlakyFailure[]>> = {}): Promise<Servers> {
  const billing = await startBillingServer();
  const flaky = await startFlakyServer(billing.baseURL, failures, { keyOf: userText, failuresOf });
  return {
    billing,
    flaky,
    close: async () => {
      await flaky.close();
      await billing.close();
    },
  };
}

const chat = (baseURL: string, fields: Fields = {}) => new ChatOpenAI({ model: 'gpt-4o', apiKey: 'k', maxTokens: OUTPUT_LIMIT, maxRetries: 5, configuration: { baseURL }, ...fields });
const agentOf = (session: PolicySession, model: ChatOpenAI, options: AgentPolicyMiddlewareOptions = {}) =>
  createAgent({ model, tools: [], middleware: [agentPolicyMiddleware(session, options)] });
const ask = (agent: ReturnType<typeof agentOf>, text: string) => agent.invoke({ messages: [{ role: 'user', content: text }] });
/**
 * Runs the agent streaming its messages: the model's answer is then streamed (`stream: true`) chunk by chunk. (A
 * `ChatOpenAI({ streaming: true })` invoked instead counts its tokens with a tokenizer it downloads.)
 */
async function askStreaming(agent: ReturnType<typeof agentOf>, text: string): Promise<string> {
  let streamed = '';
  for await (const [chunk] of await agent.stream({ messages: [{ role: 'user', content: text }] }, { streamMode: 'messages' })) {
    if (typeof chunk.content === 'string') streamed += chunk.content;
  }
  return streamed;
}

const costs = (session: PolicySession): Decision[] => session.report().decisions.filter((decision) => decision.action.type === 'cost');
const nanos = (usd: number): number => Math.round(usd * 1e9);
const settlements = (session: PolicySession) => costs(session).map((decision) => [decision.decision, decision.settlement?.status ?? null]);

/** What one call of `text` reserves, in nano-dollars: read from a probe under a large budget, against a server that always answers. */
async function estimateOf(text: string): Promise<number> {
  const billing = await startBillingServer();
  try {
    const probe = new AgentPolicy({ budget: 1 }).session();
    await ask(agentOf(probe, chat(billing.baseURL)), text);
    return nanos(costs(probe)[0]!.settlement!.estimated);
  } finally {
    await billing.close();
  }
}

/**
 * What the billing server billed for the request it answered for `text`, priced independently of LangChain: the
 * request's messages at about 4 bytes a token, and the whole output limit.
 */
function billedNanos(session: PolicySession, billing: BillingServer, text: string): number {
  const body = billing.bodies.find((request) => userText(request) === text);
  if (!body) throw new Error(`the billing server never answered ${text}`);
  const inputTokens = Math.ceil(Buffer.byteLength(JSON.stringify(body['messages'])) / 4);
  const price = session.priceUsage({ model: 'gpt-4o', provider: 'openai', inputTokens, outputTokens: OUTPUT_LIMIT });
  if (!price.ok) throw new Error(price.reason);
  return price.nanos;
}

/** Two requests reached the server, each reserved: the first failed and was charged its estimate, the second answered and was charged what it billed. */
function expectFailedThenAnswered(session: PolicySession, { billing, flaky }: Pick<Servers, 'billing' | 'flaky'>, text: string, estimate: number): void {
  expect(flaky.hits).toBe(2);
  const [failed, answered] = costs(session);
  expect(costs(session)).toHaveLength(2);
  expect(nanos(failed!.settlement!.actual)).toBe(estimate);
  expect(nanos(answered!.settlement!.actual)).toBe(billedNanos(session, billing, text));
}

const lastMessage = (result: { messages: BaseMessage[] }): BaseMessage => result.messages.at(-1)!;

describe.concurrent("a chat model's own retries through createAgent and the middleware: each attempt reserved and settled on its own", () => {
  it('2 failed attempts (a 500, a reset connection) then a success under a budget for exactly 3 worst cases: 3 requests, 3 reservations, each failure charged its estimate, the success its usage', async () => {
    const text = 'retry twice';
    const estimate = await estimateOf(text);
    const { billing, flaky, close } = await servers([500, 'drop']);
    try {
      const session = new AgentPolicy({ budget: (3 * estimate) / 1e9 }).session();
      const result = await ask(agentOf(session, chat(flaky.baseURL)), text);
      expect(lastMessage(result).content).toBe('x');
      // Never more requests than reservations: the server saw exactly what the budget covered.
      expect(flaky.hits).toBe(3);
      expect(costs(session).filter((decision) => decision.decision === 'allow')).toHaveLength(flaky.hits);
      expect(costs(session).map((decision) => decision.action.metadata?.['attempt'] ?? 1)).toEqual([1, 2, 3]);
      const [first, second, success] = costs(session);
      expect(nanos(first!.settlement!.actual)).toBe(estimate);
      expect(nanos(second!.settlement!.actual)).toBe(estimate);
      const billed = billedNanos(session, billing, text);
      expect(nanos(success!.settlement!.actual)).toBe(billed);
      expect(nanos(session.report().spent)).toBe(2 * estimate + billed);
      expect(session.report().reserved).toBe(0);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await close();
    }
  });

  it('a client timeout (the server hangs) is charged its estimate, a retried 4xx (422) is released, the success is charged its usage', async () => {
    const text = 'timeout then 422';
    const estimate = await estimateOf(text);
    const { billing, flaky, close } = await servers(['hang', 422]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      await ask(agentOf(session, chat(flaky.baseURL, { timeout: 300 })), text);
      expect(flaky.hits).toBe(3);
      expect(settlements(session)).toEqual([
        ['allow', 'committed'],
        ['allow', 'released'],
        ['allow', 'committed'],
      ]);
      const [timedOut, refused, success] = costs(session);
      expect(nanos(timedOut!.settlement!.actual)).toBe(estimate);
      expect(refused!.settlement!.actual).toBe(0);
      const billed = billedNanos(session, billing, text);
      expect(nanos(success!.settlement!.actual)).toBe(billed);
      expect(nanos(session.report().spent)).toBe(estimate + billed);
    } finally {
      await close();
    }
  });

  it('two sessions share one ChatOpenAI instance and retry at the same time: each is charged only its own attempts', async () => {
    const [alpha, bravo] = ['session alpha', 'session bravo'];
    const [estimateA, estimateB] = await Promise.all([estimateOf(alpha), estimateOf(bravo)]);
    // Each session's requests fail on their own: alpha's first two with a 500 (charged), bravo's with a 422 (released).
    const { billing, flaky, close } = await servers([], { [alpha]: [500, 500], [bravo]: [422] });
    try {
      const model = chat(flaky.baseURL);
      const sessionA = new AgentPolicy({ budget: (3 * estimateA) / 1e9 }).session();
      const sessionB = new AgentPolicy({ budget: (2 * estimateB) / 1e9 }).session();
      const [resultA, resultB] = await Promise.all([ask(agentOf(sessionA, model), alpha), ask(agentOf(sessionB, model), bravo)]);
      expect(lastMessage(resultA).content).toBe('x');
      expect(lastMessage(resultB).content).toBe('x');
      expect(flaky.hitsOf(alpha)).toBe(3);
      expect(flaky.hitsOf(bravo)).toBe(2);
      expect(settlements(sessionA)).toEqual([
        ['allow', 'committed'],
        ['allow', 'committed'],
        ['allow', 'committed'],
      ]);
      expect(settlements(sessionB)).toEqual([
        ['allow', 'released'],
        ['allow', 'committed'],
      ]);
      expect(nanos(sessionA.report().spent)).toBe(2 * estimateA + billedNanos(sessionA, billing, alpha));
      expect(nanos(sessionB.report().spent)).toBe(billedNanos(sessionB, billing, bravo));
    } finally {
      await close();
    }
  });

  for (const exitBehavior of ['end', 'error'] as const) {
    it(`a budget that runs out mid-retries stops them: no further request reaches the server, and the agent sees the denial (exitBehavior ${exitBehavior})`, async () => {
      const text = `out of budget ${exitBehavior}`;
      const estimate = await estimateOf(text);
      const { flaky, close } = await servers([500, 500, 500, 500, 500]);
      try {
        const session = new AgentPolicy({ budget: (2.5 * estimate) / 1e9 }).session();
        // A failed-attempt handler that retries everything: the refusal still ends the retries.
        const model = chat(flaky.baseURL, { maxRetries: 6, onFailedAttempt: () => undefined });
        const outcome = await ask(agentOf(session, model, { exitBehavior }), text).then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
        expect(flaky.hits).toBe(2);
        expect(settlements(session)).toEqual([
          ['allow', 'committed'],
          ['allow', 'committed'],
          ['deny', null],
        ]);
        expect(costs(session)[2]!.action.metadata).toMatchObject({ attempt: 3 });
        expect(nanos(session.report().spent)).toBe(2 * estimate);
        if (exitBehavior === 'end') {
          const message = lastMessage((outcome as { result: { messages: BaseMessage[] } }).result);
          expect(AIMessage.isInstance(message)).toBe(true);
          expect(message.content).toMatch(/^agentpolicy: model call denied: /);
          expect(message.response_metadata).toMatchObject({ agentpolicy: { decision: 'deny', decisionId: costs(session)[2]!.id } });
        } else {
          const found = findPolicyError((outcome as { error: unknown }).error);
          expect(found).toBeInstanceOf(PolicyDeniedError);
          expect(found?.code).toBe('BUDGET_EXCEEDED');
        }
      } finally {
        await close();
      }
    });
  }

  it('a stream whose request failed before its first chunk is retried like any other attempt', async () => {
    const text = 'stream retry';
    const estimate = await estimateOf(text);
    const { billing, flaky, close } = await servers([500]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      expect(await askStreaming(agentOf(session, chat(flaky.baseURL)), text)).toBe('x');
      expect(billing.bodies[0]).toMatchObject({ stream: true });
      expectFailedThenAnswered(session, { billing, flaky }, text, estimate);
    } finally {
      await close();
    }
  });

  it('a stream cut off after its first chunk is not retried by LangChain, and is charged its estimate', async () => {
    const text = 'stream cut';
    const { flaky, close } = await servers(['cut']);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      const error = await askStreaming(agentOf(session, chat(flaky.baseURL)), text).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(Error);
      expect(findPolicyError(error)).toBeUndefined();
      expect(flaky.hits).toBe(1);
      expect(settlements(session)).toEqual([['allow', 'committed']]);
      const [cut] = costs(session);
      expect(cut!.settlement!.actual).toBe(cut!.settlement!.estimated);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await close();
    }
  });
});

describe.concurrent('retries around and after a metered model call', () => {
  it("a retry middleware placed inside this one (langchain's modelRetryMiddleware) has each of its requests metered too", async () => {
    const text = 'inner retry middleware';
    const estimate = await estimateOf(text);
    const { billing, flaky, close } = await servers([500]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      const agent = createAgent({
        model: chat(flaky.baseURL, { maxRetries: 0 }),
        tools: [],
        middleware: [agentPolicyMiddleware(session), modelRetryMiddleware({ maxRetries: 2, initialDelayMs: 0, jitter: false }) as unknown as AgentMiddleware],
      });
      await agent.invoke({ messages: [{ role: 'user', content: text }] });
      expectFailedThenAnswered(session, { billing, flaky }, text, estimate);
    } finally {
      await close();
    }
  });

  it('embeddings a middleware inside this one makes through policyEmbeddings are metered there once, not as attempts of the model call', async () => {
    const text = 'embed then answer';
    const { billing, flaky, close } = await servers([]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      const policy = agentPolicyMiddleware(session);
      // Wrapped once the middleware meters LangChain's retry loop: the wrapper's caller runs through that loop.
      const embeddings = policyEmbeddings(new OpenAIEmbeddings({ model: EMBEDDING_MODEL, apiKey: 'k', maxRetries: 0, configuration: { baseURL: billing.baseURL } }), session);
      const embedding = createMiddleware({
        name: 'EmbedFirst',
        wrapModelCall: async (request, handler) => {
          await embeddings.embedQuery('what the user asked');
          return handler(request);
        },
      }) as AgentMiddleware;
      const agent = createAgent({ model: chat(flaky.baseURL), tools: [], middleware: [policy, embedding] });
      await agent.invoke({ messages: [{ role: 'user', content: text }] });
      expect(billing.hits).toBe(2);
      const [model, embedded] = costs(session);
      expect(costs(session)).toHaveLength(2);
      expect(model!.action.metadata).toMatchObject({ middleware: true });
      expect(nanos(model!.settlement!.actual)).toBe(billedNanos(session, billing, text));
      expect(embedded!.action.metadata).toMatchObject({ endpoint: 'embeddings' });
      expect(embedded!.settlement!.status).toBe('committed');
    } finally {
      await close();
    }
  });

  it('an agent aborted while its model waits to retry sends nothing more: the retry LangChain still makes is refused, and nothing is left unhandled', async () => {
    const { flaky, close } = await servers([500, 500]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      const controller = new AbortController();
      const run = agentOf(session, chat(flaky.baseURL))
        .invoke({ messages: [{ role: 'user', content: 'abort me' }] }, { signal: controller.signal })
        .catch((caught: unknown) => caught);
      while (flaky.hits === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      controller.abort();
      expect(await run).toBeInstanceOf(Error);
      // Past LangChain's first retry delay (1 to 2 s): its retry loop, which the abort does not stop, has run again.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      expect(flaky.hits).toBe(1);
      expect(settlements(session)).toEqual([['allow', 'committed']]);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await close();
    }
  });
});

describe('outside a metered model call, LangChain retries as it always did', () => {
  it('a model invoked on its own (no middleware) retries without any reservation', async () => {
    const { flaky, close } = await servers([500]);
    try {
      const answer = await chat(flaky.baseURL).invoke('hello');
      expect(answer.content).toBe('x');
      expect(flaky.hits).toBe(2);
    } finally {
      await close();
    }
  });

  it('through the callback handler a run is still reserved once and settled once (its retries are not seen: see the README)', async () => {
    const { flaky, close } = await servers([500]);
    try {
      const session = new AgentPolicy({ budget: 1 }).session();
      await chat(flaky.baseURL).invoke('hello', { callbacks: [new AgentPolicyCallbackHandler(session)] });
      expect(flaky.hits).toBe(2);
      expect(settlements(session)).toEqual([['allow', 'committed']]);
    } finally {
      await close();
    }
  });
});
