import { AgentPolicy, InMemoryApprovalStore, signApprovalToken, type ApprovalStore, type PolicySession } from '@agentpolicy/core';
import { describe, expect, it, vi } from 'vitest';
import { createApprovalsHandler, type ApprovalsAuthorize, type ApprovalsHandlerOptions } from './approvals-handler.js';
import { approvalLinks } from './approval-links.js';
import { createWaitingApprover } from './create-waiting-approver.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long!';
const ORIGIN = 'http://approvals.test';
const BASE = '/approvals';

const policy = () =>
  AgentPolicy.fromDict({
    tools: { allow: ['send_email', 'search'] },
    approval: { require_for: [{ tool: 'send_email' }] },
  });

/** An app hook: the user named by a header is signed in; links are allowed as themselves. */
const byHeader: ApprovalsAuthorize = (request, access) => {
  if (access.kind === 'link') return { id: 'approval-token' };
  const user = request.headers.get('x-user');
  return user ? { id: user } : null;
};

function setup(options: Partial<ApprovalsHandlerOptions> = {}, sessionOptions: { approvalTtlMs?: number } = {}) {
  const store = (options.store as ApprovalStore | undefined) ?? new InMemoryApprovalStore();
  const session = policy().session({ id: 'session-1', approvals: store, approvalSecret: SECRET, ...sessionOptions });
  const handler = createApprovalsHandler({ store, secret: SECRET, basePath: BASE, ...options });
  return { store, session, handler };
}

async function raise(session: PolicySession, input: unknown) {
  const decision = await session.checkTool('send_email', { input });
  if (!decision.approvalRequest) throw new Error('no approval request');
  return decision.approvalRequest;
}

const get = (path: string, headers: Record<string, string> = {}) => new Request(`${ORIGIN}${path}`, { headers });
const postJson = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  new Request(`${ORIGIN}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const postForm = (path: string, fields: Record<string, string> | string, headers: Record<string, string> = {}) =>
  new Request(`${ORIGIN}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: typeof fields === 'string' ? fields : new URLSearchParams(fields).toString(),
  });

/** Loads the page as `user` and returns what a browser would post back: the form token and the cookie. */
async function pageSession(handler: (request: Request) => Promise<Response>, user: string) {
  const response = await handler(get(`${BASE}/`, { 'x-user': user }));
  expect(response.status).toBe(200);
  const html = await response.text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
  const cookie = (response.headers.getSetCookie()[0] ?? '').split(';')[0] ?? '';
  return { html, csrf, cookie };
}

describe('access: nothing is served without the hook', () => {
  it('the default hook refuses the page, the API and answers; it allows only a genuine link', async () => {
    const { session, handler } = setup();
    const request = await raise(session, { to: 'a@example.com' });
    for (const r of [
      get(`${BASE}/`),
      get(`${BASE}/api/requests`),
      get(`${BASE}/api/requests/${request.id}`),
      postJson(`${BASE}/api/requests/${request.id}/resolve`, { answer: 'approve' }),
      postForm(`${BASE}/requests/${request.id}`, { answer: 'approve' }),
    ]) {
      const response = await handler(r);
      expect(response.status, r.url).toBe(403);
      expect(await response.text()).not.toContain('a@example.com');
    }
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    const links = approvalLinks(request, { handlerUrl: `${ORIGIN}${BASE}`, secret: SECRET });
    const view = await handler(get(new URL(links.approve).pathname));
    expect(view.status).toBe(200);
    expect(await view.text()).toContain('a@example.com');
    const token = new URL(links.approve).pathname.split('/').pop() as string;
    const done = await handler(postForm(`${BASE}/link`, { token, reason: 'looks fine' }, { origin: ORIGIN }));
    expect(done.status).toBe(200);
    expect(await session.getApproval(request.id)).toMatchObject({ status: 'approved', resolution: { approved: true, by: 'approval-token', reason: 'looks fine' } });
  });

  it('the hook sees what is asked, and may refuse one kind, answer with its own response, or fail closed', async () => {
    const seen: string[] = [];
    const onError = vi.fn();
    const authorize: ApprovalsAuthorize = (request, access) => {
      seen.push(access.kind);
      if (request.headers.get('x-user') === 'boom') throw new Error('directory down');
      if (request.headers.get('x-user') === 'reader') return access.kind === 'resolve' ? null : { id: 'reader' };
      if (!request.headers.get('x-user')) return new Response('who are you?', { status: 401, headers: { 'www-authenticate': 'Basic realm="approvals"' } });
      return { id: String(request.headers.get('x-user')) };
    };
    const { session, handler } = setup({ authorize, onError });
    const request = await raise(session, { to: 'b@example.com' });
    const challenge = await handler(get(`${BASE}/api/requests`));
    expect(challenge.status).toBe(401);
    expect(challenge.headers.get('www-authenticate')).toBe('Basic realm="approvals"');
    expect(challenge.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect((await handler(get(`${BASE}/api/requests`, { 'x-user': 'boom' }))).status).toBe(403);
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'directory down' }));
    expect((await handler(get(`${BASE}/api/requests`, { 'x-user': 'reader' }))).status).toBe(200);
    const refused = await handler(postJson(`${BASE}/api/requests/${request.id}/resolve`, { answer: 'approve' }, { 'x-user': 'reader' }));
    expect(refused.status).toBe(403);
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    expect(seen).toEqual(['list', 'list', 'list', 'resolve']);
  });

  it('a principal without a usable id is a refusal', async () => {
    for (const principal of [{ id: '' }, { id: 'x'.repeat(201) }, { id: 42 }, {}, 'alice', true]) {
      const { handler } = setup({ authorize: () => principal as never });
      expect((await handler(get(`${BASE}/api/requests`))).status).toBe(403);
    }
  });
});

