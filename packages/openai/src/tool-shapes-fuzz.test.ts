/**
 * A model-based fuzz of the tool-call shapes the other flow fuzzes do not send, through the real `openai` client
 * (openai 7 and 6) wrapped with `wrapOpenAI(client, session, { checkToolCalls: true, toolCosts })`, against the local
 * mock server answering with exactly the JSON or SSE events generated here (the world of tools, costs and policy is
 * the shared one: a blocked tool, a tool with a cost, approval for large sends, a `max_calls` limit):
 *
 * - chat completions: the legacy `message.function_call` (no `tool_calls`); `n > 1`, several choices each with calls
 *   that may share ids and arguments; custom tool calls (`type: 'custom'`, free-form `input`). Non-streamed
 *   (`create()`) and streamed (`stream()` read with `finalChatCompletion()`), the deltas of all choices and calls
 *   interleaved at random, arguments split at random, and now and then the name sent again with every delta;
 * - Responses: `function_call` and `custom_tool_call` items, streamed with or without their `….done` and
 *   `output_item.done` events, with those events now and then carrying other arguments than the deltas did, and
 *   ending on `response.completed`, `response.failed`, `response.incomplete` (with or without an output), or on no
 *   terminal event at all. Through `create()`, `stream()` with `finalResponse()`, and `create({ stream: true })`
 *   read by hand (the caller takes the terminal event's output, else the items the stream said were done).
 *
 * After every turn: each call the client handed the caller (every choice, every call, in a result returned without
 * error) has an allow recorded for exactly its tool and input, and none is a call the policy never allows; then the
 * caller's loop runs every one of them with `session.runTool` (the adapter's call id, the declared cost) and the
 * shared ledger checks hold (a body runs only on an allow of its own, tool spend is what ran, nothing stays held,
 * spend within the budget), only documented errors, nothing unhandled.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> FUZZ_PATH=<path> (FUZZ_RUNS=<n>).
 */
import { AgentPolicy, PolicyDeniedError, findPolicyError, type PolicySession } from '@agentpolicy/core';
import { startMockOpenAI, type MockOpenAIServer, type MockReply } from '@agentpolicy/test-servers';
import fc from 'fast-check';
import OpenAI from 'openai';
import OpenAIv6 from 'openai-v6';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  aCall,
  ARGUMENTS,
  BodyError,
  checkCallsHandedOut,
  checkCoverage,
  checkLedger,
  checkTurnError,
  explain,
  fuzzSettings,
  isPolicyRefusal,
  makeSession,
  outcomeOf,
  settle,
  TOOL_COSTS,
  TOOL_NAMES,
  UnhandledRejections,
  Violation,
  WORLD_RULES,
  type BodyRun,
  type Call,
  type CallerCall,
  type ToolName,
} from './test-support/tool-fuzz.js';
import { toolCallInput } from './tool-calls.js';
import { wrapOpenAI } from './wrap-openai.js';

const USAGE = { input: 100, output: 20 };
const CREATED = 1_700_000_000;

// ---- what is generated --------------------------------------------------------------------------------------------

interface ChatChoice {
  readonly calls: readonly Call[];
  /** Which calls are custom tool calls (free-form `input`). */
  readonly custom: readonly boolean[];
  /** The choice answers with the legacy `function_call` (its first call) instead of `tool_calls`. */
  readonly legacy: boolean;
}

interface ChatShape {
  readonly api: 'chat';
  readonly mode: 'create' | 'stream-final';
  readonly choices: readonly ChatChoice[];
  /** Picks of which call's next delta goes next (all choices and calls interleaved). */
  readonly order: readonly number[];
  /** Every delta of a call carries its name again. */
  readonly nameEveryDelta: boolean;
  readonly chunks: readonly number[];
}

interface ResponsesShape {
  readonly api: 'responses';
  readonly mode: 'create' | 'stream-final' | 'create-stream';
  readonly items: readonly { readonly call: Call; readonly custom: boolean }[];
  /** The stream sends each item's `….done` and `output_item.done` events. */
  readonly finished: boolean;
  /** Those events, and the terminal output, carry other arguments than the deltas did. */
  readonly otherAtDone: boolean;
  readonly terminal: 'completed' | 'failed' | 'incomplete' | 'none';
  /** The terminal event's response has its output (else `output: null`, which the client fills in itself). */
  readonly terminalOutput: boolean;
  readonly chunks: readonly number[];
}

