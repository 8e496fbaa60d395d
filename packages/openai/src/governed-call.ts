import { randomUUID } from 'node:crypto';
import { AgentPolicyError, decisionError, withdrawAllow, type Metadata, type PolicySession, type Reservation } from '@agentpolicy/core';
import { HELPER_RUN, HelperRun } from './helper-runs.js';
import { observeStream, type StreamObserver } from './observe-stream.js';
import { audioDurations, describeRequest, type RequestSpec } from './request-spec.js';
import { SseParser, type SseEvent } from './sse-parser.js';
import { readTokenUsage, type ReadUsage } from './token-usage.js';
import { StreamToolCalls, TERMINAL_RESPONSE_EVENTS, toolCallsOfResult, toolInputOf, type ReturnedToolCall } from './tool-calls.js';
import { toolCost, type ToolCosts } from './tool-costs.js';
import { rememberWaiting, RUNS_TOOLS, TOOL_PARSERS, ToolParsers, type ParsedToolInput } from './tool-parsers.js';
import { ToolRuns } from './tool-runs.js';

/** The settings every governed request of one wrapped client shares. */
export interface GovernorSettings {
  readonly session: PolicySession;
  readonly provider: string;
  readonly checkNetwork: boolean;
  readonly checkToolCalls: boolean;
  /** The `toolParsers` option: parse functions of the caller's own loop, by tool name. */
  readonly toolParsers: ToolParsers | undefined;
  /** The `toolCosts` option: the declared cost of each returned tool call. */
  readonly toolCosts: ToolCosts | undefined;
  readonly metadata: Metadata;
}

/** The parts of the client's `FinalRequestOptions` that are read here. */
export interface RequestOptionsLike {
  method?: unknown;
  path?: unknown;
  body?: unknown;
  signal?: AbortSignal | null | undefined;
  maxRetries?: unknown;
  __metadata?: Record<string | symbol, unknown> | undefined;
}

type Phase = 'prepared' | 'sending' | 'body' | 'error-body' | 'waiting' | 'done';
type Outcome = 'release' | 'estimate' | { failedStatus: number } | { usage: ReadUsage; model: string | undefined };
type Json = Record<string, unknown>;

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
/** The statuses of a Responses response that did not complete. */
const UNCOMPLETED_STATUSES: ReadonlySet<string> = new Set(['failed', 'incomplete']);


const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function warn(error: unknown): void {
  process.emitWarning(`agentpolicy/openai: settling a reservation failed: ${(error as Error)?.message ?? String(error)}`);
}

/**
 * One logical request of a wrapped client, across all its retry attempts: the network check made before its first
 * attempt, and a budget reservation for each attempt, made before it is sent and settled once its outcome is known
 * (real usage, a 4xx that charges nothing, or the estimate when the attempt failed, was aborted or was abandoned
 * without usage). An attempt the client retries is settled by the same rule as a final one: the work behind a 5xx or
 * a dropped connection may have been done and billed.
 */
export class GovernedCall {
  readonly id = randomUUID();
  private attempts = 0;
  private phase: Phase = 'prepared';
  private latest: { usage: ReadUsage; model: string | undefined } | null = null;
  private errorOutcome: Outcome = 'estimate';
  /** The policy error that refused a redirect hop of this call; a retry of the call throws it before sending. */
  refusal: AgentPolicyError | undefined;
  private readonly onAbort = (): void => this.aborted();
  /**
   * The declared costs (`toolCosts`) the allowed tool calls of this response hold. A stream's calls are checked as
   * each completes: if a later one is refused, the response is, and these are given back.
   */
  private readonly heldToolCosts: Reservation[] = [];
  /**
   * The input each arguments text of a tool was parsed into, in this response: a call the model repeats with the
   * same arguments is decided on the same value, the one the client's parse is handed for all of them.
   */
  private readonly parsedInputs = new Map<string, ParsedToolInput | undefined>();
  /** The cost each streamed Responses item's call holds, by item id: an item handed out again replaces its call. */
  private readonly heldByItem = new Map<string, Reservation>();
  /**
   * A Responses response that did not complete (`failed` / `incomplete`, or a stream that ended without its terminal
   * event): openai 6 and 7 hand its calls to the caller built differently, so its calls are decided (a deny refuses
   * it) but keep no allow or held cost: one the caller runs anyway is decided anew, and charged then.
   */
  private uncompleted = false;
  private readonly settings: GovernorSettings;
  private readonly spec: RequestSpec;
  private reservation: Reservation | null;
  /** What each attempt reserves (null for a request that is not token-billed). */
  private readonly estimate: Parameters<PolicySession['reserveModelCall']>[0] | null;
  /** The attempt just failed was settled and the client retries it: the next attempt reserves anew. */
  private retrying = false;
  private readonly options: RequestOptionsLike;
  private readonly maxRetries: number;
  private readonly prepared: Map<string, GovernedCall>;

