/**
 * A model-based fuzz of the callback handler through real LangChain runnables: a chat model (a `BaseChatModel`
 * subclass that answers, streams, fails or hangs as each prompt says), real `tool()`s, plain `invoke`, `.withConfig`,
 * `RunnableSequence`, `.batch`, `.withRetry`, `.stream` (read whole, cut by the model, or left early), runs aborted
 * with a signal, and groups of runs at once on one handler and session, under a budget that runs out mid-run.
 *
 * The test keeps its own account of what ran and checks after every step:
 * 1. the blocked tool never runs; a tool body runs only for an allow of exactly its name and input, at most once per
 *    allow; a model request is sent only for a run with an allow of its own;
 * 2. one decision per run (tool run or model run), with the right rule (`tools` block, `budget`);
 * 3. each model run is charged what the README says: the usage when both counts are reported, the estimate when
 *    usage is missing or malformed or the call failed in a way that may have been billed, nothing for a 4xx; each
 *    tool its declared cost when its body ran (kept when it throws, released on a 4xx); spend never passes the budget;
 * 4. no reservation stays open once a run has ended, but a stream left early (documented: held until `end()`, which
 *    charges its estimate); no unhandled rejection; runs reject only with the errors they are expected to.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>), FUZZ_RUNS=<n>.
 */
import { AgentPolicy, AgentPolicyError, type Decision, type PolicySession } from '@agentpolicy/core';
import { awaitAllCallbacks } from '@langchain/core/callbacks/promises';
import type { CallbackManagerForLLMRun } from '@langchain/core/callbacks/manager';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, AIMessageChunk, HumanMessage, type BaseMessage } from '@langchain/core/messages';
import { ChatGenerationChunk, type ChatResult } from '@langchain/core/outputs';
import { RunnableLambda, RunnableSequence } from '@langchain/core/runnables';
import { tool } from '@langchain/core/tools';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { z } from 'zod';
import { AgentPolicyCallbackHandler } from './agent-policy-callback-handler.js';

// ---- the policy ----------------------------------------------------------------------------------------------------

const BUDGET = 0.4;
/** USD per 1M tokens: $0.001 an input token, $0.002 an output token, at most 20 output tokens a call. */
const PRICE = { input: 1000, output: 2000, maxOutputTokens: 20 };
const TOOL_COSTS = { charge: 0.05, flaky: 0.03 } as const;
const USAGE = { input_tokens: 7, output_tokens: 3, total_tokens: 10 };
const policy = () => new AgentPolicy({ budget: BUDGET, blockedTools: ['wipe'], pricing: { ScriptedChatModel: PRICE } });

// ---- what a run does ---------------------------------------------------------------------------------------------

/** How the model answers a prompt. */
const OUTCOMES = ['usage', 'none', 'half', 'bad', 'e500', 'e429', 'e404', 'reset', 'cut', 'hang'] as const;
type Outcome = (typeof OUTCOMES)[number];
type ToolName = 'lookup' | 'charge' | 'flaky' | 'wipe';
type Via = 'invoke' | 'withConfig' | 'sequence' | 'batch' | 'retry' | 'abortBefore' | 'abortDuring';
type StreamVia = 'streamAll' | 'streamBreak';

type Op =
  | { readonly kind: 'tool'; readonly tool: ToolName; readonly arg: 'a' | 'b' | 'e4' | 'e5'; readonly id: string | null; readonly via: Via }
  | { readonly kind: 'model'; readonly outcome: Outcome; readonly via: Via | StreamVia }
  | { readonly kind: 'group'; readonly ops: readonly Op[] };