type Shape = ChatShape | ResponsesShape;

const aChoice: fc.Arbitrary<ChatChoice> = fc.record({
  calls: fc.array(aCall, { minLength: 0, maxLength: 3 }),
  custom: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
  legacy: fc.constantFrom(false, false, true),
});

const aChatShape: fc.Arbitrary<ChatShape> = fc.record({
  api: fc.constant<'chat'>('chat'),
  mode: fc.constantFrom<ChatShape['mode']>('create', 'stream-final'),
  choices: fc.array(aChoice, { minLength: 1, maxLength: 3 }),
  order: fc.array(fc.nat({ max: 8 }), { minLength: 1, maxLength: 30 }),
  nameEveryDelta: fc.boolean(),
  chunks: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
});

const aResponsesShape: fc.Arbitrary<ResponsesShape> = fc.record({
  api: fc.constant<'responses'>('responses'),
  mode: fc.constantFrom<ResponsesShape['mode']>('create', 'stream-final', 'create-stream'),
  items: fc.array(fc.record({ call: aCall, custom: fc.boolean() }), { minLength: 0, maxLength: 3 }),
  finished: fc.boolean(),
  otherAtDone: fc.constantFrom(false, false, true),
  terminal: fc.constantFrom<ResponsesShape['terminal']>('completed', 'failed', 'incomplete', 'none'),
  terminalOutput: fc.boolean(),
  chunks: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
});

const aShape: fc.Arbitrary<Shape> = fc.oneof(aChatShape, aResponsesShape);

/** The next argument text of the call's tool (what a `….done` event says in a stream that changes them). */
const otherArguments = (call: Call): string => {
  const pool: readonly string[] = ARGUMENTS[call.name];
  return pool[(pool.indexOf(call.arguments) + 1) % pool.length]!;
};

/** `text` cut into pieces of the given sizes (cycled). */
function pieces(text: string, sizes: readonly number[]): string[] {
  if (text === '') return [''];
  const out: string[] = [];
  for (let at = 0, i = 0; at < text.length; i++) {
    const size = sizes[i % sizes.length]!;
    out.push(text.slice(at, at + size));
    at += size;
  }
  return out;
}

// ---- the server's answers -----------------------------------------------------------------------------------------

const chatUsage = { prompt_tokens: USAGE.input, completion_tokens: USAGE.output, total_tokens: USAGE.input + USAGE.output };