describe('the JSON API', () => {
  it('lists, reads and resolves with who and why; a second answer is refused and the first stands', async () => {
    const { session, handler } = setup({ authorize: byHeader });
    const request = await raise(session, { to: 'c@example.com' });
    const list = await (await handler(get(`${BASE}/api/requests?session=session-1`, { 'x-user': 'alice' }))).json();
    expect(list.requests.map((r: { id: string }) => r.id)).toEqual([request.id]);
    const other = await (await handler(get(`${BASE}/api/requests?session=nobody`, { 'x-user': 'alice' }))).json();
    expect(other.requests).toEqual([]);
    const one = await handler(get(`${BASE}/api/requests/${request.id}`, { 'x-user': 'alice' }));
    expect(await one.json()).toMatchObject({ request: { id: request.id, status: 'pending', action: { name: 'send_email', input: { to: 'c@example.com' } } } });
    const no = await handler(postJson(`${BASE}/api/requests/${request.id}/resolve`, { answer: 'reject', reason: 'not this one' }, { 'x-user': 'alice' }));
    expect(no.status).toBe(200);
    expect(await no.json()).toMatchObject({ ok: true, request: { status: 'rejected', resolution: { by: 'alice', reason: 'not this one' } } });
    const late = await handler(postJson(`${BASE}/api/requests/${request.id}/resolve`, { answer: 'approve' }, { 'x-user': 'mallory' }));
    expect(late.status).toBe(409);
    expect(await late.json()).toMatchObject({ ok: false, problem: 'answered', request: { status: 'rejected', resolution: { by: 'alice' } } });
    // The agent sees the human's answer, with the reason.
    const resumed = await session.checkTool('send_email', { input: { to: 'c@example.com' }, approval: { requestId: request.id } });
    expect(resumed).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'rejected' } });
    expect(resumed.reason).toContain('rejected by alice: not this one');
  });

  it('unknown and expired requests are not answered', async () => {
    const { session, handler } = setup({ authorize: byHeader }, { approvalTtlMs: 5 });
    const request = await raise(session, { to: 'd@example.com' });
    expect((await handler(get(`${BASE}/api/requests/apr_unknown`, { 'x-user': 'alice' }))).status).toBe(404);
    expect((await handler(postJson(`${BASE}/api/requests/apr_unknown/resolve`, { answer: 'approve' }, { 'x-user': 'alice' }))).status).toBe(404);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const late = await handler(postJson(`${BASE}/api/requests/${request.id}/resolve`, { answer: 'approve' }, { 'x-user': 'alice' }));
    expect(late.status).toBe(410);
    expect((await session.getApproval(request.id))?.status).toBe('expired');
  });

  it('refuses oversized, malformed and mistyped bodies without answering', async () => {
    const { session, handler } = setup({ authorize: byHeader, maxBodyBytes: 256 });
    const request = await raise(session, { to: 'e@example.com' });
    const path = `${BASE}/api/requests/${request.id}/resolve`;
    const user = { 'x-user': 'alice' };
    const cases: [Request, number][] = [
      [postJson(path, { answer: 'approve', reason: 'x'.repeat(300) }, user), 413],
      [postJson(path, '{"answer":', user), 400],
      [postJson(path, '[1,2]', user), 400],
      [postJson(path, 'null', user), 400],
      [postJson(path, { answer: 'approve', reason: { nested: true } }, user), 400],
      [postJson(path, { answer: true }, user), 400],
      [postJson(path, { answer: 'APPROVE' }, user), 400],
      [new Request(`${ORIGIN}${path}`, { method: 'POST', headers: { 'content-type': 'text/plain', ...user }, body: '{"answer":"approve"}' }), 415],
      [new Request(`${ORIGIN}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...user }, body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }), 400],
    ];
    for (const [index, [r, status]] of cases.entries()) {
      const response = await handler(r);
      expect(response.status, `case ${index}`).toBe(status);
      expect((await response.json()).error.code).toMatch(/^(body_too_large|malformed_body|unsupported_media_type)$/);
    }
    // A body streamed without a length is cut off at the limit too.
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 100; i++) controller.enqueue(new TextEncoder().encode('          '));
        controller.close();
      },
    });
    const streamed = await handler(new Request(`${ORIGIN}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...user }, body: chunks, duplex: 'half' } as RequestInit));
    expect(streamed.status).toBe(413);
    const tooLong = await handler(postJson(path, { answer: 'approve', reason: 'r'.repeat(1001) }, user));
    expect(tooLong.status).toBe(413);
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    // The reason limit (default 1,000 characters) is separate from the byte limit.
    const { handler: roomy } = setup({ authorize: byHeader });
    expect((await roomy(postJson(`${BASE}/api/requests/apr_x/resolve`, { answer: 'approve', reason: 'r'.repeat(1001) }, user))).status).toBe(400);
  });

  it('a cross-site post is refused even with credentials', async () => {
    const { session, handler } = setup({ authorize: byHeader, allowedOrigins: ['https://ops.example.com'] });
    const request = await raise(session, { to: 'f@example.com' });
    const path = `${BASE}/api/requests/${request.id}/resolve`;
    for (const headers of [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: 'https://evil.example' }, { origin: 'null' }]) {
      const response = await handler(postJson(path, { answer: 'approve' }, { 'x-user': 'alice', ...headers }));
      expect(response.status).toBe(403);
      expect((await response.json()).error.code).toBe('cross_site');
    }
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    const proxied = await handler(postJson(path, { answer: 'approve' }, { 'x-user': 'alice', origin: 'https://ops.example.com' }));
    expect(proxied.status).toBe(200);
  });

  it('a failing store is a 503 that changes nothing, never a crash', async () => {
    const broken: ApprovalStore = {
      create: () => undefined,
      get: () => Promise.reject(new Error('redis down')),
      listPending: () => Promise.reject(new Error('redis down')),
      resolve: () => Promise.reject(new Error('redis down')),
      consume: () => false,
    };
    const onError = vi.fn();
    const handler = createApprovalsHandler({ store: broken, secret: SECRET, authorize: byHeader, onError });
    expect((await handler(get('/api/requests', { 'x-user': 'alice' }))).status).toBe(503);
    expect((await handler(postJson('/api/requests/apr_x/resolve', { answer: 'approve' }, { 'x-user': 'alice' }))).status).toBe(503);
    expect(onError).toHaveBeenCalledTimes(2);
  });

  it('a body that breaks off (the client went away) is a 400 that changes nothing, not reported as a store failure', async () => {
    const onError = vi.fn();
    const { session, handler, store } = setup({ authorize: byHeader, onError });
    const request = await raise(session, { to: 'a@example.com' });
    const brokenOff = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"answer":"appr'));
          controller.error(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
        },
      });
    const post = (path: string, type: string) =>
      handler(new Request(`${ORIGIN}${path}`, { method: 'POST', headers: { 'content-type': type, 'x-user': 'alice' }, body: brokenOff(), duplex: 'half' } as RequestInit));
    for (const response of [
      await post(`${BASE}/api/requests/${request.id}/resolve`, 'application/json'),
      await post(`${BASE}/api/links/redeem`, 'application/json'),
      await post(`${BASE}/requests/${request.id}`, 'application/x-www-form-urlencoded'),
      await post(`${BASE}/link`, 'application/x-www-form-urlencoded'),
    ]) {
      expect(response.status).toBe(400);
      if (response.headers.get('content-type')?.includes('json')) expect((await response.json()).error.code).toBe('body_unreadable');
    }
    expect(onError).not.toHaveBeenCalled();
    expect((await store.get(request.id, Date.now()))?.status).toBe('pending');
  });

  it('unknown routes and wrong methods serve nothing', async () => {
    const { handler } = setup({ authorize: byHeader });
    expect((await handler(get('/elsewhere', { 'x-user': 'alice' }))).status).toBe(404);
    expect((await handler(get(`${BASE}/api/requests/..%2Fsecret`, { 'x-user': 'alice' }))).status).toBe(404);
    const wrong = await handler(new Request(`${ORIGIN}${BASE}/api/requests`, { method: 'DELETE', headers: { 'x-user': 'alice' } }));
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET');
  });

  it('refuses a weak secret or a bad base path at creation', () => {
    const store = new InMemoryApprovalStore();
    expect(() => createApprovalsHandler({ store, secret: 'short' })).toThrow(/32 bytes/);
    expect(() => createApprovalsHandler({ store, secret: SECRET, basePath: 'approvals' })).toThrow(/basePath/);
    expect(() => createApprovalsHandler({ store, secret: SECRET, basePath: '/a"><script>' })).toThrow(/basePath/);
  });
});

