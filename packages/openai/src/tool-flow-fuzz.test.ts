/**
 * A model-based fuzz of the tool flow through the real `openai` client, wrapped with
 * `wrapOpenAI(client, session, { checkToolCalls: true, toolCosts })` and talking to the local mock server: random
 * multi-turn runs in which each model response carries 0–3 tool calls of a free tool, a tool with a declared cost, a
 * tool that needs approval for large amounts (the session's approver says yes or no by the recipient), a blocked tool
 * and a tool under a `max_calls` limit, with call ids and argument texts from small pools (ids repeat within a
 * response and across turns, the same id comes with other arguments; malformed JSON and an empty string are in the
 * pools). Each turn goes through one of the ways the README documents: `chat.completions.create()` and the README's
 * `session.runTool` loop, `chat.completions.stream()` read with `finalChatCompletion()` or chunk by chunk (sometimes
 * broken off or aborted early), `chat.completions.create({ stream: true })` read by hand (sometimes broken off), or
 * `runTools()` over several responses (streamed or not, calls side by side or one after another). Streamed arguments arrive in random pieces; the server sometimes answers 500 (sometimes retried),
 * drops the connection, or cuts a stream mid-way; tool bodies return, throw, or throw with status 404; the budget is
 * small enough that some calls are refused for money. It runs with openai 7 and openai 6.
 *
 * After every turn it checks:
 * 1. a body runs only for a call the policy allowed for exactly that input (tool and input), at most once per allow;
 *    never the blocked tool, never a call the approver rejected, never a call of a refused response (a response
 *    that holds a call the policy denies is refused as a whole), never more than the limit; the README's loop runs
 *    each call of an allowed response on the allow the response got (no second decision);
 * 2. the tool spend recorded is the declared cost of the bodies that ran (released when the body threw with a 4xx
 *    status), nothing stays held once the turn is over (costs held for a refused or abandoned response are given
 *    back), and spend never passes the budget;
 * 3. nothing rejects unhandled, and a turn ends only with a documented policy error or the client's own error.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> FUZZ_PATH=<path> (FUZZ_RUNS=<n>).
 */
import { findPolicyError, PolicyDeniedError, ApprovalRequiredError, type Decision, type PolicySession } from '@agentpolicy/core';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import fc from 'fast-check';
import OpenAI from 'openai';
import OpenAIv6 from 'openai-v6';
import type { ChatCompletion, ChatCompletionMessageToolCall } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  aResponse,
  approverSays,
  BodyError,
  BUDGET,
  countBy,
  explain,
  inputKey,
  isPolicyRefusal,
  makeSession,
  needsApproval,
  outcomeOf,
  PING_LIMIT,
  replyOf,
  settle,
  surelyDenied,
  TOOL_COSTS,
  TOOL_NAMES,
  toolDecisions,
  UnhandledRejections,
  Violation,
  type ModelResponse,
  type ToolName,
} from './test-support/tool-fuzz.js';
import { toolCallInput } from './tool-calls.js';
import { wrapOpenAI } from './wrap-openai.js';

// ---- the world: tools, costs, policy (shared with the Responses fuzz) ----------------------------------------------

/** A run's body, and the policy, read a call's input as the adapter decides it. */
const inputOf = toolCallInput;

const TOOL_SPECS = TOOL_NAMES.map((name) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties: {} } } }));

// ---- what is generated --------------------------------------------------------------------------------------------

type Mode =
  | { readonly kind: 'create' }
  | { readonly kind: 'stream-final' }
  | { readonly kind: 'stream-iterate'; readonly stopAfter: number | null; readonly how: 'break' | 'abort' }
  | { readonly kind: 'create-stream'; readonly stopAfter: number | null }
  | { readonly kind: 'run-tools'; readonly sequential: boolean; readonly streamed: boolean };

interface Turn {
  readonly mode: Mode;
  /**
   * The server's answers, one per request in order: the loop modes use the first (and the second when the first
   * failed and the client retried); runTools() goes on while they hold calls (then a text answer ends the run).
   */
  readonly responses: readonly ModelResponse[];
  /** The client retries once (a 500 then says `retry-after-ms: 0`; a dropped or cut answer becomes such a 500). */
  readonly retry: boolean;
}

