/** A client-side tool call the model returned: a chat `tool_calls` entry or a Responses `function_call` item. */
export interface ReturnedToolCall {
  /** `tool_calls[].id` (chat) or `call_id` (Responses). */
  readonly id: string;
  readonly name: string;
  /**
   * The call's arguments as the model wrote them: a function call's JSON `arguments` text (or a custom tool's
   * `input` text), whole once the call is complete.
   */
  readonly arguments: string;
  /**
   * A streamed Responses call: its output item's id. The same item handed out again with other arguments replaces
   * the earlier call (the caller gets the later arguments).
   */
  readonly item?: string;
}

/**
 * The input `checkToolCalls` decides a returned call on, from its arguments text: the parsed JSON, the text itself
 * when it is not JSON (a custom tool's free-form input, or arguments the model left malformed), nothing for an empty
 * text. Never throws. Your own loop passes the same value to `session.runTool`, so the call runs on the decision its
 * response got (a malformed call included, which your tool then refuses).
 *
 * @example
 * ```ts
 * const input = toolCallInput(call.function.arguments); // not JSON.parse, which throws on malformed arguments
 * ```
 */
export function toolCallInput(args: string): unknown {
  if (args === '') return undefined;
  try {
    return JSON.parse(args) as unknown;
  } catch {
    return args;
  }
}

