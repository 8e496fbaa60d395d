/**
 * A model-based fuzz of the metered model attempts (the middleware's model gate and `policyEmbeddings`) through real
 * LangChain objects against local servers: `ChatOpenAI` in a `createAgent` with `agentPolicyMiddleware`, invoked or
 * streamed, retrying through its own `AsyncCaller` (`maxRetries`) or a `modelRetryMiddleware` placed inside ours, and
 * `OpenAIEmbeddings` wrapped by `policyEmbeddings`, retrying through its caller. Each run is a few such calls at once
 * on one session whose budget covers a random number of worst cases; each call's requests fail as its script says (a
 * 5xx, a dropped connection, a client timeout, a 4xx, a stream cut after its first chunk) before they answer, with
 * or without usage.
 *
 * After every run: the server saw exactly as many requests as the session allowed attempts (each reserved before it
 * was sent, a refused retry never sent); each request was charged what the README says (the reported usage, the
 * estimate when there is none or the request failed in a way that may have been billed, nothing for a 4xx); spend
 * never passes the budget; no reservation is left open; no unhandled rejection.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>), FUZZ_RUNS=<n>.
 */
import { AgentPolicy, type Decision, type PolicySession } from '@agentpolicy/core';
import { startBillingServer, startFlakyServer, type BillingServer, type FlakyFailure } from '@agentpolicy/test-servers';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import fc from 'fast-check';
import { createAgent, modelRetryMiddleware, type AgentMiddleware } from 'langchain';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { agentPolicyMiddleware } from './agent-policy-middleware.js';
import { policyEmbeddings } from './policy-embeddings.js';
import { EMBEDDING_MODEL, billedTokens } from './test-support.js';

const OUTPUT_LIMIT = 50;

type Failure = 500 | 502 | 'drop' | 'hang' | 422 | 400 | 429 | 'cut';
/** How a call retries: LangChain's AsyncCaller (`maxRetries`, 1 to 2 s of backoff) or a retry middleware inside ours (no wait). */
type Retries = { readonly by: 'caller' | 'middleware' | 'none'; readonly max: number };
interface Call {
  /** `docs`: `embedDocuments` of two texts sent as two batches (`batchSize: 1`), reserved all or none. */
  readonly kind: 'chat' | 'stream' | 'embed' | 'docs';
  readonly failures: readonly Failure[];
  readonly retries: Retries;
}
interface Scenario {
  readonly calls: readonly Call[];
  /** The budget, in worst cases of a chat call. */
  readonly budget: number;
  readonly omitUsage: boolean;
}

/** Which failures a request can meet: a stream cut only where the answer is streamed. */
const failureArb = (kind: Call['kind']): fc.Arbitrary<Failure> =>
  fc.constantFrom<Failure>(500, 502, 'drop', 422, 400, 429, 'hang', ...(kind === 'stream' ? (['cut', 'cut'] as const) : []));
const callArb: fc.Arbitrary<Call> = fc.constantFrom<Call['kind']>('chat', 'chat', 'stream', 'embed', 'docs').chain((kind) =>
  fc.record({
    kind: fc.constant(kind),
    failures: fc.array(failureArb(kind), { maxLength: 2 }),
    retries:
      kind === 'embed' || kind === 'docs'
        ? fc.record({ by: fc.constant('caller' as const), max: fc.constantFrom(0, 0, 1) })
        : fc.oneof(
            { weight: 1, arbitrary: fc.record({ by: fc.constant('caller' as const), max: fc.constant(1) }) },
            { weight: 4, arbitrary: fc.record({ by: fc.constant('middleware' as const), max: fc.integer({ min: 1, max: 3 }) }) },
            { weight: 2, arbitrary: fc.record({ by: fc.constant('none' as const), max: fc.constant(0) }) },
          ),
  }),
);
/** At most one call of a run waits for LangChain's backoff, so a run takes at most about two seconds. */
const callerWaits = (calls: readonly Call[]): number => calls.filter((c) => c.retries.by === 'caller' && c.retries.max > 0 && c.failures.length > 0).length;
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  calls: fc.array(callArb, { minLength: 1, maxLength: 4 }).filter((calls) => callerWaits(calls) <= 1),
  budget: fc.constantFrom(0.5, 1.5, 2.5, 3.5, 6),
  omitUsage: fc.boolean(),
});

