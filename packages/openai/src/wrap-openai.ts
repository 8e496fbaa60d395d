import { decisionError, type Metadata, type PolicySession } from '@agentpolicy/core';
import { GovernedCall, type GovernorSettings, type RequestOptionsLike } from './governed-call.js';
import { normalizePath } from './request-spec.js';
import { readToolCosts, type ToolCosts } from './tool-costs.js';
import { governParsingHelpers, ToolParsers, type ToolArgumentsParser } from './tool-parsers.js';

/** Options of {@link wrapOpenAI}. */
export interface WrapOpenAIOptions {
  /**
   * Check the network policy on the request's URL before every request. Default `true`: a policy with a network
   * allow-list must then list the API host (`api.openai.com`, or your `baseURL`'s host).
   */
  checkNetwork?: boolean;
  /** Provider id used to price models from the catalog. Default `'openai'`. */
  provider?: string;
  /**
   * Ask streamed chat completions for usage (`stream_options.include_usage: true`) unless the caller set
   * `include_usage` itself, so the real cost of a stream is known. The stream then ends with one extra chunk whose
   * `choices` is empty. Default `true`; without usage a stream is charged its estimate.
   */
  includeStreamUsage?: boolean;
  /**
   * Check every tool call the model returns (chat `tool_calls`, Responses `function_call` / `custom_tool_call`
   * items) against the tool policy, keyed by the call's id. A call that is not allowed makes the request reject
   * (a stream: fail) with the agentpolicy error, before the caller can run the tool; the model call's cost is
   * recorded all the same. Default `false`.
   */
  checkToolCalls?: boolean;
  /**
   * With `checkToolCalls`: the parse function your own agent loop runs on a call's JSON `arguments` before the
   * tool, by tool name (for example `(args) => schema.parse(JSON.parse(args))`), so calls to that tool are decided
   * on the value the tool gets (zod defaults and transforms applied) rather than on the JSON. The helpers that parse
   * themselves (`runTools()`, `parse()`, `stream()` with `zodFunction` tools or a function's `parse`) need none.
   * Your loop parses again: the function must give the same value each time (no default from the clock or a random
   * id), or the tool runs on a value that was not decided. Arguments it rejects are decided as sent.
   */
  toolParsers?: Readonly<Record<string, ToolArgumentsParser>>;
  /**
   * With `checkToolCalls`: the declared cost of each returned call, by tool name (`{ web_search: 0.005 }`) or as a
   * function of the call (`({ name, args }) => usd`). The call is decided with its cost and the cost is reserved then,
   * so a call the budget cannot cover is refused before it runs. `runTools()` settles it when the client runs the
   * function (by core's rule for a function that throws); your own loop runs the call with `session.runTool` and
   * the same cost, which takes that allow and its reservation (one decision, one charge).
   */
  toolCosts?: ToolCosts;
  /** Extra metadata recorded with every decision this client makes. */
  metadata?: Metadata;
}

/**
 * The structural shape of an `openai` client (`OpenAI`, `AzureOpenAI` or a subclass) that {@link wrapOpenAI}
 * needs. Any client of openai 6 or 7 fits.
 */
export interface OpenAIClientLike {
  baseURL: string;
  maxRetries: number;
  withOptions(options: { fetch?: unknown }): unknown;
}

type Fetch = typeof globalThis.fetch;

/** The protected and private members of the client used here; checked against openai 6 and 7. */
interface ClientInternals {
  maxRetries: number;
  fetch?: Fetch;
  prepareOptions(options: RequestOptionsLike): Promise<void>;
  prepareRequest(request: RequestInit, context: { url: string; options: RequestOptionsLike }): Promise<void>;
  withOptions(options: Record<string, unknown>): ClientInternals;
  [GOVERNED]?: Governance;
}

interface Governance {
  readonly context: Context;
  /** The fetch this instance's governed fetch delegates to. */
  readonly inner: Fetch;
}

interface Context {
  readonly settings: GovernorSettings;
  readonly includeStreamUsage: boolean;
  /** The class's own `withOptions`, used to clone without going through a governed override. */
  readonly withOptions: ClientInternals['withOptions'];
  /** Calls by request options object: one call for all the attempts of a request. */
  readonly calls: WeakMap<object, GovernedCall>;
  /** Calls whose current attempt has been prepared and not yet sent, by id (the header the fetch reads). */
  readonly prepared: Map<string, GovernedCall>;
}

const GOVERNED = Symbol.for('agentpolicy.openai.governed');
const CALL_KEY = Symbol.for('agentpolicy.openai.call');
/** Carries a call's id from `prepareRequest` to the governed fetch, which removes it before sending. */
const CALL_HEADER = 'x-agentpolicy-call';

