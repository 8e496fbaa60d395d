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
   * A streamed call: its Responses output item's id, or its chat choice and index. The same item handed out again
   * with other arguments replaces the earlier call (the caller gets the later arguments).
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
 * Follows the tool calls of a streamed result the way the client builds them, and hands each one out once it is
 * complete, and again whenever it changes after that (the caller gets the later one: it is checked too).
 *
 * Chat chunks: a call is the client's `tool_calls[index]` (or `function_call`) of its choice, built as the client
 * builds it: arguments (a custom tool's input) appended, the id and name replaced by each non-empty one. It is handed
 * out when a later call of its choice starts (the client's `stream()` then reports it done), when its choice finishes,
 * and at the end of the stream, each time with what it holds then: a call whose deltas come back after a later one
 * started is handed out again at the end.
 *
 * Responses events: a call item is handed out when its arguments are done (`…arguments.done` / `…input.done`), when
 * the item is done, and with each call item in the output of the terminal event. An item that never got there (the
 * stream ended, or a `response.failed` / `response.incomplete` event carried no output) is handed out at the end of
 * the stream in each form a client builds it: its added item with the argument (or input) deltas appended, and a
 * custom tool call also as added (openai 6 and 7 do not all append its input deltas).
 */
export class StreamToolCalls {
  /** Chat calls by `choice:index` (or `choice:function_call`), for the whole stream: the client never resets them. */
  private readonly chat = new Map<string, { choice: string; id: string; name: string; arguments: string }>();
  /** Each call (by chat key or Responses item id) with the id, name and arguments it was last handed out with. */
  private readonly handed = new Map<string, string>();
  /** Responses call items by item id, from `output_item.added`. */
  private readonly items = new Map<string, ReturnedToolCall>();
  /** The same items with their argument (or input) deltas appended. */
  private readonly built = new Map<string, ReturnedToolCall>();
  /** Responses call items by output index (the client appends a delta to the item at its `output_index`). */
  private readonly itemAt = new Map<string, string>();
  /** The forms of items that never completed already handed out (by item id and form). */
  private readonly builtHanded = new Set<string>();
  /** The stream completed: the client returns the completed items (or the event's output), never one built from deltas. */
  private completed = false;

  /** Feeds one parsed stream event; returns the calls that became complete (or changed since handed out). */
  see(event: unknown): ReturnedToolCall[] {
    if (!isObject(event)) return [];
    const type = text(event['type']);
    if (type === 'response.output_item.added') {
      const item = event['item'];
      const call = responsesItemCall(item);
      if (call && isObject(item) && text(item['id'])) {
        this.items.set(text(item['id']), call);
        this.built.set(text(item['id']), call);
        if (event['output_index'] !== undefined) this.itemAt.set(String(event['output_index']), text(item['id']));
      }
      return [];
    }
    if (type === 'response.function_call_arguments.delta' || type === 'response.custom_tool_call_input.delta') {
      const id = event['output_index'] !== undefined ? this.itemAt.get(String(event['output_index'])) : undefined;
      const call = id === undefined ? undefined : this.built.get(id);
      if (id !== undefined && call) this.built.set(id, { ...call, arguments: call.arguments + text(event['delta']) });
      return [];
    }
    // A Responses call is handed out when its arguments are whole: at `…arguments.done` / `…input.done` (before the
    // caller can act on them), else when its item is done.
    if (type === 'response.function_call_arguments.done' || type === 'response.custom_tool_call_input.done') {
      const call = this.items.get(text(event['item_id']));
      if (!call) return [];
      return this.handOut(text(event['item_id']), { ...call, arguments: text(event['arguments']) || text(event['input']) });
    }
    if (type === 'response.output_item.done') return this.handOutItem(event['item']);
    // The response the stream ends with is the one the client returns (`finalResponse()`): a call item in its output
    // that no earlier event announced, or that comes with other arguments, is handed out now. Without an output the
    // client returns the items as it built them from the events.
    if (TERMINAL_RESPONSE_EVENTS.has(type)) {
      const output = isObject(event['response']) ? event['response']['output'] : undefined;
      if (type === 'response.completed') this.completed = true;
      if (!Array.isArray(output)) return this.completed ? [] : this.builtItems();
      return output.flatMap((item: unknown) => this.handOutItem(item));
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
          let entry = this.chat.get(key);
          if (entry === undefined) {
            // The client reports the calls before it done when a later one starts: they are handed out now.
            ready.push(...this.handOutChoice(index));
            this.chat.set(key, (entry = { choice: index, id: '', name: '', arguments: '' }));
          }
          entry.id = text(part['id']) || entry.id;
          const fn = isObject(part['function']) ? part['function'] : isObject(part['custom']) ? part['custom'] : {};
          entry.name = text(fn['name']) || entry.name;
          entry.arguments += text(fn['arguments']) || text(fn['input']);
        }
      }
      if (isObject(delta['function_call'])) {
        const key = `${index}:function_call`;
        let entry = this.chat.get(key);
        if (entry === undefined) this.chat.set(key, (entry = { choice: index, id: `${text(event['id'])}:${index}`, name: '', arguments: '' }));
        entry.name = text(delta['function_call']['name']) || entry.name;
        entry.arguments += text(delta['function_call']['arguments']);
      }
      if (choice['finish_reason'] !== null && choice['finish_reason'] !== undefined) ready.push(...this.handOutChoice(index));
    }
    return ready;
  }

  /** The stream ended: every call as the client holds it now, where it was not handed out so. */
  flush(): ReturnedToolCall[] {
    const chat = [...this.chat.keys()].flatMap((key) => this.handOutChat(key));
    return this.completed ? chat : [...chat, ...this.builtItems()];
  }

  private handOutChoice(choice: string): ReturnedToolCall[] {
    return [...this.chat].filter(([, entry]) => entry.choice === choice).flatMap(([key]) => this.handOutChat(key));
  }

  private handOutChat(key: string): ReturnedToolCall[] {
    const entry = this.chat.get(key);
    return entry === undefined ? [] : this.handOut(`chat:${key}`, { id: entry.id, name: entry.name, arguments: entry.arguments });
  }

  /**
   * The Responses call items of a response that did not complete, in each form a client builds them from the events:
   * as added with the deltas appended, and as added (a form already decided at its arguments' end is not decided
   * again). Each form is a call of its own (its `item` names item and form), so one form never replaces another.
   */
  private builtItems(): ReturnedToolCall[] {
    const ready: ReturnedToolCall[] = [];
    for (const [item, added] of this.items) {
      const built = this.built.get(item) ?? added;
      for (const call of built.arguments === added.arguments ? [built] : [built, added]) {
        const seen = `${call.id}\u0000${call.name}\u0000${call.arguments}`;
        const form = `${item}\u0000${seen}`;
        // Already decided in this very form (its arguments were done): that decision stands.
        if (this.handed.get(item) === seen || this.builtHanded.has(form)) continue;
        this.builtHanded.add(form);
        ready.push({ ...call, item: form });
      }
    }
    return ready;
  }

  /** A call handed out, unless it already was with this id, name and arguments. */
  private handOut(item: string, call: ReturnedToolCall): ReturnedToolCall[] {
    if (item === '') return [call];
    const seen = `${call.id}\u0000${call.name}\u0000${call.arguments}`;
    if (this.handed.get(item) === seen) return [];
    this.handed.set(item, seen);
    return [{ ...call, item }];
  }

  /** A Responses output item: its call, handed out unless it already was with these arguments. */
  private handOutItem(item: unknown): ReturnedToolCall[] {
    const call = responsesItemCall(item);
    return call && isObject(item) ? this.handOut(text(item['id']) || `call:${call.id}`, call) : [];
  }
}
