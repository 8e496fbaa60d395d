import {
  AgentPolicyError,
  boundString,
  verifyApprovalToken,
  type ApprovalResolution,
  type ApprovalState,
  type ApprovalStore,
  type ApprovalTokenClaims,
  type ResolveResult,
} from '@agentpolicy/core';
import { CONTENT_SECURITY_POLICY, linkPage, messagePage, pendingPage, type Notice } from './approvals-page.js';
import { CSRF_COOKIE, CsrfTokens } from './csrf-token.js';
import { readBody } from './request-body.js';

/** Who is asking, as the application's {@link ApprovalsAuthorize} hook names them. Recorded as `by` on every answer. */
export interface ApprovalsPrincipal {
  /** A stable name for the person or system (an email, a user id, `slack:U123`). Non-empty, at most 200 characters. */
  readonly id: string;
}

/** What a request to the handler wants to do; the hook says whether its caller may. */
export type ApprovalsAccess =
  /** Read the list of pending requests (the page, or `GET /api/requests`). */
  | { readonly kind: 'list'; readonly sessionId?: string }
  /** Read one request. `approval` is undefined when no request has that id. */
  | { readonly kind: 'read'; readonly requestId: string; readonly approval: ApprovalState | undefined }
  /** Answer one request. `approval` is undefined when no request has that id. */
  | { readonly kind: 'resolve'; readonly requestId: string; readonly answer: 'approve' | 'reject'; readonly approval: ApprovalState | undefined }
  /** Open or redeem a signed link. Asked only for a genuine, unexpired token whose request exists and matches it. */
  | { readonly kind: 'link'; readonly claims: ApprovalTokenClaims; readonly approval: ApprovalState; readonly redeem: boolean };

/**
 * Decides whether a request may do what it asks: a principal to allow it (its `id` is recorded as the answer's
 * `by`), `null` / `undefined` / `false` to refuse it with 403, or a `Response` to answer instead (a 401 asking for
 * credentials, a redirect to a login page). A hook that throws refuses.
 */
export type ApprovalsAuthorize = (
  request: Request,
  access: ApprovalsAccess,
) => ApprovalsPrincipal | Response | null | undefined | false | Promise<ApprovalsPrincipal | Response | null | undefined | false>;

/** Options of {@link createApprovalsHandler}. */
export interface ApprovalsHandlerOptions {
  /** Where approval requests live: the store the agents' sessions use (`approvals` in their session options). */
  store: ApprovalStore;
  /**
   * The application's secret, at least 32 bytes: the sessions' `approvalSecret`, so the links they sign are accepted
   * here. It also keys the page's CSRF tokens (under a derived key).
   */
  secret: string | Uint8Array;
  /**
   * Authorises every request. Default: refuse everything except a genuine signed link, which answers as
   * `approval-token`. Nothing is served without this hook's say-so.
   */
  authorize?: ApprovalsAuthorize;
  /** The path the handler is mounted at, e.g. `/approvals` (no trailing slash). Default: the root. */
  basePath?: string;
  /** Origins besides the request's own from which posts are accepted (a proxy's public origin). */
  allowedOrigins?: readonly string[];
  /**
   * The hosts (`name` or `name:port`, as a browser sends them in `Host`) this handler answers for; any other is refused
   * with 421 before anything is read. Set it when `authorize` trusts the network (an IP range, a VPN) rather than a
   * login: a page on another domain whose name an attacker points at this server (DNS rebinding) is then refused.
   * Default: any host.
   */
  allowedHosts?: readonly string[];
  /** The largest body read, in bytes. Default 16,384. */
  maxBodyBytes?: number;
  /** How long a body may take to arrive, in milliseconds; a body still arriving then is refused with 408. Default 10,000. */
  bodyTimeoutMs?: number;
  /** The longest reason accepted, in characters. Default 1,000. */
  maxReasonLength?: number;
  /** How long a page's form token stays valid. Default 12 hours. */
  csrfMaxAgeMs?: number;
  /** The clock, in milliseconds. Default `Date.now`. */
  now?: () => number;
  /** Told about a store or hook failure (the caller only sees a generic 503 / 403). */
  onError?: (error: unknown) => void;
}

