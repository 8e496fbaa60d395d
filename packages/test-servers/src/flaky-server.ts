import { createServer } from 'node:http';
import { listenLocal } from './listen-local.js';

/** How a flaky server fails one request: an HTTP status, or `'drop'` (the connection is closed unanswered). */
export type FlakyFailure = number | 'drop';

/** A local server that fails its first requests and forwards the rest to another server. */
export interface FlakyServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseURL: string;
  /** Requests received, failed ones included. */
  readonly hits: number;
  close(): Promise<void>;
}

/**
 * Starts a {@link FlakyServer} on 127.0.0.1 (a free port) in front of `target` (a billing server's base URL): its
 * first requests fail as `statuses` say, in order (a status is answered with an OpenAI-style error body and
 * `retry-after-ms: 0`, so a client retries at once; `'drop'` closes the connection, a transport failure); every later
 * one is forwarded to `target` and its answer passed back.
 */
export async function startFlakyServer(target: string, statuses: readonly FlakyFailure[]): Promise<FlakyServer> {
  const queue = [...statuses];
  const origin = new URL(target).origin;
  let hits = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      hits++;
      const status = queue.shift();
      if (status === 'drop') {
        res.destroy();
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
    close: local.close,
  };
}