/**
 * Returns a governed copy of an `openai` client. The original client is left untouched. Every request of the
 * copy (its resources, the `stream()` / `runTools()` helpers, retries, and clients made from it with
 * `withOptions()`) goes through the session:
 *
 * - before it is sent: the network policy on its URL and, for token-billed endpoints (chat completions, Responses,
 *   embeddings, legacy completions, images, audio), a budget reservation of its worst-case cost. A denial rejects
 *   the call with the agentpolicy error (`PolicyDeniedError` / `ApprovalRequiredError`), once, with no request sent;
 * - every redirect hop: checked against the network policy like `session.fetch` does, before it is requested. A
 *   refused hop fails the attempt (the client reports it as a connection error whose `cause` is the policy error,
 *   see `findPolicyError`) and a retry of it throws the policy error itself, sending nothing;
 * - after the response: the real cost from its `usage`, taken as soon as it is parsed (streams included), priced
 *   by core. A request that fails, is aborted, or a stream abandoned before its usage arrived, is charged its
 *   estimate; a 4xx error charges nothing; retries charge once.
 *
 * @example
 * ```ts
 * import OpenAI from 'openai';
 * import { AgentPolicy } from '@agentpolicy/core';
 * import { wrapOpenAI } from '@agentpolicy/openai';
 *
 * const session = new AgentPolicy({ budget: 1, allowedDomains: ['api.openai.com'] }).session();
 * const openai = wrapOpenAI(new OpenAI(), session);
 * const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
 * console.log(session.report().spent);
 * ```
 */
export function wrapOpenAI<Client extends OpenAIClientLike>(client: Client, session: PolicySession, options: WrapOpenAIOptions = {}): Client {
  const source = client as unknown as ClientInternals;
  if (typeof source?.withOptions !== 'function' || typeof source.prepareOptions !== 'function' || typeof source.prepareRequest !== 'function') {
    throw new TypeError('wrapOpenAI: expected a client of the `openai` package (OpenAI, AzureOpenAI or a subclass)');
  }
  if (typeof session?.reserveModelCall !== 'function') throw new TypeError('wrapOpenAI: expected a PolicySession as the second argument');
  const toolCosts = readToolCosts(options.toolCosts);
  if (toolCosts !== undefined && options.checkToolCalls !== true) {
    throw new TypeError('wrapOpenAI: toolCosts declares what returned tool calls cost, which only checkToolCalls: true checks');
  }
  const governed = source[GOVERNED];
  const context: Context = {
    settings: {
      session,
      provider: options.provider ?? 'openai',
      checkNetwork: options.checkNetwork ?? true,
      checkToolCalls: options.checkToolCalls ?? false,
      toolParsers: ToolParsers.fromOptions(options.toolParsers),
      toolCosts,
      metadata: options.metadata ?? {},
    },
    includeStreamUsage: options.includeStreamUsage ?? true,
    // Wrapping a governed client governs its underlying client afresh, under this session only.
    withOptions: governed ? governed.context.withOptions : source.withOptions,
    calls: new WeakMap(),
    prepared: new Map(),
  };
  const inner = governed ? governed.inner : (source.fetch ?? globalThis.fetch);
  return governedClone(source, context, inner) as unknown as Client;
}

function governedClone(from: ClientInternals, context: Context, inner: Fetch, more: Record<string, unknown> = {}): ClientInternals {
  const clone = context.withOptions.call(from, { ...azureOptions(from), ...more, fetch: governedFetch(context, inner) });
  const prepareOptions = clone.prepareOptions;
  const prepareRequest = clone.prepareRequest;
  clone.prepareOptions = async function (this: ClientInternals, requestOptions) {
    await prepareOptions.call(this, requestOptions);
    if (context.includeStreamUsage) requestStreamUsage(requestOptions);
  };
  clone.prepareRequest = async function (this: ClientInternals, request, info) {
    await prepareRequest.call(this, request, info);
    await gate(this, context, request, info.url, info.options);
  };
  // A client made from this one with withOptions() is governed the same way (a fetch passed in is wrapped too).
  clone.withOptions = function (this: ClientInternals, changes: Record<string, unknown> = {}) {
    const next = typeof changes['fetch'] === 'function' ? (changes['fetch'] as Fetch) : inner;
    return governedClone(this, context, next, changes);
  };
  // Tool calls of the parsing helpers are decided on the value their tool's parse gives (what the tool runs with).
  if (context.settings.checkToolCalls) governParsingHelpers(clone);
  Object.defineProperty(clone, GOVERNED, { value: { context, inner } satisfies Governance });
  return clone;
}

/**
 * An `AzureOpenAI` client's own construction options. openai 6's `withOptions()` drops them (the clone then fails
 * for want of an API version, or loses its deployment); openai 7 carries them itself, the same values.
 */
