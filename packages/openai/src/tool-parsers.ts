import { waitingInputs, type PolicySession, type ReturnedCall } from '@agentpolicy/core';
import { toolInputOf, type ReturnedToolCall } from './tool-calls.js';
import { withToolPieces } from './tool-pieces.js';
import { HELPER_RUN, HelperRun } from './helper-runs.js';
import { ToolRuns } from './tool-runs.js';

/** Reads a function call's JSON `arguments` text into the value the tool function runs with. */
export type ToolArgumentsParser = (args: string) => unknown;

/** A tool call's input as the policy decides it. */
export interface ParsedToolInput {
  readonly input: unknown;
  /** The tool's parse rejected the arguments: the client will not run the tool function. */
  readonly rejected: boolean;
}

/** Where a helper run's parsers travel to its requests: the request options' `__metadata`. */
export const TOOL_PARSERS = Symbol.for('agentpolicy.openai.toolParsers');

/**
 * Carries the {@link ToolRuns} of a helper run in which the client runs the tool functions itself (`runTools()`) to
 * its requests, in the request options' `__metadata`: an allowed call's one execution is taken when the client runs
 * its function.
 */
export const RUNS_TOOLS = Symbol.for('agentpolicy.openai.runsTools');

type Parsed = { readonly threw: false; readonly value: unknown } | { readonly threw: true; readonly error: unknown };

interface Parser {
  readonly parse: ToolArgumentsParser;
  /** The object the client calls `parse` on (a tool or its `function`), kept as `this`. */
  readonly owner: unknown;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/**
 * The parse functions of one helper run (`chat.completions.runTools()`, `chat.completions.parse()`,
 * `chat.completions.stream()`, `responses.parse()`, `responses.stream()`), by tool name. The run's tools are
 * handed to the client with each parse replaced by the function {@link ToolParsers.add} returns: the wrapper parses a call's
 * arguments once, when the call comes back and is decided, and the client's own parse of the same arguments gets
 * that very result (the value, the returned promise, or the error thrown) instead of parsing again. So a transform
 * with side effects, or a default taken from the clock or a random id, gives the tool exactly the value the policy
 * judged.
 */
export class ToolParsers {
  private readonly parsers = new Map<string, Parser>();
  // Results by tool name and arguments text, for the client's parse. A later call with the same arguments is decided
  // afresh and replaces it. None are kept for parsers the caller's own loop runs (see `fromOptions`).
  private readonly results: Map<string, Parsed> | undefined;
  // What to do when the client's parse is handed the failure of arguments the parse rejected (see `onRejectionHandedOut`).
  private readonly rejections = new Map<string, () => void>();

  constructor(handsOut = true) {
    this.results = handsOut ? new Map() : undefined;
  }

  /** The `toolParsers` option of a wrapped client: parse functions the caller's own loop runs, by tool name. */
  static fromOptions(parsers: Readonly<Record<string, ToolArgumentsParser>> | undefined): ToolParsers | undefined {
    if (parsers === undefined) return undefined;
    const out = new ToolParsers(false);
    for (const [name, parse] of Object.entries(parsers)) {
      if (typeof parse !== 'function') throw new TypeError(`wrapOpenAI: toolParsers.${name} must be a function (args: string) => unknown`);
      out.parsers.set(name, { parse, owner: undefined });
    }
    return out.parsers.size > 0 ? out : undefined;
  }

  /** Registers a tool's parse; returns the function to hand to the client in its place. */
  add(name: string, parse: ToolArgumentsParser, owner: unknown): ToolArgumentsParser {
    this.parsers.set(name, { parse, owner });
    const results = this.results;
    const rejections = this.rejections;
    return function (this: unknown, args: string): unknown {
      const known = results?.get(key(name, args));
      if (known === undefined) return parse.call(owner, args);
      const rejected = rejections.get(key(name, args));
      if (rejected !== undefined) {
        rejections.delete(key(name, args));
        rejected();
      }
      if (known.threw) throw known.error;
      return known.value;
    };
  }

  get size(): number {
    return this.parsers.size;
  }

  /**
   * The input a returned call will run with, or `undefined` when its tool has no parse here (its function gets the
   * arguments as they are). A call that waits for an approval keeps the input it was first decided on.
   */
  async inputOf(session: PolicySession, call: ReturnedToolCall): Promise<ParsedToolInput | undefined> {
    const parser = this.parsers.get(call.name);
    if (parser === undefined) return undefined;
    const remembered = waitingInputs.get(session, waitingCall(call));
    if (remembered !== undefined) {
      // An awaited parse and a synchronous one alike take the settled value.
      this.results?.set(key(call.name, call.arguments), { threw: false, value: remembered.input });
      return { input: remembered.input, rejected: false };
    }
    let returned: unknown;
    try {
      returned = parser.parse.call(parser.owner, call.arguments);
    } catch (error) {
      return this.rejected(call, { threw: true, error });
    }
    let input: unknown;
    try {
      input = await returned;
    } catch {
      return this.rejected(call, { threw: false, value: returned });
    }
    // The client gets what the parse returned (a promise stays a promise; it is settled by now).
    this.results?.set(key(call.name, call.arguments), { threw: false, value: returned });
    return { input, rejected: false };
  }

  /**
   * Calls `then` once, when the client's parse of `call`'s arguments (which the parse rejected) is handed that failure:
   * `parse()` and `stream()` then throw it, so the caller never gets the response its call came in.
   */
  onRejectionHandedOut(call: ReturnedToolCall, then: () => void): void {
    if (this.results !== undefined) this.rejections.set(key(call.name, call.arguments), then);
  }