function chatReply(shape: ChatShape, id: string): MockReply {
  if (shape.mode === 'create') {
    return {
      raw: {
        json: {
          id,
          object: 'chat.completion',
          created: CREATED,
          model: 'gpt-4o-mini',
          choices: shape.choices.map((choice, index) => {
            const first = choice.calls[0];
            const message =
              choice.legacy && first !== undefined
                ? { role: 'assistant', content: null, refusal: null, function_call: { name: first.name, arguments: first.arguments } }
                : choice.calls.length === 0
                  ? { role: 'assistant', content: 'Nothing to do.', refusal: null }
                  : {
                      role: 'assistant',
                      content: null,
                      refusal: null,
                      tool_calls: choice.calls.map((call, i) =>
                        choice.custom[i] ? { id: call.id, type: 'custom', custom: { name: call.name, input: call.arguments } } : { id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } },
                      ),
                    };
            return { index, message, finish_reason: choice.legacy && first ? 'function_call' : choice.calls.length > 0 ? 'tool_calls' : 'stop', logprobs: null };
          }),
          usage: chatUsage,
        },
      },
    };
  }
  // One queue of deltas per call (a legacy choice: one queue for its function_call), merged by the generated picks.
  const queues: { choice: number; deltas: unknown[] }[] = [];
  shape.choices.forEach((choice, c) => {
    const first = choice.calls[0];
    if (choice.legacy && first !== undefined) {
      const parts = pieces(first.arguments, shape.chunks);
      queues.push({ choice: c, deltas: parts.map((part, k) => ({ function_call: { ...(k === 0 || shape.nameEveryDelta ? { name: first.name } : {}), arguments: part } })) });
      return;
    }
    choice.calls.forEach((call, i) => {
      const custom = choice.custom[i] === true;
      const parts = pieces(call.arguments, shape.chunks);
      queues.push({
        choice: c,
        deltas: parts.map((part, k) => {
          const named = k === 0 || shape.nameEveryDelta ? { name: call.name } : {};
          const body = custom ? { custom: { ...named, input: part } } : { function: { ...named, arguments: part } };
          return { tool_calls: [{ index: i, ...(k === 0 ? { id: call.id, type: custom ? 'custom' : 'function' } : {}), ...body }] };
        }),
      });
    });
  });
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({ id, object: 'chat.completion.chunk', created: CREATED, model: 'gpt-4o-mini', choices, ...extra });
  const events: unknown[] = [chunk(shape.choices.map((_, index) => ({ index, delta: { role: 'assistant', content: null }, finish_reason: null })))];
  let pick = 0;
  while (queues.some((q) => q.deltas.length > 0)) {
    const open = queues.filter((q) => q.deltas.length > 0);
    const queue = open[shape.order[pick++ % shape.order.length]! % open.length]!;
    events.push(chunk([{ index: queue.choice, delta: queue.deltas.shift(), finish_reason: null }]));
  }
  shape.choices.forEach((choice, index) => {
    const reason = choice.legacy && choice.calls.length > 0 ? 'function_call' : choice.calls.length > 0 ? 'tool_calls' : 'stop';
    events.push(chunk([{ index, delta: choice.calls.length > 0 ? {} : { content: 'Nothing to do.' }, finish_reason: reason }]));
  });
  events.push(chunk([], { usage: chatUsage }), '[DONE]');
  return { raw: { events } };
}

function responsesReply(shape: ResponsesShape, id: string): MockReply {
  const item = (entry: ResponsesShape['items'][number], index: number, args: string, status: string) =>
    entry.custom
      ? { type: 'custom_tool_call', id: `ctc_${index}`, call_id: entry.call.id, name: entry.call.name, input: args, status }
      : { type: 'function_call', id: `fc_${index}`, call_id: entry.call.id, name: entry.call.name, arguments: args, status };
  const doneArgs = (entry: ResponsesShape['items'][number]) => (shape.otherAtDone ? otherArguments(entry.call) : entry.call.arguments);
  const usage = { input_tokens: USAGE.input, input_tokens_details: { cached_tokens: 0 }, output_tokens: USAGE.output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: USAGE.input + USAGE.output };
  const response = (status: string, output: unknown[] | null, withUsage: boolean) => ({
    id,
    object: 'response',
    created_at: CREATED,
    status,
    error: status === 'failed' ? { code: 'server_error', message: 'the model failed' } : null,
    incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: null,
    model: 'gpt-4o-mini',
    output,
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    temperature: 1,
    top_p: 1,
    usage: withUsage ? usage : null,
  });
  const final = shape.items.map((entry, index) => item(entry, index, doneArgs(entry), 'completed'));
  const status = shape.terminal === 'none' ? 'completed' : shape.terminal;
  if (shape.mode === 'create') return { raw: { json: response(status, final, true) } };
  let n = 0;
  const events: unknown[] = [];
  const push = (type: string, payload: Record<string, unknown>) => events.push({ type, sequence_number: n++, ...payload });
  push('response.created', { response: response('in_progress', [], false) });
  shape.items.forEach((entry, index) => {
    const added = item(entry, index, '', 'in_progress');
    push('response.output_item.added', { output_index: index, item: added });
    for (const part of pieces(entry.call.arguments, shape.chunks)) {
      push(entry.custom ? 'response.custom_tool_call_input.delta' : 'response.function_call_arguments.delta', { item_id: added.id, output_index: index, delta: part });
    }
    if (!shape.finished) return;
    const args = doneArgs(entry);
    push(entry.custom ? 'response.custom_tool_call_input.done' : 'response.function_call_arguments.done', { item_id: added.id, output_index: index, ...(entry.custom ? { input: args } : { arguments: args }) });
    push('response.output_item.done', { output_index: index, item: item(entry, index, args, 'completed') });
  });
  if (shape.terminal !== 'none') push(`response.${shape.terminal}`, { response: response(status, shape.terminalOutput ? final : null, true) });
  return { raw: { events } };
}