// A retry waits 1 to 2 s (LangChain's backoff): rare, and at most one a run, to keep the fuzz fast.
const viaArb = fc.oneof(
  { weight: 25, arbitrary: fc.constantFrom<Via>('invoke', 'invoke', 'withConfig', 'sequence', 'batch', 'abortBefore', 'abortDuring') },
  { weight: 1, arbitrary: fc.constant<Via>('retry') },
);
const toolOpArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constant('tool' as const),
  tool: fc.constantFrom<ToolName>('lookup', 'charge', 'charge', 'flaky', 'wipe'),
  arg: fc.constantFrom('a' as const, 'b' as const, 'e4' as const, 'e5' as const),
  id: fc.constantFrom(null, null, 'call_1', 'call_2'),
  via: viaArb,
});
const modelOpArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constant('model' as const),
  outcome: fc.constantFrom(...OUTCOMES),
  via: fc.oneof({ weight: 4, arbitrary: viaArb }, { weight: 1, arbitrary: fc.constantFrom<StreamVia>('streamAll', 'streamAll', 'streamBreak') }),
});
const leafArb = fc.oneof({ weight: 1, arbitrary: toolOpArb }, { weight: 1, arbitrary: modelOpArb });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: leafArb },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('group' as const), ops: fc.array(leafArb, { minLength: 2, maxLength: 4 }) }) },
);
const retries = (ops: readonly Op[]): number => ops.reduce((n, op) => n + (op.kind === 'group' ? retries(op.ops) : op.via === 'retry' ? 1 : 0), 0);
const scenarioArb = fc.array(opArb, { minLength: 1, maxLength: 8 }).filter((ops) => retries(ops) <= 1);

// ---- the model and the tools -------------------------------------------------------------------------------------

/** The errors the model and the tools throw on purpose. */
class Scripted extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'Scripted';
  }
}
class Violation extends Error {}

const seen = {
  toolBlocked: 0,
  toolBudgetDenied: 0,
  modelBudgetDenied: 0,
  usageCharged: 0,
  estimateNoUsage: 0,
  estimateMalformed: 0,
  released4xx: 0,
  estimateFailed: 0,
  abortedDuring: 0,
  streamRead: 0,
  streamCut: 0,
  streamLeft: 0,
  retried: 0,
  batch: 0,
  sequence: 0,
  together: 0,
  toolKept: 0,
  toolReleased: 0,
  idRepeated: 0,
};

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });

/** What the model did for one run (by its run id). */
interface Sent {
  readonly outcome: Outcome;
  streamed: boolean;
  /** The run's signal ended it before it answered. */
  aborted: boolean;
}

const promptText = (messages: BaseMessage[]): string => {
  const content = messages.at(-1)?.content;
  return typeof content === 'string' ? content : '';
};

/**
 * A chat model that answers as its prompt says (`<outcome>` or `retry:<outcome>`, which fails its first attempt with
 * a 500), after a few milliseconds, and honours the run's abort signal. It streams in three chunks, the last one with
 * the usage; `cut` breaks the stream after its first chunk.
 */