const aMode: fc.Arbitrary<Mode> = fc.oneof(
  fc.constant<Mode>({ kind: 'create' }),
  fc.constant<Mode>({ kind: 'stream-final' }),
  fc.record({ stopAfter: fc.option(fc.integer({ min: 0, max: 8 }), { nil: null }), how: fc.constantFrom<'break' | 'abort'>('break', 'abort') }).map((m): Mode => ({ kind: 'stream-iterate', ...m })),
  fc.record({ stopAfter: fc.option(fc.integer({ min: 0, max: 8 }), { nil: null }) }).map((m): Mode => ({ kind: 'create-stream', ...m })),
  fc.record({ sequential: fc.boolean(), streamed: fc.boolean() }).map((m): Mode => ({ kind: 'run-tools', ...m })),
);

const aTurn: fc.Arbitrary<Turn> = aMode.chain((mode) =>
  fc.record({ mode: fc.constant(mode), responses: fc.array(aResponse(8), { minLength: 1, maxLength: mode.kind === 'run-tools' ? 3 : 2 }), retry: fc.boolean() }),
);

// ---- the application --------------------------------------------------------------------------------------------

interface Run {
  readonly name: ToolName;
  readonly id: string;
  readonly arguments: string;
  /** The server request (1-based, in the turn) whose response the call came from. */
  readonly response: number;
  readonly turn: number;
}

interface World {
  readonly session: PolicySession;
  readonly client: OpenAI;
  readonly runs: Run[];
  turn: number;
}

function body(world: World, name: ToolName, id: string, args: string, response: number): unknown {
  world.runs.push({ name, id, arguments: args, response, turn: world.turn });
  const outcome = outcomeOf(inputOf(args));
  if (outcome === 'threw') throw new BodyError(`${name} broke halfway`);
  if (outcome === 'not-found') throw new BodyError(`${name}: not found`, 404);
  return `${name} done`;
}

/** The README's loop: each call of an allowed response run with `session.runTool`, under its call id and declared cost. */
async function runLoop(world: World, server: MockOpenAIServer, calls: readonly ChatCompletionMessageToolCall[] | undefined): Promise<void> {
  const response = server.count();
  const seen = new Set<string>();
  for (const call of calls ?? []) {
    if (call.type !== 'function') continue;
    const name = call.function.name as ToolName;
    const args = call.function.arguments;
    const input = inputOf(args);
    const cost = TOOL_COSTS[name] ?? 0;
    // The first time a call (id, tool, input) of an allowed response runs, runTool takes the allow the response
    // got: no second decision (a limit would count the call twice). A repeat within the response is decided anew.
    const first = !seen.has(`${call.id}|${name}|${inputKey(input)}`);
    seen.add(`${call.id}|${name}|${inputKey(input)}`);
    const before = toolDecisions(world.session).length;
    let failure: unknown;
    try {
      await world.session.runTool(name, { ...(input !== undefined ? { input } : {}), cost, idempotencyKey: call.id }, () => body(world, name, call.id, args, response));
    } catch (error) {
      failure = error;
    }
    const added = toolDecisions(world.session).slice(before);
    if (first && added.length > 0) {
      throw new Violation(`runTool(${name}, ${JSON.stringify(args)}, ${call.id}) of an allowed response was decided again: ${added.map((d) => `${d.decision} (${d.reason})`).join('; ')}`);
    }
    if (failure !== undefined && !(failure instanceof BodyError || isPolicyRefusal(failure))) {
      throw new Violation(`runTool(${name}, ${JSON.stringify(args)}) threw an undocumented error: ${explain(failure)}`);
    }
  }
}