describe('the page and its forms', () => {
  it('answers with the signed-in principal recorded; the form token is bound to principal and cookie', async () => {
    const { session, handler } = setup({ authorize: byHeader });
    const request = await raise(session, { to: 'g@example.com' });
    const alice = await pageSession(handler, 'alice');
    expect(alice.html).toContain(request.id);
    expect(alice.cookie).toMatch(/^agentpolicy_approvals_csrf=[A-Za-z0-9_-]{22}$/);
    const path = `${BASE}/requests/${request.id}`;
    const attempts: [string, Record<string, string>, Record<string, string>][] = [
      ['no token', { answer: 'approve' }, { 'x-user': 'alice', cookie: alice.cookie }],
      ['no cookie', { answer: 'approve', csrf: alice.csrf }, { 'x-user': 'alice' }],
      ['another principal', { answer: 'approve', csrf: alice.csrf }, { 'x-user': 'mallory', cookie: alice.cookie }],
      ['another cookie', { answer: 'approve', csrf: alice.csrf }, { 'x-user': 'alice', cookie: 'agentpolicy_approvals_csrf=AAAAAAAAAAAAAAAAAAAAAA' }],
      ['tampered token', { answer: 'approve', csrf: alice.csrf.slice(0, -2) + 'xx' }, { 'x-user': 'alice', cookie: alice.cookie }],
    ];
    for (const [label, fields, headers] of attempts) {
      const response = await handler(postForm(path, fields, headers));
      expect(response.status, label).toBe(403);
    }
    // Mallory's own page token does not work with Alice's cookie, nor Alice's with Mallory's.
    const mallory = await pageSession(handler, 'mallory');
    expect((await handler(postForm(path, { answer: 'approve', csrf: mallory.csrf }, { 'x-user': 'mallory', cookie: alice.cookie }))).status).toBe(403);
    // A cross-site form post with every credential is still refused.
    expect((await handler(postForm(path, { answer: 'approve', csrf: alice.csrf }, { 'x-user': 'alice', cookie: alice.cookie, 'sec-fetch-site': 'cross-site' }))).status).toBe(403);
    expect((await session.getApproval(request.id))?.status).toBe('pending');

    const ok = await handler(postForm(path, { answer: 'approve', csrf: alice.csrf, reason: 'ship it' }, { 'x-user': 'alice', cookie: alice.cookie, origin: ORIGIN, 'sec-fetch-site': 'same-origin' }));
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe(`${BASE}/?notice=approved`);
    expect(await session.getApproval(request.id)).toMatchObject({ status: 'approved', resolution: { by: 'alice', reason: 'ship it' } });
    const again = await handler(postForm(path, { answer: 'reject', csrf: alice.csrf }, { 'x-user': 'alice', cookie: alice.cookie }));
    expect(again.headers.get('location')).toBe(`${BASE}/?notice=answered`);
    const shown = await (await handler(get(`${BASE}/?notice=answered`, { 'x-user': 'alice', cookie: alice.cookie }))).text();
    expect(shown).toContain('already had an answer');
  });

  it('an old form token is refused', async () => {
    let clock = Date.now();
    const { session, handler } = setup({ authorize: byHeader, now: () => clock, csrfMaxAgeMs: 60_000 });
    const request = await raise(session, { to: 'h@example.com' });
    const alice = await pageSession(handler, 'alice');
    clock += 61_000;
    const response = await handler(postForm(`${BASE}/requests/${request.id}`, { answer: 'approve', csrf: alice.csrf }, { 'x-user': 'alice', cookie: alice.cookie }));
    expect(response.status).toBe(403);
  });

  it('malformed form posts are refused: duplicate fields, bad answers, oversized bodies', async () => {
    const { session, handler } = setup({ authorize: byHeader, maxBodyBytes: 512 });
    const request = await raise(session, { to: 'i@example.com' });
    const alice = await pageSession(handler, 'alice');
    const path = `${BASE}/requests/${request.id}`;
    const headers = { 'x-user': 'alice', cookie: alice.cookie };
    const csrf = encodeURIComponent(alice.csrf);
    expect((await handler(postForm(path, `answer=reject&answer=approve&csrf=${csrf}`, headers))).status).toBe(400);
    expect((await handler(postForm(path, `answer=maybe&csrf=${csrf}`, headers))).status).toBe(400);
    expect((await handler(postForm(path, `answer=approve&csrf=${csrf}&reason=${'x'.repeat(600)}`, headers))).status).toBe(413);
    expect((await handler(postJson(path, { answer: 'approve', csrf: alice.csrf }, headers))).status).toBe(415);
    expect((await session.getApproval(request.id))?.status).toBe('pending');
  });

  it('escapes everything it shows: tool input, session ids, reasons, the principal', async () => {
    const store = new InMemoryApprovalStore();
    const evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&';
    const session = policy().session({ id: `s"><script>alert(3)</script>`, approvals: store, approvalSecret: SECRET });
    const handler = createApprovalsHandler({ store, secret: SECRET, basePath: BASE, authorize: () => ({ id: '<b>eve</b>' }) });
    const request = await raise(session, { body: evil, [evil]: evil });
    const response = await handler(get(`${BASE}/`));
    const html = await response.text();
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<b>eve');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;b&gt;eve&lt;/b&gt;');
    // The only tags are the page's own.
    const tags = new Set([...html.matchAll(/<([a-z0-9]+)/g)].map((m) => m[1]));
    expect([...tags].sort()).toEqual(['article', 'button', 'dd', 'dl', 'dt', 'form', 'h1', 'h2', 'head', 'html', 'input', 'label', 'main', 'meta', 'p', 'pre', 'strong', 'style', 'title', 'body'].sort());
    // Nothing is loaded from anywhere.
    expect(html).not.toMatch(/<[^>]*\s(src|href)=/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(response.headers.get('content-security-policy')).toMatch(/^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; img-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'$/);
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('referrer-policy')).toBe('same-origin');
    expect(response.headers.get('cache-control')).toBe('no-store');
    // A rejection's reason shown on a link page is escaped too.
    await store.resolve(request.id, { approved: false, by: evil, reason: evil, at: new Date().toISOString() }, Date.now());
    const links = approvalLinks(request, { handlerUrl: `${ORIGIN}${BASE}`, secret: SECRET });
    const refused = await (await handler(get(new URL(links.approve).pathname))).text();
    expect(refused).toContain('rejected by &lt;script&gt;');
    expect(refused).not.toContain('<script>');
  });
});