// ---- the application --------------------------------------------------------------------------------------------

const TOOL_SPECS_CHAT = TOOL_NAMES.map((name) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties: {} } } }));
const TOOL_SPECS_RESPONSES = TOOL_NAMES.map((name) => ({ type: 'function' as const, name, description: name, parameters: { type: 'object', properties: {} }, strict: false }));

interface World {
  readonly session: PolicySession;
  readonly client: OpenAI;
  readonly runs: BodyRun[];
  turn: number;
}

/** The calls a chat completion hands the caller: every choice's tool calls and legacy `function_call`. */
function chatCalls(completion: OpenAI.Chat.Completions.ChatCompletion): CallerCall[] {
  return completion.choices.flatMap((choice) => {
    const message = choice.message;
    const calls: CallerCall[] = (message.tool_calls ?? []).map((call) =>
      call.type === 'custom' ? { id: call.id, name: call.custom.name, arguments: call.custom.input } : { id: call.id, name: call.function.name, arguments: call.function.arguments },
    );
    // The adapter keys a legacy function_call by the completion's id and the choice's index.
    if (message.function_call) calls.push({ id: `${completion.id}:${choice.index}`, name: message.function_call.name, arguments: message.function_call.arguments });
    return calls;
  });
}

/** The calls a Responses response hands the caller: its `function_call` and `custom_tool_call` items. */
function responsesCalls(response: OpenAI.Responses.Response | undefined): CallerCall[] {
  return (response?.output ?? []).flatMap((item): CallerCall[] => {
    if (item.type === 'function_call') return [{ id: item.call_id, name: item.name, arguments: item.arguments }];
    if (item.type === 'custom_tool_call') return [{ id: item.call_id, name: item.name, arguments: item.input }];
    return [];
  });
}

function body(world: World, name: ToolName, input: unknown): unknown {
  const outcome = outcomeOf(input);
  world.runs.push({ name, input, charged: outcome === 'not-found' ? 0 : (TOOL_COSTS[name] ?? 0), turn: world.turn, response: 1 });
  if (outcome === 'threw') throw new BodyError(`${name} broke halfway`);
  if (outcome === 'not-found') throw new BodyError(`${name}: not found`, 404);
  return `${name} done`;
}

/** The caller's loop: every call it got, run with `session.runTool` under the adapter's call id and declared cost. */
async function runLoop(world: World, calls: readonly CallerCall[]): Promise<void> {
  for (const call of calls) {
    const name = call.name as ToolName;
    const input = toolCallInput(call.arguments);
    try {
      await world.session.runTool(name, { input, cost: TOOL_COSTS[name] ?? 0, idempotencyKey: call.id }, () => {
        if (typeof input !== 'object' || input === null) throw new BodyError(`${name}: arguments are not a JSON object`, 400);
        return body(world, name, input);
      });
    } catch (error) {
      if (!(error instanceof BodyError || isPolicyRefusal(error))) throw new Violation(`runTool(${name}, ${JSON.stringify(call.arguments)}) threw an undocumented error: ${explain(error)}`);
    }
  }
}

