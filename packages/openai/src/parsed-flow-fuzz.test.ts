/**
 * A model-based fuzz of tool calls whose tool parses its arguments, through the real `openai` client (openai 7 and
 * 6), wrapped with `wrapOpenAI(client, session, { checkToolCalls: true, toolCosts })` against the local mock server.
 * The tools have zod schemas whose value differs from the JSON the model sent: a default a deny rule catches
 * (`recursive` defaults to true), a default that makes a send need approval, a transform that turns the recipient
 * into one the approver refuses, a coercion, a default taken from a counter (another value at every parse), and
 * arguments the parse rejects or that are not JSON at all. Each turn goes through one of the helpers that run a
 * tool's parse — `chat.completions.runTools()` (`zodFunction` tools or functions with a `parse`, streamed or not,
 * calls side by side or one after another), `chat.completions.parse()` / `stream()` and `responses.parse()` /
 * `stream()` with `zodFunction` / `zodResponsesFunction` tools and the loop running each call on its
 * `parsed_arguments` — or through `create()` with the `toolParsers` option and the loop parsing with the same
 * function. Call ids repeat within a response and across turns; the server sometimes answers 500 or cuts a stream.
 *
 * After every turn: each body ran with a value the policy allowed exactly (judged on the value the tool got, never
 * on the raw JSON), at most once per allow; never a call the deny rule or the approver refuses; the loop runs each
 * call on the decision its response got (no second decision); tool spend is the declared cost of the bodies that
 * ran; nothing stays held; spend within the budget; only documented errors; nothing unhandled.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> FUZZ_PATH=<path> (FUZZ_RUNS=<n>).
 */
import { AgentPolicy, type Decision, type PolicySession } from '@agentpolicy/core';
import { startMockOpenAI, type MockOpenAIServer, type MockReply } from '@agentpolicy/test-servers';
import fc from 'fast-check';
import OpenAI from 'openai';
import { zodFunction, zodResponsesFunction } from 'openai/helpers/zod';
import OpenAIv6 from 'openai-v6';
import { zodFunction as zodFunctionV6, zodResponsesFunction as zodResponsesFunctionV6 } from 'openai-v6/helpers/zod';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { z } from 'zod';
import {
  BodyError,
  checkCoverage,
  checkLedger,
  checkTurnError,
  explain,
  fuzzSettings,
  inputKey,
  isPolicyRefusal,
  settle,
  toolDecisions,
  UnhandledRejections,
  Violation,
  type BodyRun,
} from './test-support/tool-fuzz.js';
import { toolCallInput } from './tool-calls.js';
import { wrapOpenAI } from './wrap-openai.js';

// ---- the world: tools, schemas, costs, policy ---------------------------------------------------------------------

const BUDGET = 0.0064;
const CHARGE = 0.003;
const TOOL_COSTS: Readonly<Record<string, number>> = { charge: CHARGE };
const PING_LIMIT = 2;

/** A recipient the schema rewrites: the model writes "team", the tool sends to eve (whom the approver refuses). */
const ALIASES: Readonly<Record<string, string>> = { team: 'eve' };

/** The tools' schemas; `stamp`'s default comes from a counter, so every parse gives another value. */
function schemas(counter: { n: number }) {
  return {
    send: z.object({ to: z.string().overwrite((to) => ALIASES[to.trim().toLowerCase()] ?? to.trim().toLowerCase()), amount: z.number().default(500) }),
    wipe: z.object({ path: z.string(), recursive: z.boolean().default(true) }),
    charge: z.object({ n: z.coerce.number().int() }),
    stamp: z.object({ q: z.string(), ticket: z.string().default(() => `t${++counter.n}`) }),
    ping: z.object({ x: z.number().default(0) }),
  };
}
type Schemas = ReturnType<typeof schemas>;
type ToolName = keyof Schemas;

/** Argument texts per tool: values the parse changes, values it rejects, malformed JSON. */
const ARGUMENTS: Readonly<Record<ToolName, readonly string[]>> = {
  send: ['{"to":"ada","amount":5}', '{"to":"Ada"}', '{"to":"TEAM","amount":5}', '{"to":"team"}', '{"to":5}', '{"to":'],
  wipe: ['{"path":"/"}', '{"path":"/","recursive":false}', '{"path":"/","recursive":true}'],
  charge: ['{"n":1}', '{"n":"2"}', '{"n":3}', '{"n":"x"}', '{"n":'],
  stamp: ['{"q":"a"}', '{"q":"a","ticket":"x"}', '{"q":"boom"}'],
  ping: ['{}', '{"x":1}', '{"x":"no"}'],
};
const TOOL_NAMES = Object.keys(ARGUMENTS) as ToolName[];
const CALL_IDS = ['call_a', 'call_b', 'call_c'];