/** The tool input a returned call is decided on (see {@link toolCallInput}). */
export function toolInputOf(call: ReturnedToolCall): unknown {
  return toolCallInput(call.arguments);
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const text = (value: unknown): string => (typeof value === 'string' ? value : '');

/** Events that end a Responses stream; they carry the whole `response` (its `output` and `usage`). */
export const TERMINAL_RESPONSE_EVENTS: ReadonlySet<string> = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** Responses item types the caller executes itself, named by the developer. Built-in tools are not listed. */
const RESPONSES_CALL_TYPES = new Set(['function_call', 'custom_tool_call']);

function responsesItemCall(item: unknown): ReturnedToolCall | null {
  if (!isObject(item) || !RESPONSES_CALL_TYPES.has(text(item['type']))) return null;
  return { id: text(item['call_id']) || text(item['id']), name: text(item['name']), arguments: text(item['arguments']) || text(item['input']) };
}

/**
 * The tool calls of a complete (non-streamed) result: a chat completion's `choices[].message.tool_calls` (and the
 * legacy `function_call`) or a Responses `output` array's `function_call` / `custom_tool_call` items.
 */
export function toolCallsOfResult(result: unknown): ReturnedToolCall[] {
  if (!isObject(result)) return [];
  const calls: ReturnedToolCall[] = [];
  if (Array.isArray(result['choices'])) {
    for (const choice of result['choices']) {
      if (!isObject(choice) || !isObject(choice['message'])) continue;
      const message = choice['message'];
      if (Array.isArray(message['tool_calls'])) {
        for (const call of message['tool_calls']) {
          if (!isObject(call)) continue;
          const fn = isObject(call['function']) ? call['function'] : isObject(call['custom']) ? call['custom'] : {};
          calls.push({ id: text(call['id']), name: text(fn['name']), arguments: text(fn['arguments']) || text(fn['input']) });
        }
      }
      if (isObject(message['function_call'])) {
        calls.push({ id: `${text(result['id'])}:${String(choice['index'] ?? 0)}`, name: text(message['function_call']['name']), arguments: text(message['function_call']['arguments']) });
      }
    }
  }
  if (Array.isArray(result['output'])) {
    for (const item of result['output']) {
      const call = responsesItemCall(item);
      if (call) calls.push(call);
    }
  }
  return calls;
}

/**
 * Follows the tool calls of a streamed result and hands each one out once it is complete (name and arguments): for
 * chat chunks, when the next call of the same choice starts, when the choice finishes, or at the end of the stream;
 * for Responses events, when the call's arguments are done.
 */
export class StreamToolCalls {
  private readonly open = new Map<string, { choice: string; id: string; name: string; arguments: string }>();
  /**
   * Responses call items already handed out (by item id), with the arguments they were handed out with: an item's
   * call is handed out at its arguments' end, and not again when the item is done or the response ends with it,
   * unless it then carries other arguments (those are what the caller gets, so they are checked too).
   */
  private readonly handed = new Map<string, string>();
  // Responses call items by item id, from `output_item.added` until their arguments are whole.
  private readonly items = new Map<string, ReturnedToolCall>();

  /** Feeds one parsed stream event; returns the calls that became complete. */
  see(event: unknown): ReturnedToolCall[] {
    if (!isObject(event)) return [];
    const type = text(event['type']);
    // A Responses call is handed out when its arguments are whole: at `…arguments.done` / `…input.done` (before the
    // caller can act on them), else when its item is done.
    if (type === 'response.output_item.added') {
      const item = event['item'];
      const call = responsesItemCall(item);
      if (call && isObject(item) && text(item['id'])) this.items.set(text(item['id']), call);
      return [];
    }
    if (type === 'response.function_call_arguments.done' || type === 'response.custom_tool_call_input.done') {
      const call = this.items.get(text(event['item_id']));
      if (!call) return [];
      return this.handOut(text(event['item_id']), { ...call, arguments: text(event['arguments']) || text(event['input']) });
    }
    if (type === 'response.output_item.done') return this.handOutItem(event['item']);
    // The response the stream ends with is the one the client returns (`finalResponse()`): a call item in its output
    // that no earlier event announced, or that comes with other arguments, is handed out now.
    if (TERMINAL_RESPONSE_EVENTS.has(type)) {
      const output = isObject(event['response']) ? event['response']['output'] : undefined;
      return Array.isArray(output) ? output.flatMap((item: unknown) => this.handOutItem(item)) : [];
    }
    if (!Array.isArray(event['choices'])) return [];
    const ready: ReturnedToolCall[] = [];
    for (const choice of event['choices']) {
      if (!isObject(choice)) continue;
      const index = String(choice['index'] ?? 0);
      const delta = isObject(choice['delta']) ? choice['delta'] : {};
      if (Array.isArray(delta['tool_calls'])) {
        for (const part of delta['tool_calls']) {
          if (!isObject(part)) continue;
          const key = `${index}:${String(part['index'] ?? 0)}`;
          if (!this.open.has(key)) {
            ready.push(...this.closeChoice(index));
            this.open.set(key, { choice: index, id: '', name: '', arguments: '' });
          }
          const entry = this.open.get(key)!;
          if (!entry.id) entry.id = text(part['id']);
          const fn = isObject(part['function']) ? part['function'] : isObject(part['custom']) ? part['custom'] : {};
          entry.name += text(fn['name']);
          entry.arguments += text(fn['arguments']) || text(fn['input']);
        }
      }
      if (isObject(delta['function_call'])) {
        const key = `${index}:function_call`;
        if (!this.open.has(key)) this.open.set(key, { choice: index, id: `${text(event['id'])}:${index}`, name: '', arguments: '' });
        const entry = this.open.get(key)!;
        entry.name += text(delta['function_call']['name']);
        entry.arguments += text(delta['function_call']['arguments']);
      }
      if (choice['finish_reason'] !== null && choice['finish_reason'] !== undefined) ready.push(...this.closeChoice(index));
    }
    return ready;
  }

  /** Every call still open (the stream ended). */
  flush(): ReturnedToolCall[] {
    const all = [...this.open.values()].map(({ id, name, arguments: args }) => ({ id, name, arguments: args }));
    this.open.clear();
    return all;
  }

  private closeChoice(choice: string): ReturnedToolCall[] {
    const done: ReturnedToolCall[] = [];
    for (const [key, entry] of this.open) {
      if (entry.choice !== choice) continue;
      this.open.delete(key);
      done.push({ id: entry.id, name: entry.name, arguments: entry.arguments });
    }
    return done;
  }

  /**
   * A Responses call item handed out once. Chat calls need no such guard: each is handed out when it closes and is
   * then forgotten, so two calls that share an id (the model repeating one, with the same or other arguments) are
   * each handed out, and each checked.
   */
  private handOut(item: string, call: ReturnedToolCall): ReturnedToolCall[] {
    if (item === '') return [call];
    if (this.handed.get(item) === call.arguments) return [];
    this.handed.set(item, call.arguments);
    return [{ ...call, item }];
  }

  /** A Responses output item: its call, handed out unless it already was with these arguments. */
  private handOutItem(item: unknown): ReturnedToolCall[] {
    const call = responsesItemCall(item);
    return call && isObject(item) ? this.handOut(text(item['id']) || `call:${call.id}`, call) : [];
  }
}