  private constructor(
    settings: GovernorSettings,
    spec: RequestSpec,
    reservation: Reservation | null,
    estimate: Parameters<PolicySession['reserveModelCall']>[0] | null,
    options: RequestOptionsLike,
    maxRetries: number,
    prepared: Map<string, GovernedCall>,
  ) {
    this.settings = settings;
    this.spec = spec;
    this.reservation = reservation;
    this.estimate = estimate;
    this.options = options;
    this.maxRetries = maxRetries;
    this.prepared = prepared;
  }

  /**
   * Decides a new request before anything is sent: the network policy on its URL, then (for token-billed
   * endpoints) a reservation of its worst-case cost. A denial throws the agentpolicy error.
   */
  static async open(
    settings: GovernorSettings,
    url: string,
    options: RequestOptionsLike,
    maxRetries: number,
    prepared: Map<string, GovernedCall>,
  ): Promise<GovernedCall> {
    const { session } = settings;
    const spec = describeRequest(options.method, options.path, options.body);
    const metadata: Metadata = { ...settings.metadata, via: 'openai', endpoint: spec.endpoint };
    if (settings.checkNetwork) {
      const decision = await session.checkHttp(url, { method: String(options.method ?? 'get').toUpperCase(), metadata });
      if (decision.decision !== 'allow') throw decisionError(decision);
    }
    let reservation: Reservation | null = null;
    let estimate: Parameters<PolicySession['reserveModelCall']>[0] | null = null;
    const metered = spec.metered;
    if (metered) {
      const { kind: _kind, stream, audioFiles, audio, ...call } = metered;
      estimate = {
        ...call,
        provider: settings.provider,
        ...(audioFiles && audioFiles.length > 0 ? { audio: await audioDurations(audioFiles) } : audio ? { audio } : {}),
        metadata: { ...metadata, stream },
      };
      reservation = await session.reserveModelCall(estimate);
      if (!reservation.allowed) throw decisionError(reservation.decision);
    }
    return new GovernedCall(settings, spec, reservation, estimate, options, maxRetries, prepared);
  }

  /** True once no further attempt belongs to this call (its reservation is settled and no retry is under way). */
  get finished(): boolean {
    return this.reservation !== null && !this.retrying && (this.phase === 'done' || this.reservation.settled);
  }

  /**
   * Before a retry: the failed attempt was settled on its own, so this one reserves its estimate again. A budget that
   * cannot cover it refuses it (the agentpolicy error is thrown before anything is sent, and the client gives up).
   */
  async reserveRetry(): Promise<void> {
    if (!this.retrying || this.estimate === null) return;
    this.retrying = false;
    const estimate = this.estimate;
    const reservation = await this.settings.session.reserveModelCall({ ...estimate, metadata: { ...estimate.metadata, attempt: this.attempts + 1 } });
    this.reservation = reservation;
    if (!reservation.allowed) {
      this.phase = 'done';
      this.refusal = decisionError(reservation.decision);
      throw this.refusal;
    }
  }