type Outcome = 'returned' | 'threw' | 'not-found';
function outcomeOf(input: unknown): Outcome {
  const value = (typeof input === 'object' && input !== null ? input : {}) as { q?: unknown; n?: unknown };
  if (value.q === 'boom' || value.n === 2) return 'threw';
  if (value.n === 3) return 'not-found';
  return 'returned';
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;
const needsApproval = (name: string, input: unknown): boolean => name === 'send' && isObject(input) && Number(input['amount']) > 100;
const approverSays = (input: unknown): boolean => !isObject(input) || input['to'] !== 'eve';
const ruleDenies = (name: string, input: unknown): boolean => name === 'wipe' && isObject(input) && input['recursive'] === true;
/** A value the policy never lets run: a recursive wipe, or a large send the approver refuses. */
const neverRuns = (name: string, input: unknown): boolean => ruleDenies(name, input) || (needsApproval(name, input) && !approverSays(input));

function makeSession(): PolicySession {
  return new AgentPolicy({
    budget: BUDGET,
    rules: [
      { deny: 'no recursive wipes', tool: 'wipe', if: { 'input.recursive': { eq: true } } },
      { require_approval: 'large sends', tool: 'send', if: { 'input.amount': { gt: 100 } } },
    ],
    limits: [{ tool: 'ping', max_calls: PING_LIMIT, per: 'session' }],
  } as never).session({ approver: (request) => approverSays(request.action.type === 'tool' ? request.action.input : undefined) });
}

// ---- what is generated --------------------------------------------------------------------------------------------

interface Call {
  readonly id: string;
  readonly name: ToolName;
  readonly arguments: string;
}
type Fault = 'none' | 'status-500' | 'cut';
interface ModelResponse {
  readonly calls: readonly Call[];
  readonly fault: Fault;
  readonly cutAfter: number;
  readonly chunks: readonly number[];
}
type Mode =
  | { readonly kind: 'run-tools'; readonly form: 'zod' | 'parse'; readonly streamed: boolean; readonly sequential: boolean }
  | { readonly kind: 'chat-parse' }
  | { readonly kind: 'chat-stream' }
  | { readonly kind: 'responses-parse' }
  | { readonly kind: 'responses-stream' }
  | { readonly kind: 'tool-parsers'; readonly api: 'chat' | 'responses' };
interface Turn {
  readonly mode: Mode;
  readonly responses: readonly ModelResponse[];
}

const aCall: fc.Arbitrary<Call> = fc
  .record({ id: fc.constantFrom(...CALL_IDS), name: fc.constantFrom(...TOOL_NAMES), pick: fc.nat() })
  .map(({ id, name, pick }) => ({ id, name, arguments: ARGUMENTS[name][pick % ARGUMENTS[name].length]! }));

const aResponse: fc.Arbitrary<ModelResponse> = fc.record({
  calls: fc.array(aCall, { minLength: 0, maxLength: 3 }),
  fault: fc.constantFrom<Fault>('none', 'none', 'none', 'none', 'none', 'none', 'none', 'status-500', 'cut'),
  cutAfter: fc.integer({ min: 1, max: 12 }),
  chunks: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
});

const aMode: fc.Arbitrary<Mode> = fc.oneof(
  fc.record({ form: fc.constantFrom<'zod' | 'parse'>('zod', 'parse'), streamed: fc.boolean(), sequential: fc.boolean() }).map((m): Mode => ({ kind: 'run-tools', ...m })),
  fc.constant<Mode>({ kind: 'chat-parse' }),
  fc.constant<Mode>({ kind: 'chat-stream' }),
  fc.constant<Mode>({ kind: 'responses-parse' }),
  fc.constant<Mode>({ kind: 'responses-stream' }),
  fc.constantFrom<'chat' | 'responses'>('chat', 'responses').map((api): Mode => ({ kind: 'tool-parsers', api })),
);

const aTurn: fc.Arbitrary<Turn> = aMode.chain((mode) =>
  fc.record({ mode: fc.constant(mode), responses: fc.array(aResponse, { minLength: 1, maxLength: mode.kind === 'run-tools' ? 3 : 1 }) }),
);

// ---- the application --------------------------------------------------------------------------------------------

interface Helpers {
  readonly zodFunction: typeof zodFunction;
  readonly zodResponsesFunction: typeof zodResponsesFunction;
}

interface World {
  readonly session: PolicySession;
  client: OpenAI;
  readonly schemas: Schemas;
  readonly helpers: Helpers;
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

/** The loop's parse of a tool's arguments (what `toolParsers` is given): deterministic, so `stamp` has none. */
const loopParser = (world: World, name: ToolName) => (args: string): unknown => world.schemas[name].parse(JSON.parse(args));
const LOOP_PARSED: readonly ToolName[] = ['send', 'wipe', 'charge', 'ping'];

function replyOf(response: ModelResponse, streamed: boolean): MockReply {
  const toolCalls = response.calls.map((c) => ({ ...c }));
  switch (response.fault) {
    case 'status-500':
      return { status: 500 };
    case 'cut':
      return streamed ? { toolCalls, argumentChunks: response.chunks, dropAfterEvents: response.cutAfter } : { drop: true };
    default:
      return { toolCalls, argumentChunks: response.chunks };
  }
}

/** A call of the response the loop got, with the value its helper parsed (`undefined`: the loop parses itself). */
interface LoopCall {
  readonly id: string;
  readonly name: ToolName;
  readonly arguments: string;
  /**
   * The value the helper parsed (`parsed_arguments`); 'none' where the helper did not parse it (openai 6's
   * `responses.stream()` parses no function call): the loop then parses it with the tool's schema itself.
   */
  readonly parsed?: { readonly value: unknown } | 'none';
}

/**
 * The loop of the README over the calls of a response: each call run with `session.runTool` under its id and
 * declared cost, with the value its tool runs with (the helper's `parsed_arguments`, or the loop's own parse). A call
 * whose arguments the loop cannot parse is run on the input it was decided on (`toolCallInput`) and refused by the
 * tool with a 400, which gives its cost back; the tool body never sees it.
 */
async function runLoop(world: World, served: number, calls: readonly LoopCall[]): Promise<void> {
  const seen = new Set<string>();
  for (const call of calls) {
    let input: unknown;
    let refused = false;
    const parser = call.parsed === 'none' ? (args: string): unknown => world.schemas[call.name].parse(JSON.parse(args)) : LOOP_PARSED.includes(call.name) ? loopParser(world, call.name) : undefined;
    if (call.parsed !== undefined && call.parsed !== 'none') input = call.parsed.value;
    else if (parser !== undefined) {
      try {
        input = parser(call.arguments);
      } catch {
        input = toolCallInput(call.arguments);
        refused = true;
      }
    } else input = toolCallInput(call.arguments);
    // A value the loop's own parse takes from a counter is another call than the one decided (the README says so).
    const fresh = call.parsed === 'none' && call.name === 'stamp';
    const cost = TOOL_COSTS[call.name] ?? 0;
    const key = `${call.id}|${call.name}|${inputKey(input)}`;
    const first = !seen.has(key);
    seen.add(key);
    const before = toolDecisions(world.session).length;
    let failure: unknown;
    try {
      await world.session.runTool(call.name, { input, cost, idempotencyKey: call.id }, () => {
        if (refused) throw new BodyError(`${call.name}: arguments rejected`, 400);
        return body(world, call.name, input, served);
      });
    } catch (error) {
      failure = error;
    }
    const added = toolDecisions(world.session).slice(before);
    if (first && !fresh && added.length > 0) {
      throw new Violation(`runTool(${call.name}, ${call.arguments} → ${inputKey(input)}, ${call.id}) of an allowed response was decided again: ${added.map((d) => `${d.decision} (${d.reason})`).join('; ')}`);
    }
    if (failure !== undefined && !(failure instanceof BodyError || isPolicyRefusal(failure))) {
      throw new Violation(`runTool(${call.name}, ${call.arguments}) threw an undocumented error: ${explain(failure)}`);
    }
  }
}

const chatTools = (world: World) => TOOL_NAMES.map((name) => world.helpers.zodFunction({ name, parameters: world.schemas[name] }));
const responsesTools = (world: World) => TOOL_NAMES.map((name) => world.helpers.zodResponsesFunction({ name, parameters: world.schemas[name] }));

function runnableTools(world: World, server: MockOpenAIServer, form: 'zod' | 'parse') {
  return TOOL_NAMES.map((name) => {
    const run = (args: unknown) => body(world, name, args, server.count());
    if (form === 'zod') return world.helpers.zodFunction({ name, parameters: world.schemas[name], function: run });
    return { type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties: {} }, parse: (args: string) => world.schemas[name].parse(JSON.parse(args)) as unknown, function: run } };
  });
}

