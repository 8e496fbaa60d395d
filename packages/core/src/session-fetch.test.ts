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
