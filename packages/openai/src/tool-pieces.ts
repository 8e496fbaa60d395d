import type { ToolArgumentsParser } from './tool-parsers.js';

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/** A tool function the client runs with a call's (parsed) arguments. */
export type ToolFunction = (this: unknown, ...args: unknown[]) => unknown;

/** What the client runs of one function tool, under the name the client knows it by. */
export interface ToolPieces {
  readonly name: string;
  readonly parse: ToolArgumentsParser | undefined;
  readonly run: ToolFunction | undefined;
  /** The object the client calls them on (the tool, or its `function`). */
  readonly owner: unknown;
}

/**
 * A copy of a function tool with its parse and/or function replaced by `change` (the caller's tool is not changed);
 * the tool itself when `change` replaces nothing or the tool has no name. `zodFunction()` / `zodResponsesFunction()`
 * tools keep their hidden brand, `$parseRaw` and `$callback`; a `runTools()` function (`RunnableToolFunction`) is
 * named as the runner names it.
 */
export function withToolPieces(tool: unknown, change: (pieces: ToolPieces) => { parse?: ToolArgumentsParser; run?: ToolFunction } | undefined): unknown {
  if (!isObject(tool) || tool['type'] !== 'function') return tool;
  const fn = isObject(tool['function']) ? tool['function'] : undefined;
  const asFunction = (value: unknown) => (typeof value === 'function' ? (value as ToolFunction) : undefined);
  if (tool['$brand'] === 'auto-parseable-tool') {
    const name = typeof fn?.['name'] === 'string' ? fn['name'] : tool['name'];
    if (typeof name !== 'string' || name === '') return tool;
    const changed = change({ name, parse: asFunction(tool['$parseRaw']) as ToolArgumentsParser | undefined, run: asFunction(tool['$callback']), owner: tool });
    if (changed === undefined) return tool;
    const copy = { ...tool };
    Object.defineProperties(copy, {
      $brand: { value: tool['$brand'], enumerable: false },
      $parseRaw: { value: changed.parse ?? tool['$parseRaw'], enumerable: false },
      $callback: { value: changed.run ?? tool['$callback'], enumerable: false },
    });
    return copy;
  }
  if (fn !== undefined && typeof fn['function'] === 'function') {
    const name = typeof fn['name'] === 'string' && fn['name'] !== '' ? fn['name'] : (fn['function'] as { name?: unknown }).name;
    if (typeof name !== 'string' || name === '') return tool;
    const changed = change({ name, parse: asFunction(fn['parse']) as ToolArgumentsParser | undefined, run: fn['function'] as ToolFunction, owner: fn });
    if (changed === undefined) return tool;
    return { ...tool, function: { ...fn, ...(changed.parse ? { parse: changed.parse } : {}), ...(changed.run ? { function: changed.run } : {}) } };
  }
  return tool;
}
