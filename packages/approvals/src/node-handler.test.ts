import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { AgentPolicy, InMemoryApprovalStore } from '@agentpolicy/core';
import express from 'express';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { createApprovalsHandler, type ApprovalsAuthorize } from './approvals-handler.js';
import { toNodeHandler } from './node-handler.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long!';
const byHeader: ApprovalsAuthorize = (request) => {
  const user = request.headers.get('x-user');
  return user ? { id: user } : null;
};

async function setup() {
  const store = new InMemoryApprovalStore();
  const session = AgentPolicy.fromDict({ tools: { allow: ['deploy'] }, approval: { require_for: [{ tool: 'deploy' }] } }).session({ approvals: store });
  const decision = await session.checkTool('deploy', { input: { service: 'api' } });
  const id = decision.approvalRequest?.id as string;
  const handler = createApprovalsHandler({ store, secret: SECRET, basePath: '/approvals', authorize: byHeader, maxBodyBytes: 1024 });
  return { store, session, id, handler };
}

const servers: Server[] = [];
async function listen(listener: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(listener);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function exercise(base: string, id: string) {
  const page = await fetch(`${base}/approvals/`, { headers: { 'x-user': 'alice' } });
  expect(page.status).toBe(200);
  expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
  expect(page.headers.getSetCookie()[0]).toMatch(/^agentpolicy_approvals_csrf=[A-Za-z0-9_-]{22}; Path=\/approvals; HttpOnly; SameSite=Strict/);
  expect(await page.text()).toContain(id);
  expect((await fetch(`${base}/approvals/api/requests`)).status).toBe(403);
  const big = await fetch(`${base}/approvals/api/requests/${id}/resolve`, {
    method: 'POST',
    headers: { 'x-user': 'alice', 'content-type': 'application/json' },
    body: JSON.stringify({ answer: 'approve', reason: 'x'.repeat(5000) }),
  });
  expect(big.status).toBe(413);
  const resolved = await fetch(`${base}/approvals/api/requests/${id}/resolve`, {
    method: 'POST',
    headers: { 'x-user': 'alice', 'content-type': 'application/json' },
    body: JSON.stringify({ answer: 'approve', reason: 'fine' }),
  });
  expect(resolved.status).toBe(200);
  expect(await resolved.json()).toMatchObject({ ok: true, request: { status: 'approved', resolution: { by: 'alice', reason: 'fine' } } });
}

describe('mounting the handler', () => {
  it("on Node's own http server", async () => {
    const { handler, id } = await setup();
    await exercise(await listen(toNodeHandler(handler)), id);
  });

  it('in Express, under a mount path', async () => {
    const { handler, id } = await setup();
    const app = express();
    app.use('/approvals', toNodeHandler(handler));
    app.get('/', (_req, res) => {
      res.send('the app');
    });
    const base = await listen(app);
    await exercise(base, id);
    expect(await (await fetch(`${base}/`)).text()).toBe('the app');
  });

  it('in Hono, with the raw web request', async () => {
    const { handler, id, store } = await setup();
    const app = new Hono();
    app.all('/approvals/*', (c) => handler(c.req.raw));
    app.all('/approvals', (c) => handler(c.req.raw));
    const list = await app.request('http://approvals.test/approvals/api/requests', { headers: { 'x-user': 'bob' } });
    expect((await list.json()).requests.map((r: { id: string }) => r.id)).toEqual([id]);
    const resolved = await app.request(`http://approvals.test/approvals/api/requests/${id}/resolve`, {
      method: 'POST',
      headers: { 'x-user': 'bob', 'content-type': 'application/json' },
      body: JSON.stringify({ answer: 'reject', reason: 'not now' }),
    });
    expect(resolved.status).toBe(200);
    expect(await store.get(id, Date.now())).toMatchObject({ status: 'rejected', resolution: { by: 'bob', reason: 'not now' } });
  });

  it('behind a proxy only when told to trust it', async () => {
    const { handler, id } = await setup();
    const direct = await listen(toNodeHandler(handler));
    const post = (base: string) =>
      fetch(`${base}/approvals/api/requests/${id}/resolve`, {
        method: 'POST',
        headers: { 'x-user': 'alice', 'content-type': 'application/json', origin: 'https://ops.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'ops.example.com' },
        body: JSON.stringify({ answer: 'approve' }),
      });
    expect((await post(direct)).status).toBe(403);
    const proxied = await listen(toNodeHandler(handler, { trustProxy: true }));
    expect((await post(proxied)).status).toBe(200);
  });
});

describe('what toNodeHandler answers itself', () => {
  it('a path it refuses (a dot segment, a missing Host) carries the security headers every response has', async () => {
    const { handler, id, store } = await setup();
    const base = await listen(toNodeHandler(handler));
    const { port } = new URL(base);
    const refusals = [
      `POST /approvals/link/%2e%2e/api/requests/${id}/resolve HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-user: alice\r\nContent-Type: application/json\r\nContent-Length: 20\r\nConnection: close\r\n\r\n{"answer":"approve"}`,
      `GET /approvals/../approvals/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-user: alice\r\nConnection: close\r\n\r\n`,
      `GET /approvals/ HTTP/1.0\r\nx-user: alice\r\n\r\n`,
    ];
    for (const bytes of refusals) {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1');
        let out = '';
        socket.on('data', (chunk) => (out += chunk.toString('latin1')));
        socket.on('error', reject);
        socket.on('end', () => resolve(out));
        socket.write(bytes);
      });
      const head = reply.split('\r\n\r\n')[0]?.toLowerCase() ?? '';
      expect(head, bytes.split('\r\n')[0]).toMatch(/^http\/1\.[01] 400/);
      expect(head).toContain("content-security-policy: default-src 'none'");
      expect(head).toContain('cache-control: no-store');
      expect(head).toContain('x-content-type-options: nosniff');
      expect(head).toContain('x-frame-options: deny');
      expect(head).toContain('referrer-policy: same-origin');
    }
    expect((await store.get(id, Date.now()))?.status).toBe('pending');
  });
});