describe('signed links', () => {
  it('work once, for their request and action only; forged, replayed, expired and foreign tokens are refused', async () => {
    const store = new InMemoryApprovalStore();
    const session = policy().session({ id: 'session-1', approvals: store, approvalSecret: SECRET });
    const handler = createApprovalsHandler({ store, secret: SECRET, basePath: BASE });
    const request = await raise(session, { to: 'j@example.com' });
    const links = approvalLinks(request, { handlerUrl: `${ORIGIN}${BASE}`, secret: SECRET });
    const token = (link: string) => new URL(link).pathname.split('/').pop() as string;
    const redeem = (t: string, headers: Record<string, string> = {}) => handler(postJson(`${BASE}/api/links/redeem`, { token: t, reason: 'via link' }, headers));

    const [, payload, signature] = token(links.approve).split('.');
    const forged = [
      `apt1.${payload}.${signature?.slice(0, -3)}AAA`,
      signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt: Date.parse(request.expiresAt), answer: 'approve' }, 'another-secret-that-is-at-least-32-bytes!!'),
      signApprovalToken({ requestId: request.id, fingerprint: 'f'.repeat(64), expiresAt: Date.parse(request.expiresAt), answer: 'approve' }, SECRET),
      'apt1.e30.AAAA',
      'not-a-token',
      'x'.repeat(5000),
    ];
    for (const t of forged) {
      const view = await handler(get(`${BASE}/link/${encodeURIComponent(t)}`));
      expect(view.status, t.slice(0, 40)).toBe(403);
      expect(await view.text()).not.toContain('j@example.com');
      expect((await redeem(t)).status).toBe(403);
    }
    const expired = signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt: Date.now() - 1, answer: 'approve' }, SECRET);
    expect((await handler(get(`${BASE}/link/${expired}`))).status).toBe(410);
    expect((await redeem(expired)).status).toBe(410);
    const unknown = signApprovalToken({ requestId: 'apr_nothere', fingerprint: request.fingerprint, expiresAt: Date.now() + 60_000, answer: 'approve' }, SECRET);
    expect((await redeem(unknown)).status).toBe(404);
    expect((await session.getApproval(request.id))?.status).toBe('pending');

    const first = await redeem(token(links.reject));
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ ok: true, request: { status: 'rejected', resolution: { by: 'approval-token', reason: 'via link' } } });
    const replay = await redeem(token(links.reject));
    expect(replay.status).toBe(409);
    const other = await redeem(token(links.approve));
    expect(other.status).toBe(409);
    expect((await handler(get(new URL(links.approve).pathname))).status).toBe(409);
    expect((await session.getApproval(request.id))?.status).toBe('rejected');
  });

  it('a GET never answers (link previews and scanners cannot approve)', async () => {
    const { session, handler } = setup();
    const request = await raise(session, { to: 'k@example.com' });
    const links = approvalLinks(request, { handlerUrl: `${ORIGIN}${BASE}`, secret: SECRET });
    for (let i = 0; i < 3; i++) expect((await handler(get(new URL(links.approve).pathname))).status).toBe(200);
    expect((await session.getApproval(request.id))?.status).toBe('pending');
  });

  it('the hook may refuse links too', async () => {
    const { session, handler } = setup({ authorize: () => null });
    const request = await raise(session, { to: 'l@example.com' });
    const links = approvalLinks(request, { handlerUrl: `${ORIGIN}${BASE}`, secret: SECRET });
    expect((await handler(get(new URL(links.approve).pathname))).status).toBe(403);
  });
});

