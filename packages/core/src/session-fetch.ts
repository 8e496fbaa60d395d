import type { Decision, Metadata } from './decision.js';
import { decisionError } from './errors.js';

/** What a governed fetch needs from a session: the network check. {@link PolicySession} is one. */
export interface HttpChecker {
  checkHttp(url: string | URL, options?: { method?: string; cost?: number; metadata?: Metadata }): Promise<Decision>;
  /**
   * Resolves the URL's host and throws the policy error when it resolves to a blocked address (see
   * {@link PolicySession.checkResolvedAddresses}); asked before each request sent without a `dispatcher`.
   */
  checkResolvedAddresses?(url: string | URL): Promise<void>;
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

/**
 * Builds a `fetch` that asks the session before every request and before following every redirect. Redirects are
 * followed here (the underlying fetch is called with `redirect: 'manual'`), so a redirect to a blocked host is
 * refused before it is requested. A request body is buffered so 307/308 redirects can resend it.
 *
 * The request is built once, from the caller's input and init, before it is checked: the URL and method decided are
 * read from that one `Request` and it is what is sent, so a URL changed while the check is pending, or a `URL` /
 * `Request` subclass whose getters answer differently from what `fetch` reads, cannot send something other than what
 * was decided. A `Host` header is never passed on (it is a forbidden header in the Fetch standard; an underlying fetch
 * that honoured it would reach another virtual host behind an allowed address).
 */
export function createPolicyFetch(session: HttpChecker, options: PolicyFetchOptions = {}): typeof globalThis.fetch {
  const maxRedirects = options.maxRedirects ?? 20;
  if (typeof maxRedirects !== 'number' || !Number.isSafeInteger(maxRedirects) || maxRedirects < 0) {
    throw new TypeError(`agentpolicy: maxRedirects must be a whole number of redirects, 0 or more; got ${JSON.stringify(maxRedirects) ?? String(maxRedirects)}`);
  }
  const policyFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const send = options.fetch ?? globalThis.fetch;
    // Anything but a string, URL or Request is checked as it is (the check denies it) and never built into a request.
    let request: Request | undefined;
    let refused: unknown;
    if (typeof input === 'string' || input instanceof URL || input instanceof Request) {
      try {
        request = new Request(input, init);
      } catch (error) {
        refused = error;
      }
    }
    if (request === undefined) {
      // Nothing can be sent. The target is still decided, at no cost, so an attempt on a blocked host is on record.
      const target = typeof input === 'string' ? input : input instanceof URL ? URL.prototype.toString.call(input) : input instanceof Request ? undefined : input;
      if (target !== undefined || refused === undefined) {
        const method = typeof init?.method === 'string' ? init.method : 'GET';
        const decision = await session.checkHttp(target as string, { method, metadata: { via: 'fetch' } });
        if (decision.decision !== 'allow') throw decisionError(decision);
      }
      throw refused;
    }
    if (options.firstHopChecked !== true) {
      const first = await session.checkHttp(request.url, {
        method: request.method,
        ...(options.cost !== undefined ? { cost: options.cost } : {}),
        metadata: { via: 'fetch' },
      });
      if (first.decision !== 'allow') throw decisionError(first);
    }
    // Passed through to Node's fetch as given (a proxy agent, say); only the request itself is rebuilt.
    const extra = dispatcherOf(init);
    const headers = new Headers(request.headers);
    headers.delete('host');

    // Without a dispatcher of the caller's, the connection resolves the name by itself: the addresses it will find
    // are checked first (a dispatcher connecting through session.lookup checks the very addresses it connects to).
    const resolved = extra === undefined ? session.checkResolvedAddresses?.bind(session) : undefined;
    if (request.redirect !== 'follow') {
      await resolved?.(request.url);
      const response = await send(new Request(request, { headers }), extra);
      return refuseUnchecked(session, request, response);
    }

    const body = request.body === null ? null : await request.arrayBuffer();
    const signal = request.signal;
    let current = { url: request.url, method: request.method, headers, body };
    for (let hop = 0; ; hop++) {
      const sending = new Request(current.url, { method: current.method, headers: current.headers, body: current.body, redirect: 'manual', signal });
      await resolved?.(sending.url);
      const response = await refuseUnchecked(session, sending, await send(sending, extra));
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
      const nextHeaders = new Headers(current.headers);
      if (new URL(current.url).origin !== next.origin) for (const name of CREDENTIAL_HEADERS) nextHeaders.delete(name);
      let nextMethod = current.method;
      let nextBody = current.body;
      if ((response.status === 303 && nextMethod !== 'GET' && nextMethod !== 'HEAD') || ((response.status === 301 || response.status === 302) && nextMethod === 'POST')) {
        nextMethod = 'GET';
        nextBody = null;
        for (const name of BODY_HEADERS) nextHeaders.delete(name);
      }
      current = { url: next.href, method: nextMethod, headers: nextHeaders, body: nextBody };
    }
  };
  return policyFetch as typeof globalThis.fetch;
}

function dispatcherOf(init: RequestInit | undefined): RequestInit | undefined {
  const dispatcher = (init as { dispatcher?: unknown } | undefined)?.dispatcher;
  return dispatcher === undefined ? undefined : ({ dispatcher } as RequestInit);
}

/**
 * An underlying fetch that followed a redirect by itself (it ignored `redirect: 'manual'`) reached a URL nobody
 * checked. Its response is handed back only if the policy allows that URL; otherwise it is discarded and the deny
 * thrown, so at least nothing read from there reaches the caller.
 */
async function refuseUnchecked(session: HttpChecker, sent: Request, response: Response): Promise<Response> {
  if (!response.redirected || response.url === '' || response.url === sent.url) return response;
  const decision = await session.checkHttp(response.url, { method: sent.method, metadata: { via: 'fetch', redirectFrom: sent.url, followedBy: 'underlying fetch' } });
  if (decision.decision === 'allow') return response;
  await response.body?.cancel().catch(() => undefined);
  throw decisionError(decision);
}