class ScriptedChatModel extends BaseChatModel {
  static override lc_name() {
    return 'ScriptedChatModel';
  }
  constructor(private readonly world: World) {
    super({});
  }
  _llmType() {
    return 'scripted';
  }
  private begin(messages: BaseMessage[], runManager: CallbackManagerForLLMRun | undefined): Outcome {
    const text = promptText(messages);
    const runId = runManager?.runId ?? '?';
    const retry = text.startsWith('retry:');
    const outcome = (retry ? text.slice(6) : text) as Outcome;
    const first = retry && !this.world.retriedPrompts.has(text);
    if (first) this.world.retriedPrompts.add(text);
    if (this.world.sent.has(runId)) this.world.violations.push(`model run ${runId} sent twice`);
    this.world.sent.set(runId, { outcome: first ? 'e500' : outcome, streamed: false, aborted: false });
    return first ? 'e500' : outcome;
  }
  private fail(outcome: Outcome): void {
    if (outcome === 'e500') throw new Scripted('server error', 500);
    if (outcome === 'e429') throw new Scripted('rate limited', 429);
    if (outcome === 'e404') throw new Scripted('no such model', 404);
    if (outcome === 'reset') throw Object.assign(new Scripted('socket hang up'), { code: 'ECONNRESET' });
  }
  private usage(outcome: Outcome): Record<string, unknown> | undefined {
    if (outcome === 'usage' || outcome === 'cut') return { ...USAGE };
    if (outcome === 'half') return { input_tokens: 7 };
    if (outcome === 'bad') return { input_tokens: 'seven', output_tokens: 3 };
    return undefined;
  }
  async _generate(messages: BaseMessage[], options: this['ParsedCallOptions'], runManager?: CallbackManagerForLLMRun): Promise<ChatResult> {
    const outcome = this.begin(messages, runManager);
    await this.wait(outcome === 'hang' ? 60_000 : 3, options.signal, runManager);
    this.fail(outcome);
    const usage = this.usage(outcome);
    const message = new AIMessage({ content: 'ok', ...(usage !== undefined ? { usage_metadata: usage as never } : {}) });
    return { generations: [{ text: 'ok', message }] };
  }
  override async *_streamResponseChunks(messages: BaseMessage[], options: this['ParsedCallOptions'], runManager?: CallbackManagerForLLMRun): AsyncGenerator<ChatGenerationChunk> {
    const outcome = this.begin(messages, runManager);
    const sent = this.world.sent.get(runManager?.runId ?? '?')!;
    sent.streamed = true;
    await this.wait(outcome === 'hang' ? 60_000 : 2, options.signal, runManager);
    this.fail(outcome);
    for (const [index, text] of ['o', 'k', '!'].entries()) {
      if (index === 1 && outcome === 'cut') throw new Scripted('stream cut');
      const usage = index === 2 ? this.usage(outcome) : undefined;
      const chunk = new ChatGenerationChunk({ text, message: new AIMessageChunk({ content: text, ...(usage !== undefined ? { usage_metadata: usage as never } : {}) }) });
      // As LangChain's integrations do: every chunk is reported to the run's callbacks.
      await runManager?.handleLLMNewToken(text, { prompt: 0, completion: 0 }, undefined, undefined, undefined, { chunk });
      yield chunk;
      await this.wait(1, options.signal, runManager);
    }
  }
  private async wait(ms: number, signal: AbortSignal | undefined, runManager: CallbackManagerForLLMRun | undefined): Promise<void> {
    try {
      await sleep(ms, signal);
    } catch (error) {
      this.world.sent.get(runManager?.runId ?? '?')!.aborted = true;
      throw error;
    }
  }
}

// ---- the world -----------------------------------------------------------------------------------------------------

const keyOf = (name: string, input: unknown, id: string | null | undefined): string => `${name}|${id ?? ''}|${JSON.stringify(input)}`;
const isAgentPolicy = (error: unknown): boolean => AgentPolicyError.isInstance(error);
const chain = (error: unknown, depth = 0): unknown[] =>
  typeof error === 'object' && error !== null && depth < 6 ? [error, ...chain((error as { cause?: unknown }).cause, depth + 1)] : [];
const describeError = (error: unknown): string => chain(error).map((e) => `${(e as Error).name}: ${(e as Error).message}`).join(' <- ') || String(error);
const expected = (error: unknown): boolean =>
  chain(error).some((e) => e instanceof Scripted || isAgentPolicy(e) || (e as Error).name === 'AbortError' || /abort/i.test((e as Error).message));

class World {
  readonly session: PolicySession = policy().session();
  readonly handler = new AgentPolicyCallbackHandler(this.session, { toolCosts: { ...TOOL_COSTS } });
  readonly model = new ScriptedChatModel(this);
  /** Model runs that reached the model, by run id. */
  readonly sent = new Map<string, Sent>();
  readonly retriedPrompts = new Set<string>();
  /** Tool bodies that ran, by name, tool call id and input; and how each ended. */
  readonly ran = new Map<string, number>();
  /** Tool runs (by their input's `n`) aborted with a signal. */
  readonly aborted = new Set<number>();
  /** Model runs whose stream the caller left early: held until `end()`. */
  readonly left = new Set<string>();
  readonly violations: string[] = [];
  readonly log: string[] = [];
  private prompts = 0;
  readonly tools;