  /**
   * Called before each attempt (the first and every retry): the call waits in `prepared`, by id, for the governed
   * fetch to take it.
   */
  beginAttempt(): void {
    this.attempts++;
    this.phase = 'prepared';
    this.prepared.set(this.id, this);
    this.options.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Sends one attempt through `inner` and observes its response. */
  async send(inner: typeof globalThis.fetch, input: Parameters<typeof globalThis.fetch>[0], init: RequestInit | undefined): Promise<Response> {
    const signal = this.options.signal;
    if (signal?.aborted) {
      this.aborted();
      throw abortError(signal);
    }
    this.phase = 'sending';
    // Redirects are followed hop by hop, each hop checked like the first (the first was checked when the call opened).
    if (this.settings.checkNetwork) inner = this.settings.session.createFetch({ fetch: inner, firstHopChecked: true });
    if (!this.reservation) {
      try {
        return await inner(input, init);
      } catch (error) {
        if (AgentPolicyError.isInstance(error)) this.refusal = error;
        throw error;
      } finally {
        this.finish('release');
      }
    }
    let response: Response;
    try {
      response = await inner(input, init);
    } catch (error) {
      // A redirect hop the policy refused: nothing reached the refused host and the 3xx billed nothing.
      if (AgentPolicyError.isInstance(error)) {
        this.refusal = error;
        this.finish('release');
      } else this.attemptFailed();
      throw error;
    }
    if (!response.ok) return this.observeError(response);
    this.phase = 'body';
    if (!response.body) {
      this.finish('estimate');
      return response;
    }
    const type = response.headers.get('content-type') ?? '';
    const observer = type.includes('text/event-stream')
      ? this.sseObserver(init?.signal ?? undefined)
      : type.includes('json')
        ? this.jsonObserver()
        : this.opaqueObserver();
    return rebuild(response, observeStream(response.body, observer));
  }

  // ---- outcomes -------------------------------------------------------------------------------------------------

  private finish(outcome: Outcome): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.retrying = false;
    this.prepared.delete(this.id);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.settle(outcome);
  }

  /** Settles the current attempt's reservation (once). */
  private settle(outcome: Outcome): void {
    const reservation = this.reservation;
    if (!reservation || reservation.settled) return;
    let settled: Promise<unknown>;
    if (outcome === 'release') settled = reservation.release();
    else if (outcome === 'estimate') settled = reservation.commit();
    else if ('failedStatus' in outcome) settled = reservation.fail({ status: outcome.failedStatus });
    else settled = reservation.commit({ ...outcome.usage, ...(outcome.model ? { model: outcome.model } : {}) });
    settled.catch(warn);
  }

  /**
   * The caller's signal aborted. An attempt not sent yet charges nothing (an earlier failed attempt was settled when
   * it failed); while the response was being read, the usage seen so far or else the estimate is charged. (A request
   * being sent fails, and {@link attemptFailed} settles it.)
   */
  private aborted(): void {
    if (this.phase === 'prepared') this.finish('release');
    else if (this.phase === 'waiting' || this.phase === 'body') this.commitLatest();
    else if (this.phase === 'error-body') this.finish(this.errorOutcome);
  }

  /**
   * A transport failure: the client retries it while retries remain (and the body can be resent). The request may
   * have reached the model before the connection failed, so the attempt is charged its estimate either way.
   */
  private attemptFailed(): void {
    const retried = this.options.signal?.aborted !== true && this.attempts <= this.maxRetries && this.options.__metadata?.['hasStreamingBody'] !== true;
    if (retried) this.retryAfter('estimate');
    else this.finish('estimate');
  }

  /** The client retries the attempt just failed: it is settled now, and the retry reserves anew. */
  private retryAfter(outcome: Outcome): void {
    this.settle(outcome);
    this.phase = 'waiting';
    if (this.estimate !== null) this.retrying = true;
  }