/** A web-standard request handler: mount it in Next.js, Hono, Bun, Deno, or Node through {@link toNodeHandler}. */
export type ApprovalsHandler = (request: Request) => Promise<Response>;

const SIGNED_LINK: ApprovalsPrincipal = Object.freeze({ id: 'approval-token' });
const REQUEST_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** The default hook: deny all but signed links (already checked genuine when the hook is asked). */
export const signedLinksOnly: ApprovalsAuthorize = (_request, access) => (access.kind === 'link' ? SIGNED_LINK : null);

const NOTICES: Record<string, Notice> = {
  approved: { text: 'Approved. The agent can go ahead.', problem: false },
  rejected: { text: 'Rejected. The agent will not run it.', problem: false },
  answered: { text: 'That request already had an answer; the first answer stands.', problem: true },
  expired: { text: 'That request has expired; it can no longer be answered.', problem: true },
  unknown: { text: 'No such request.', problem: true },
  csrf: { text: 'The form had expired or did not come from this page. Nothing was answered; please try again.', problem: true },
};

/**
 * Creates the approvals handler: a JSON API, one-click signed links and a small HTML page, all answering the
 * requests in `store`.
 *
 * Routes, under `basePath`:
 * - `GET /` — the page of pending requests with Approve / Reject forms (access `list`; posts need access `resolve`).
 * - `POST /requests/:id` — the page's form (`answer`, `reason`, `csrf`).
 * - `GET /link/:token` — what a signed link opens: the request and one button; `POST /link` (`token`, `reason`)
 *   answers it. A GET never answers, so link scanners and previews cannot.
 * - `GET /api/requests[?session=]`, `GET /api/requests/:id` — JSON.
 * - `POST /api/requests/:id/resolve` — JSON `{ "answer": "approve" | "reject", "reason"?: string }`.
 * - `POST /api/links/redeem` — JSON `{ "token": string, "reason"?: string }`.
 *
 * @example
 * ```ts
 * const handler = createApprovalsHandler({
 *   store, secret: process.env.APPROVAL_SECRET!, basePath: '/approvals',
 *   authorize: async (request) => (await currentUser(request)) ?? null,
 * });
 * // Next.js app/approvals/[[...path]]/route.ts: export { handler as GET, handler as POST };
 * ```
 */