  constructor() {
    const body =
      (name: ToolName) =>
      async (input: { q: string; n: number }, config: { toolCall?: { id?: string } }): Promise<string> => {
        const id = config.toolCall?.id ?? null;
        const key = keyOf(name, input, id);
        if (name === 'wipe') this.violations.push('the blocked tool ran');
        if (id !== null && [...this.ran.keys()].some((k) => k.split('|')[1] === id)) seen.idRepeated++;
        this.ran.set(key, (this.ran.get(key) ?? 0) + 1);
        this.log.push(`  ran ${key}`);
        // The body takes a moment: an abort can land while it runs (LangChain's tool() lets it run on).
        await sleep(2);
        if (input.q === 'e4') throw new Scripted('refused', 422);
        if (input.q === 'e5') throw new Scripted('tool broke');
        return `${name} ok`;
      };
    const make = (name: ToolName) => tool(body(name), { name, description: name, schema: z.object({ q: z.string(), n: z.number() }) });
    this.tools = { lookup: make('lookup'), charge: make('charge'), flaky: make('flaky'), wipe: make('wipe') };
  }

  private prompt(outcome: Outcome, retry: boolean): string {
    this.prompts++;
    // One prompt per run: a retried prompt is told apart by the model (its first attempt fails).
    return retry ? `retry:${outcome}` : outcome;
  }

  /** One run, as the op says; resolves when it has ended (whatever its outcome). */
  async run(op: Exclude<Op, { kind: 'group' }>): Promise<void> {
    const callbacks = [this.handler];
    const controller = new AbortController();
    let runnable: { invoke(input: unknown, config?: object): Promise<unknown>; batch(inputs: unknown[], config?: object, options?: object): Promise<unknown> };
    let input: unknown;
    if (op.kind === 'tool') {
      const target = this.tools[op.tool];
      runnable = target as never;
      const args = { q: op.arg, n: this.prompts++ };
      if (op.via === 'abortBefore' || op.via === 'abortDuring') this.aborted.add(args.n);
      input = op.id === null ? args : { name: op.tool, args, id: op.id, type: 'tool_call' };
    } else {
      runnable = this.model as never;
      input = [new HumanMessage(this.prompt(op.outcome, op.via === 'retry'))];
    }
    this.log.push(`run ${JSON.stringify(op)}`);
    try {
      switch (op.via) {
        case 'invoke':
          await runnable.invoke(input, { callbacks });
          break;
        case 'withConfig':
          await (runnable as unknown as { withConfig(c: object): typeof runnable }).withConfig({ callbacks }).invoke(input);
          break;
        case 'sequence':
          seen.sequence++;
          await RunnableSequence.from([RunnableLambda.from((x: unknown) => x), runnable as never, RunnableLambda.from((x: unknown) => x)]).invoke(input, { callbacks });
          break;
        case 'batch': {
          seen.batch++;
          // Two runs of one input in one batch: two decisions, two runs (or one denied).
          const results = await runnable.batch([input, input], { callbacks }, { returnExceptions: true });
          for (const result of results as unknown[]) if (result instanceof Error && !expected(result)) this.violations.push(`batch item failed unexpectedly: ${describeError(result)}`);
          break;
        }
        case 'retry':
          await (runnable as unknown as { withRetry(o: object): typeof runnable }).withRetry({ stopAfterAttempt: 2 }).invoke(input, { callbacks });
          break;
        case 'abortBefore':
          controller.abort(new Error('aborted before it started'));
          await runnable.invoke(input, { callbacks, signal: controller.signal });
          break;
        case 'abortDuring': {
          const running = runnable.invoke(input, { callbacks, signal: controller.signal });
          setTimeout(() => controller.abort(new Error('aborted while it ran')), 1);
          await running;
          break;
        }
        case 'streamAll':
        case 'streamBreak': {
          const stream = await (runnable as unknown as { stream(i: unknown, c: object): Promise<AsyncIterable<unknown>> }).stream(input, { callbacks });
          let chunks = 0;
          for await (const _chunk of stream) {
            chunks++;
            if (op.via === 'streamBreak') break;
          }
          if (op.via === 'streamBreak' && chunks > 0) this.log.push('  left the stream');
          break;
        }
      }
    } catch (error) {
      if (!expected(error)) this.violations.push(`run rejected unexpectedly: ${describeError(error)}`);
      this.log.push(`  threw ${describeError(error)}`);
    }
    // A hanging request is ended by the abort; any left hanging is aborted when the run is over.
    controller.abort(new Error('the run is over'));
  }

