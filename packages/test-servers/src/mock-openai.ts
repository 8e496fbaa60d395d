import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small local stand-in for the OpenAI HTTP API, for the tests only. It listens on
 * 127.0.0.1 and speaks `/v1/chat/completions`, `/v1/responses` and `/v1/embeddings` in JSON and SSE (plus
 * `/v1/images/generations`, `/v1/audio/transcriptions` and `/v1/models` in JSON), with scripted failures, tool
 * calls and held streams.
 */

/** Token usage the server reports. */
export interface MockUsage {
  input: number;
  output: number;
  cached?: number;
  reasoning?: number;
}

/** One scripted reply, consumed by the next request (any path). */
export interface MockReply {
  /** Close the connection without answering (a transport failure for the client). */
  drop?: boolean;
  /** Reply with this HTTP status and an OpenAI-style error body instead of a normal answer. */
  status?: number;
  headers?: Record<string, string>;
  /** Tool calls the model "returns" (chat `tool_calls` / Responses `function_call` items). */
  toolCalls?: ReadonlyArray<{ id: string; name: string; arguments: string }>;
  /** Send only this many SSE events, then hold the connection open until the client goes away. */
  holdAfterEvents?: number;
  /** Send only this many SSE events, then close the connection abruptly (a stream cut mid-way). */
  dropAfterEvents?: number;
  /**
   * Streamed chat and Responses: send each tool call's `arguments` in deltas of these sizes (in characters, cycled; a
   * size below 1 counts as 1) instead of one delta, as a real model splits them at arbitrary points.
   */
  argumentChunks?: readonly number[];
  /**
   * Streamed Responses: `'terminal-only'` sends `response.created` and then only the terminal `response.completed`
   * event, whose `output` holds the answer (as a minimal Responses-compatible server may), instead of every item
   * and delta event. Default `'full'`.
   */
  responsesEvents?: 'full' | 'terminal-only';
  /**
   * Streamed Responses: the arguments each call's item has in the terminal event's output (by position), where they
   * differ from what its own events said (a server that changes them at the end).
   */
  terminalArguments?: readonly string[];
  /**
   * Chat and Responses: answer with exactly this instead of a scripted answer, for shapes the script does not make
   * (a legacy `function_call`, several choices, custom tool calls, a failed Responses stream…). A streamed request gets
   * `events` as SSE, each one's JSON as its `data` (a string is sent as it is, e.g. `'[DONE]'`; `holdAfterEvents` and
   * `dropAfterEvents` apply); any other request gets `json` as its body.
   */
  raw?: { readonly events?: readonly unknown[]; readonly json?: unknown };
  usage?: MockUsage;
  /** Answer without any usage. */
  omitUsage?: boolean;
  /** Model name reported in the answer (default: the server's `responseModels` entry, else the request's model). */
  model?: string;
}

/** A request the server received; `body` is its parsed JSON (undefined for multipart or empty bodies). */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Record<string, unknown> | undefined;
}

/** Options of {@link startMockOpenAI}. */
export interface MockOpenAIServerOptions {
  /** Usage reported when a reply sets none. Default 12 input / 5 output tokens. */
  usage?: MockUsage;
  /** Model names reported in answers, by requested model (e.g. a dated name); default: the request's model. */
  responseModels?: Record<string, string>;
  /** Answer text, streamed one word per event. */
  text?: string;
}

/** A running mock server. */
export interface MockOpenAIServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseURL: string;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** How many requests reached `path` (e.g. `/v1/chat/completions`), or all paths. */
  count(path?: string): number;
  /** Queues scripted replies for the next requests. */
  reply(...replies: MockReply[]): void;
  /** Forgets recorded requests and queued replies. */
  reset(): void;
  close(): Promise<void>;
}

const DEFAULT_USAGE: MockUsage = { input: 12, output: 5 };

/**
 * Starts the mock server on 127.0.0.1 with a free port.
 *
 * @example
 * ```ts
 * const server = await startMockOpenAI();
 * const client = new OpenAI({ apiKey: 'test', baseURL: server.baseURL });
 * ```
 */
