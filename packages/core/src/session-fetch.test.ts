import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalRequiredError, PolicyDeniedError } from './errors.js';
import { AgentPolicy } from './policy.js';

// One real server on 127.0.0.1, reached under two names: "127.0.0.1" and "localhost".
let server: Server;
let port: number;
const hits: Array<{ method: string; url: string; host: string; body: string; auth: string | undefined }> = [];

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => resolve(body));
  });
}

beforeAll(async () => {
  server = createServer(async (request, response) => {
    const body = await readBody(request);
    hits.push({ method: request.method ?? '', url: request.url ?? '', host: request.headers.host ?? '', body, auth: request.headers.authorization });
    const url = new URL(request.url ?? '/', 'http://x');
    const to = url.searchParams.get('to');
    if (url.pathname === '/loop') {
      response.writeHead(302, { location: '/loop' });
      response.end();
      return;
    }
    if (url.pathname.startsWith('/redirect') && to) {
      response.writeHead(Number(url.searchParams.get('status') ?? 302), { location: to });
      response.end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/plain' });
    response.end(`ok ${request.method} ${url.pathname} ${body}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('session.fetch', () => {
  const policy = () => new AgentPolicy({ allowedDomains: ['127.0.0.1'], blockedDomains: ['localhost'], approvalRules: [{ domain: 'approve.test' }] });

  it('sends allowed requests and records them', async () => {
    const session = policy().session();
    const response = await session.fetch(`http://127.0.0.1:${port}/hello`);
    expect(await response.text()).toBe('ok GET /hello ');
    expect(session.report().decisions[0]).toMatchObject({ decision: 'allow', action: { type: 'http', domain: '127.0.0.1', method: 'GET' } });
  });

  it('a denied request throws and is never sent', async () => {
    const session = policy().session();
    const before = hits.length;
    const error = await session.fetch(`http://localhost:${port}/secret`).catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision.rule).toMatchObject({ section: 'network', list: 'block', entry: 'localhost' });
    expect(hits.length).toBe(before);
  });

  it('checks every redirect hop: a redirect to a blocked host is refused before it is requested', async () => {
    const session = policy().session();
    const before = hits.length;
    const target = `http://localhost:${port}/after`;
    const error = await session.fetch(`http://127.0.0.1:${port}/redirect?to=${encodeURIComponent(target)}`).catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(hits.slice(before).map((hit) => hit.url)).toEqual([`/redirect?to=${encodeURIComponent(target)}`]);
    expect(session.report().decisions.map((d) => d.decision)).toEqual(['allow', 'deny']);
    expect(session.report().decisions[1]?.action.metadata).toMatchObject({ redirectFrom: expect.stringContaining('/redirect') });
  });

  it('follows allowed redirects, with the method rules of the Fetch standard', async () => {
    const session = policy().session();
    const final = `http://127.0.0.1:${port}/final`;
    const r303 = await session.fetch(`http://127.0.0.1:${port}/redirect?status=303&to=${encodeURIComponent(final)}`, { method: 'POST', body: 'payload' });
    expect(await r303.text()).toBe('ok GET /final ');
    const r307 = await session.fetch(`http://127.0.0.1:${port}/redirect?status=307&to=${encodeURIComponent(final)}`, { method: 'POST', body: 'payload' });
    expect(await r307.text()).toBe('ok POST /final payload');
    expect(session.report().decisionSummary.allow).toBe(4);
  });

  it('drops credentials on a cross-origin redirect', async () => {
    const session = new AgentPolicy({}).session();
    const before = hits.length;
    const other = `http://localhost:${port}/landing`;
    await session.fetch(`http://127.0.0.1:${port}/redirect?to=${encodeURIComponent(other)}`, { headers: { authorization: 'Bearer s3cret' } });
    const [first, second] = hits.slice(before);
    expect(first?.auth).toBe('Bearer s3cret');
    expect(second?.auth).toBeUndefined();
  });

  it("respects redirect: 'manual' and 'error'", async () => {
    const session = policy().session();
    const to = encodeURIComponent(`http://127.0.0.1:${port}/x`);
    const manual = await session.fetch(`http://127.0.0.1:${port}/redirect?to=${to}`, { redirect: 'manual' });
    expect(manual.status).toBe(302);
    await expect(session.fetch(`http://127.0.0.1:${port}/redirect?to=${to}`, { redirect: 'error' })).rejects.toThrow();
  });

  it('stops redirect loops', async () => {
    const session = new AgentPolicy({}).session();
    const fetchWithLimit = session.createFetch({ maxRedirects: 3 });
    const before = hits.length;
    await expect(fetchWithLimit(`http://127.0.0.1:${port}/loop`)).rejects.toThrow(/too many redirects/);
    expect(hits.length - before).toBe(4);
  });

  it('approval-required requests throw ApprovalRequiredError; non-http schemes are denied', async () => {
    const session = new AgentPolicy({ approvalRules: [{ domain: '127.0.0.1' }] }).session();
    await expect(session.fetch(`http://127.0.0.1:${port}/`)).rejects.toBeInstanceOf(ApprovalRequiredError);
    await expect(session.fetch('file:///etc/passwd')).rejects.toBeInstanceOf(PolicyDeniedError);
  });

  it('accepts Request objects and charges a per-request cost', async () => {
    const session = new AgentPolicy({ budget: 0.01 }).session();
    const paid = session.createFetch({ cost: 0.01 });
    const response = await paid(new Request(`http://127.0.0.1:${port}/req`, { method: 'PUT', body: 'b' }));
    expect(await response.text()).toBe('ok PUT /req b');
    expect(session.spent).toBe(0.01);
    await expect(paid(`http://127.0.0.1:${port}/again`)).rejects.toMatchObject({ code: 'BUDGET_EXCEEDED' });
  });
});

describe('session.fetch: what is checked is what is sent', () => {
  // An underlying fetch that records what would be requested and answers 200, so hostnames are never resolved.
  function recorder(answer: (request: Request) => Response = () => new Response('recorded')) {
    const sent: string[] = [];
    const fetch = async (input: string | URL | Request, init?: RequestInit) => {
      const request = new Request(input, init);
      sent.push(request.url);
      return answer(request);
    };
    return { sent, fetch: fetch as typeof globalThis.fetch };
  }
  const policy = () => new AgentPolicy({ allowedDomains: ['allowed.example', '127.0.0.1'], blockedDomains: ['evil.example'] });

  it('a URL subclass whose toString names another host is decided on the host it is sent to', async () => {
    class Disguised extends URL {
      override toString(): string {
        return 'http://evil.example/steal';
      }
    }
    const session = policy().session();
    const { sent, fetch } = recorder();
    const error = await session.createFetch({ fetch })(new Disguised('http://allowed.example/')).catch((e: unknown) => e);
    expect(sent).not.toContain('http://evil.example/steal');
    if (sent.length === 0) expect(PolicyDeniedError.isInstance(error)).toBe(true);
    for (const decision of session.report().decisions.filter((d) => d.decision === 'allow')) expect(decision.action).toMatchObject({ domain: 'allowed.example' });
  });

  it('a URL subclass whose href getter lies is decided on the URL actually sent (and recorded as sent)', async () => {
    class Disguised extends URL {
      override get href(): string {
        return 'http://allowed.example/';
      }
    }
    const session = policy().session();
    const { sent, fetch } = recorder();
    const error = await session.createFetch({ fetch })(new Disguised('http://evil.example/x')).catch((e: unknown) => e);
    expect(sent).toEqual([]);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(session.report().decisions.map((d) => [d.decision, d.action.type === 'http' && d.action.domain])).toEqual([['deny', 'evil.example']]);
  });

  it('a Request subclass whose url getter lies is decided on the URL it carries', async () => {
    class Disguised extends Request {
      override get url(): string {
        return 'http://allowed.example/';
      }
    }
    const session = policy().session();
    const { sent, fetch } = recorder();
    const error = await session.createFetch({ fetch })(new Disguised('http://evil.example/x', { method: 'POST', body: 'secret' })).catch((e: unknown) => e);
    expect(sent).toEqual([]);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
  });

  it('a URL changed while its check is pending is sent as it was checked', async () => {
    const session = policy().session();
    const { sent, fetch } = recorder();
    const url = new URL('http://allowed.example/ok');
    const pending = session.createFetch({ fetch })(url);
    url.hostname = 'evil.example';
    await pending.catch(() => undefined);
    expect(sent).toEqual(['http://allowed.example/ok']);
  });

  it('the method decided is the method sent, for a Request and a later init', async () => {
    const session = new AgentPolicy({ rules: [{ deny: 'no deletes', action: 'http', if: { method: { eq: 'DELETE' } } }] }).session();
    const { fetch } = recorder();
    const methods: string[] = [];
    const sending = session.createFetch({
      fetch: async (input, init) => {
        methods.push(new Request(input, init).method);
        return fetch(input, init);
      },
    });
    await expect(sending(new Request('http://allowed.example/', { method: 'DELETE' }))).rejects.toBeInstanceOf(PolicyDeniedError);
    await expect(sending(new Request('http://allowed.example/', { method: 'GET' }), { method: 'delete' })).rejects.toBeInstanceOf(PolicyDeniedError);
    expect(methods).toEqual([]);
  });

  it('a URL that fetch refuses to build (userinfo, GET with a body) charges nothing; a blocked host in it is still a recorded deny', async () => {
    const session = new AgentPolicy({ budget: 1, blockedDomains: ['evil.example'] }).session();
    const { sent, fetch } = recorder();
    const paid = session.createFetch({ fetch, cost: 0.5 });
    const blocked = await paid('https://allowed.example@evil.example/').catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(blocked)).toBe(true);
    expect((blocked as PolicyDeniedError).decision.rule).toMatchObject({ section: 'network', list: 'block' });
    await expect(paid('https://user:pw@allowed.example/')).rejects.toThrow(TypeError);
    await expect(paid('https://allowed.example/', { body: 'x' })).rejects.toThrow(TypeError);
    expect(sent).toEqual([]);
    expect(session.spent).toBe(0);
  });

  it.each([
    ['absolute', 'http://evil.example/x'],
    ['scheme-relative', '//evil.example/x'],
    ['with userinfo naming an allowed host', 'http://allowed.example@evil.example/x'],
    ['with a backslash', 'http:\\\\evil.example\\x'],
    ['to file:', 'file:///etc/passwd'],
    ['to an IPv6 form of a blocked address', 'http://[::ffff:a9fe:a9fe]/latest/meta-data/'],
  ])('a redirect %s to a blocked host is refused before it is requested', async (_name, location) => {
    const session = new AgentPolicy({ blockedDomains: ['evil.example', '169.254.169.254'] }).session();
    const { sent, fetch } = recorder((request) => (request.url === 'http://allowed.example/start' ? new Response(null, { status: 302, headers: { location } }) : new Response('landed')));
    await expect(session.createFetch({ fetch })('http://allowed.example/start')).rejects.toBeInstanceOf(PolicyDeniedError);
    expect(sent).toEqual(['http://allowed.example/start']);
  });

  it.each([301, 302, 303, 307, 308])('a %i to a host outside network.allow is refused', async (status) => {
    const session = policy().session();
    const { sent, fetch } = recorder((request) => (request.url.endsWith('/start') ? new Response(null, { status, headers: { location: 'http://unlisted.example/' } }) : new Response('landed')));
    await expect(session.createFetch({ fetch })('http://allowed.example/start', { method: 'POST', body: 'b' })).rejects.toBeInstanceOf(PolicyDeniedError);
    expect(sent).toEqual(['http://allowed.example/start']);
  });

  it('an underlying fetch that follows redirects on its own: a response from a host the policy refuses is not handed back', async () => {
    const session = policy().session();
    const followed = (async () => {
      const response = new Response('metadata secrets');
      Object.defineProperty(response, 'redirected', { value: true });
      Object.defineProperty(response, 'url', { value: 'http://evil.example/after' });
      return response;
    }) as typeof globalThis.fetch;
    const error = await session.createFetch({ fetch: followed })('http://allowed.example/').catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(session.report().decisions.at(-1)).toMatchObject({ decision: 'deny', action: { domain: 'evil.example' } });
  });

  it.each([Number.NaN, -1, 1.5, '3', Number.POSITIVE_INFINITY])('maxRedirects %j is refused with a clear error', (maxRedirects) => {
    const session = new AgentPolicy({}).session();
    expect(() => session.createFetch({ maxRedirects: maxRedirects as number })).toThrow(/maxRedirects/);
  });

  it('a Host header naming another host is not sent (a blocked virtual host on an allowed address)', async () => {
    const session = new AgentPolicy({ allowedDomains: ['127.0.0.1'] }).session();
    const before = hits.length;
    const response = await session.fetch(`http://127.0.0.1:${port}/vhost`, { headers: { host: 'evil.example' } });
    expect(response.status).toBe(200);
    expect(hits.slice(before).map((hit) => hit.host)).toEqual([`127.0.0.1:${port}`]);
    // An underlying fetch that would honour it never sees it either.
    const seen: Array<string | null> = [];
    const honouring = (async (input: string | URL | Request, init?: RequestInit) => {
      seen.push(new Request(input, init).headers.get('host'));
      return new Response('ok');
    }) as typeof globalThis.fetch;
    await session.createFetch({ fetch: honouring })('http://127.0.0.1/', { headers: { Host: 'evil.example' } });
    expect(seen).toEqual([null]);
  });

  it('passes the caller’s dispatcher on to the underlying fetch', async () => {
    const session = new AgentPolicy({}).session();
    const seen: unknown[] = [];
    const dispatcher = { marker: 'proxy' };
    const inner = (async (_input: string | URL | Request, init?: RequestInit & { dispatcher?: unknown }) => {
      seen.push(init?.dispatcher);
      return new Response('ok');
    }) as typeof globalThis.fetch;
    await session.createFetch({ fetch: inner })('http://allowed.example/', { dispatcher } as RequestInit);
    expect(seen).toEqual([dispatcher]);
  });
});