  async step(op: Op): Promise<void> {
    if (op.kind === 'group') {
      seen.together++;
      // The outcomes that hang only end with an abort; in a group they are aborted with the rest.
      await Promise.all(op.ops.map((leaf) => this.run(leaf.kind === 'model' && leaf.outcome === 'hang' && leaf.via !== 'abortDuring' ? { ...leaf, via: 'abortDuring' } : (leaf as never))));
    } else if (op.kind === 'model' && op.outcome === 'hang' && op.via !== 'abortDuring' && op.via !== 'abortBefore') {
      await this.run({ ...op, via: 'abortDuring' });
    } else await this.run(op);
    // LangChain settles the callbacks of a run it ended on an abort in the background.
    await awaitAllCallbacks();
    await new Promise((resolve) => setTimeout(resolve, 2));
  }

  /** What a model run must have been charged, from what the model did; `undefined` when it may stay open. */
  private expectedModelCharge(decision: Decision, runId: string): { status: 'committed' | 'released'; actual?: number } | 'open' {
    const sent = this.sent.get(runId);
    const estimated = decision.settlement?.estimated ?? Number.NaN;
    if (sent === undefined) {
      // Never reached the model: aborted before it was sent. The handler cannot tell; it charges the estimate.
      return { status: 'committed', actual: estimated };
    }
    // `cut` breaks a stream only; invoked, it answers with its usage.
    switch (sent.aborted ? 'aborted' : sent.outcome === 'cut' && !sent.streamed ? 'usage' : sent.outcome) {
      case 'usage': {
        const price = this.session.priceUsage({ model: 'ScriptedChatModel', inputTokens: USAGE.input_tokens, outputTokens: USAGE.output_tokens });
        if (!price.ok) throw new Error(price.reason);
        return { status: 'committed', actual: price.nanos / 1e9 };
      }
      case 'e429':
      case 'e404':
        return { status: 'released' };
      default:
        // No usage, malformed usage, a 5xx, a reset, a stream cut, an abort: the estimate.
        return { status: 'committed', actual: estimated };
    }
  }