export async function startMockOpenAI(options: MockOpenAIServerOptions = {}): Promise<MockOpenAIServer> {
  const requests: RecordedRequest[] = [];
  const queue: MockReply[] = [];
  const text = options.text ?? 'Hello from the mock model';
  let seq = 0;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown> | undefined;
      try {
        body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
      } catch {
        body = undefined;
      }
      // Azure-style deployment paths (`/v1/deployments/<name>/chat/completions`) are served like the plain ones.
      const path = ((req.url ?? '/').split('?')[0] ?? '/').replace(/\/deployments\/[^/]+/, '');
      requests.push({ method: req.method ?? 'GET', path, headers: req.headers, body });
      const script = queue.shift() ?? {};
      const id = ++seq;
      if (script.drop) return void req.socket.destroy();
      if (script.status !== undefined) {
        return send(res, script.status, { error: { message: `mock error ${script.status}`, type: 'mock_error', code: null } }, script.headers);
      }
      const usage = script.omitUsage ? null : (script.usage ?? options.usage ?? DEFAULT_USAGE);
      const requested = String(body?.['model'] ?? 'unknown');
      const model = script.model ?? options.responseModels?.[requested] ?? requested;
      if (script.raw !== undefined && req.method === 'POST' && (path === '/v1/chat/completions' || path === '/v1/responses')) {
        if (body?.['stream'] !== true) return send(res, 200, script.raw.json ?? {});
        const events = (script.raw.events ?? []).map((data) =>
          typeof data === 'string' ? { data } : { ...(typeof (data as { type?: unknown })?.type === 'string' ? { event: (data as { type: string }).type } : {}), data: JSON.stringify(data) },
        );
        return sse(res, events, script);
      }
      if (req.method === 'POST' && path === '/v1/chat/completions') return chat(res, id, body ?? {}, model, usage, script, text);
      if (req.method === 'POST' && path === '/v1/responses') return responses(res, id, body ?? {}, model, usage, script, text);
      if (req.method === 'POST' && path === '/v1/embeddings') return embeddings(res, body ?? {}, model, usage);
      if (req.method === 'POST' && path === '/v1/images/generations') {
        return send(res, 200, {
          created: 1_700_000_000,
          data: [{ b64_json: 'iVBORw0KGgo=' }],
          ...(usage ? { usage: { ...responsesUsage(usage), input_tokens_details: { text_tokens: usage.input, image_tokens: 0 } } } : {}),
        });
      }
      if (req.method === 'POST' && path === '/v1/audio/transcriptions') {
        // multipart body: not parsed; token-billed usage as gpt-4o-transcribe reports it
        return send(res, 200, {
          text,
          ...(usage ? { usage: { type: 'tokens', input_tokens: usage.input, output_tokens: usage.output, total_tokens: usage.input + usage.output } } : {}),
        });
      }
      if (req.method === 'GET' && path === '/v1/models') {
        return send(res, 200, { object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 0, owned_by: 'openai' }] });
      }
      return send(res, 404, { error: { message: `no route ${req.method} ${path}`, type: 'invalid_request_error', code: null } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    count: (path) => (path === undefined ? requests.length : requests.filter((r) => r.path === path).length),
    reply: (...replies) => void queue.push(...replies),
    reset: () => {
      requests.length = 0;
      queue.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

function chatUsage(usage: MockUsage) {
  return {
    prompt_tokens: usage.input,
    completion_tokens: usage.output,
    total_tokens: usage.input + usage.output,
    prompt_tokens_details: { cached_tokens: usage.cached ?? 0 },
    completion_tokens_details: { reasoning_tokens: usage.reasoning ?? 0 },
  };
}

function responsesUsage(usage: MockUsage) {
  return {
    input_tokens: usage.input,
    input_tokens_details: { cached_tokens: usage.cached ?? 0 },
    output_tokens: usage.output,
    output_tokens_details: { reasoning_tokens: usage.reasoning ?? 0 },
    total_tokens: usage.input + usage.output,
  };
}

/** Writes SSE events; with `script.holdAfterEvents`, stops after that many and keeps the connection open; with `script.dropAfterEvents`, stops and cuts it. */
function sse(res: ServerResponse, events: ReadonlyArray<{ event?: string; data: string }>, script: MockReply): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const limit = script.dropAfterEvents ?? script.holdAfterEvents ?? events.length;
  for (const item of events.slice(0, limit)) {
    res.write(`${item.event ? `event: ${item.event}\n` : ''}data: ${item.data}\n\n`);
  }
  if (script.dropAfterEvents !== undefined) {
    // Let what was written reach the client first, then cut the connection without ending the response.
    setTimeout(() => res.socket?.destroy(), 5);
    return;
  }
  if (script.holdAfterEvents === undefined) res.end();
}

/** `text` cut into pieces of the given sizes (cycled), for argument deltas split at arbitrary points. */
function pieces(text: string, sizes: readonly number[] | undefined): string[] {
  if (sizes === undefined || sizes.length === 0 || text === '') return [text];
  const out: string[] = [];
  for (let at = 0, i = 0; at < text.length; i++) {
    const size = Math.max(1, Math.floor(sizes[i % sizes.length] ?? 1));
    out.push(text.slice(at, at + size));
    at += size;
  }
  return out;
}

function chat(res: ServerResponse, id: number, body: Record<string, unknown>, model: string, usage: MockUsage | null, script: MockReply, text: string): void {
  const created = 1_700_000_000;
  const toolCalls = script.toolCalls ?? [];
  const base = { id: `chatcmpl-${id}`, created, model };
  if (body['stream'] !== true) {
    const message =
      toolCalls.length > 0
        ? { role: 'assistant', content: null, refusal: null, tool_calls: toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) }
        : { role: 'assistant', content: text, refusal: null };
    return send(res, 200, {
      ...base,
      object: 'chat.completion',
      choices: [{ index: 0, message, finish_reason: toolCalls.length > 0 ? 'tool_calls' : 'stop', logprobs: null }],
      ...(usage ? { usage: chatUsage(usage) } : {}),
    });
  }
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    ({ data: JSON.stringify({ ...base, object: 'chat.completion.chunk', choices, usage: null, ...extra }) });
  const events: { data: string }[] = [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }])];
  if (toolCalls.length > 0) {
    toolCalls.forEach((call, index) => {
      events.push(chunk([{ index: 0, delta: { tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }, finish_reason: null }]));
      for (const piece of pieces(call.arguments, script.argumentChunks)) {
        events.push(chunk([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, finish_reason: null }]));
      }
    });
    events.push(chunk([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]));
  } else {
    for (const word of text.split(/(?<= )/)) events.push(chunk([{ index: 0, delta: { content: word }, finish_reason: null }]));
    events.push(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
  }
  const options = body['stream_options'] as { include_usage?: boolean } | undefined;
  if (usage && options?.include_usage === true) events.push(chunk([], { usage: chatUsage(usage) }));
  events.push({ data: '[DONE]' });
  sse(res, events, script);
}

