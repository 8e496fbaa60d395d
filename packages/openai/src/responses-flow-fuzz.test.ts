/**
 * A model-based fuzz of Responses-API turns through the real `openai` client (openai 7 and 6), wrapped with
 * `wrapOpenAI(client, session, { checkToolCalls: true, toolCosts })` and talking to the local mock server: random
 * multi-turn runs in which each response carries 0–3 `function_call` items of a free tool, a tool with a declared
 * cost, a tool that needs approval for large amounts (the session's approver says yes or no by the recipient), a
 * blocked tool and a tool under a `max_calls` limit, with call ids and argument texts from small pools (a call id
 * repeats within a response and across turns, with the same or other arguments; malformed JSON and an empty string
 * are in the pools). Each turn goes through `responses.create()`, `responses.stream()` read with `finalResponse()` or
 * event by event (sometimes broken off or aborted early), or `responses.create({ stream: true })` read event by event
 * (streams send every event, or now and then only the terminal one, whose output holds the calls; now and then the
 * terminal event gives the calls other arguments than their events did), and then the
 * README's loop runs the calls of the response it got with `session.runTool` (arguments read with `toolCallInput`;
 * arguments that are not a JSON object refused by the tool with a 400). Streamed arguments arrive in random pieces;
 * the server sometimes answers 500 (sometimes retried),
 * drops the connection, or cuts a stream mid-way; tool bodies return, throw, or throw with status 404; the budget is
 * small enough that some calls are refused for money.
 *
 * After every turn: a body runs only for a call the policy allowed for exactly that input, once per allow (the loop
 * runs each call of an allowed response on the allow it got, with no second decision); never the blocked tool, a
 * call the approver rejected, a call of a refused response, or past the limit; tool spend is the declared cost of
 * the bodies that ran; nothing stays held; spend within the budget; only documented errors; nothing unhandled.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> FUZZ_PATH=<path> (FUZZ_RUNS=<n>).
 */
import type { PolicySession } from '@agentpolicy/core';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import fc from 'fast-check';
import OpenAI from 'openai';
import OpenAIv6 from 'openai-v6';
import type { Response as OpenAIResponse, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  aResponse,
  ARGUMENTS,
  BodyError,
  checkCoverage,
  checkLedger,
  checkTurnError,
  explain,
  fuzzSettings,
  inputKey,
  isPolicyRefusal,
  makeSession,
  outcomeOf,
  replyOf,
  settle,
  surelyDenied,
  TOOL_COSTS,
  TOOL_NAMES,
  toolDecisions,
  UnhandledRejections,
  Violation,
  WORLD_RULES,
  type BodyRun,
  type ModelResponse,
  type ToolName,
} from './test-support/tool-fuzz.js';
import { toolCallInput } from './tool-calls.js';
import { wrapOpenAI } from './wrap-openai.js';

// ---- the world: tools, costs, policy (shared with the chat fuzz) ------------------------------------------------

const TOOL_SPECS = TOOL_NAMES.map((name) => ({ type: 'function' as const, name, description: name, parameters: { type: 'object', properties: {} }, strict: false }));

// ---- what is generated --------------------------------------------------------------------------------------------

type Mode =
  | { readonly kind: 'create' }
  | { readonly kind: 'stream-final' }
  | { readonly kind: 'stream-iterate'; readonly stopAfter: number | null; readonly how: 'break' | 'abort' }
  | { readonly kind: 'create-stream'; readonly stopAfter: number | null };
interface Turn {
  readonly mode: Mode;
  readonly responses: readonly ModelResponse[];
  readonly retry: boolean;
  /** Streams send every event, or only the terminal one whose output holds the calls (a minimal compatible server). */
  readonly events: 'full' | 'terminal-only';
  /** Streams end with other arguments for each call item than its own events had (the next text of its tool's pool). */
  readonly changedAtEnd: boolean;
}