const seen = {
  answered: 0,
  usageMissing: 0,
  retriedThenAnswered: 0,
  callerRetry: 0,
  retryRefused: 0,
  firstRefused: 0,
  released4xx: 0,
  estimateFailed: 0,
  timeout: 0,
  streamCut: 0,
  embedded: 0,
  embedRetried: 0,
  docsBatch: 0,
};

class Violation extends Error {}

/** Every call's key: its text, all of one length so every chat call has one estimate. */
const keyOf = (index: number, kind: Call['kind']): string => `${kind === 'embed' || kind === 'docs' ? 'emb' : 'ask'}-${String(index).padStart(3, '0')}`;
/** The texts a call sends, each its own request (the second text of `docs` is its second batch). */
const textsOf = (call: Call, key: string): string[] => (call.kind === 'docs' ? [key, key.replace('emb-', 'em2-')] : [key]);
const isEmbed = (call: Call): boolean => call.kind === 'embed' || call.kind === 'docs';
const requestKey = (body: Record<string, unknown>): string => {
  if (typeof body['input'] === 'string') return body['input'];
  if (Array.isArray(body['input']) && typeof body['input'][0] === 'string') return body['input'][0] as string;
  const messages = Array.isArray(body['messages']) ? (body['messages'] as Array<{ role?: unknown; content?: unknown }>) : [];
  const user = messages.find((message) => message.role === 'user');
  return typeof user?.content === 'string' ? user.content : '';
};

const nanos = (usd: number): number => Math.round(usd * 1e9);
const estimated = (d: Decision): number => d.settlement?.estimated ?? Number.NaN;
const isEmbedding = (d: Decision): boolean => (d.action.metadata as { endpoint?: string } | undefined)?.endpoint === 'embeddings';

async function runScenario(scenario: Scenario, counter: { next: number }): Promise<void> {
  const billing = await startBillingServer();
  const failuresOf: Record<string, FlakyFailure[]> = {};
  const keys = scenario.calls.map((call) => {
    const key = keyOf(counter.next++, call.kind);
    for (const text of textsOf(call, key)) failuresOf[text] = [...call.failures];
    return key;
  });
  const flaky = await startFlakyServer(billing.baseURL, [], { keyOf: requestKey, failuresOf });
  const log: string[] = [`scenario ${JSON.stringify(scenario)}`];
  try {
    // The worst case of one chat call, from a probe (the same prompt length as every call of the run).
    const chatEstimate = await probeEstimate(billing);
    if (scenario.omitUsage) billing.omitUsage(1_000);
    const session = new AgentPolicy({ budget: (scenario.budget * chatEstimate) / 1e9 }).session();
    await Promise.all(scenario.calls.map((call, index) => runCall(session, call, keys[index]!, flaky.baseURL, log)));
    check(session, scenario, keys, flaky, billing, chatEstimate, log);
  } finally {
    await flaky.close();
    await billing.close();
  }
}

async function probeEstimate(billing: BillingServer): Promise<number> {
  const probe = new AgentPolicy({ budget: 1 }).session();
  const agent = createAgent({ model: chatModel(billing.baseURL, 0), tools: [], middleware: [agentPolicyMiddleware(probe)] });
  await agent.invoke({ messages: [{ role: 'user', content: 'ask-999' }] });
  billing.reset();
  return nanos(estimated(probe.report().decisions[0]!));
}

const chatModel = (baseURL: string, maxRetries: number) =>
  new ChatOpenAI({ model: 'gpt-4o', apiKey: 'k', maxTokens: OUTPUT_LIMIT, maxRetries, timeout: 400, configuration: { baseURL } });