export function createApprovalsHandler(options: ApprovalsHandlerOptions): ApprovalsHandler {
  if (typeof options?.store !== 'object' || options.store === null) throw new AgentPolicyError('INVALID_ARGUMENT', 'createApprovalsHandler needs a store');
  const secretBytes = typeof options.secret === 'string' ? Buffer.byteLength(options.secret, 'utf8') : options.secret instanceof Uint8Array ? options.secret.byteLength : 0;
  if (secretBytes < 32) throw new AgentPolicyError('INVALID_ARGUMENT', 'createApprovalsHandler needs a secret of at least 32 bytes (the sessions\' approvalSecret)');
  const base = normalizeBase(options.basePath ?? '');
  const store = options.store;
  const secret = options.secret;
  const authorize = options.authorize ?? signedLinksOnly;
  const allowedHosts = readAllowedHosts(options.allowedHosts);
  const maxBody = options.maxBodyBytes ?? 16_384;
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
  if (!(Number.isFinite(bodyTimeoutMs) && bodyTimeoutMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', 'bodyTimeoutMs must be a positive number of milliseconds');
  const maxReason = options.maxReasonLength ?? 1000;
  const now = options.now ?? Date.now;
  const csrfMaxAgeMs = options.csrfMaxAgeMs ?? 12 * 3_600_000;
  const csrf = new CsrfTokens(secret, csrfMaxAgeMs);
  const report = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // A failing error sink changes no answer.
    }
  };

  /** Asks the hook; anything but a clear principal or a Response refuses. */
  const ask = async (request: Request, access: ApprovalsAccess): Promise<ApprovalsPrincipal | Response> => {
    let answer: Awaited<ReturnType<ApprovalsAuthorize>>;
    try {
      answer = await authorize(request, access);
    } catch (error) {
      report(error);
      answer = null;
    }
    if (answer instanceof Response) return secured(answer);
    if (typeof answer === 'object' && answer !== null && typeof answer.id === 'string' && answer.id.length > 0 && answer.id.length <= 200) {
      return Object.freeze({ id: answer.id });
    }
    return isPagePath(request, base) ? html(403, messagePage('Not allowed', 'You are not allowed to do this.', { problem: true })) : json(403, error('forbidden', 'not allowed'));
  };

  const resolution = (approved: boolean, by: string, reason: string | undefined): ApprovalResolution =>
    Object.freeze({ approved, by: boundString(by), ...(reason ? { reason: boundString(reason) } : {}), at: new Date(now()).toISOString() });

  const readReason = (fields: Readonly<Record<string, string>>): { ok: true; reason: string | undefined } | { ok: false; message: string } => {
    const reason = fields.reason?.trim();
    if (reason !== undefined && reason.length > maxReason) return { ok: false, message: `the reason is longer than ${maxReason} characters` };
    return { ok: true, reason: reason || undefined };
  };

  // ---- the page -------------------------------------------------------------------------------------------------

  const listPage = async (request: Request, url: URL): Promise<Response> => {
    // `?session=<id>` lists one session's requests (and asks the hook for that), as `GET /api/requests` does.
    const sessionId = url.searchParams.get('session') ?? undefined;
    const principal = await ask(request, sessionId === undefined ? { kind: 'list' } : { kind: 'list', sessionId });
    if (principal instanceof Response) return principal;
    const states = await store.listPending(sessionId, now());
    const cookieNonce = readCookie(request, CSRF_COOKIE);
    const nonce = csrf.isNonce(cookieNonce) ? cookieNonce : csrf.nonce();
    const noticeKey = url.searchParams.get('notice');
    const notice = noticeKey !== null && Object.hasOwn(NOTICES, noticeKey) ? NOTICES[noticeKey] : undefined;
    const body = pendingPage(states, { base, csrf: csrf.issue(principal.id, nonce, now()), now: now(), principal: principal.id, ...(notice ? { notice } : {}), ...(sessionId !== undefined ? { sessionId } : {}) });
    return html(200, body, nonce === cookieNonce ? {} : { 'set-cookie': csrfCookie(nonce, base, url, csrfMaxAgeMs) });
  };

  const pageAnswer = async (request: Request, id: string): Promise<Response> => {
    const body = await readBody(request, 'form', maxBody, bodyTimeoutMs);
    if (!body.ok) return html(body.status, messagePage('Not answered', body.message, { problem: true, backHref: `${base}/` }));
    const answer = body.fields.answer;
    // Back to the page the form was on: one session's list when it was filtered.
    const listed = body.fields.session;
    const back = listed === undefined ? `${base}/` : `${base}/?session=${encodeURIComponent(listed)}`;
    const after = (notice: string) => `${back}${listed === undefined ? '?' : '&'}notice=${notice}`;
    if (answer !== 'approve' && answer !== 'reject') return html(400, messagePage('Not answered', 'The answer must be approve or reject.', { problem: true, backHref: back }));
    const approval = await store.get(id, now());
    const principal = await ask(request, { kind: 'resolve', requestId: id, answer, approval });
    if (principal instanceof Response) return principal;
    if (!csrf.verify(body.fields.csrf, readCookie(request, CSRF_COOKIE), principal.id, now())) return html(403, messagePage('Not answered', NOTICES.csrf?.text ?? '', { problem: true, backHref: back }));
    const reason = readReason(body.fields);
    if (!reason.ok) return html(400, messagePage('Not answered', reason.message, { problem: true, backHref: back }));
    if (approval === undefined) return redirect(after('unknown'));
    const result = await store.resolve(id, resolution(answer === 'approve', principal.id, reason.reason), now());
    return redirect(after(result.ok ? (answer === 'approve' ? 'approved' : 'rejected') : result.problem));
  };

  // ---- signed links ---------------------------------------------------------------------------------------------

  /** A token checked all the way: genuine, unexpired, its request exists and is for the same action. */
  const checkLink = async (token: string | undefined): Promise<{ ok: true; claims: ApprovalTokenClaims; approval: ApprovalState } | { ok: false; status: number; code: string; message: string }> => {
    const check = verifyApprovalToken(token, secret, now());
    if (!check.ok) {
      return check.problem === 'expired'
        ? { ok: false, status: 410, code: 'link_expired', message: 'This link has expired.' }
        : { ok: false, status: 403, code: 'link_invalid', message: 'This link is not valid.' };
    }
    const approval = await store.get(check.claims.requestId, now());
    if (approval === undefined) return { ok: false, status: 404, code: 'unknown', message: 'This link is for a request that does not exist.' };
    if (approval.fingerprint !== check.claims.fingerprint) return { ok: false, status: 403, code: 'link_invalid', message: 'This link was signed for another action.' };
    return { ok: true, claims: check.claims, approval };
  };

  const linkView = async (request: Request, token: string): Promise<Response> => {
    const link = await checkLink(token);
    if (!link.ok) return html(link.status, messagePage('Link refused', link.message, { problem: true }));
    const principal = await ask(request, { kind: 'link', claims: link.claims, approval: link.approval, redeem: false });
    if (principal instanceof Response) return principal;
    if (link.approval.status !== 'pending') return html(statusOfState(link.approval), messagePage('Link refused', stateText(link.approval), { problem: true }));
    return html(200, linkPage(link.approval, link.claims, token, { base, now: now() }));
  };

  const linkRedeem = async (request: Request, kind: 'form' | 'json'): Promise<Response> => {
    const body = await readBody(request, kind, maxBody, bodyTimeoutMs);
    if (!body.ok) return kind === 'form' ? html(body.status, messagePage('Not answered', body.message, { problem: true })) : json(body.status, error(body.code, body.message));
    const link = await checkLink(body.fields.token);
    if (!link.ok) return kind === 'form' ? html(link.status, messagePage('Link refused', link.message, { problem: true })) : json(link.status, error(link.code, link.message));
    const principal = await ask(request, { kind: 'link', claims: link.claims, approval: link.approval, redeem: true });
    if (principal instanceof Response) return principal;
    const reason = readReason(body.fields);
    if (!reason.ok) return kind === 'form' ? html(400, messagePage('Not answered', reason.message, { problem: true })) : json(400, error('malformed_body', reason.message));
    const result = await store.resolve(link.approval.id, resolution(link.claims.answer === 'approve', principal.id, reason.reason), now());
    if (kind === 'json') return resolveJson(result);
    if (!result.ok) return html(statusOfProblem(result.problem), messagePage('Link refused', result.request ? stateText(result.request) : 'This link is for a request that does not exist.', { problem: true }));
    return html(200, messagePage(result.request.status === 'approved' ? 'Approved' : 'Rejected', `${stateText(result.request)}`));
  };

  // ---- JSON API -------------------------------------------------------------------------------------------------

  const apiList = async (request: Request, url: URL): Promise<Response> => {
    const sessionId = url.searchParams.get('session') ?? undefined;
    const principal = await ask(request, sessionId === undefined ? { kind: 'list' } : { kind: 'list', sessionId });
    if (principal instanceof Response) return principal;
    return json(200, { requests: await store.listPending(sessionId, now()) });
  };

  const apiGet = async (request: Request, id: string): Promise<Response> => {
    const approval = await store.get(id, now());
    const principal = await ask(request, { kind: 'read', requestId: id, approval });
    if (principal instanceof Response) return principal;
    return approval === undefined ? json(404, error('unknown', 'no approval request has this id')) : json(200, { request: approval });
  };

  const apiResolve = async (request: Request, id: string): Promise<Response> => {
    const body = await readBody(request, 'json', maxBody, bodyTimeoutMs);
    if (!body.ok) return json(body.status, error(body.code, body.message));
    const answer = body.fields.answer;
    if (answer !== 'approve' && answer !== 'reject') return json(400, error('malformed_body', 'answer must be "approve" or "reject"'));
    const approval = await store.get(id, now());
    const principal = await ask(request, { kind: 'resolve', requestId: id, answer, approval });
    if (principal instanceof Response) return principal;
    const reason = readReason(body.fields);
    if (!reason.ok) return json(400, error('malformed_body', reason.message));
    if (approval === undefined) return json(404, error('unknown', 'no approval request has this id'));
    return resolveJson(await store.resolve(id, resolution(answer === 'approve', principal.id, reason.reason), now()));
  };

  // ---- routing --------------------------------------------------------------------------------------------------

  const route = async (request: Request): Promise<Response> => {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return json(400, error('bad_request', 'unreadable URL'));
    }
    if (allowedHosts !== undefined && !allowedHosts.has(url.host)) return json(421, error('misdirected', 'this handler does not answer for this host'));
    if (url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return json(404, error('not_found', 'not found'));
    const path = url.pathname.slice(base.length) || '/';
    const parts = path.split('/').slice(1);
    const method = request.method.toUpperCase();
    const isPost = method === 'POST';
    if (isPost) {
      const refused = crossSite(request, url, options.allowedOrigins ?? []);
      if (refused) return refused;
    }
    const only = (allowed: 'GET' | 'POST', run: () => Promise<Response>) => (method === allowed ? run() : methodNotAllowed(allowed));
    const [first, second, third, fourth] = parts;
    if (parts.length === 1 && first === '') return only('GET', () => listPage(request, url));
    if (first === 'requests' && parts.length === 2 && validId(second)) return only('POST', () => pageAnswer(request, second));
    if (first === 'link' && parts.length === 1) return only('POST', () => linkRedeem(request, 'form'));
    if (first === 'link' && parts.length === 2 && second) return only('GET', () => linkView(request, decodeSegment(second)));
    if (first === 'api') {
      if (second === 'requests' && parts.length === 2) return only('GET', () => apiList(request, url));
      if (second === 'requests' && parts.length === 3 && validId(third)) return only('GET', () => apiGet(request, third));
      if (second === 'requests' && parts.length === 4 && validId(third) && fourth === 'resolve') return only('POST', () => apiResolve(request, third));
      if (second === 'links' && parts.length === 3 && third === 'redeem') return only('POST', () => linkRedeem(request, 'json'));
    }
    return json(404, error('not_found', 'not found'));
  };

  return async (request: Request): Promise<Response> => {
    try {
      return await route(request);
    } catch (caught) {
      // A store that fails (Redis down, a file unreadable): nothing is answered, the caller is told to retry.
      report(caught);
      return json(503, error('unavailable', 'the approval store could not be reached; nothing was changed'));
    }
  };
}