describe('an agent waiting on the handler', () => {
  it('resumes when someone approves through the API, runs the tool once, and records who approved', async () => {
    const store = new InMemoryApprovalStore();
    const handler = createApprovalsHandler({ store, secret: SECRET, authorize: byHeader });
    const announced = vi.fn();
    const session = policy().session({ approvals: store, approvalSecret: SECRET, approver: createWaitingApprover({ store, onRequest: announced, intervalMs: 10 }) });
    const tool = vi.fn(async (input: { to: string }) => `sent to ${input.to}`);
    const run = session.runTool('send_email', { input: { to: 'm@example.com' } }, () => tool({ to: 'm@example.com' }));
    await vi.waitFor(() => expect(announced).toHaveBeenCalledTimes(1));
    expect(tool).not.toHaveBeenCalled();
    const [pending] = (await (await handler(get('/api/requests', { 'x-user': 'alice' }))).json()).requests;
    // Two people answer at once: one answer counts.
    const answers = await Promise.all(
      ['alice', 'bob'].map((user) => handler(postJson(`/api/requests/${pending.id}/resolve`, { answer: 'approve', reason: `ok from ${user}` }, { 'x-user': user }))),
    );
    expect(answers.map((r) => r.status).sort()).toEqual([200, 409]);
    const winner = answers[0]?.status === 200 ? 'alice' : 'bob';
    expect(await run).toBe('sent to m@example.com');
    expect(tool).toHaveBeenCalledTimes(1);
    const decision = session.report().decisions.at(-1);
    expect(decision).toMatchObject({ decision: 'allow', approval: { via: 'approver', by: winner, reason: `ok from ${winner}`, requestId: pending.id } });
    expect((await store.get(pending.id, Date.now()))?.status).toBe('used');
  });
});

