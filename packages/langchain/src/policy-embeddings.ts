import { AgentPolicyError, decisionError, type ModelCallEstimate, type PolicySession } from '@agentpolicy/core';
import { Embeddings, type EmbeddingsInterface } from '@langchain/core/embeddings';
import { EmbeddingRequest, governCaller } from './embedding-request.js';
import { modelInfoFromEmbeddings } from './model-call.js';

/** Options of {@link policyEmbeddings}. */
export interface PolicyEmbeddingsOptions {
  /**
   * The model the calls are priced as. Default: the instance's `model` (or `modelName` / `modelId`), else its class
   * name (give that name a price under `pricing:`).
   */
  model?: string;
  /**
   * The provider, for the price catalog (`openai`, `azure`, `mistral`, …). Default: from the class
   * (`OpenAIEmbeddings` → `openai`, `AzureOpenAIEmbeddings` → `azure`, …), none for a class it does not know.
   */
  provider?: string;
}

const kindOf = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value);

function invalid(message: string): AgentPolicyError {
  return new AgentPolicyError('INVALID_ARGUMENT', `agentpolicy: ${message}`);
}

/** A copy of the texts, each checked: what is estimated is exactly what is sent, whatever the array does later. */
function textsOf(documents: unknown): string[] {
  if (!Array.isArray(documents)) throw invalid(`embedDocuments takes an array of strings, got ${kindOf(documents)}; nothing was sent`);
  const length = documents.length;
  const texts: string[] = [];
  for (let index = 0; index < length; index++) {
    const text: unknown = documents[index];
    if (typeof text !== 'string') throw invalid(`embedDocuments takes an array of strings; text ${index} is ${kindOf(text)}; nothing was sent`);
    texts.push(text);
  }
  return texts;
}

/** The model's own batch size when it has one (`OpenAIEmbeddings.batchSize`): one request per batch. */
function batchSizeOf(embeddings: object, total: number): number {
  const size: unknown = (embeddings as { batchSize?: unknown }).batchSize;
  return typeof size === 'number' && Number.isSafeInteger(size) && size > 0 ? size : total;
}

/** Marks a wrapper (a registered symbol: a wrapper from either module copy is known to the other). */
const WRAPPER = Symbol.for('agentpolicy.langchain.policyEmbeddings');

interface Wrapped {
  readonly embeddings: EmbeddingsInterface<unknown>;
  readonly session: PolicySession;
  readonly options: PolicyEmbeddingsOptions;
}

function wrappedBy(embeddings: object): Wrapped | undefined {
  const wrapped: unknown = (embeddings as Record<symbol, unknown>)[WRAPPER];
  return typeof wrapped === 'object' && wrapped !== null ? (wrapped as Wrapped) : undefined;
}

/**
 * An `Embeddings` that meters another under a session's budget. See {@link policyEmbeddings}.
 */
class PolicyEmbeddings<TOutput> extends Embeddings<TOutput> {
  private readonly embeddings: EmbeddingsInterface<TOutput>;
  private readonly session: PolicySession;
  private readonly options: PolicyEmbeddingsOptions;

  constructor(embeddings: EmbeddingsInterface<TOutput>, session: PolicySession, options: PolicyEmbeddingsOptions) {
    super({});
    this.embeddings = embeddings;
    this.session = session;
    this.options = options;
    const wrapped: Wrapped = Object.freeze({ embeddings, session, options });
    Object.defineProperty(this, WRAPPER, { value: wrapped });
  }

  /** Embeds the texts in the model's own batches, each one request reserved before any is sent. */
  override async embedDocuments(documents: string[]): Promise<TOutput[]> {
    const texts = textsOf(documents);
    if (texts.length === 0) return [];
    const size = batchSizeOf(this.embeddings, texts.length);
    const batches: string[][] = [];
    for (let start = 0; start < texts.length; start += size) batches.push(texts.slice(start, start + size));
    const requests = await this.reserve(batches, 'embedDocuments');
    // Every batch is waited for, failed or not, so the call ends with all of its spend recorded.
    const outcomes = await Promise.allSettled(requests.map((request, index) => request.run(() => this.embeddings.embedDocuments(batches[index]!))));
    const vectors: TOutput[] = [];
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') throw outcome.reason;
      vectors.push(...outcome.value);
    }
    return vectors;
  }

  /** Embeds one text, reserved before it is sent. */
  override async embedQuery(document: string): Promise<TOutput> {
    if (typeof document !== 'string') throw invalid(`embedQuery takes a string, got ${kindOf(document)}; nothing was sent`);
    const [request] = await this.reserve([document], 'embedQuery');
    return request!.run(() => this.embeddings.embedQuery(document));
  }

  /**
   * Reserves the worst case of every request of a call, all or none (core's `reserveModelCalls`), each described as
   * the openai adapter describes an embeddings request: the input, the model, no output. The texts are estimated as
   * given: the model may strip their newlines, which only makes what it sends smaller. When one is denied, the
   * policy error is thrown and nothing is sent.
   */
  private async reserve(prompts: ReadonlyArray<string | readonly string[]>, method: 'embedDocuments' | 'embedQuery'): Promise<EmbeddingRequest[]> {
    const info = modelInfoFromEmbeddings(this.embeddings);
    const model = this.options.model ?? info.model;
    const provider = this.options.provider ?? info.provider;
    const estimates = prompts.map(
      (prompt, index): ModelCallEstimate => ({
        model,
        ...(provider !== undefined ? { provider } : {}),
        prompt,
        maxOutputTokens: 0,
        metadata: {
          via: 'langchain',
          endpoint: 'embeddings',
          method,
          texts: typeof prompt === 'string' ? 1 : prompt.length,
          ...(prompts.length > 1 ? { batch: index + 1, batches: prompts.length } : {}),
        },
      }),
    );
    const reservations = await this.session.reserveModelCalls(estimates);
    const refused = reservations.find((reservation) => !reservation.allowed);
    if (refused) throw decisionError(refused.decision);
    return reservations.map((reservation, index) => new EmbeddingRequest(this.embeddings, this.session, estimates[index]!, reservation));
  }
}

