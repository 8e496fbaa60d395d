// Attacks on the handler over real HTTP: Node's server on 127.0.0.1 (a free port), raw sockets where a client library
// would tidy the request up. The attacker holds a link meant for something else, spoofs who answers, sends bodies
// that read differently to different parsers, or holds connections open.
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { AgentPolicy, InMemoryApprovalStore, type ApprovalRequestRef } from '@agentpolicy/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalLinks } from './approval-links.js';
import { createApprovalsHandler, type ApprovalsAccess } from './approvals-handler.js';
import { toNodeHandler } from './node-handler.js';

const SECRET = 'an-http-attack-secret-of-at-least-32-bytes!';

describe('attacks on the handler over HTTP', () => {
  const store = new InMemoryApprovalStore();
  const session = AgentPolicy.fromDict({ tools: { allow: ['transfer'] }, approval: { require_for: [{ tool: 'transfer' }] } }).session({ id: 'tenant-a', approvals: store, approvalSecret: SECRET });
  const asked: ApprovalsAccess[] = [];
  let server: Server;
  let base: string;
  let port: number;

  const raise = async (input: unknown) => {
    const decision = await session.checkTool('transfer', { input });
    if (!decision.approvalRequest) throw new Error('no approval request');
    return decision.approvalRequest;
  };
  const state = (id: string) => store.get(id, Date.now());
  const tokenOf = (link: string) => new URL(link).pathname.split('/').pop() as string;
  const linksOf = (request: ApprovalRequestRef) => approvalLinks(request, { handlerUrl: `${base}/approvals`, secret: SECRET });
  const ops = { authorization: 'Bearer ops' };
  const postJson = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${base}/approvals${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...ops, ...headers }, body });
  /** Sends bytes as they are and returns the raw response (status line first). */
  const raw = (bytes: string, { wait = 2_000 } = {}) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let out = '';
      socket.on('data', (chunk) => (out += chunk.toString('latin1')));
      socket.on('error', reject);
      socket.on('close', () => resolve(out));
      socket.write(bytes);
      setTimeout(() => socket.end(), wait);
    });
  const statusOf = (response: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);

  beforeAll(async () => {
    const handler = createApprovalsHandler({
      store,
      secret: SECRET,
      basePath: '/approvals',
      maxBodyBytes: 4096,
      bodyTimeoutMs: 500,
      authorize: (request, access) => {
        asked.push(access);
        if (access.kind === 'link') return { id: 'link' };
        return request.headers.get('authorization') === 'Bearer ops' ? { id: 'ops' } : null;
      },
    });
    server = createServer(toNodeHandler(handler));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  describe('who answered is the hook’s principal, and the answer is the one asked for', () => {
    it('a `by` in the body or an identity header is ignored', async () => {
      const request = await raise({ to: 'a' });
      const response = await postJson(`/api/requests/${request.id}/resolve`, JSON.stringify({ answer: 'approve', by: 'ceo@example.com', principal: 'ceo' }), {
        'x-user': 'ceo',
        'x-forwarded-user': 'ceo',
        'x-remote-user': 'ceo',
      });
      expect(response.status).toBe(200);
      expect((await state(request.id))?.resolution?.by).toBe('ops');
    });

    it('a JSON member given twice is refused, whichever copy a proxy or a log would read', async () => {
      const request = await raise({ to: 'b' });
      for (const body of [
        '{"answer":"reject","answer":"approve"}',
        '{"answer":"reject","reason":"no","\\u0061nswer":"approve"}',
        '{"answer":"approve","reason":"a","reason":"b"}',
        '{"answer":1,"answer":"approve"}',
      ]) {
        const response = await postJson(`/api/requests/${request.id}/resolve`, body);
        expect(response.status, body).toBe(400);
        expect((await response.json()).error.code).toBe('malformed_body');
      }
      const link = linksOf(request);
      const redeem = await postJson('/api/links/redeem', JSON.stringify({ token: 'x' }).replace('}', `,"token":${JSON.stringify(tokenOf(link.approve))}}`));
      expect(redeem.status).toBe(400);
      expect((await state(request.id))?.status).toBe('pending');
      // Nested duplicates or duplicate-looking text inside strings are not members given twice.
      const fine = await postJson(`/api/requests/${request.id}/resolve`, '{"answer":"reject","reason":"\\"answer\\":\\"approve\\", answer twice in text"}');
      expect(fine.status).toBe(200);
    });

    it('a reject link stays a reject: an answer in the query, the form or the JSON does not turn it', async () => {
      const request = await raise({ to: 'c' });
      const { reject, approve } = linksOf(request);
      const token = tokenOf(reject);
      expect((await fetch(`${reject}?answer=approve&approved=true`)).status).toBe(200);
      const form = await fetch(`${base}/approvals/link?answer=approve`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `token=${token}&answer=approve&approved=true`,
      });
      expect(form.status).toBe(200);
      expect(await state(request.id)).toMatchObject({ status: 'rejected', resolution: { approved: false, by: 'link' } });
      // The approve link of the same request is refused now; a link is never good twice.
      expect((await postJson('/api/links/redeem', JSON.stringify({ token: tokenOf(approve), answer: 'approve' }))).status).toBe(409);
      expect((await postJson('/api/links/redeem', JSON.stringify({ token }))).status).toBe(409);
    });

    it("one request's link cannot answer another, and a page answer for another tenant's request is the hook's to refuse", async () => {
      const mine = await raise({ to: 'mine' });
      const theirs = await AgentPolicy.fromDict({ tools: { allow: ['transfer'] }, approval: { require_for: [{ tool: 'transfer' }] } })
        .session({ id: 'tenant-b', approvals: store, approvalSecret: SECRET })
        .checkTool('transfer', { input: { to: 'theirs' } });
      const theirId = theirs.approvalRequest?.id as string;
      // The token names its request and action: its payload cannot be pointed at another request.
      const [version, payload, signature] = tokenOf(linksOf(mine).approve).split('.');
      const claims = JSON.parse(Buffer.from(payload as string, 'base64url').toString('utf8'));
      const moved = `${version}.${Buffer.from(JSON.stringify({ ...claims, r: theirId, requestId: theirId })).toString('base64url')}.${signature}`;
      expect((await postJson('/api/links/redeem', JSON.stringify({ token: moved }))).status).toBe(403);
      // The hook is told which request (and so which session) an answer is for, before anything is answered.
      asked.length = 0;
      await postJson(`/api/requests/${theirId}/resolve`, JSON.stringify({ answer: 'reject' }));
      expect(asked).toEqual([expect.objectContaining({ kind: 'resolve', requestId: theirId, approval: expect.objectContaining({ sessionId: 'tenant-b' }) })]);
      expect((await state(mine.id))?.status).toBe('pending');
    });

    it('duplicate query parameters: the hook is asked about the session that is listed', async () => {
      await raise({ to: 'listed' });
      asked.length = 0;
      const response = await fetch(`${base}/approvals/api/requests?session=tenant-b&session=tenant-a`, { headers: ops });
      const listed = (await response.json()).requests as { sessionId: string }[];
      expect(asked).toEqual([{ kind: 'list', sessionId: 'tenant-b' }]);
      expect(listed.every((request) => request.sessionId === 'tenant-b')).toBe(true);
    });
  });

  describe('methods, paths and ids', () => {
    it('method overrides are ignored; HEAD, OPTIONS and GET answer nothing; no CORS is ever granted', async () => {
      const request = await raise({ to: 'd' });
      const path = `${base}/approvals/api/requests/${request.id}/resolve`;
      for (const [method, headers] of [
        ['GET', { 'x-http-method-override': 'POST', 'x-method-override': 'POST' }],
        ['HEAD', {}],
        ['OPTIONS', { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }],
        ['PUT', { 'content-type': 'application/json' }],
      ] as const) {
        const response = await fetch(`${path}?_method=POST`, { method, headers: { ...ops, ...headers }, ...(method === 'PUT' ? { body: '{"answer":"approve"}' } : {}) });
        expect(response.status, method).toBe(405);
        expect(response.headers.get('access-control-allow-origin'), method).toBeNull();
      }
      expect((await state(request.id))?.status).toBe('pending');
    });

    it('path tricks and look-alike ids reach no request', async () => {
      const request = await raise({ to: 'e' });
      const body = '{"answer":"approve"}';
      const fullwidth = request.id.replace(/[a-z]/, (c) => String.fromCodePoint(c.codePointAt(0)! - 0x61 + 0xff41));
      const paths = [
        `/approvals/api/requests/${request.id}%2Fresolve`,
        `/approvals/api/requests/..%2F${request.id}/resolve`,
        `/approvals/api/requests/%2e%2e/requests/${request.id}/resolve`,
        `/approvals/api/requests/${request.id}%00/resolve`,
        `/approvals/api/requests/${request.id}%20/resolve`,
        `/approvals/api/requests/${encodeURIComponent(fullwidth)}/resolve`,
        `/approvals/api/requests/${request.id.toUpperCase()}/resolve`,
        `//approvals/api/requests/${request.id}/resolve`,
        `/approvals//api/requests/${request.id}/resolve`,
        `/approvals/api/requests/${request.id}/resolve/`,
        `/approvals/./api/requests/${request.id}/resolve`.replace('/./', '/%2e/'),
      ];
      for (const path of paths) {
        const response = await raw(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ops\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
        expect([400, 404], `${path}: ${response.slice(0, 20)}`).toContain(statusOf(response));
      }
      expect((await state(request.id))?.status).toBe('pending');
    });
  });

  describe('bodies', () => {
    it('a declared or streamed body over the limit is refused without reading it all', async () => {
      const request = await raise({ to: 'f' });
      const huge = await raw(`POST /approvals/api/requests/${request.id}/resolve HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ops\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n{"answer":"approve"`);
      expect(statusOf(huge)).toBe(413);
      const chunk = `${'1000'}\r\n${' '.repeat(0x1000)}\r\n`;
      const chunked = await raw(
        `POST /approvals/api/requests/${request.id}/resolve HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ops\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk.repeat(4)}`,
      );
      expect(statusOf(chunked)).toBe(413);
      expect((await state(request.id))?.status).toBe('pending');
    });

    it('a body sent a byte at a time (slowloris) is cut off after bodyTimeoutMs with 408, and answers nothing', async () => {
      const request = await raise({ to: 'g' });
      const body = '{"answer":"approve"}';
      const started = Date.now();
      const response = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let out = '';
        socket.on('data', (data) => (out += data.toString('latin1')));
        socket.on('error', reject);
        socket.on('close', () => resolve(out));
        socket.write(`POST /approvals/api/requests/${request.id}/resolve HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ops\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
        let sent = 0;
        const drip = setInterval(() => {
          if (sent < body.length - 1 && !socket.destroyed) socket.write(body[sent++] as string);
        }, 200);
        socket.on('close', () => clearInterval(drip));
        setTimeout(() => socket.destroy(), 10_000);
      });
      expect(statusOf(response)).toBe(408);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await state(request.id))?.status).toBe('pending');
    });

    it('wrong, doubled or disguised media types are refused', async () => {
      const request = await raise({ to: 'h' });
      const path = `/api/requests/${request.id}/resolve`;
      for (const type of ['text/plain', 'text/plain; application/json', 'application/json, text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonp', 'application/json-seq', '']) {
        const response = await postJson(path, '{"answer":"approve"}', { 'content-type': type });
        expect(response.status, type).toBe(415);
      }
      expect((await state(request.id))?.status).toBe('pending');
    });
  });
});

describe('allowedHosts: a page on another domain pointed at this server (DNS rebinding) is refused', () => {
  const store = new InMemoryApprovalStore();
  const session = AgentPolicy.fromDict({ tools: { allow: ['transfer'] }, approval: { require_for: [{ tool: 'transfer' }] } }).session({ id: 'tenant-a', approvals: store, approvalSecret: SECRET });
  // A hook that trusts the network: every request that reaches it is from an approver.
  const handler = createApprovalsHandler({ store, secret: SECRET, basePath: '/approvals', allowedHosts: ['ops.example.com', 'localhost:3000'], authorize: () => ({ id: 'vpn-user' }) });

  it('a request for another host is 421 and answers nothing; the allowed hosts are served', async () => {
    const decision = await session.checkTool('transfer', { input: { to: 'mallory', amount: 1_000 } });
    const id = decision.approvalRequest?.id as string;
    // The rebound page posts same-origin from the browser's point of view: Host and Origin are the attacker's name.
    const rebound = new Request(`http://attacker.example:3000/approvals/api/requests/${id}/resolve`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'http://attacker.example:3000', 'sec-fetch-site': 'same-origin' },
      body: JSON.stringify({ answer: 'approve' }),
    });
    expect((await handler(rebound)).status).toBe(421);
    expect((await handler(new Request(`http://attacker.example:3000/approvals/api/requests/${id}`))).status).toBe(421);
    expect((await store.get(id, Date.now()))?.status).toBe('pending');

    expect((await handler(new Request(`https://OPS.example.com/approvals/api/requests/${id}`))).status).toBe(200);
    expect((await handler(new Request(`http://localhost:3000/approvals/api/requests/${id}`))).status).toBe(200);
    expect((await handler(new Request(`http://localhost:4000/approvals/api/requests/${id}`))).status).toBe(421);
  });

  it('is validated', () => {
    for (const bad of [[], [''], ['https://ops.example.com'], ['ops.example.com/path'], ['user@ops.example.com'], [42]]) {
      expect(() => createApprovalsHandler({ store, secret: SECRET, allowedHosts: bad as string[] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});