  /**
   * The client reads the body of an error it gives up on and cancels the body of one it retries, so the body tells
   * which it was. A final error is settled by core's rule (`Reservation.fail`: a 4xx charges nothing, a 5xx the
   * estimate, since a gateway error may come after the model did the work).
   */
  private observeError(response: Response): Response {
    const final: Outcome = { failedStatus: response.status };
    // A status that cannot carry a body (304) is never retried: it is final now.
    if (NULL_BODY_STATUSES.has(response.status)) {
      this.finish(final);
      return response;
    }
    this.phase = 'error-body';
    this.errorOutcome = final;
    const source = response.body ?? new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });
    return rebuild(
      response,
      observeStream(source, {
        chunk: () => undefined,
        end: () => this.finish(final),
        abandoned: (how) => {
          if (how === 'cancel' && this.phase === 'error-body') this.retryAfter(final);
          else this.finish(final);
        },
      }),
    );
  }

  /** The model the usage is priced as: the response's (often a dated name) when it has a price, else the request's. */
  private pricedModel(model: unknown, usage: ReadUsage): string | undefined {
    if (typeof model !== 'string' || model === '' || model === this.spec.metered?.model) return undefined;
    const price = this.settings.session.priceUsage({ model, provider: this.settings.provider, ...usage });
    return price.ok ? model : undefined;
  }

  private commitUsage(usage: ReadUsage, model: unknown): void {
    const billed = this.billedAs(usage);
    this.finish(billed ? { usage: billed, model: this.pricedModel(model, usage) } : 'estimate');
  }

  /**
   * The usage as it is billed, or null when it is no report of what the call cost (the estimate is charged). An
   * embeddings call reads its input and an Images API call its prompt and makes its images, so a side of theirs
   * counted 0 (or not given) is no report: it is charged at the estimate. An image model priced per image is
   * billed by its images, not by tokens. What the Images API reports as output is image tokens (priced at the
   * model's image rate where it has one), even when the response does not break its output down.
   */
  private billedAs(usage: ReadUsage): ReadUsage | null {
    const kind = this.spec.metered?.kind;
    if (kind === 'embeddings') return usage.inputTokens > 0 ? usage : null;
    if (kind !== 'images') return usage;
    const estimate = this.reservation?.decision.action.metadata;
    const input = estimate?.['estimatedInputTokens'];
    const output = estimate?.['maxOutputTokens'];
    if (typeof input !== 'number' || typeof output !== 'number') return null;
    const inputTokens = usage.inputTokens > 0 ? usage.inputTokens : input;
    const outputTokens = usage.outputTokens > 0 ? usage.outputTokens : output;
    const outputImageTokens = usage.outputTokens > 0 && usage.outputImageTokens !== undefined ? usage.outputImageTokens : outputTokens;
    return { ...usage, inputTokens, outputTokens, outputImageTokens };
  }

  private commitLatest(): void {
    if (this.latest) this.finish(this.latest);
    else this.finish('estimate');
  }

  // ---- tool calls -----------------------------------------------------------------------------------------------

  private async checkToolCalls(calls: ReturnedToolCall[]): Promise<Error | undefined> {
    if (!this.settings.checkToolCalls || calls.length === 0) return undefined;
    const { session } = this.settings;
    // A helper run (runTools, parse, stream) that knows its tools' parse functions, or the caller's toolParsers:
    // calls to those tools are decided on the value the tool function gets, the rest on their JSON arguments.
    const found = this.options.__metadata?.[TOOL_PARSERS];
    const run = found instanceof ToolParsers ? found : undefined;
    const own = this.settings.toolParsers;
    const runs = this.options.__metadata?.[RUNS_TOOLS];
    const toolRuns = runs instanceof ToolRuns ? runs : undefined;
    let failure: Error | undefined;
    // Allowed calls holding their declared cost: if the response is refused, they never run on these allows.
    const held = this.heldToolCosts;
    // A stream helper that then rejects the response (see HelperRun) gives them back too.
    const helperRun = this.options.__metadata?.[HELPER_RUN];
    if (helperRun instanceof HelperRun) helperRun.holds(() => this.giveBackHeld(session, held));
    for (const call of calls) {
      // The item came again with other arguments: the caller gets those, never the earlier call, whose hold is given back.
      const replaced = call.item === undefined ? undefined : this.heldByItem.get(call.item);
      if (replaced !== undefined && !replaced.settled) await withdrawAllow(session, replaced.decision, replaced);
      const parsedKey = `${call.name}\u0000${call.arguments}`;
      let parsed = this.parsedInputs.get(parsedKey);
      if (!this.parsedInputs.has(parsedKey)) {
        parsed = (await run?.inputOf(session, call)) ?? (await own?.inputOf(session, call));
        this.parsedInputs.set(parsedKey, parsed);
      }
      // parse() and stream() throw the parse's error when the client parses this call: the caller never gets the
      // response, so the costs its allowed calls hold are given back then (runTools() tells the model and runs on).
      if (parsed?.rejected && run !== undefined && toolRuns === undefined) run.onRejectionHandedOut(call, () => void this.giveBackHeld(session, held).catch(warn));
      const input = parsed === undefined ? toolInputOf(call) : parsed.input;
      const declared = toolCost(this.settings.toolCosts, call.name, input);
      const check = {
        ...(input !== undefined ? { input } : {}),
        ...(declared.cost !== undefined ? { cost: declared.cost } : {}),
        ...(call.id ? { idempotencyKey: call.id } : {}),
        metadata: {
          ...this.settings.metadata,
          via: 'openai',
          endpoint: this.spec.endpoint,
          toolCallId: call.id,
          ...(parsed?.rejected ? { argumentsRejected: true } : {}),
          ...(declared.error !== undefined ? { costError: declared.error } : {}),
        },
      };
      // A call with a cost is reserved, so the cost is held from the decision until the call has run: the loop's
      // session.runTool with the same key and cost takes this decision and its reservation (one record, one charge).
      const reservation = declared.cost === undefined ? undefined : await session.reserveAction({ type: 'tool', name: call.name, ...check });
      const decision = reservation ? reservation.decision : await session.checkTool(call.name, check);
      if (parsed !== undefined) rememberWaiting(session, call, parsed, decision.decision === 'require_approval');
      if (decision.decision !== 'allow') failure ??= decisionError(decision);
      // runTools() runs the function itself: its wrapped function takes the call's one execution when it runs (a halt or
      // a policy change before then stops it), so the same call id and arguments in a later turn are decided (and
      // counted) again, not run on this allow. A function it could not wrap has its allow taken now, and its cost
      // charged (its outcome is not seen).
      else if (toolRuns?.runs(call.name)) {
        toolRuns.decided(session, call, input, decision, reservation);
        if (reservation !== undefined) held.push(reservation);
      } else if (toolRuns !== undefined) {
        if (await session.claim(decision)) await reservation?.commit();
        else failure ??= new AgentPolicyError('DECISION_USED', `agentpolicy: tool call ${JSON.stringify(call.id)} of ${JSON.stringify(call.name)} is being run more than once at the same time`);
      } else if (this.uncompleted) await withdrawAllow(session, decision, reservation);
      else if (reservation !== undefined) held.push(reservation);
      if (reservation !== undefined && call.item !== undefined) this.heldByItem.set(call.item, reservation);
    }
    if (failure !== undefined) await this.giveBackHeld(session, held);
    return failure;
  }

  /** The response did not complete: what its calls hold so far is given back, and its later calls keep nothing. */
  private async giveBackUncompleted(): Promise<void> {
    this.uncompleted = true;
    await this.giveBackHeld(this.settings.session, this.heldToolCosts);
  }

  /**
   * The caller never gets the calls of a refused response: the allowed ones that hold a cost are taken (so a keyed
   * repeat is decided anew, never run on them) and their money given back.
   */
  private async giveBackHeld(session: PolicySession, held: readonly Reservation[]): Promise<void> {
    for (const reservation of held) if (!reservation.settled) await withdrawAllow(session, reservation.decision, reservation);
  }

  // ---- body observers -------------------------------------------------------------------------------------------

  private jsonObserver(): StreamObserver {
    const chunks: Uint8Array[] = [];
    return {
      chunk: (bytes) => void chunks.push(bytes),
      end: () => {
        let result: unknown;
        try {
          result = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          result = undefined;
        }
        const usage = isObject(result) ? readTokenUsage(result['usage']) : null;
        if (usage && isObject(result)) this.commitUsage(usage, result['model']);
        else this.finish('estimate');
        if (isObject(result)) this.recordSvgUsage(result['svg_usage']);
        if (isObject(result) && result['object'] === 'response' && UNCOMPLETED_STATUSES.has(String(result['status']))) this.uncompleted = true;
        return this.checkToolCalls(toolCallsOfResult(result));
      },
      abandoned: () => this.finish('estimate'),
    };
  }

  /**
   * SVG output is written by a second model, billed apart from the image (`svg_usage`): spend that happened, recorded
   * under that model. (Under a budget core refuses SVG output before it is sent: its cost has no upper bound.)
   */
  private recordSvgUsage(svg: unknown): void {
    if (!isObject(svg) || typeof svg['model'] !== 'string') return;
    const input = Number(svg['input_tokens']);
    const output = Number(svg['output_tokens']);
    const reasoning = Number(svg['reasoning_tokens']);
    const total = Number(svg['total_tokens']);
    if (!Number.isSafeInteger(input) || !Number.isSafeInteger(output) || input < 0 || output < 0) return;
    // Reasoning is billed as output: counted on top unless the total says output already holds it.
    const extra = Number.isSafeInteger(reasoning) && reasoning > 0 && total !== input + output ? reasoning : 0;
    const provider = this.settings.provider;
    this.settings.session
      .recordUsage({ model: svg['model'], ...(provider !== undefined ? { provider } : {}), inputTokens: input, outputTokens: output + extra }, { metadata: { via: 'openai', endpoint: 'images', part: 'svg author' } })
      .catch((error: unknown) => process.emitWarning(`agentpolicy: could not record the SVG authoring usage: ${(error as Error)?.message ?? String(error)}`));
  }

  /** `signal`: the fetch's own, which the client aborts when the caller breaks out of a stream early. */
  private sseObserver(signal: AbortSignal | undefined): StreamObserver {
    const parser = new SseParser();
    const tools = new StreamToolCalls();
    let refused: Error | undefined;
    // The stream's last event was read (chat `[DONE]`, a Responses terminal event): the caller has the whole response.
    let whole = false;
    // A Responses stream (it began with `response.created`).
    let responses = false;
    // Usage is read from every event; tool calls are checked until one is refused (the stream then fails with it
    // once this chunk's events have been read).
    const onEvents = async (events: SseEvent[]): Promise<Error | undefined> => {
      for (const event of events) {
        if (event.data === '[DONE]') {
          whole = true;
          this.commitLatest();
          refused ??= await this.checkToolCalls(tools.flush());
          continue;
        }
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch {
          continue;
        }
        if (!isObject(data)) continue;
        if (typeof data['type'] === 'string' && TERMINAL_RESPONSE_EVENTS.has(data['type'])) {
          whole = true;
          if (data['type'] !== 'response.completed') await this.giveBackUncompleted();
        }
        if (data['type'] === 'response.created') responses = true;
        this.seeUsage(data);
        const calls = tools.see(data);
        if (!refused) refused = await this.checkToolCalls(calls);
      }
      return refused;
    };
    return {
      chunk: (bytes) => onEvents(parser.push(bytes)),
      // A tool call was refused mid-stream: read on (unseen by the caller) until the usage arrives, so the call is
      // charged what it really cost rather than its estimate.
      drain: async (read) => {
        while (this.phase !== 'done') {
          const result = await read();
          await onEvents(result.done ? parser.end() : parser.push(result.value));
          if (result.done) break;
        }
      },
      end: async () => {
        await onEvents(parser.end());
        if (responses && !whole) await this.giveBackUncompleted();
        refused ??= await this.checkToolCalls(tools.flush());
        this.commitLatest();
        return refused;
      },
      // Broken off or aborted by the caller (the client aborts the request then), cut before its last event, or failed
      // under the reader (openai 6 reads on past the last event and fails with the cut): the caller never gets this
      // response whole, so the costs its allowed calls hold are given back (a call run later anyway is decided anew),
      // as for a refused response. The client also cancels the body, without aborting, once it has read the last
      // event: that response is whole, and its calls keep what they hold until they run.
      abandoned: (how) => {
        this.commitLatest();
        const giveBack = (): void => void this.giveBackHeld(this.settings.session, this.heldToolCosts).catch(warn);
        if (!whole || how === 'error' || signal?.aborted === true || this.options.signal?.aborted === true) return giveBack();
        // Cancelled after the last event was read from the server, but not necessarily by the caller: openai 6 cancels
        // the body first and aborts the request after it when the caller breaks out of a stream whose last events
        // arrived in the same chunk as the ones the caller read. An abort that follows is such a break-off. The fetch's
        // own signal lives as long as this request (the caller's may serve many, and would keep a listener for each).
        (signal ?? this.options.signal)?.addEventListener('abort', giveBack, { once: true });
      },
    };
  }

  /** Takes usage as soon as a stream event carrying it is parsed. */
  private seeUsage(data: Json): void {
    const type = typeof data['type'] === 'string' ? data['type'] : '';
    if (isObject(data['response']) && TERMINAL_RESPONSE_EVENTS.has(type)) {
      const usage = readTokenUsage(data['response']['usage']);
      if (usage) this.commitUsage(usage, data['response']['model']);
      return;
    }
    const usage = readTokenUsage(data['usage']);
    if (!usage) return;
    const billed = this.billedAs(usage);
    this.latest = billed ? { usage: billed, model: this.pricedModel(data['model'], usage) } : null;
    // Chat and completion chunks: the final usage chunk has no choices. Any other event with usage is final
    // (image generation, transcription done).
    const chunk = data['object'] === 'chat.completion.chunk' || data['object'] === 'text_completion';
    if (!chunk || (Array.isArray(data['choices']) && data['choices'].length === 0)) this.commitLatest();
  }

  private opaqueObserver(): StreamObserver {
    return { chunk: () => undefined, end: () => this.finish('estimate'), abandoned: () => this.finish('estimate') };
  }
}

/** The same response with another body; status, headers and url are kept. */
function rebuild(response: Response, body: ReadableStream<Uint8Array>): Response {
  const copy = new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  Object.defineProperty(copy, 'url', { value: response.url, enumerable: true });
  Object.defineProperty(copy, 'redirected', { value: response.redirected, enumerable: true });
  return copy;
}