type ParsedChatCall = { id: string; type: string; function?: { name: string; arguments: string; parsed_arguments?: unknown } };
type ParsedItem = { type: string; call_id?: string; name?: string; arguments?: string; parsed_arguments?: unknown };

const chatCalls = (calls: readonly ParsedChatCall[] | undefined, parsed: boolean): LoopCall[] =>
  (calls ?? []).flatMap((c) => (c.type === 'function' && c.function ? [{ id: c.id, name: c.function.name as ToolName, arguments: c.function.arguments, ...(parsed ? { parsed: { value: c.function.parsed_arguments } } : {}) }] : []));
/** openai 6's `responses.parse()` puts the whole parsed item in `parsed_arguments`: its own `parsed_arguments` is the value. */
const parsedArguments = (item: ParsedItem): unknown => {
  const value = item.parsed_arguments;
  return isObject(value) && value['type'] === 'function_call' && 'parsed_arguments' in value ? value['parsed_arguments'] : value;
};
const responsesCalls = (output: readonly ParsedItem[] | undefined, parsed: boolean): LoopCall[] =>
  (output ?? []).flatMap((i) => {
    if (i.type !== 'function_call') return [];
    const value = parsedArguments(i);
    return [{ id: i.call_id ?? '', name: i.name as ToolName, arguments: i.arguments ?? '', ...(parsed ? { parsed: value === null || value === undefined ? ('none' as const) : { value } } : {}) }];
  });