async function runCall(session: PolicySession, call: Call, key: string, baseURL: string, log: string[]): Promise<void> {
  try {
    if (isEmbed(call)) {
      const embeddings = policyEmbeddings(new OpenAIEmbeddings({ model: EMBEDDING_MODEL, apiKey: 'k', maxRetries: call.retries.max, timeout: 400, batchSize: 1, configuration: { baseURL } }), session);
      if (call.kind === 'embed') await embeddings.embedQuery(key);
      else await embeddings.embedDocuments(textsOf(call, key));
      return;
    }
    const middleware: AgentMiddleware[] = [agentPolicyMiddleware(session)];
    if (call.retries.by === 'middleware') middleware.push(modelRetryMiddleware({ maxRetries: call.retries.max, initialDelayMs: 0, jitter: false, onFailure: 'error' }) as unknown as AgentMiddleware);
    const agent = createAgent({ model: chatModel(baseURL, call.retries.by === 'caller' ? call.retries.max : 0), tools: [], middleware });
    const input = { messages: [{ role: 'user', content: key }] };
    if (call.kind === 'chat') await agent.invoke(input);
    else for await (const _chunk of await agent.stream(input, { streamMode: 'messages' })) {
      // read to the end
    }
  } catch (error) {
    log.push(`${key} threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
  }
}

/** What one request the server saw for `call` costs, in nano-dollars: its failure's rule, else its answer's usage. */
function requestCost(session: PolicySession, call: Call, key: string, attempt: number, billing: BillingServer, estimate: number, omitUsage: boolean): number {
  const failure = call.failures[attempt];
  if (failure === 422 || failure === 400 || failure === 429) {
    seen.released4xx++;
    return 0;
  }
  if (failure !== undefined) {
    if (failure === 'hang') seen.timeout++;
    else if (failure === 'cut') seen.streamCut++;
    else seen.estimateFailed++;
    return estimate;
  }
  seen.answered++;
  if (attempt > 0) seen.retriedThenAnswered++;
  if (omitUsage) {
    seen.usageMissing++;
    return estimate;
  }
  if (isEmbed(call)) {
    seen.embedded++;
    if (call.kind === 'docs') seen.docsBatch++;
    const price = session.priceUsage({ model: EMBEDDING_MODEL, provider: 'openai', inputTokens: billedTokens(key), outputTokens: 0 });
    if (!price.ok) throw new Error(price.reason);
    return price.nanos;
  }
  const body = billing.bodies.find((request) => requestKey(request) === key);
  if (!body) throw new Violation(`the billing server never answered ${key}`);
  const inputTokens = Math.ceil(Buffer.byteLength(JSON.stringify(body['messages'])) / 4);
  const price = session.priceUsage({ model: 'gpt-4o', provider: 'openai', inputTokens, outputTokens: OUTPUT_LIMIT });
  if (!price.ok) throw new Error(price.reason);
  return price.nanos;
}

function check(session: PolicySession, scenario: Scenario, keys: readonly string[], flaky: { hitsOf(key: string): number; hits: number }, billing: BillingServer, chatEstimate: number, log: string[]): void {
  const report = session.report();
  const problems: string[] = [];
  const costs = report.decisions.filter((d) => d.action.type === 'cost');
  const chatAllows = costs.filter((d) => d.decision === 'allow' && !isEmbedding(d));
  const embedAllows = costs.filter((d) => d.decision === 'allow' && isEmbedding(d));
  // One worst case per embeddings method (every text of a run has one length).
  const embedEstimate = (method: string): number => nanos(estimated(embedAllows.find((d) => (d.action.metadata as { method?: string }).method === method) ?? embedAllows[0]!));
  for (const d of chatAllows) if (nanos(estimated(d)) !== chatEstimate) problems.push(`a chat attempt reserved ${nanos(estimated(d))}, not the call's worst case ${chatEstimate}`);
  for (const d of costs) {
    if (d.decision === 'allow' && (d.settlement === undefined || d.settlement.status === 'pending')) problems.push(`decision ${d.id} left open`);
    if (d.decision !== 'allow') {
      if (d.rule.section !== 'budget') problems.push(`denied by ${JSON.stringify(d.rule)}`);
      if ((d.action.metadata as { attempt?: number } | undefined)?.attempt !== undefined) seen.retryRefused++;
      else seen.firstRefused++;
    }
  }
  // Every request the server saw was reserved first, and nothing reserved went unsent.
  let chatHits = 0;
  let embedHits = 0;
  let expected = 0;
  scenario.calls.forEach((call, index) => {
    for (const key of textsOf(call, keys[index]!)) {
      const hits = flaky.hitsOf(key);
      if (isEmbed(call)) embedHits += hits;
      else chatHits += hits;
      if (hits > 1 && call.retries.by === 'caller') seen.callerRetry++;
      if (hits > 1 && isEmbed(call)) seen.embedRetried++;
      if (hits > call.failures.length + 1) problems.push(`${key} was sent ${hits} times, but it answers on request ${call.failures.length + 1}`);
      const estimate = !isEmbed(call) ? chatEstimate : embedEstimate(call.kind === 'docs' ? 'embedDocuments' : 'embedQuery');
      for (let attempt = 0; attempt < hits; attempt++) expected += requestCost(session, call, key, attempt, billing, estimate, scenario.omitUsage);
    }
  });
  if (chatHits !== chatAllows.length) problems.push(`the server saw ${chatHits} chat requests, the session allowed ${chatAllows.length} attempts`);
  if (embedHits !== embedAllows.length) problems.push(`the server saw ${embedHits} embeddings requests, the session allowed ${embedAllows.length}`);
  if (nanos(report.spent) !== expected) problems.push(`spent ${nanos(report.spent)} nano-USD, the requests cost ${expected}`);
  if (report.spent + report.reserved > (scenario.budget * chatEstimate) / 1e9 + 1e-12) problems.push(`spent ${report.spent} + reserved ${report.reserved} passes the budget`);
  if (session.pendingReservations !== 0 || report.reserved !== 0) problems.push(`${session.pendingReservations} reservation(s) open after the run`);
  if (problems.length > 0) {
    const trail = costs.map((d) => `  ${d.decision} ${isEmbedding(d) ? 'embed' : 'chat'} attempt=${String((d.action.metadata as { attempt?: number } | undefined)?.attempt ?? 1)} ${d.rule.section} ${JSON.stringify(d.settlement ?? null)}`);
    const hits = keys.map((key) => `${key}:${flaky.hitsOf(key)}`).join(' ');
    throw new Violation(`${problems.join('\n')}\n--- log ---\n${log.join('\n')}\nhits ${hits}\n--- decisions ---\n${trail.join('\n')}`);
  }
}

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_203 : Number(process.env['FUZZ_SEED']);
const DEFAULT_RUNS = 30;
const RUNS = Number(process.env['FUZZ_RUNS'] ?? DEFAULT_RUNS);

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => process.off('unhandledRejection', onUnhandled));

/** Runs that reach the paths a short default run might miss, replayed before the random ones. */
const EXAMPLES: [Scenario][] = [
  // A retry the budget cannot cover: refused, never sent.
  [{ calls: [{ kind: 'chat', failures: [500, 500], retries: { by: 'middleware', max: 3 } }], budget: 1.5, omitUsage: false }],
  // Three calls at once on a budget for two: one is refused before it starts.
  [{ calls: [{ kind: 'chat', failures: [], retries: { by: 'none', max: 0 } }, { kind: 'stream', failures: [], retries: { by: 'none', max: 0 } }, { kind: 'chat', failures: [], retries: { by: 'none', max: 0 } }], budget: 2.5, omitUsage: false }],
  // LangChain's own retry after a timeout, then an embeddings retry after a 5xx.
  [{ calls: [{ kind: 'chat', failures: ['hang'], retries: { by: 'caller', max: 1 } }, { kind: 'stream', failures: ['cut'], retries: { by: 'middleware', max: 1 } }], budget: 6, omitUsage: false }],
  [{ calls: [{ kind: 'embed', failures: [502], retries: { by: 'caller', max: 1 } }, { kind: 'chat', failures: [422], retries: { by: 'middleware', max: 1 } }], budget: 6, omitUsage: true }],
  [{ calls: [{ kind: 'docs', failures: ['drop'], retries: { by: 'caller', max: 0 } }, { kind: 'docs', failures: [], retries: { by: 'caller', max: 0 } }], budget: 1.5, omitUsage: false }],
];

describe('metered model attempts (middleware model gate, policyEmbeddings) under random failures, retries and budgets', () => {
  it('sends only reserved requests, charges each by its outcome, never passes the budget and leaves nothing open', { timeout: 180_000 }, async () => {
    console.log(`model attempts fuzz: FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}`);
    const counter = { next: 0 };
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (scenario) => {
        await runScenario(scenario, counter);
        await new Promise((resolve) => setImmediate(resolve));
        if (unhandled.length > 0) throw new Violation(`unhandled rejection: ${unhandled.splice(0).map(String).join('; ')}`);
      }),
      { seed: SEED, numRuns: RUNS, examples: EXAMPLES, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false },
    );
    if (RUNS >= DEFAULT_RUNS) {
      const missed = Object.entries(seen).filter(([, count]) => count === 0);
      if (missed.length > 0) throw new Error(`the fuzz never reached: ${missed.map(([name]) => name).join(', ')} (${JSON.stringify(seen)})`);
    }
    if (process.env['FUZZ_LOG']) console.log(seen);
  });
});