/** The arguments a call item has in the terminal event of a stream that changes them at the end. */
const changedArguments = (call: { readonly name: ToolName; readonly arguments: string }): string => {
  const pool: readonly string[] = ARGUMENTS[call.name];
  return pool[(pool.indexOf(call.arguments) + 1) % pool.length]!;
};

/** The argument texts a response's calls are seen with: their own, and in a changing stream the terminal ones. */
const argumentsSeen = (turn: Turn, call: { readonly name: ToolName; readonly arguments: string }): string[] => {
  if (turn.mode.kind === 'create' || !turn.changedAtEnd) return [call.arguments];
  return turn.events === 'terminal-only' ? [changedArguments(call)] : [call.arguments, changedArguments(call)];
};

const aMode: fc.Arbitrary<Mode> = fc.oneof(
  fc.constant<Mode>({ kind: 'create' }),
  fc.constant<Mode>({ kind: 'stream-final' }),
  fc.record({ stopAfter: fc.option(fc.integer({ min: 0, max: 14 }), { nil: null }), how: fc.constantFrom<'break' | 'abort'>('break', 'abort') }).map((m): Mode => ({ kind: 'stream-iterate', ...m })),
  fc.record({ stopAfter: fc.option(fc.integer({ min: 0, max: 14 }), { nil: null }) }).map((m): Mode => ({ kind: 'create-stream', ...m })),
);

const aTurn: fc.Arbitrary<Turn> = fc.record({
  mode: aMode,
  responses: fc.array(aResponse(14), { minLength: 1, maxLength: 2 }),
  retry: fc.boolean(),
  events: fc.constantFrom<Turn['events']>('full', 'full', 'full', 'terminal-only'),
  changedAtEnd: fc.constantFrom(false, false, false, false, true),
});

// ---- the application --------------------------------------------------------------------------------------------

interface World {
  readonly session: PolicySession;
  readonly client: OpenAI;
  readonly runs: BodyRun[];
  turn: number;
}

function body(world: World, name: ToolName, input: unknown, response: number): unknown {
  const outcome = outcomeOf(input);
  world.runs.push({ name, input, charged: outcome === 'not-found' ? 0 : (TOOL_COSTS[name] ?? 0), turn: world.turn, response });
  if (outcome === 'threw') throw new BodyError(`${name} broke halfway`);
  if (outcome === 'not-found') throw new BodyError(`${name}: not found`, 404);
  return `${name} done`;
}

/**
 * The README's loop over a Responses turn: each `function_call` item run with `session.runTool` under its `call_id`
 * and declared cost, its input read with `toolCallInput` (malformed arguments as text, which the tool refuses).
 */
async function runLoop(world: World, server: MockOpenAIServer, response: OpenAIResponse | undefined): Promise<void> {
  const served = server.count();
  const seen = new Set<string>();
  for (const item of response?.output ?? []) {
    if (item.type !== 'function_call') continue;
    const name = item.name as ToolName;
    const input = toolCallInput(item.arguments);
    const cost = TOOL_COSTS[name] ?? 0;
    const key = `${item.call_id}|${name}|${inputKey(input)}`;
    const first = !seen.has(key);
    seen.add(key);
    const before = toolDecisions(world.session).length;
    let failure: unknown;
    try {
      await world.session.runTool(name, { input, cost, idempotencyKey: item.call_id }, () => {
        // As the README's loop: arguments that are not a JSON object are refused with a 400 (the cost is given back).
        if (typeof input !== 'object' || input === null) {
          coverage['malformed arguments refused by the loop']++;
          throw new BodyError(`${name}: arguments are not a JSON object`, 400);
        }
        return body(world, name, input, served);
      });
    } catch (error) {
      failure = error;
    }
    const added = toolDecisions(world.session).slice(before);
    if (first && added.length > 0) {
      throw new Violation(`runTool(${name}, ${JSON.stringify(item.arguments)}, ${item.call_id}) of an allowed response was decided again: ${added.map((d) => `${d.decision} (${d.reason})`).join('; ')}`);
    }
    if (failure !== undefined && !(failure instanceof BodyError || isPolicyRefusal(failure))) {
      throw new Violation(`runTool(${name}, ${JSON.stringify(item.arguments)}) threw an undocumented error: ${explain(failure)}`);
    }
  }
}