describe('what a human approved is all that runs', () => {
  it('an approval given on the page does not cover other input, and is used once', async () => {
    const { session, handler } = setup({ authorize: byHeader });
    const request = await raise(session, { to: 'seen@example.com' });
    await handler(postJson(`${BASE}/api/requests/${request.id}/resolve`, { answer: 'approve' }, { 'x-user': 'alice' }));
    const tool = vi.fn(async () => 'sent');
    await expect(session.runTool('send_email', { input: { to: 'attacker@evil.test' }, approval: { requestId: request.id } }, tool)).rejects.toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(tool).not.toHaveBeenCalled();
    expect(await session.runTool('send_email', { input: { to: 'seen@example.com' }, approval: { requestId: request.id } }, tool)).toBe('sent');
    await expect(session.runTool('send_email', { input: { to: 'seen@example.com' }, approval: { requestId: request.id } }, tool)).rejects.toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(tool).toHaveBeenCalledTimes(1);
  });

  it('twenty concurrent redemptions of one link answer once', async () => {
    const { session, handler } = setup();
    const request = await raise(session, { to: 'race@example.com' });
    const token = new URL(approvalLinks(request, { handlerUrl: `${ORIGIN}${BASE}`, secret: SECRET }).approve).pathname.split('/').pop() as string;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => handler(postJson(`${BASE}/api/links/redeem`, { token, reason: `click ${i}` }))));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(19);
  });

  it('a waiting approver that nobody answers in time does not approve; a late answer changes nothing', async () => {
    const store = new InMemoryApprovalStore();
    const handler = createApprovalsHandler({ store, secret: SECRET, authorize: byHeader });
    let requestId = '';
    const session = policy().session({
      approvals: store,
      approvalTimeoutMs: 200,
      approver: createWaitingApprover({ store, intervalMs: 10, onRequest: (request) => void (requestId = request.id) }),
    });
    const tool = vi.fn(async () => 'sent');
    await expect(session.runTool('send_email', { input: { to: 'slow@example.com' } }, tool)).rejects.toMatchObject({ code: 'ACTION_DENIED' });
    // Which comes first depends on the scheduler: the approver's own timeout, or the request's expiry seen by the
    // waiting approver. Either way nobody answered in time, and it is never recorded as a rejection.
    expect(session.report().decisions.at(-1)).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: expect.stringMatching(/^(timeout|expired)$/) } });
    const late = await handler(postJson(`/api/requests/${requestId}/resolve`, { answer: 'approve' }, { 'x-user': 'alice' }));
    expect(late.status).toBe(410);
    expect(tool).not.toHaveBeenCalled();
  });

  it('the page shows at most 200 requests and says how many wait', async () => {
    const { session, handler } = setup({ authorize: byHeader });
    for (let i = 0; i < 205; i++) await raise(session, { to: `n${i}@example.com` });
    const html = await (await handler(get(`${BASE}/`, { 'x-user': 'alice' }))).text();
    expect(html).toContain('205 waiting, the oldest 200 shown');
    expect(html.match(/<article/g)).toHaveLength(200);
  });
});

