import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { securityHeaders, type ApprovalsHandler } from './approvals-handler.js';

/** Options of {@link toNodeHandler}. */
export interface NodeHandlerOptions {
  /**
   * Read the scheme and host from `X-Forwarded-Proto` / `X-Forwarded-Host` (behind a proxy you run). Default false:
   * the connection's own scheme and the `Host` header.
   */
  trustProxy?: boolean;
}

/** A Node `(req, res)` listener, also an Express middleware. */
export type NodeHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

/**
 * Adapts the web-standard handler to Node's `http` server and to Express. The full path is used (Express's
 * `originalUrl` when mounted with `app.use('/approvals', …)`), so give the handler the same `basePath`. Mount it
 * before any body parser: the handler reads (and bounds) the body itself.
 *
 * @example
 * ```ts
 * app.use('/approvals', toNodeHandler(createApprovalsHandler({ store, secret, basePath: '/approvals', authorize })));
 * http.createServer(toNodeHandler(handler)).listen(3000);
 * ```
 */
export function toNodeHandler(handler: ApprovalsHandler, options: NodeHandlerOptions = {}): NodeHandler {
  return async (req, res) => {
    try {
      const request = toRequest(req, res, options);
      // What the adapter refuses itself carries the handler's security headers too, as every response does.
      if (request === undefined) {
        res.writeHead(400, Object.fromEntries(securityHeaders({ 'content-type': 'text/plain; charset=utf-8' }))).end('bad request');
        return;
      }
      const response = await handler(request);
      res.statusCode = response.status;
      for (const [name, value] of response.headers) if (name !== 'set-cookie') res.setHeader(name, value);
      const cookies = response.headers.getSetCookie();
      if (cookies.length > 0) res.setHeader('set-cookie', cookies);
      const body = response.body === null ? undefined : Buffer.from(await response.arrayBuffer());
      res.end(body);
    } catch {
      if (!res.headersSent) res.writeHead(500, Object.fromEntries(securityHeaders({ 'content-type': 'text/plain; charset=utf-8' })));
      res.end();
    }
  };
}

function toRequest(req: IncomingMessage, res: ServerResponse, options: NodeHandlerOptions): Request | undefined {
  const forwarded = (name: string) => (options.trustProxy ? first(req.headers[name])?.split(',')[0]?.trim() : undefined);
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
  const protocol = forwarded('x-forwarded-proto') ?? (encrypted ? 'https' : 'http');
  const host = forwarded('x-forwarded-host') ?? req.headers.host;
  const path = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  // A dot segment, plain or percent-encoded, is refused rather than resolved: a proxy in front that allows or guards
  // paths by prefix would otherwise judge `/approvals/link/%2e%2e/api/…` by one route while the handler serves another.
  if (!host || (protocol !== 'http' && protocol !== 'https') || !path.startsWith('/') || DOT_SEGMENT.test(path.split('?')[0] as string)) return undefined;
  let url: URL;
  try {
    url = new URL(`${protocol}://${host}${path}`);
  } catch {
    return undefined;
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  return new Request(url, {
    method,
    headers,
    signal: controller.signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
  } as RequestInit);
}

const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:\/|$)/i;

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
