import { createServer, type ServerResponse } from 'node:http';
import { listenLocal } from './listen-local.js';

/**
 * How a flaky server fails one request: an HTTP status, `'drop'` (the connection is closed unanswered), `'hang'` (no
 * answer at all, until the client gives up: a client timeout), or `'cut'` (a streamed chat completion whose
 * connection is closed after its first chunk).
 */
export type FlakyFailure = number | 'drop' | 'hang' | 'cut';

/** Options of {@link startFlakyServer}. */
export interface FlakyServerOptions {
  /**
   * Names the caller a request comes from (read from its JSON body): each caller then gets its own copy of the
   * failures, in order, so concurrent callers fail the same way whatever order their requests arrive in.
   */
  keyOf?: (body: Record<string, unknown>) => string;
  /** The failures of some callers by their key, in place of the common ones. */
  failuresOf?: Readonly<Record<string, readonly FlakyFailure[]>>;
}

/** A local server that fails its first requests and forwards the rest to another server. */
export interface FlakyServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseURL: string;
  /** Requests received, failed ones included. */
  readonly hits: number;
  /** Requests received from one caller (see {@link FlakyServerOptions.keyOf}), failed ones included. */
  hitsOf(key: string): number;
  close(): Promise<void>;
}

function bodyOf(chunks: Buffer[]): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Starts a {@link FlakyServer} on 127.0.0.1 (a free port) in front of `target` (a billing server's base URL): its
 * first requests fail as `statuses` say, in order (a status is answered with an OpenAI-style error body and
 * `retry-after-ms: 0`, so a client retries at once; `'drop'` closes the connection, a transport failure; `'hang'`
 * never answers; `'cut'` streams one chunk and closes); every later one is forwarded to `target` and its answer passed back.
 */
export async function startFlakyServer(target: string, statuses: readonly FlakyFailure[], options: FlakyServerOptions = {}): Promise<FlakyServer> {
  const queues = new Map<string, FlakyFailure[]>();
  const hitsByKey = new Map<string, number>();
  const hanging = new Set<ServerResponse>();
  const origin = new URL(target).origin;
  let hits = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      hits++;
      const key = options.keyOf?.(bodyOf(chunks)) ?? '';
      hitsByKey.set(key, (hitsByKey.get(key) ?? 0) + 1);
      if (!queues.has(key)) queues.set(key, [...(options.failuresOf?.[key] ?? statuses)]);
      const status = queues.get(key)!.shift();
      if (status === 'drop') {
        res.destroy();
        return;
      }
      if (status === 'cut') {
        const chunk = { id: 'chatcmpl_cut', object: 'chat.completion.chunk', created: 0, model: 'x', choices: [{ index: 0, delta: { role: 'assistant', content: 'par' }, finish_reason: null }] };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify(chunk)}\n\n`, () => setTimeout(() => res.destroy(), 20));
        return;
      }
      if (status === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      if (status !== undefined) {
        res.writeHead(status, { 'content-type': 'application/json', 'retry-after-ms': '0' }).end(JSON.stringify({ error: { message: `status ${status}`, type: 'server_error' } }));
        return;
      }
      const type = req.headers['content-type'];
      fetch(`${origin}${req.url ?? '/'}`, { method: req.method ?? 'POST', ...(type ? { headers: { 'content-type': type } } : {}), body: new Uint8Array(Buffer.concat(chunks)) })
        .then(async (answer) => res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await answer.arrayBuffer())))
        .catch(() => res.writeHead(502).end());
    });
  });
  const local = await listenLocal(server);
  return {
    baseURL: local.baseURL,
    get hits() {
      return hits;
    },
    hitsOf: (key) => hitsByKey.get(key) ?? 0,
    close: () => {
      for (const res of hanging) res.destroy();
      return local.close();
    },
  };
}