/**
 * Puts a LangChain embeddings model (`OpenAIEmbeddings` and any other `Embeddings`) under a session's budget, and
 * returns the `Embeddings` to use in its place: vector stores, retrievers and indexing take it unchanged.
 *
 * - Every request is reserved at its worst case before anything is sent: `embedDocuments` in the model's own batches
 *   (`batchSize`), one reservation per batch, all made first; `embedQuery` as one. A call the budget cannot cover
 *   (or an unpriced model under a budget) throws {@link PolicyDeniedError} and sends nothing.
 * - Each request is charged what the provider reports (`usage.prompt_tokens` of the response, which
 *   `OpenAIEmbeddings` reads and then drops), else its estimate. A failed request is settled by core's one rule: a 4xx
 *   or a policy error charges nothing, anything else the estimate.
 * - Retries: the model's `caller` (LangChain's `AsyncCaller`, `maxRetries`) is governed, so each attempt is reserved
 *   and settled on its own, and a retry the budget cannot cover is refused before it is sent, ending the retries.
 *   From then on the model answers only through a wrapper: calling it directly throws `INVALID_ARGUMENT` and sends
 *   nothing.
 *
 * Texts that are not strings throw `INVALID_ARGUMENT` before anything is reserved or sent.
 *
 * @example
 * ```ts
 * const session = AgentPolicy.fromYaml('policy.yaml').session();
 * const embeddings = policyEmbeddings(new OpenAIEmbeddings({ model: 'text-embedding-3-small' }), session);
 * const store = new MemoryVectorStore(embeddings);
 * await store.addDocuments(docs); // each batch reserved, then charged its reported tokens
 * ```
 */
export function policyEmbeddings<TOutput = number[]>(
  embeddings: EmbeddingsInterface<TOutput>,
  session: PolicySession,
  options: PolicyEmbeddingsOptions = {},
): Embeddings<TOutput> {
  if (typeof session?.reserveModelCall !== 'function') throw invalid('policyEmbeddings needs a PolicySession: policyEmbeddings(embeddings, policy.session())');
  if (typeof embeddings !== 'object' || embeddings === null || typeof embeddings.embedDocuments !== 'function' || typeof embeddings.embedQuery !== 'function') {
    throw invalid('policyEmbeddings needs an Embeddings (an object with embedDocuments and embedQuery)');
  }
  for (const key of ['model', 'provider'] as const) {
    const value: unknown = options?.[key];
    if (value !== undefined && (typeof value !== 'string' || value.trim() === '')) throw invalid(`policyEmbeddings: options.${key} must be a non-empty string, got ${kindOf(value)}`);
  }
  const given: PolicyEmbeddingsOptions = {
    ...(options?.model !== undefined ? { model: options.model } : {}),
    ...(options?.provider !== undefined ? { provider: options.provider } : {}),
  };
  const wrapped = wrappedBy(embeddings);
  if (wrapped !== undefined) {
    // Wrapped again for its own session: the model is metered once, by one wrapper.
    if (wrapped.session === session) return new PolicyEmbeddings(wrapped.embeddings as EmbeddingsInterface<TOutput>, session, { ...wrapped.options, ...given });
    // For another session: both sessions meter the call, this one priced as the model the wrapper meters (and charged
    // its estimate: the reported usage is read where the request is sent, by the inner wrapper).
    const info = modelInfoFromEmbeddings(wrapped.embeddings);
    const model = given.model ?? wrapped.options.model ?? info.model;
    const provider = given.provider ?? wrapped.options.provider ?? info.provider;
    return new PolicyEmbeddings(embeddings, session, { model, ...(provider !== undefined ? { provider } : {}) });
  }
  governCaller(embeddings);
  return new PolicyEmbeddings(embeddings, session, given);
}