async function runTurn(world: World, server: MockOpenAIServer, turn: Turn): Promise<unknown> {
  const { client } = world;
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Do the chores.' }], max_tokens: 40 };
  const responses = { model: 'gpt-4o-mini', input: 'Do the chores.', max_output_tokens: 40 };
  const mode = turn.mode;
  const options = { maxRetries: 0 };
  const streamed = mode.kind === 'chat-stream' || mode.kind === 'responses-stream' || (mode.kind === 'run-tools' && mode.streamed);
  server.reply(...turn.responses.map((r) => replyOf(r, streamed)), ...(mode.kind === 'run-tools' ? [{}] : []));
  try {
    switch (mode.kind) {
      case 'run-tools': {
        const params = { ...chat, tools: runnableTools(world, server, mode.form), ...(mode.sequential ? { parallel_tool_calls: false } : {}) };
        const runner = mode.streamed ? client.chat.completions.runTools({ ...params, stream: true } as never, options) : client.chat.completions.runTools(params as never, options);
        await (runner as { done(): Promise<void> }).done();
        return undefined;
      }
      case 'chat-parse': {
        const completion = await client.chat.completions.parse({ ...chat, tools: chatTools(world) }, options);
        await runLoop(world, server.count(), chatCalls(completion.choices[0]?.message.tool_calls as ParsedChatCall[] | undefined, true));
        return undefined;
      }
      case 'chat-stream': {
        const completion = await client.chat.completions.stream({ ...chat, tools: chatTools(world) }, options).finalChatCompletion();
        await runLoop(world, server.count(), chatCalls(completion.choices[0]?.message.tool_calls as ParsedChatCall[] | undefined, true));
        return undefined;
      }
      case 'responses-parse': {
        const response = await client.responses.parse({ ...responses, tools: responsesTools(world) }, options);
        await runLoop(world, server.count(), responsesCalls(response.output as ParsedItem[], true));
        return undefined;
      }
      case 'responses-stream': {
        const response = await client.responses.stream({ ...responses, tools: responsesTools(world) }, options).finalResponse();
        await runLoop(world, server.count(), responsesCalls(response.output as ParsedItem[], true));
        return undefined;
      }
      case 'tool-parsers': {
        const specs = TOOL_NAMES.map((name) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties: {} } } }));
        if (mode.api === 'chat') {
          const completion = await world.client.chat.completions.create({ ...chat, tools: specs }, options);
          await runLoop(world, server.count(), chatCalls(completion.choices[0]?.message.tool_calls as ParsedChatCall[] | undefined, false));
        } else {
          const response = await world.client.responses.create({ ...responses, tools: specs.map((s) => ({ type: 'function' as const, name: s.function.name, parameters: s.function.parameters, strict: false })) }, options);
          await runLoop(world, server.count(), responsesCalls(response.output as ParsedItem[], false));
        }
        return undefined;
      }
    }
  } catch (error) {
    return error;
  }
}