describe('the approver is told when the input shown is not all of it', () => {
  it('marks an input core cut when recording, and shows a whole input without a warning', async () => {
    const { session, handler } = setup({ authorize: byHeader });
    await raise(session, { to: 'short@example.com' });
    await raise(session, { to: 'long@example.com', body: `${'benign '.repeat(200)}AND DELETE EVERYTHING` });
    const html = await (await handler(get(`${BASE}/`, { 'x-user': 'alice' }))).text();
    const articles = html.split('<article').slice(1);
    expect(articles).toHaveLength(2);
    expect(articles[0]).not.toContain('input-cut');
    expect(articles[1]).toContain('data-field="input-cut"');
    expect(articles[1]).toContain('Approving covers the whole input');
  });
});

describe('what the page shows is what the approval covers', () => {
  it('a whole input with a cost shows no warning; one converted when recorded (not plain data) does', async () => {
    const { session, handler } = setup({ authorize: byHeader });
    const priced = await session.checkTool('send_email', { input: { to: 'exact@example.com', n: -0, big: 1e21 }, cost: 0.123456789 });
    const converted = await raise(session, { to: 'map@example.com', extra: new Map([['bcc', 'everyone@example.com']]) });
    const html = await (await handler(get(`${BASE}/`, { 'x-user': 'alice' }))).text();
    const article = (id: string | undefined) => html.split('<article').find((part) => part.includes(`data-request-id="${id}"`)) ?? '';
    expect(article(priced.approvalRequest?.id)).toContain('exact@example.com');
    expect(article(priced.approvalRequest?.id)).not.toContain('input-cut');
    expect(article(converted.id)).toContain('data-field="input-cut"');
  });

  it('hidden and right-to-left characters in any field are shown as codes, other non-ASCII text is marked', async () => {
    const store = new InMemoryApprovalStore();
    const session = policy().session({ id: 'ops\u202Etxen', approvals: store, approvalSecret: SECRET });
    const handler = createApprovalsHandler({ store, secret: SECRET, basePath: BASE, authorize: () => ({ id: 'аlice' }) });
    await raise(session, { to: 'bob@exаmple.com\u200b' });
    const html = await (await handler(get(`${BASE}/`))).text();
    expect(html).not.toMatch(/[\u202e\u200b]/);
    expect(html).toContain('ops<mark class="hidden-char">\\u202e</mark>txen');
    expect(html).toContain('&quot;bob@ex<mark>а</mark>mple.com<mark class="hidden-char">\\u200b</mark>&quot;');
    expect(html).toContain('Signed in as <strong><mark>а</mark>lice</strong>');
    expect(html).toContain('data-field="input-hidden"');
    expect(html).toContain('data-field="input-marked"');
  });
});

