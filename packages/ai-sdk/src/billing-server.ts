import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// For tests only: a local stand-in for OpenAI's chat completions and Responses endpoints that bills every request
// the most the provider could: the whole output limit of every choice (gpt-4o's 16,384 when the request sets none)
// and every image at its documented high-detail maximum. Requests are held a little so a burst overlaps.

export const GPT_4O_MAX_OUTPUT = 16384;
const IMAGE_MAX = 85 + 8 * 170;
const IMAGE_TYPES = new Set(['image_url', 'input_image']);

/** A running billing server. */
export interface BillingServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseURL: string;
  /** Requests received since the last reset. */
  readonly hits: number;
  reset(): void;
  close(): Promise<void>;
}

const isImage = (value: unknown): boolean => IMAGE_TYPES.has((value as { type?: unknown } | null)?.type as string);

function images(value: unknown): number {
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + images(item), 0);
  if (typeof value !== 'object' || value === null) return 0;
  return (isImage(value) ? 1 : 0) + Object.values(value).reduce((sum: number, item) => sum + images(item), 0);
}

// About 4 bytes a token of text; image parts are billed by the image formula instead.
const inputTokens = (value: unknown): number =>
  Math.ceil(Buffer.byteLength(JSON.stringify(value ?? '', (_key, item: unknown) => (isImage(item) ? null : item))) / 4) + images(value) * IMAGE_MAX;

function answer(path: string, request: Record<string, unknown>): Record<string, unknown> {
  if (path.endsWith('/responses')) {
    return {
      id: 'resp_1',
      object: 'response',
      created_at: 0,
      status: 'completed',
      model: request['model'],
      output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'x', annotations: [] }] }],
      incomplete_details: null,
      usage: { input_tokens: inputTokens(request['input']), output_tokens: (request['max_output_tokens'] as number | undefined) ?? GPT_4O_MAX_OUTPUT, total_tokens: 0 },
    };
  }
  const n = typeof request['n'] === 'number' ? request['n'] : 1;
  const limit = ((request['max_completion_tokens'] ?? request['max_tokens']) as number | undefined) ?? GPT_4O_MAX_OUTPUT;
  return {
    id: 'chatcmpl_1',
    object: 'chat.completion',
    created: 0,
    model: request['model'],
    choices: Array.from({ length: n }, (_, index) => ({ index, message: { role: 'assistant', content: 'x' }, finish_reason: 'length' })),
    usage: { prompt_tokens: inputTokens(request['messages']), completion_tokens: limit * n, total_tokens: 0 },
  };
}

/** Starts the server on 127.0.0.1, on a free port. */
export async function startBillingServer(): Promise<BillingServer> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      hits++;
      let request: Record<string, unknown> = {};
      try {
        request = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        // an empty or non-JSON body is billed as an empty request
      }
      const body = JSON.stringify(answer((req.url ?? '').split('?')[0]!, request));
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(body), 15);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    get hits() {
      return hits;
    },
    reset() {
      hits = 0;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