/** Runs a turn; returns the calls the caller got (undefined when the turn failed) and the error. */
async function runTurn(world: World, server: MockOpenAIServer, shape: Shape, id: string): Promise<{ calls: CallerCall[] | undefined; error: unknown }> {
  const { client } = world;
  try {
    if (shape.api === 'chat') {
      server.reply(chatReply(shape, id));
      const params = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Do the chores.' }], tools: TOOL_SPECS_CHAT, n: shape.choices.length, max_completion_tokens: 200 };
      const completion = shape.mode === 'create' ? await client.chat.completions.create(params) : await client.chat.completions.stream(params).finalChatCompletion();
      return { calls: chatCalls(completion), error: undefined };
    }
    server.reply(responsesReply(shape, id));
    const params = { model: 'gpt-4o-mini', input: 'Do the chores.', max_output_tokens: 200, tools: TOOL_SPECS_RESPONSES };
    if (shape.mode === 'create') return { calls: responsesCalls(await client.responses.create(params)), error: undefined };
    if (shape.mode === 'stream-final') return { calls: responsesCalls(await client.responses.stream(params).finalResponse()), error: undefined };
    // Read by hand: the terminal event's output, else the items the stream said were done.
    let final: OpenAI.Responses.Response | undefined;
    const done: OpenAI.Responses.ResponseOutputItem[] = [];
    for await (const event of await client.responses.create({ ...params, stream: true })) {
      if (event.type === 'response.output_item.done') done.push(event.item);
      if (event.type === 'response.completed' || event.type === 'response.failed' || event.type === 'response.incomplete') final = event.response;
    }
    return { calls: responsesCalls(final !== undefined && Array.isArray(final.output) ? final : ({ output: done } as unknown as OpenAI.Responses.Response)), error: undefined };
  } catch (error) {
    return { calls: undefined, error };
  }
}

// ---- coverage -------------------------------------------------------------------------------------------------------

const coverage = {
  'legacy function_call handed out (create)': 0,
  'legacy function_call handed out (stream)': 0,
  'calls of several choices handed out': 0,
  'custom tool call handed out (chat)': 0,
  'custom_tool_call handed out (Responses)': 0,
  'Responses failed, calls handed out': 0,
  'Responses incomplete, calls handed out': 0,
  'Responses stream with no terminal event, calls handed out': 0,
  'Responses terminal event without output, calls handed out': 0,
  'Responses stream with unfinished items, calls handed out': 0,
  'interleaved chat deltas, calls handed out': 0,
  'name in every delta, calls handed out': 0,
  'turn refused by the policy': 0,
  'body ran': 0,
};

function count(shape: Shape, calls: readonly CallerCall[] | undefined, error: unknown, ran: number): void {
  coverage['body ran'] += ran;
  if (isPolicyRefusal(error)) coverage['turn refused by the policy']++;
  if (calls === undefined || calls.length === 0) return;
  if (shape.api === 'chat') {
    if (shape.choices.some((c) => c.legacy && c.calls.length > 0)) coverage[`legacy function_call handed out (${shape.mode === 'create' ? 'create' : 'stream'})`]++;
    if (shape.choices.filter((c) => c.calls.length > 0).length > 1) coverage['calls of several choices handed out']++;
    if (shape.choices.some((c) => !c.legacy && c.calls.some((_, i) => c.custom[i]))) coverage['custom tool call handed out (chat)']++;
    if (shape.mode !== 'create' && shape.choices.reduce((n, c) => n + c.calls.length, 0) > 1) coverage['interleaved chat deltas, calls handed out']++;
    if (shape.mode !== 'create' && shape.nameEveryDelta) coverage['name in every delta, calls handed out']++;
    return;
  }
  if (shape.items.some((i) => i.custom)) coverage['custom_tool_call handed out (Responses)']++;
  if (shape.terminal === 'failed') coverage['Responses failed, calls handed out']++;
  if (shape.terminal === 'incomplete') coverage['Responses incomplete, calls handed out']++;
  if (shape.mode === 'create') return;
  if (shape.terminal === 'none') coverage['Responses stream with no terminal event, calls handed out']++;
  if (shape.terminal !== 'none' && !shape.terminalOutput) coverage['Responses terminal event without output, calls handed out']++;
  if (!shape.finished) coverage['Responses stream with unfinished items, calls handed out']++;
}

// ---- the run ------------------------------------------------------------------------------------------------------

const CLIENTS: ReadonlyArray<[string, typeof OpenAI]> = [
  ['openai 7', OpenAI],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI],
];