  /**
   * The parse rejected the arguments: the client's parse of them fails the same way (with the same error, without
   * parsing again) and the tool function does not run. The call is still decided on the arguments as the model
   * sent them, so a call a rule denies is recorded and answered as a denial, not hidden behind a parse error.
   */
  private rejected(call: ReturnedToolCall, result: Parsed): ParsedToolInput {
    this.results?.set(key(call.name, call.arguments), result);
    return { input: toolInputOf(call), rejected: true };
  }
}

function key(name: string, args: string): string {
  return `${name}\u0000${args}`;
}

/**
 * The request body a helper run sends with each tool's parse replaced by its {@link ToolParsers} entry (the caller's
 * body and tools are not changed), and those parsers; the body as it is when no tool has a parse. Chat tools:
 * `runTools()` functions with a `parse`, and `zodFunction()` tools (`$parseRaw`); Responses tools:
 * `zodResponsesFunction()` tools.
 */
export function withToolParsers<Body>(body: Body): { body: Body; parsers: ToolParsers | undefined } {
  if (!isObject(body) || !Array.isArray(body['tools'])) return { body, parsers: undefined };
  const parsers = new ToolParsers();
  const tools = body['tools'].map((tool: unknown) => governedTool(tool, parsers));
  if (parsers.size === 0) return { body, parsers: undefined };
  return { body: { ...body, tools } as Body, parsers };
}

function governedTool(tool: unknown, parsers: ToolParsers): unknown {
  return withToolPieces(tool, ({ name, parse, owner }) => (parse === undefined ? undefined : { parse: parsers.add(name, parse, owner) }));
}

// ---- calls waiting for an approval ---------------------------------------------------------------------------------

/** The call as core's {@link waitingInputs} keys it: its id, tool and arguments text. */
function waitingCall(call: ReturnedToolCall): ReturnedCall {
  return { id: call.id, name: call.name, sent: call.arguments };
}

/** Keeps the parsed input of a call that waits for an approval (`waits`), or forgets it once it is decided. */
export function rememberWaiting(session: PolicySession, call: ReturnedToolCall, input: ParsedToolInput, waits: boolean): void {
  if (!input.rejected) waitingInputs.set(session, waitingCall(call), input.input, waits);
}

// ---- the helpers that parse tool arguments -------------------------------------------------------------------------

type Helper = (this: unknown, body: unknown, options?: Record<string | symbol, unknown>) => unknown;

/** The client helpers that run a tool's parse on the arguments of a call: chat and Responses. */
const HELPERS: ReadonlyArray<readonly [resource: readonly string[], method: string]> = [
  [['chat', 'completions'], 'runTools'],
  [['chat', 'completions'], 'parse'],
  [['chat', 'completions'], 'stream'],
  [['responses'], 'parse'],
  [['responses'], 'stream'],
];

/**
 * Sets the client's parsing helpers (on this instance only) to hand the client the run's tools with their parse
 * replaced (see {@link ToolParsers}) and to carry the parsers to every request of the run in its `__metadata`, where
 * the returned tool calls are decided; `runTools()` also has its tool functions wrapped to take each call's allow
 * when it runs, and its requests carry them ({@link RUNS_TOOLS}). Any other body
 * without a parsing tool goes through untouched.
 */
export function governParsingHelpers(client: unknown): void {
  for (const [path, method] of HELPERS) {
    let resource: unknown = client;
    for (const part of path) resource = isObject(resource) ? resource[part] : undefined;
    if (!isObject(resource) || typeof resource[method] !== 'function') continue;
    const helper = resource[method] as Helper;
    const runsTools = method === 'runTools';
    resource[method] = function (this: unknown, body: unknown, options?: Record<string | symbol, unknown>): unknown {
      const governed = withToolParsers(body);
      const streams = method === 'stream';
      if (governed.parsers === undefined && !runsTools && !streams) return helper.call(this, body, options);
      const runs = runsTools ? new ToolRuns() : undefined;
      const helperRun = streams ? new HelperRun() : undefined;
      const metadata = isObject(options?.['__metadata']) ? options['__metadata'] : undefined;
      const runner = helper.call(this, runs === undefined ? governed.body : runs.govern(governed.body), {
        ...options,
        __metadata: {
          ...metadata,
          ...(governed.parsers !== undefined ? { [TOOL_PARSERS]: governed.parsers } : {}),
          ...(runs !== undefined ? { [RUNS_TOOLS]: runs } : {}),
          ...(helperRun !== undefined ? { [HELPER_RUN]: helperRun } : {}),
        },
      });
      // A stream helper that ended in an error never hands the caller its response: the costs its calls hold go back.
      if (helperRun !== undefined && isObject(runner) && typeof runner['on'] === 'function') {
        (runner['on'] as (event: string, listener: () => void) => unknown).call(runner, 'end', () => {
          if (runner['errored'] !== true) return;
          helperRun.failed().catch((error: unknown) => process.emitWarning(`agentpolicy/openai: giving back the costs of calls a failed stream held failed: ${(error as Error)?.message ?? String(error)}`));
        });
      }
      // 'end' comes after the run finished, failed or was aborted (listening to it leaves the client's error handling as it is).
      if (runs !== undefined && isObject(runner) && typeof runner['on'] === 'function') {
        (runner['on'] as (event: string, listener: () => void) => unknown).call(runner, 'end', () => {
          runs.finish().catch((error: unknown) => process.emitWarning(`agentpolicy/openai: giving back the costs of calls runTools() did not run failed: ${(error as Error)?.message ?? String(error)}`));
        });
      }
      return runner;
    };
  }
}