function responses(res: ServerResponse, id: number, body: Record<string, unknown>, model: string, usage: MockUsage | null, script: MockReply, text: string): void {
  const toolCalls = script.toolCalls ?? [];
  const message = {
    type: 'message',
    id: `msg_${id}`,
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
  };
  const output =
    toolCalls.length > 0
      ? toolCalls.map((c, i) => ({ type: 'function_call', id: `fc_${id}_${i}`, call_id: c.id, name: c.name, arguments: c.arguments, status: 'completed' }))
      : [message];
  const response = (status: string, out: unknown[], withUsage: boolean) => ({
    id: `resp_${id}`,
    object: 'response',
    created_at: 1_700_000_000,
    status,
    error: null,
    incomplete_details: null,
    instructions: null,
    model,
    output: out,
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    temperature: 1,
    top_p: 1,
    max_output_tokens: body['max_output_tokens'] ?? null,
    usage: withUsage && usage ? responsesUsage(usage) : null,
  });
  if (body['stream'] !== true) return send(res, 200, response('completed', output, true));

  let n = 0;
  const events: { event: string; data: string }[] = [];
  const push = (type: string, payload: Record<string, unknown>) => events.push({ event: type, data: JSON.stringify({ type, sequence_number: n++, ...payload }) });
  push('response.created', { response: response('in_progress', [], false) });
  if (script.responsesEvents === 'terminal-only') {
    // Nothing between the response's creation and its end: the calls are only in the terminal event's output.
  } else if (toolCalls.length > 0) {
    push('response.in_progress', { response: response('in_progress', [], false) });
    output.forEach((item, index) => {
      const fc = item as { id: string; arguments: string };
      push('response.output_item.added', { output_index: index, item: { ...item, arguments: '', status: 'in_progress' } });
      for (const piece of pieces(fc.arguments, script.argumentChunks)) {
        push('response.function_call_arguments.delta', { item_id: fc.id, output_index: index, delta: piece });
      }
      push('response.function_call_arguments.done', { item_id: fc.id, output_index: index, arguments: fc.arguments });
      push('response.output_item.done', { output_index: index, item });
    });
  } else {
    push('response.in_progress', { response: response('in_progress', [], false) });
    push('response.output_item.added', { output_index: 0, item: { ...message, status: 'in_progress', content: [] } });
    push('response.content_part.added', { item_id: message.id, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    for (const word of text.split(/(?<= )/)) {
      push('response.output_text.delta', { item_id: message.id, output_index: 0, content_index: 0, delta: word, logprobs: [] });
    }
    push('response.output_text.done', { item_id: message.id, output_index: 0, content_index: 0, text, logprobs: [] });
    push('response.content_part.done', { item_id: message.id, output_index: 0, content_index: 0, part: message.content[0] });
    push('response.output_item.done', { output_index: 0, item: message });
  }
  const terminal = script.terminalArguments;
  const finalOutput = terminal === undefined ? output : output.map((item, index) => (terminal[index] === undefined ? item : { ...item, arguments: terminal[index] }));
  push('response.completed', { response: response('completed', finalOutput, true) });
  sse(res, events, script);
}

function embeddings(res: ServerResponse, body: Record<string, unknown>, model: string, usage: MockUsage | null): void {
  const inputs = Array.isArray(body['input']) && typeof body['input'][0] !== 'number' ? body['input'] : [body['input']];
  const vector = [0.25, -0.5, 0.75];
  const encode = body['encoding_format'] === 'base64';
  send(res, 200, {
    object: 'list',
    data: inputs.map((_, index) => ({
      object: 'embedding',
      index,
      embedding: encode ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector,
    })),
    model,
    ...(usage ? { usage: { prompt_tokens: usage.input, total_tokens: usage.input } } : {}),
  });
}