  check(final = false): void {
    const report = this.session.report();
    const problems = [...this.violations];
    const byRun = new Map<string, Decision[]>();
    const allows = new Map<string, number>();
    let modelSpend = 0;
    let toolSpend = 0;
    for (const decision of report.decisions) {
      const runId = (decision.action.metadata as { runId?: string } | undefined)?.runId ?? '';
      byRun.set(runId, [...(byRun.get(runId) ?? []), decision]);
      if (decision.action.type === 'tool') {
        const name = decision.action.name;
        const id = (decision.action.metadata as { toolCallId?: string } | undefined)?.toolCallId ?? null;
        if (decision.decision === 'allow') allows.set(keyOf(name, decision.action.input, id), (allows.get(keyOf(name, decision.action.input, id)) ?? 0) + 1);
        if (name === 'wipe') {
          if (decision.decision === 'allow') problems.push('the blocked tool was allowed');
          else if (decision.rule.section !== 'tools') problems.push(`wipe denied by ${JSON.stringify(decision.rule)}`);
          else if (final) seen.toolBlocked++;
        } else if (decision.decision === 'deny') {
          if (decision.rule.section !== 'budget') problems.push(`${name} denied by ${JSON.stringify(decision.rule)}`);
          else if (final) seen.toolBudgetDenied++;
        }
        const settlement = decision.settlement;
        if (decision.decision !== 'allow' || settlement === undefined) continue;
        if (settlement.status === 'pending') {
          problems.push(`tool run ${runId} still holds its cost`);
          continue;
        }
        const { q, n } = decision.action.input as { q: string; n: number };
        const ran = this.ran.has(keyOf(name, decision.action.input, id));
        // A body that threw a 4xx is released; one that ran otherwise is charged, as is a run aborted with a signal
        // (LangChain's tool() lets a body that started run on, and the handler cannot tell one that never did).
        // The abort settles the run before a body that runs on can throw its 4xx.
        const want = this.aborted.has(n) ? settlement.estimated : ran ? (q === 'e4' ? 0 : settlement.estimated) : 0;
        if (final && ran && q === 'e4') seen.toolReleased++;
        if (final && ran && q === 'e5') seen.toolKept++;
        const charged = settlement.status === 'released' ? 0 : settlement.actual;
        toolSpend += charged;
        if (Math.abs(charged - want) > 1e-12 || settlement.estimated !== TOOL_COSTS[name as 'charge' | 'flaky']) {
          problems.push(`tool ${name} ${JSON.stringify(decision.action.input)} (${ran ? 'ran' : 'never ran'}) settled ${JSON.stringify(settlement)}, expected ${want}`);
        }
        continue;
      }
      // A model run.
      if (decision.decision !== 'allow') {
        if (decision.rule.section !== 'budget') problems.push(`model run ${runId} denied by ${JSON.stringify(decision.rule)}`);
        else if (final) seen.modelBudgetDenied++;
        if (this.sent.has(runId)) problems.push(`model run ${runId} was denied, yet its request was sent`);
        continue;
      }
      const want = this.expectedModelCharge(decision, runId);
      const settlement = decision.settlement;
      if (this.left.has(runId) && !final) continue;
      if (settlement === undefined || settlement.status === 'pending') {
        // A stream left early is held until end(): documented.
        const sent = this.sent.get(runId);
        if (sent?.streamed && !final) {
          this.left.add(runId);
          seen.streamLeft++;
          continue;
        }
        problems.push(`model run ${runId} (${this.sent.get(runId)?.outcome ?? 'never sent'}) left its reservation open`);
        continue;
      }
      if (want === 'open') continue;
      const charged = settlement.status === 'released' ? 0 : settlement.actual;
      modelSpend += charged;
      if (this.left.has(runId)) {
        if (settlement.status !== 'committed' || Math.abs(settlement.actual - settlement.estimated) > 1e-12) problems.push(`the stream left early ${runId} was not charged its estimate at end(): ${JSON.stringify(settlement)}`);
        continue;
      }
      if (settlement.status !== want.status || (want.actual !== undefined && Math.abs(settlement.actual - want.actual) > 1e-12)) {
        problems.push(`model run ${runId} (${this.sent.get(runId)?.outcome ?? 'never sent'}) settled ${JSON.stringify(settlement)}, expected ${JSON.stringify(want)}`);
      }
    }
    // One decision per run.
    for (const [runId, decisions] of byRun) if (decisions.length > 1) problems.push(`run ${runId} has ${decisions.length} decisions`);
    // Every request sent had an allow for its run.
    for (const runId of this.sent.keys()) if (!byRun.get(runId)?.some((d) => d.decision === 'allow')) problems.push(`model run ${runId} was sent without an allow`);
    for (const [key, count] of this.ran) if (count > (allows.get(key) ?? 0)) problems.push(`${key} ran ${count} time(s) on ${allows.get(key) ?? 0} allow(s)`);
    // Spend: what ran, exactly; never past the budget.
    const leftHeld = final ? 0 : [...this.left].length;
    const expectedSpend = modelSpend + toolSpend;
    if (Math.abs(report.spent - expectedSpend) > 1e-9) problems.push(`spent ${report.spent}, but what ran costs ${expectedSpend} (models ${modelSpend}, tools ${toolSpend})`);
    if (report.spent + report.reserved > BUDGET + 1e-9) problems.push(`spent ${report.spent} + reserved ${report.reserved} passes the budget ${BUDGET}`);
    if (this.session.pendingReservations !== leftHeld) problems.push(`${this.session.pendingReservations} reservation(s) open, ${leftHeld} stream(s) left early`);
    if (problems.length > 0) {
      const trail = report.decisions.map(
        (d) => `  ${d.decision} ${d.action.type === 'tool' ? `${d.action.name} ${JSON.stringify(d.action.input)}` : d.action.type === 'cost' ? d.action.source : d.action.type} run=${String((d.action.metadata as { runId?: string } | undefined)?.runId).slice(0, 8)} ${d.rule.section} ${JSON.stringify(d.settlement ?? null)}`,
      );
      throw new Violation(`${problems.join('\n')}\n--- steps ---\n${this.log.join('\n')}\n--- decisions ---\n${trail.join('\n')}`);
    }
  }