/** The parse's own error, which `parse()` / `stream()` throw for arguments the tool's schema rejects. */
const isParseError = (error: unknown): boolean => error instanceof z.ZodError || error instanceof SyntaxError || (error as { cause?: unknown })?.cause instanceof z.ZodError || (error as { cause?: unknown })?.cause instanceof SyntaxError;

// ---- the invariants -------------------------------------------------------------------------------------------------

/** The value a call runs with, where the parse takes it: what the policy must judge (null: the parse rejects it). */
function parsedValue(call: Call): { value: unknown } | null {
  try {
    // `stamp`'s counter default is not read by any rule: any value stands for it here.
    return { value: schemas({ n: 0 })[call.name].parse(JSON.parse(call.arguments)) };
  } catch {
    return null;
  }
}

function invariants(world: World, where: string, turn: Turn | undefined, turnError: unknown, requests: number): void {
  checkLedger(world.session, world.runs, where, {
    budget: BUDGET,
    limits: { ping: PING_LIMIT },
    mayRun: (run) => {
      if (neverRuns(run.name, run.input)) return 'the policy never allows that value';
      // A body gets the value its tool's parse gives; a value that parse rejects (or raw JSON it would change) never runs.
      try {
        const again = schemas({ n: 0 })[run.name as ToolName].parse(run.input) as Record<string, unknown>;
        const ran = run.input as Record<string, unknown>;
        if (run.name !== 'stamp' && inputKey(again) !== inputKey(ran)) return `not the value its parse gives (${inputKey(again)})`;
      } catch {
        return 'a value its parse rejects';
      }
      return undefined;
    },
    mayAllow: (allow: Decision) => {
      const action = allow.action as { name: string; input?: unknown };
      if (ruleDenies(action.name, action.input)) return 'the deny rule matches it';
      if (needsApproval(action.name, action.input) && (allow.approval?.via !== 'approver' || !approverSays(action.input))) return 'without the approver’s yes';
      return undefined;
    },
  });
  if (turn === undefined) return;
  // A response holding a call the policy refuses on its parsed value is refused as a whole: none of its calls run.
  turn.responses.forEach((response, index) => {
    const served = index + 1 <= requests && response.fault === 'none';
    if (!served) return;
    const refused = response.calls.some((call) => {
      const parsed = parsedValue(call);
      return parsed !== null && neverRuns(call.name, parsed.value);
    });
    if (!refused) return;
    const ranHere = world.runs.filter((run) => run.turn === world.turn && run.response === index + 1);
    if (ranHere.length > 0) throw new Violation(`${where}: response ${index + 1} holds a refused call, yet ${ranHere.map((r) => `${r.name} ${inputKey(r.input)}`).join(', ')} ran`);
    if (!isPolicyRefusal(turnError)) {
      throw new Violation(`${where}: response ${index + 1} holds a call the policy refuses on its parsed value (${response.calls.map((c) => `${c.id} ${c.name} ${c.arguments}`).join('; ')}) and was not refused (${turnError === undefined ? 'no error' : explain(turnError)})`);
    }
  });
}

// ---- coverage -------------------------------------------------------------------------------------------------------

const coverage = {
  'body ran (run-tools)': 0,
  'body ran (chat-parse)': 0,
  'body ran (chat-stream)': 0,
  'body ran (responses-parse)': 0,
  'body ran (responses-stream)': 0,
  'body ran (tool-parsers)': 0,
  'refused on a default (wipe)': 0,
  'refused on a transform (send to team)': 0,
  'approver said yes on a default': 0,
  'ran with a counter default': 0,
  'ran with a coerced value': 0,
  'arguments rejected by the parse': 0,
  'tool call denied for money': 0,
  'limit reached': 0,
  'held cost given back': 0,
  'parse error thrown by the client': 0,
  'same arguments twice in a response': 0,
  'server fault': 0,
};