async function runTurn(world: World, server: MockOpenAIServer, turn: Turn): Promise<unknown> {
  const { client } = world;
  const params = { model: 'gpt-4o-mini', input: 'Do the chores.', max_output_tokens: 2000, tools: TOOL_SPECS };
  const options = { maxRetries: turn.retry ? 1 : 0 };
  const mode = turn.mode;
  const streamed = mode.kind !== 'create';
  server.reply(
    ...turn.responses.map((r) => ({
      ...replyOf(r, streamed, turn.retry),
      responsesEvents: turn.events,
      ...(turn.changedAtEnd ? { terminalArguments: r.calls.map(changedArguments) } : {}),
    })),
  );
  try {
    switch (mode.kind) {
      case 'create': {
        await runLoop(world, server, await client.responses.create(params, options));
        return undefined;
      }
      case 'stream-final': {
        await runLoop(world, server, await client.responses.stream(params, options).finalResponse());
        return undefined;
      }
      case 'stream-iterate': {
        const stream = client.responses.stream(params, options);
        let seen = 0;
        for await (const _event of stream) {
          void _event;
          if (mode.stopAfter !== null && seen++ >= mode.stopAfter) {
            if (mode.how === 'abort') stream.abort();
            // Broken off: the application does not run the calls it may have seen.
            return undefined;
          }
        }
        await runLoop(world, server, await stream.finalResponse());
        return undefined;
      }
      case 'create-stream': {
        const stream = await client.responses.create({ ...params, stream: true }, options);
        let seen = 0;
        let completed: OpenAIResponse | undefined;
        for await (const event of stream as AsyncIterable<ResponseStreamEvent>) {
          if (mode.stopAfter !== null && seen++ >= mode.stopAfter) return undefined;
          if (event.type === 'response.completed') completed = event.response;
        }
        await runLoop(world, server, completed);
        return undefined;
      }
    }
  } catch (error) {
    return error;
  }
}

// ---- the invariants -------------------------------------------------------------------------------------------------

function invariants(world: World, where: string, turn: Turn | undefined, turnError: unknown, requests: number): void {
  checkLedger(world.session, world.runs, where, WORLD_RULES);
  if (turn === undefined) return;
  // A response holding a call the policy denies is refused as a whole: the turn ends with the policy error and none
  // of its calls run.
  const stoppedEarly = (turn.mode.kind === 'stream-iterate' || turn.mode.kind === 'create-stream') && turn.mode.stopAfter !== null;
  turn.responses.forEach((response, index) => {
    const served = index + 1 <= requests && response.fault === 'none';
    if (!served || !response.calls.some((call) => argumentsSeen(turn, call).some((args) => surelyDenied(call.name, toolCallInput(args))))) return;
    const ranHere = world.runs.filter((run) => run.turn === world.turn && run.response === index + 1);
    if (ranHere.length > 0) throw new Violation(`${where}: response ${index + 1} holds a denied call, yet ${ranHere.map((r) => `${r.name} ${inputKey(r.input)}`).join(', ')} ran`);
    if (!stoppedEarly && !isPolicyRefusal(turnError)) {
      throw new Violation(`${where}: response ${index + 1} holds a denied call and was not refused (${turnError === undefined ? 'no error' : explain(turnError)})`);
    }
  });
}

// ---- coverage -------------------------------------------------------------------------------------------------------

const coverage = {
  'body ran (create)': 0,
  'body ran (stream-final)': 0,
  'body ran (stream-iterate)': 0,
  'body ran (create-stream)': 0,
  'response refused by the policy': 0,
  'tool call denied for money': 0,
  'model call denied for money': 0,
  'approver said yes': 0,
  'approver said no': 0,
  'limit reached': 0,
  'held cost given back': 0,
  'stream broken off': 0,
  'stream cut': 0,
  'calls only in the terminal event': 0,
  'arguments changed at the end': 0,
  'server fault': 0,
  'malformed arguments refused by the loop': 0,
  'call id repeated in a response': 0,
  'body threw': 0,
};