describe.each(CLIENTS)('tool-call shapes fuzz with %s: legacy function_call, n > 1, custom tools, failed and unfinished Responses streams', (_name, OpenAIClient) => {
  let server: MockOpenAIServer;
  const unhandled = new UnhandledRejections();
  beforeAll(async () => {
    server = await startMockOpenAI({ usage: USAGE });
    unhandled.install();
  });
  afterAll(async () => {
    unhandled.remove();
    await server.close();
  });

  it('every call the caller gets was allowed for exactly its input; the loop keeps the ledger; only documented errors', async () => {
    for (const key of Object.keys(coverage) as (keyof typeof coverage)[]) coverage[key] = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(aShape, { minLength: 1, maxLength: 4 }), async (shapes) => {
        const session = makeSession();
        const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: TOOL_COSTS });
        const world: World = { session, client, runs: [], turn: 0 };
        unhandled.seen.length = 0;
        for (const [index, shape] of shapes.entries()) {
          world.turn = index + 1;
          server.reset();
          const where = `turn ${index + 1} (${shape.api} ${shape.mode})`;
          const { calls, error } = await runTurn(world, server, shape, `${shape.api === 'chat' ? 'chatcmpl' : 'resp'}-${index + 1}`);
          await settle();
          checkTurnError(error, where, false);
          if (calls !== undefined) checkCallsHandedOut(session, calls, where, toolCallInput);
          const before = world.runs.length;
          if (calls !== undefined) await runLoop(world, calls);
          await settle();
          count(shape, calls, error, world.runs.length - before);
          checkLedger(session, world.runs, where, WORLD_RULES);
          unhandled.check(where);
        }
        session.end();
      }),
      fuzzSettings(20_261_201, 300),
    );
    checkCoverage(coverage);
  }, 120_000);
});

// ---- the holes the fuzz found, one by one ----------------------------------------------------------------------------

const call = (id: string, name: ToolName, args: string): Call => ({ id, name, arguments: args });
const chatStream = (choices: ChatChoice[], extra: Partial<ChatShape> = {}): ChatShape => ({ api: 'chat', mode: 'stream-final', choices, order: [0], nameEveryDelta: false, chunks: [4], ...extra });
const plain = (calls: Call[]): ChatChoice => ({ calls, custom: calls.map(() => false), legacy: false });
const responsesStream = (items: ResponsesShape['items'], extra: Partial<ResponsesShape>): ResponsesShape => ({
  api: 'responses',
  mode: 'stream-final',
  items,
  finished: true,
  otherAtDone: false,
  terminal: 'completed',
  terminalOutput: true,
  chunks: [4],
  ...extra,
});