  /** Counts what the run reached, for the coverage check. */
  tally(): void {
    for (const [runId, sent] of this.sent) {
      const decision = this.session.report().decisions.find((d) => (d.action.metadata as { runId?: string } | undefined)?.runId === runId);
      if (decision?.settlement === undefined) continue;
      if (sent.outcome === 'usage') seen.usageCharged++;
      else if (sent.outcome === 'none') seen.estimateNoUsage++;
      else if (sent.outcome === 'half' || sent.outcome === 'bad') seen.estimateMalformed++;
      else if (sent.outcome === 'e429' || sent.outcome === 'e404') seen.released4xx++;
      else if (sent.outcome === 'hang') seen.abortedDuring++;
      else if (sent.outcome === 'cut' && sent.streamed) seen.streamCut++;
      else seen.estimateFailed++;
      if (sent.streamed && sent.outcome === 'usage') seen.streamRead++;
    }
    seen.retried += [...this.sent.values()].filter((s) => s.outcome === 'e500').length > 0 && this.retriedPrompts.size > 0 ? 1 : 0;
  }
}

// ---- the property --------------------------------------------------------------------------------------------------

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_202 : Number(process.env['FUZZ_SEED']);
const DEFAULT_RUNS = 100;
const RUNS = Number(process.env['FUZZ_RUNS'] ?? DEFAULT_RUNS);

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => process.off('unhandledRejection', onUnhandled));

describe('AgentPolicyCallbackHandler under random runs of tools and models', () => {
  it('blocks what it must, runs each allow at most once, charges what the README says and leaves nothing open', { timeout: 120_000 }, async () => {
    console.log(`handler fuzz: FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}`);
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (ops) => {
        const world = new World();
        for (const op of ops) {
          await world.step(op);
          world.check();
        }
        world.session.end();
        world.check(true);
        world.tally();
        await new Promise((resolve) => setImmediate(resolve));
        if (unhandled.length > 0) throw new Violation(`unhandled rejection: ${unhandled.splice(0).map(describeError).join('; ')}\n${world.log.join('\n')}`);
      }),
      { seed: SEED, numRuns: RUNS, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false },
    );
    if (RUNS >= DEFAULT_RUNS) {
      const missed = Object.entries(seen).filter(([, count]) => count === 0);
      if (missed.length > 0) throw new Error(`the fuzz never reached: ${missed.map(([name]) => name).join(', ')} (${JSON.stringify(seen)})`);
    }
    if (process.env['FUZZ_LOG']) console.log(seen);
  });
});