function count(world: World, turn: Turn, error: unknown, runsBefore: number): void {
  const ran = world.runs.slice(runsBefore);
  coverage[`body ran (${turn.mode.kind})`] += ran.length;
  if (isPolicyRefusal(error)) coverage['response refused by the policy']++;
  if ((turn.mode.kind === 'stream-iterate' || turn.mode.kind === 'create-stream') && turn.mode.stopAfter !== null) coverage['stream broken off']++;
  if (turn.mode.kind !== 'create' && turn.responses.some((r) => r.fault === 'cut')) coverage['stream cut']++;
  if (turn.mode.kind !== 'create' && turn.events === 'terminal-only') coverage['calls only in the terminal event'] += ran.length;
  if (turn.mode.kind !== 'create' && turn.events === 'full' && turn.changedAtEnd) coverage['arguments changed at the end'] += ran.length;
  if (turn.responses.some((r) => r.fault !== 'none')) coverage['server fault']++;
  if (turn.responses.some((r) => new Set(r.calls.map((c) => c.id)).size < r.calls.length)) coverage['call id repeated in a response']++;
  coverage['body threw'] += ran.filter((run) => outcomeOf(run.input) !== 'returned').length;
}

function countEnd(session: PolicySession): void {
  for (const decision of session.report().decisions) {
    const section = decision.rule?.section;
    if (decision.decision === 'deny' && section === 'budget') coverage[decision.action.type === 'tool' ? 'tool call denied for money' : 'model call denied for money']++;
    if (decision.decision === 'deny' && section === 'approver') coverage['approver said no']++;
    if (decision.decision === 'allow' && decision.approval?.via === 'approver') coverage['approver said yes']++;
    if (decision.decision === 'deny' && section === 'limits') coverage['limit reached']++;
    if (decision.action.type === 'tool' && decision.settlement?.status === 'released' && outcomeOf(decision.action.input) !== 'not-found') coverage['held cost given back']++;
  }
}

// ---- the run ------------------------------------------------------------------------------------------------------

const CLIENTS: ReadonlyArray<[string, typeof OpenAI]> = [
  ['openai 7', OpenAI],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI],
];

describe.each(CLIENTS)('Responses flow fuzz with %s: create(), stream() and create({ stream }) turns + the README loop keep every promise', (_name, OpenAIClient) => {
  let server: MockOpenAIServer;
  const unhandled = new UnhandledRejections();
  beforeAll(async () => {
    server = await startMockOpenAI({ usage: { input: 100, output: 20 } });
    unhandled.install();
  });
  afterAll(async () => {
    unhandled.remove();
    await server.close();
  });

  it('bodies run only on their own allow, once; tool spend is what ran, nothing stays held; only documented errors', async () => {
    for (const key of Object.keys(coverage) as (keyof typeof coverage)[]) coverage[key] = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(aTurn, { minLength: 1, maxLength: 8 }), async (turns) => {
        const session = makeSession();
        const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: TOOL_COSTS });
        const world: World = { session, client, runs: [], turn: 0 };
        unhandled.seen.length = 0;
        for (const [index, turn] of turns.entries()) {
          world.turn = index + 1;
          server.reset();
          const runsBefore = world.runs.length;
          const error = await runTurn(world, server, turn);
          await settle();
          const where = `turn ${index + 1} (${turn.mode.kind})`;
          count(world, turn, error, runsBefore);
          checkTurnError(error, where, turn.responses.some((r) => r.fault === 'cut' || r.fault === 'drop'));
          invariants(world, where, turn, error, server.count());
          unhandled.check(where);
        }
        session.end();
        invariants(world, 'end', undefined, undefined, 0);
        countEnd(session);
      }),
      fuzzSettings(20_261_203, 400),
    );
    checkCoverage(coverage);
  }, 120_000);
});
