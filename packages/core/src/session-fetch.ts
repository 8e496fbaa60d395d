import type { Decision, Metadata } from './decision.js';
import { decisionError } from './errors.js';

/** What a governed fetch needs from a session: the network check. {@link PolicySession} is one. */
export interface HttpChecker {
  checkHttp(url: string | URL, options?: { method?: string; cost?: number; metadata?: Metadata }): Promise<Decision>;
}

/** Options of {@link PolicySession.createFetch}. */
export interface PolicyFetchOptions {
  /** The fetch to send allowed requests with; `globalThis.fetch` (read at call time) by default. */
  fetch?: typeof globalThis.fetch;
  /** USD charged per request (the first hop only). */
  cost?: number;
  /** Most redirects followed. Default 20, as in the Fetch standard. */
  maxRedirects?: number;
  /**
   * The caller has already decided the first request (an adapter that checks it with its own metadata): only the
   * redirect hops are checked here.
   */
  firstHopChecked?: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];
const BODY_HEADERS = ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location'];

function targetOf(input: unknown): unknown {
  if (typeof input === 'string' || input instanceof URL) return input;
  if (input instanceof Request) return input.url;
  return input;
}

/**
 * Builds a `fetch` that asks the session before every request and before following every redirect. Redirects are
 * followed here (the underlying fetch is called with `redirect: 'manual'`), so a redirect to a blocked host is
 * refused before it is requested. A request body is buffered so 307/308 redirects can resend it.
 */
export function createPolicyFetch(session: HttpChecker, options: PolicyFetchOptions = {}): typeof globalThis.fetch {
  const maxRedirects = options.maxRedirects ?? 20;
  const policyFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const send = options.fetch ?? globalThis.fetch;
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    if (options.firstHopChecked !== true) {
      const first = await session.checkHttp(targetOf(input) as string, {
        method,
        ...(options.cost !== undefined ? { cost: options.cost } : {}),
        metadata: { via: 'fetch' },
      });
      if (first.decision !== 'allow') throw decisionError(first);
    }

    const mode = init?.redirect ?? (input instanceof Request ? input.redirect : 'follow');
    let request = new Request(input, init);
    if (mode !== 'follow') return send(new Request(request, { redirect: mode }));

    const body = request.body === null ? null : await request.arrayBuffer();
    let current = { url: request.url, method: request.method, headers: new Headers(request.headers), body };
    for (let hop = 0; ; hop++) {
      request = new Request(current.url, {
        method: current.method,
        headers: current.headers,
        body: current.body,
        redirect: 'manual',
        signal: init?.signal ?? (input instanceof Request ? input.signal : null),
      });
      const response = await send(request);
      const location = response.headers.get('location');
      if (!REDIRECTS.has(response.status) || location === null) return response;
      if (hop >= maxRedirects) {
        await response.body?.cancel().catch(() => undefined);
        throw new TypeError(`agentpolicy: too many redirects (more than ${maxRedirects})`);
      }
      let next: URL;
      try {
        next = new URL(location, current.url);
      } catch {
        return response;
      }
      const decision = await session.checkHttp(next.href, { method: current.method, metadata: { via: 'fetch', redirectFrom: current.url, status: response.status } });
      await response.body?.cancel().catch(() => undefined);
      if (decision.decision !== 'allow') throw decisionError(decision);
      const headers = new Headers(current.headers);
      if (new URL(current.url).origin !== next.origin) for (const name of CREDENTIAL_HEADERS) headers.delete(name);
      let nextMethod = current.method;
      let nextBody = current.body;
      if ((response.status === 303 && nextMethod !== 'GET' && nextMethod !== 'HEAD') || ((response.status === 301 || response.status === 302) && nextMethod === 'POST')) {
        nextMethod = 'GET';
        nextBody = null;
        for (const name of BODY_HEADERS) headers.delete(name);
      }
      current = { url: next.href, method: nextMethod, headers, body: nextBody };
    }
  };
  return policyFetch as typeof globalThis.fetch;
}