function count(world: World, turn: Turn, error: unknown, runsBefore: number): void {
  const ran = world.runs.slice(runsBefore);
  coverage[`body ran (${turn.mode.kind})`] += ran.length;
  coverage['ran with a counter default'] += ran.filter((r) => r.name === 'stamp' && isObject(r.input) && String(r.input['ticket']).startsWith('t')).length;
  coverage['ran with a coerced value'] += ran.filter((r) => r.name === 'charge' && isObject(r.input) && r.input['n'] === 2).length;
  if (isParseError(error)) coverage['parse error thrown by the client']++;
  // The JSON leaves `recursive` out: only the schema's default makes the rule deny it.
  if (isPolicyRefusal(error) && turn.responses.some((r) => r.fault === 'none' && r.calls.some((c) => c.name === 'wipe' && c.arguments === '{"path":"/"}'))) coverage['refused on a default (wipe)']++;
  if (turn.responses.some((r) => r.fault !== 'none')) coverage['server fault']++;
  if (turn.responses.some((r) => new Set(r.calls.map((c) => `${c.name}${c.arguments}`)).size < r.calls.length)) coverage['same arguments twice in a response']++;
}

function countEnd(session: PolicySession): void {
  for (const decision of session.report().decisions) {
    if (decision.action.type !== 'tool') continue;
    const section = decision.rule?.section;
    const { input } = decision.action;
    if (decision.decision === 'deny' && section === 'approver' && isObject(input) && input['to'] === 'eve') coverage['refused on a transform (send to team)']++;
    if (decision.decision === 'allow' && decision.approval?.via === 'approver') coverage['approver said yes on a default']++;
    if (decision.action.metadata?.['argumentsRejected'] === true) coverage['arguments rejected by the parse']++;
    if (decision.decision === 'deny' && section === 'budget') coverage['tool call denied for money']++;
    if (decision.decision === 'deny' && section === 'limits') coverage['limit reached']++;
    if (decision.settlement?.status === 'released' && outcomeOf(input) !== 'not-found') coverage['held cost given back']++;
  }
}

// ---- the run ------------------------------------------------------------------------------------------------------

const CLIENTS: ReadonlyArray<[string, typeof OpenAI, Helpers]> = [
  ['openai 7', OpenAI, { zodFunction, zodResponsesFunction }],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI, { zodFunction: zodFunctionV6 as unknown as typeof zodFunction, zodResponsesFunction: zodResponsesFunctionV6 as unknown as typeof zodResponsesFunction }],
];

describe.each(CLIENTS)('parsed tool input fuzz with %s: runTools(), parse(), stream() and toolParsers judge the value the tool runs with', (_name, OpenAIClient, helpers) => {
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

  it('bodies run only on an allow for the value they got, once; tool spend is what ran, nothing stays held; only documented errors', async () => {
    for (const key of Object.keys(coverage) as (keyof typeof coverage)[]) coverage[key] = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(aTurn, { minLength: 1, maxLength: 6 }), async (turns) => {
        const session = makeSession();
        const counter = { n: 0 };
        const world: World = { session, client: new OpenAIClient({ apiKey: 'k' }), schemas: schemas(counter), helpers, runs: [], turn: 0 };
        const toolParsers = Object.fromEntries(LOOP_PARSED.map((name) => [name, loopParser(world, name)]));
        world.client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: TOOL_COSTS, toolParsers });
        unhandled.seen.length = 0;
        for (const [index, turn] of turns.entries()) {
          world.turn = index + 1;
          server.reset();
          const runsBefore = world.runs.length;
          const error = await runTurn(world, server, turn);
          await settle();
          const where = `turn ${index + 1} (${turn.mode.kind}${turn.mode.kind === 'run-tools' ? ` ${turn.mode.form}${turn.mode.streamed ? ' streamed' : ''}${turn.mode.sequential ? ' sequential' : ''}` : ''})`;
          count(world, turn, error, runsBefore);
          checkTurnError(error, where, turn.responses.some((r) => r.fault === 'cut'), (e) => isParseError(e) || (turn.mode.kind === 'run-tools' && (e instanceof BodyError || (e as { cause?: unknown })?.cause instanceof BodyError)));
          invariants(world, where, turn, error, server.count());
          unhandled.check(where);
        }
        session.end();
        invariants(world, 'end', undefined, undefined, 0);
        countEnd(session);
      }),
      fuzzSettings(20_261_204, 300),
    );
    checkCoverage(coverage);
  }, 120_000);
});