function normalizeBase(basePath: string): string {
  if (typeof basePath !== 'string' || (basePath !== '' && !/^\/[A-Za-z0-9._~/-]*$/.test(basePath))) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'basePath must be a path such as /approvals');
  }
  return basePath.replace(/\/+$/, '');
}

// Each entry as the URL parser writes a host (lower case, punycode, default port dropped), so it compares with `url.host`.
function readAllowedHosts(hosts: readonly string[] | undefined): ReadonlySet<string> | undefined {
  if (hosts === undefined) return undefined;
  if (!Array.isArray(hosts) || hosts.length === 0) throw new AgentPolicyError('INVALID_ARGUMENT', 'allowedHosts must be a non-empty list of host names such as ops.example.com or localhost:3000');
  const out = new Set<string>();
  for (const host of hosts) {
    let parsed: URL | undefined;
    try {
      parsed = typeof host === 'string' && host !== '' && !/[/?#@\\\s]/.test(host) ? new URL(`http://${host}/`) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined) throw new AgentPolicyError('INVALID_ARGUMENT', `allowedHosts: ${JSON.stringify(host)} is not a host name (with an optional port)`);
    out.add(parsed.host);
    // The same host reached over https on its default port.
    out.add(new URL(`https://${host}/`).host);
  }
  return out;
}

function validId(id: string | undefined): id is string {
  return id !== undefined && REQUEST_ID.test(id);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** A post from another site is refused before anything else: by Fetch Metadata, then by Origin. */
function crossSite(request: Request, url: URL, allowedOrigins: readonly string[]): Response | undefined {
  const site = request.headers.get('sec-fetch-site');
  if (site !== null && site !== 'same-origin' && site !== 'none') return json(403, error('cross_site', 'cross-site posts are refused'));
  const origin = request.headers.get('origin');
  if (origin !== null && origin !== url.origin && !allowedOrigins.includes(origin)) return json(403, error('cross_site', 'posts from another origin are refused'));
  return undefined;
}

function readCookie(request: Request, name: string): string | undefined {
  const header = request.headers.get('cookie');
  if (header === null) return undefined;
  for (const part of header.split(';')) {
    const index = part.indexOf('=');
    if (index > 0 && part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
}

function csrfCookie(nonce: string, base: string, url: URL, maxAgeMs: number): string {
  return `${CSRF_COOKIE}=${nonce}; Path=${base || '/'}; HttpOnly; SameSite=Strict; Max-Age=${Math.max(1, Math.floor(maxAgeMs / 1000))}${url.protocol === 'https:' ? '; Secure' : ''}`;
}

function isPagePath(request: Request, base: string): boolean {
  return !new URL(request.url).pathname.startsWith(`${base}/api/`);
}

function stateText(state: ApprovalState): string {
  const by = state.resolution?.by ? ` by ${state.resolution.by}` : '';
  const why = state.resolution?.reason ? `: ${state.resolution.reason}` : '';
  switch (state.status) {
    case 'approved':
    case 'used':
      return `This request was approved${by}${why}.`;
    case 'rejected':
      return `This request was rejected${by}${why}.`;
    case 'expired':
      return 'This request has expired; it can no longer be answered.';
    default:
      return 'This request is waiting for an answer.';
  }
}

function statusOfState(state: ApprovalState): number {
  return state.status === 'expired' ? 410 : 409;
}

function statusOfProblem(problem: 'unknown' | 'expired' | 'answered'): number {
  return problem === 'unknown' ? 404 : problem === 'expired' ? 410 : 409;
}

function resolveJson(result: ResolveResult): Response {
  if (result.ok) return json(200, { ok: true, request: result.request });
  return json(statusOfProblem(result.problem), { ok: false, problem: result.problem, ...(result.request ? { request: result.request } : {}) });
}

function error(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

function methodNotAllowed(allowed: string): Response {
  return new Response(JSON.stringify(error('method_not_allowed', `use ${allowed}`)), {
    status: 405,
    headers: securityHeaders({ 'content-type': 'application/json; charset=utf-8', allow: allowed }),
  });
}

function redirect(location: string): Response {
  return new Response(null, { status: 303, headers: securityHeaders({ location }) });
}

function html(status: number, body: string, extra: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: securityHeaders({ 'content-type': 'text/html; charset=utf-8', ...extra }) });
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: securityHeaders({ 'content-type': 'application/json; charset=utf-8' }) });
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
});

/**
 * Every response: no caching, no sniffing, no referrer to other sites (links carry tokens), no framing, nothing loaded.
 * Also used by `toNodeHandler` for what it answers itself.
 */
export function securityHeaders(headers: Record<string, string>): Headers {
  const out = new Headers(headers);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) out.set(name, value);
  return out;
}

/** A response of the application's hook, with the security headers added. */
function secured(response: Response): Response {
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