function azureOptions(client: ClientInternals): Record<string, unknown> {
  const azure = client as { apiVersion?: unknown; deploymentName?: unknown };
  if (typeof azure.apiVersion !== 'string' || azure.apiVersion === '' || !('deploymentName' in azure)) return {};
  return { apiVersion: azure.apiVersion, ...(typeof azure.deploymentName === 'string' ? { deployment: azure.deploymentName } : {}) };
}

/** Chat / completion streams get `stream_options.include_usage` unless the caller set it (the caller's body is not mutated). */
function requestStreamUsage(options: RequestOptionsLike): void {
  if (String(options.method).toLowerCase() !== 'post') return;
  const route = normalizePath(options.path);
  if (route !== 'chat/completions' && route !== 'completions') return;
  const body = options.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body) || (typeof FormData !== 'undefined' && body instanceof FormData)) return;
  const params = body as Record<string, unknown>;
  if (params['stream'] !== true) return;
  const streamOptions = params['stream_options'];
  if (streamOptions !== undefined && streamOptions !== null && (typeof streamOptions !== 'object' || 'include_usage' in streamOptions)) return;
  options.body = { ...params, stream_options: { ...(streamOptions as Record<string, unknown> | null | undefined), include_usage: true } };
}

/**
 * Runs before every attempt, after the request is built and before it is sent. The first attempt of a request opens
 * its call (network check and budget reservation; a denial throws here, which the client neither wraps nor
 * retries); a retry continues the same call and reserves its own estimate (the failed attempt was settled). The
 * call's id travels to the governed fetch in a header.
 */
async function gate(client: ClientInternals, context: Context, request: RequestInit, url: string, options: RequestOptionsLike): Promise<void> {
  // An already aborted request is never sent: the client throws its abort error right after this hook.
  if (options.signal?.aborted) return;
  const metadata = options.__metadata;
  let call = context.calls.get(options) ?? (metadata?.[CALL_KEY] instanceof GovernedCall ? metadata[CALL_KEY] : undefined);
  // The client retries a failed attempt; one whose redirect the policy refused is not sent again.
  if (call?.refusal) throw call.refusal;
  if (!call || call.finished) {
    const maxRetries = typeof options.maxRetries === 'number' && options.maxRetries >= 0 ? Math.floor(options.maxRetries) : client.maxRetries;
    call = await GovernedCall.open(context.settings, url, options, maxRetries, context.prepared);
    context.calls.set(options, call);
    // Kept in the request metadata too, which the client carries into a re-built options object (token refresh).
    options.__metadata = { ...metadata, [CALL_KEY]: call };
  } else await call.reserveRetry();
  call.beginAttempt();
  setHeader(request, CALL_HEADER, call.id);
}

function setHeader(request: RequestInit, name: string, value: string): void {
  if (request.headers instanceof Headers) request.headers.set(name, value);
  else request.headers = { ...(request.headers as Record<string, string> | undefined), [name]: value };
}

/** Reads and removes the call header, whatever form the headers take. */
function takeHeader(init: RequestInit | undefined, name: string): string | null {
  const headers = init?.headers;
  if (headers instanceof Headers) {
    const value = headers.get(name);
    headers.delete(name);
    return value;
  }
  if (Array.isArray(headers)) {
    const index = headers.findIndex(([key]) => key?.toLowerCase() === name);
    if (index === -1) return null;
    const [entry] = headers.splice(index, 1);
    return entry?.[1] ?? null;
  }
  if (headers && typeof headers === 'object') {
    const record = headers as Record<string, string>;
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    if (key === undefined) return null;
    const value = record[key] ?? null;
    delete record[key];
    return value;
  }
  return null;
}

/**
 * The fetch the governed client sends with. A request prepared by {@link gate} is sent and its response observed
 * by its call. Any other request through this fetch (the client's own token exchange, say) is checked against
 * the network policy only.
 */
function governedFetch(context: Context, inner: Fetch): Fetch {
  const fetch = async (input: Parameters<Fetch>[0], init?: RequestInit): Promise<Response> => {
    const id = takeHeader(init, CALL_HEADER);
    const call = id === null ? undefined : context.prepared.get(id);
    if (call) {
      context.prepared.delete(call.id);
      return call.send(inner, input, init);
    }
    if (context.settings.checkNetwork) {
      // A URL or Request object is read once, into the Request that is sent: what is decided is what goes out.
      const sent = typeof input === 'string' ? undefined : new Request(input, init);
      const url = sent === undefined ? (input as string) : sent.url;
      const method = sent === undefined ? (init?.method ?? 'GET') : sent.method;
      const decision = await context.settings.session.checkHttp(url, {
        method: method.toUpperCase(),
        metadata: { ...context.settings.metadata, via: 'openai' },
      });
      if (decision.decision !== 'allow') throw decisionError(decision);
      if (sent !== undefined) return inner(sent);
    }
    return inner(input, init);
  };
  return fetch as Fetch;
}