/** Runs one turn; returns the error it ended with (undefined when it ended normally). */
async function runTurn(world: World, server: MockOpenAIServer, turn: Turn): Promise<unknown> {
  const { client } = world;
  const base = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Do the chores.' }], max_tokens: 40 };
  const mode = turn.mode;
  const options = { maxRetries: turn.retry ? 1 : 0 };
  try {
    switch (mode.kind) {
      case 'create': {
        server.reply(...turn.responses.map((r) => replyOf(r, false, turn.retry)));
        const completion = await client.chat.completions.create({ ...base, tools: TOOL_SPECS }, options);
        await runLoop(world, server, completion.choices[0]?.message.tool_calls);
        return undefined;
      }
      case 'stream-final': {
        server.reply(...turn.responses.map((r) => replyOf(r, true, turn.retry)));
        const stream = client.chat.completions.stream({ ...base, tools: TOOL_SPECS }, options);
        const completion: ChatCompletion = await stream.finalChatCompletion();
        await runLoop(world, server, completion.choices[0]?.message.tool_calls);
        return undefined;
      }
      case 'stream-iterate': {
        server.reply(...turn.responses.map((r) => replyOf(r, true, turn.retry)));
        const stream = client.chat.completions.stream({ ...base, tools: TOOL_SPECS }, options);
        let seen = 0;
        let stopped = false;
        for await (const _chunk of stream) {
          void _chunk;
          if (mode.stopAfter !== null && seen++ >= mode.stopAfter) {
            stopped = true;
            if (mode.how === 'abort') stream.abort();
            break;
          }
        }
        // Broken off: the application does not run the calls it may have seen.
        if (stopped) return undefined;
        const completion = await stream.finalChatCompletion();
        await runLoop(world, server, completion.choices[0]?.message.tool_calls);
        return undefined;
      }
      case 'create-stream': {
        // The raw stream read chunk by chunk, its tool calls put together from their deltas by the application.
        server.reply(...turn.responses.map((r) => replyOf(r, true, turn.retry)));
        const stream = await client.chat.completions.create({ ...base, tools: TOOL_SPECS, stream: true }, options);
        const calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
        let seen = 0;
        for await (const chunk of stream) {
          if (mode.stopAfter !== null && seen++ >= mode.stopAfter) return undefined;
          for (const part of chunk.choices[0]?.delta.tool_calls ?? []) {
            const call = (calls[part.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
            call.id ||= part.id ?? '';
            call.function.name += part.function?.name ?? '';
            call.function.arguments += part.function?.arguments ?? '';
          }
        }
        await runLoop(world, server, calls);
        return undefined;
      }
      case 'run-tools': {
        server.reply(...turn.responses.map((r) => replyOf(r, mode.streamed, turn.retry)), {});
        const tools = TOOL_NAMES.map((name) => ({
          type: 'function' as const,
          function: {
            name,
            description: name,
            parameters: { type: 'object', properties: {} },
            function: (args: string) => body(world, name, '', args, server.count()),
          },
        }));
        // parallel_tool_calls: false has the client run a response's calls one after another (openai 6 always does).
        const params = { ...base, tools, ...(mode.sequential ? { parallel_tool_calls: false } : {}) };
        const runner = mode.streamed ? client.chat.completions.runTools({ ...params, stream: true }, options) : client.chat.completions.runTools(params, options);
        await runner.done();
        return undefined;
      }
    }
  } catch (error) {
    return error;
  }
}

/** A turn may end with a policy refusal, the client's own error (a 500, a dropped connection, an abort), or a body's error under runTools. */
function checkError(error: unknown, turn: Turn): void {
  const mode = turn.mode;
  if (error === undefined) return;
  if (error instanceof Violation) throw error;
  const policy = findPolicyError(error);
  if (policy !== undefined) {
    if (PolicyDeniedError.isInstance(policy) || ApprovalRequiredError.isInstance(policy)) return;
    throw new Violation(`an undocumented agentpolicy error escaped ${mode.kind}: ${explain(error)}`);
  }
  if (mode.kind === 'run-tools' && (error instanceof BodyError || (error as { cause?: unknown })?.cause instanceof BodyError)) return;
  if (error instanceof OpenAI.OpenAIError || error instanceof OpenAIv6.OpenAIError) return;
  // openai 6 lets the fetch's own error through when the server cuts a stream it is reading.
  const cut = turn.responses.some((response) => response.fault === 'cut' || response.fault === 'drop');
  if (cut && error instanceof TypeError && /terminated|fetch failed|other side closed/i.test(error.message)) return;
  throw new Violation(`an unexpected error escaped ${mode.kind}: ${explain(error)}`);
}

// ---- the invariants -------------------------------------------------------------------------------------------------

const decisionKey = (decision: Decision): string => {
  const action = decision.action as { name: string; input?: unknown };
  return `${action.name}|${inputKey(action.input)}`;
};
const runKey = (run: Run): string => `${run.name}|${inputKey(inputOf(run.arguments))}`;

function invariants(world: World, where: string, turn: Turn | undefined, turnError: unknown, requests: number): void {
  const report = world.session.report();
  const decisions = toolDecisions(world.session);
  const allows = decisions.filter((d) => d.decision === 'allow');
  const allowsByKey = countBy(allows, decisionKey);
  const runsByKey = countBy(world.runs, runKey);

  // 1. Each run has an allow of its own for exactly that tool and input; never the blocked tool; never a rejected send.
  for (const [key, count] of runsByKey) {
    const allowed = allowsByKey.get(key) ?? 0;
    if (count > allowed) throw new Violation(`${where}: ${key} ran ${count} time(s) with ${allowed} allow(s) recorded for it`);
  }
  for (const run of world.runs) {
    if (run.name === 'wipe') throw new Violation(`${where}: the blocked tool ran (${run.id} ${run.arguments})`);
    if (surelyDenied(run.name, inputOf(run.arguments))) throw new Violation(`${where}: a call the approver rejected ran (${run.arguments})`);
  }
  for (const allow of allows) {
    const action = allow.action as { name: string; input?: unknown };
    if (action.name === 'wipe') throw new Violation(`${where}: the blocked tool was allowed (${allow.id})`);
    if (needsApproval(action.name, action.input) && (allow.approval?.via !== 'approver' || !approverSays(action.input))) {
      throw new Violation(`${where}: ${decisionKey(allow)} was allowed without the approver's yes (${JSON.stringify(allow.approval)})`);
    }
  }
  const pings = world.runs.filter((run) => run.name === 'ping').length;
  if (pings > PING_LIMIT) throw new Violation(`${where}: ping ran ${pings} times under max_calls ${PING_LIMIT}`);

  // 1. A response holding a call the policy denies is refused as a whole: the turn ends with the policy error and none
  //    of that response's calls run.
  if (turn !== undefined) {
    const stoppedEarly = (turn.mode.kind === 'stream-iterate' || turn.mode.kind === 'create-stream') && turn.mode.stopAfter !== null;
    turn.responses.forEach((response, index) => {
      const served = index + 1 <= requests && response.fault === 'none';
      if (!served || !response.calls.some((call) => surelyDenied(call.name, inputOf(call.arguments)))) return;
      const ranHere = world.runs.filter((run) => run.turn === world.turn && run.response === index + 1);
      if (ranHere.length > 0) throw new Violation(`${where}: response ${index + 1} holds a denied call, yet ${ranHere.map((r) => `${r.name} ${r.arguments}`).join(', ')} ran`);
      if (!stoppedEarly && !isPolicyRefusal(turnError)) {
        throw new Violation(`${where}: response ${index + 1} holds a denied call (${response.calls.map((c) => `${c.id} ${c.name} ${c.arguments}`).join('; ')}) and was not refused (${turnError === undefined ? 'no error' : explain(turnError)})`);
      }
    });
  }

  // 2. Tool spend is the declared cost of the bodies that ran (a 404 releases it); nothing stays held; within budget.
  const toolSpent = decisions.reduce((sum, d) => sum + (d.settlement?.status === 'committed' ? d.settlement.actual : 0), 0);
  const expected = world.runs.reduce((sum, run) => sum + (outcomeOf(inputOf(run.arguments)) === 'not-found' ? 0 : (TOOL_COSTS[run.name] ?? 0)), 0);
  if (Math.abs(toolSpent - expected) > 1e-9) {
    throw new Violation(`${where}: tool spend ${toolSpent}, the bodies that ran cost ${expected} (runs: ${world.runs.map((r) => `${r.name} ${r.arguments}`).join(', ')})`);
  }
  if (report.reserved > 1e-12) {
    const held = report.decisions.filter((d) => d.settlement?.status === 'pending').map((d) => `${d.action.type} ${(d.action as { name?: string }).name ?? ''} ${inputKey((d.action as { input?: unknown }).input)}`);
    throw new Violation(`${where}: ${report.reserved} USD still held after the turn (${held.join(', ')})`);
  }
  // The server reports less usage than any request's estimate, so nothing may pass the budget, not even as an overrun.
  if (report.spent > BUDGET + 1e-12) throw new Violation(`${where}: spent ${report.spent} > budget ${BUDGET}`);
}

// ---- coverage: what the runs went through (so the fuzz cannot pass by exercising nothing) ---------------------------

const coverage = {
  'body ran (create)': 0,
  'body ran (stream-final)': 0,
  'body ran (stream-iterate)': 0,
  'body ran (create-stream)': 0,
  'body ran (run-tools)': 0,
  'response refused by the policy': 0,
  'tool call denied for money': 0,
  'model call denied for money': 0,
  'approver said yes': 0,
  'approver said no': 0,
  'limit reached': 0,
  'held cost given back': 0,
  'stream broken off': 0,
  'server fault': 0,
  'body threw': 0,
};

function count(world: World, turn: Turn, error: unknown, runsBefore: number): void {
  coverage[`body ran (${turn.mode.kind})`] += world.runs.length - runsBefore;
  if (isPolicyRefusal(error)) coverage['response refused by the policy']++;
  if ((turn.mode.kind === 'stream-iterate' || turn.mode.kind === 'create-stream') && turn.mode.stopAfter !== null) coverage['stream broken off']++;
  if (turn.responses.some((r) => r.fault !== 'none')) coverage['server fault']++;
  coverage['body threw'] += world.runs.slice(runsBefore).filter((run) => outcomeOf(inputOf(run.arguments)) !== 'returned').length;
}

function countEnd(session: PolicySession): void {
  for (const decision of session.report().decisions) {
    const section = decision.rule?.section;
    if (decision.decision === 'deny' && section === 'budget') coverage[decision.action.type === 'tool' ? 'tool call denied for money' : 'model call denied for money']++;
    if (decision.decision === 'deny' && section === 'approver') coverage['approver said no']++;
    if (decision.decision === 'allow' && decision.approval?.via === 'approver') coverage['approver said yes']++;
    if (decision.decision === 'deny' && section === 'limits') coverage['limit reached']++;
    // Released without a body refusing it with its 404: held for a refused or abandoned response, and given back.
    if (decision.action.type === 'tool' && decision.settlement?.status === 'released' && outcomeOf(decision.action.input) !== 'not-found') coverage['held cost given back']++;
  }
}

// ---- the run ------------------------------------------------------------------------------------------------------


const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_202 : Number(process.env['FUZZ_SEED']);
const RUNS = process.env['FUZZ_RUNS'] === undefined ? 250 : Number(process.env['FUZZ_RUNS']);

// Both majors the package supports (the v6 client typed as v7: the calls used are common to both).
const CLIENTS: ReadonlyArray<[string, typeof OpenAI]> = [
  ['openai 7', OpenAI],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI],
];

describe.each(CLIENTS)('tool flow fuzz with %s: random runs through create() + runTool, stream() and runTools() keep every promise', (_name, OpenAIClient) => {
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
          checkError(error, turn);
          invariants(world, where, turn, error, server.count());
          unhandled.check(where);
        }
        session.end();
        invariants(world, 'end', undefined, undefined, 0);
        countEnd(session);
      }),
      { seed: SEED, numRuns: RUNS, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false },
    );
    if (process.env['FUZZ_PATH'] === undefined) {
      const missing = Object.entries(coverage).filter(([, n]) => n === 0).map(([what]) => what);
      if (missing.length > 0) throw new Error(`the runs never went through: ${missing.join(', ')} (${JSON.stringify(coverage)})`);
    }
    if (process.env['FUZZ_STATS'] !== undefined) console.log(coverage);
  }, 120_000);
});