describe('the page for one session (?session=)', () => {
  it('lists only that session, asks the hook for it, and returns to it after an answer', async () => {
    const store = new InMemoryApprovalStore();
    const tenantA = policy().session({ id: 'tenant-a', approvals: store });
    const tenantB = policy().session({ id: 'tenant-b', approvals: store });
    // A tenant's user may list and answer only their own session's requests.
    const asked: unknown[] = [];
    const tenantHook: ApprovalsAuthorize = (_request, access) => {
      asked.push(access);
      if (access.kind === 'list') return access.sessionId === 'tenant-a' ? { id: 'alice' } : null;
      if (access.kind === 'resolve') return access.approval?.sessionId === 'tenant-a' ? { id: 'alice' } : null;
      return null;
    };
    const handler = createApprovalsHandler({ store, secret: SECRET, basePath: BASE, authorize: tenantHook });
    const mine = await raise(tenantA, { to: 'a@example.com' });
    const theirs = await raise(tenantB, { to: 'b@example.com' });

    expect((await handler(get(`${BASE}/`))).status).toBe(403);
    const page = await handler(get(`${BASE}/?session=tenant-a`));
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(`data-request-id="${mine.id}"`);
    expect(html).not.toContain(theirs.id);
    expect(html).toContain('<input type="hidden" name="session" value="tenant-a">');
    expect(asked).toContainEqual({ kind: 'list', sessionId: 'tenant-a' });

    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
    const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const answered = await handler(postForm(`${BASE}/requests/${mine.id}`, { answer: 'approve', csrf, session: 'tenant-a' }, { cookie }));
    expect(answered.status).toBe(303);
    expect(answered.headers.get('location')).toBe(`${BASE}/?session=tenant-a&notice=approved`);
    expect((await store.get(mine.id, Date.now()))?.status).toBe('approved');
    // The session field only says where to go back to: another tenant's request stays refused by the hook.
    const refused = await handler(postForm(`${BASE}/requests/${theirs.id}`, { answer: 'approve', csrf, session: 'tenant-b' }, { cookie }));
    expect(refused.status).toBe(403);
    expect((await store.get(theirs.id, Date.now()))?.status).toBe('pending');
  });
});