describe.each(CLIENTS)('tool-call shapes with %s: the holes found', (_name, OpenAIClient) => {
  let server: MockOpenAIServer;
  beforeAll(async () => {
    server = await startMockOpenAI({ usage: USAGE });
  });
  afterAll(() => server.close());

  const world = (): World => {
    const session = makeSession();
    return { session, client: wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: TOOL_COSTS }), runs: [], turn: 1 };
  };
  const refused = (error: unknown): boolean => PolicyDeniedError.isInstance(findPolicyError(error));

  it('a blocked tool whose name comes again in every delta is refused (the client keeps the name, it does not join them)', async () => {
    const w = world();
    const { calls, error } = await runTurn(w, server, chatStream([plain([call('call_a', 'wipe', '{"path":"/"}')])], { nameEveryDelta: true }), 'chatcmpl-1');
    expect(calls).toBeUndefined();
    expect(refused(error)).toBe(true);
  });

  it('interleaved deltas: a send the approver refuses is decided on its whole arguments, not on what came before the next call started', async () => {
    const w = world();
    const shape = chatStream([plain([call('call_a', 'send', '{"to":"eve","amount":500}'), call('call_b', 'lookup', '{"q":"a"}')])], { order: [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
    const { calls, error } = await runTurn(w, server, shape, 'chatcmpl-2');
    expect(calls).toBeUndefined();
    expect(refused(error)).toBe(true);
    // (What came before the lookup started was decided too, when the client reported it done; the whole call refuses it.)
    const sends = w.session.report().decisions.filter((d) => d.action.type === 'tool' && d.action.name === 'send');
    expect(sends.at(-1)).toMatchObject({ decision: 'deny', action: { input: { to: 'eve', amount: 500 } } });
  });

  it('a Responses call item that never completed (no done events, a failed response without output) is decided: a blocked one refuses the stream', async () => {
    const w = world();
    for (const terminal of ['failed', 'incomplete', 'none'] as const) {
      const { calls, error } = await runTurn(w, server, responsesStream([{ call: call('call_a', 'wipe', '{"path":"/"}'), custom: false }], { finished: false, terminal, terminalOutput: false }), `resp-${terminal}`);
      expect(calls, terminal).toBeUndefined();
      expect(refused(error), terminal).toBe(true);
    }
  });

  it('the calls of a failed or incomplete Responses stream keep no held cost; one run anyway is decided and charged then', async () => {
    for (const terminal of ['failed', 'incomplete'] as const) {
      const w = world();
      const { calls, error } = await runTurn(w, server, responsesStream([{ call: call('call_a', 'charge', '{"n":1}'), custom: false }], { terminal }), `resp-held-${terminal}`);
      expect(error, terminal).toBeUndefined();
      await settle();
      expect(w.session.report().reserved, terminal).toBe(0);
      await runLoop(w, calls ?? []);
      expect(w.runs.map((r) => r.name)).toEqual(['charge']);
      const charged = w.session.report().decisions.filter((d) => d.action.type === 'tool' && d.settlement?.status === 'committed');
      expect(charged.map((d) => d.settlement?.status === 'committed' && d.settlement.actual)).toEqual([TOOL_COSTS['charge']]);
    }
  });

  it('a stream helper that rejects a response it read whole gives back the costs its calls held', async () => {
    const w = world();
    // openai 7 refuses a completed Responses stream with an item left unfinished; openai 6 a chat custom tool call.
    const shape: Shape =
      OpenAIClient === OpenAI
        ? responsesStream([{ call: call('call_a', 'charge', '{"n":1}'), custom: false }, { call: call('call_b', 'lookup', '{"q":"a"}'), custom: false }], { finished: false, terminal: 'completed', terminalOutput: false })
        : chatStream([{ calls: [call('call_a', 'charge', '{"n":1}'), call('call_b', 'lookup', '{"q":"a"}')], custom: [false, true], legacy: false }]);
    const { error } = await runTurn(w, server, shape, 'helper-failed');
    expect(error instanceof OpenAI.OpenAIError || error instanceof OpenAIv6.OpenAIError).toBe(true);
    expect(findPolicyError(error)).toBeUndefined();
    await settle();
    expect(w.session.report().reserved).toBe(0);
    expect(w.session.report().spent).toBeLessThan(TOOL_COSTS['charge']!);
  });

  it('runTools(): a parse that returns another call’s raw arguments text does not take that call’s allow (and its cost)', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    // A string costs 0.003 and an object 0.001: the body that runs with a string must be charged 0.003.
    const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL, maxRetries: 0 }), session, {
      checkToolCalls: true,
      toolCosts: ({ args }) => (typeof args === 'string' ? 0.003 : 0.001),
    });
    const ran: unknown[] = [];
    const parse = (args: string): unknown => {
      const value = JSON.parse(args) as { wrap?: string; reject?: number };
      if (value.reject !== undefined) throw new Error('rejected arguments');
      return value.wrap ?? value;
    };
    // call_x's arguments are rejected by the parse (never run); call_y's parse gives call_x's raw arguments text.
    server.reply({ toolCalls: [{ id: 'call_x', name: 'note', arguments: '{"reject":1}' }, { id: 'call_y', name: 'note', arguments: JSON.stringify({ wrap: '{"reject":1}' }) }] }, {});
    const runner = client.chat.completions.runTools({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'note it' }],
      tools: [{ type: 'function', function: { name: 'note', parameters: { type: 'object', properties: {} }, parse, function: (value: unknown) => void ran.push(value) } }] as never,
    });
    await runner.done();
    await settle();
    expect(ran).toEqual(['{"reject":1}']);
    const report = session.report();
    expect(report.reserved).toBe(0);
    const toolSpend = report.decisions.filter((d) => d.action.type === 'tool').reduce((sum, d) => sum + (d.settlement?.status === 'committed' ? d.settlement.actual : 0), 0);
    expect(toolSpend).toBeCloseTo(0.003, 10);
  });
});
