// End to end on a real redis-server: agents in their own processes, each with its own Redis client and a session whose
// approvals live in the Redis store; the handler in this process on another client. Answers are given over HTTP:
// the JSON API, and a signed link opened and confirmed through the link page's form.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedisApprovalStore } from '@agentpolicy/redis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApprovalsHandler } from './approvals-handler.js';
import { Agent } from './test-support/agent-child.js';
import { OPS, serveHandler, type ServedHandler } from './test-support/handler-server.js';

// Provided by test/global-setup.ts (packages/redis's setup): null when there is no redis-server (skipped loudly).
declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string | null;
  }
}

const SECRET = 'a-redis-end-to-end-secret-of-at-least-32-bytes';
const redisUrl = inject('redisUrl');

describe.skipIf(redisUrl === null)('agents in other processes on the Redis store, answered through the handler', () => {
  let dir: string;
  let served: ServedHandler;
  let base: string;
  let client: ReturnType<typeof createClient>;
  const agents: Agent[] = [];
  const toolLog = () => join(dir, 'tool.log');
  const runs = () => (existsSync(toolLog()) ? readFileSync(toolLog(), 'utf8').trim().split('\n').filter(Boolean) : []);
  const start = (input: unknown) => {
    const agent = new Agent([redisUrl!, SECRET, toolLog(), `${base}/approvals`, JSON.stringify(input), '60000']);
    agents.push(agent);
    return agent;
  };
  const auth = OPS;
  const api = (path: string, body: unknown) => served.api(path, body);
  const status = async (id: string) => ((await (await fetch(`${base}/approvals/api/requests/${id}`, { headers: auth })).json()) as { request: { status: string } }).request.status;
  const pendingIds = async () =>
    ((await (await fetch(`${base}/approvals/api/requests`, { headers: auth })).json()) as { requests: { id: string }[] }).requests.map((r) => r.id).sort();
  /** What a person does with a signed link: open it (a confirmation page that answers nothing), then press its button. */
  const followLink = async (link: string, reason: string) => {
    const page = await fetch(link);
    const token = decodeURIComponent(new URL(link).pathname.split('/').pop()!);
    const confirm = () =>
      fetch(`${base}/approvals/link`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base }, body: new URLSearchParams({ token, reason }) });
    return { page, confirm };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentpolicy-approvals-redis-'));
    client = createClient({ url: redisUrl! });
    client.on('error', () => undefined);
    await client.connect();
    served = await serveHandler(createRedisApprovalStore({ client }), SECRET);
    base = served.base;
  });

  afterAll(async () => {
    for (const agent of agents) agent.kill();
    await served?.close();
    await client?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an agent waits; it is listed, approved through the API, resumes and runs once; a second answer is refused', async () => {
    const agent = start({ to: 'one@example.com' });
    const request = await agent.next('request');
    expect(await pendingIds()).toContain(request.id);
    expect(runs()).toEqual([]);

    expect((await api(`requests/${request.id}/resolve`, { answer: 'approve', reason: 'fine' })).status).toBe(200);
    const second = await api(`requests/${request.id}/resolve`, { answer: 'reject', reason: 'changed my mind' });
    expect(second.status).toBe(409);
    const rejectLink = request.links?.reject ?? '';
    expect((await api('links/redeem', { token: rejectLink.slice(rejectLink.lastIndexOf('/') + 1) })).status).toBe(409);

    expect(await agent.next('result')).toMatchObject({ ran: true, decision: 'allow', by: 'ops' });
    expect(await agent.exited).toBe(0);
    expect(runs()).toEqual([JSON.stringify({ to: 'one@example.com' })]);
    expect(await status(request.id!)).toBe('used');
    expect(await pendingIds()).not.toContain(request.id);
  });

  it('two agents wait; one is approved by its signed link (a replay is refused), the other rejected and never runs', async () => {
    const before = runs().length;
    const first = start({ to: 'two@example.com' });
    const second = start({ to: 'three@example.com' });
    const [a, b] = await Promise.all([first.next('request'), second.next('request')]);
    expect(await pendingIds()).toEqual(expect.arrayContaining([a.id, b.id]));

    const approve = await followLink(a.links!.approve, 'go ahead');
    expect(approve.page.status).toBe(200);
    expect(await approve.page.text()).toContain('two@example.com');
    expect(await status(a.id!)).toBe('pending'); // opening the link answered nothing
    expect((await approve.confirm()).status).toBe(200);
    expect((await approve.confirm()).status).toBe(409);

    const reject = await followLink(b.links!.reject, 'not this one');
    expect((await reject.confirm()).status).toBe(200);
    expect((await api(`requests/${b.id}/resolve`, { answer: 'approve' })).status).toBe(409);
    const approveAfterReject = await followLink(b.links!.approve, 'please');
    expect((await approveAfterReject.confirm()).status).toBe(409);

    expect(await first.next('result')).toMatchObject({ ran: true, decision: 'allow', by: 'link' });
    const rejected = await second.next('result');
    expect(rejected).toMatchObject({ ran: false, decision: 'deny', rule: { outcome: 'rejected' } });
    expect(rejected.reason).toContain('not this one');
    expect(await Promise.all([first.exited, second.exited])).toEqual([0, 0]);
    expect(runs().slice(before)).toEqual([JSON.stringify({ to: 'two@example.com' })]);
    expect(await status(a.id!)).toBe('used');
    expect(await status(b.id!)).toBe('rejected');

    // The used approval's link, replayed after the run, is refused too.
    expect((await approve.confirm()).status).toBe(409);
  });

  it('a handler whose Redis connection is gone answers 503 and changes nothing; the request stays answerable', async () => {
    const before = runs().length;
    const agent = start({ to: 'four@example.com' });
    const request = await agent.next('request');
    const lost = createClient({ url: redisUrl!, disableOfflineQueue: true });
    lost.on('error', () => undefined);
    await lost.connect();
    lost.destroy();
    const errors: unknown[] = [];
    const down = createApprovalsHandler({
      store: createRedisApprovalStore({ client: lost }),
      secret: SECRET,
      basePath: '/approvals',
      authorize: () => ({ id: 'ops' }),
      onError: (error) => void errors.push(error),
    });
    const post = (path: string, body: unknown) =>
      down(new Request(`${base}/approvals/api/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }));
    expect((await down(new Request(`${base}/approvals/api/requests`))).status).toBe(503);
    expect((await post(`requests/${request.id}/resolve`, { answer: 'approve' })).status).toBe(503);
    const approveToken = request.links!.approve.slice(request.links!.approve.lastIndexOf('/') + 1);
    expect((await post('links/redeem', { token: approveToken })).status).toBe(503);
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(await status(request.id!)).toBe('pending');

    expect((await api(`requests/${request.id}/resolve`, { answer: 'reject', reason: 'not today' })).status).toBe(200);
    expect(await agent.next('result')).toMatchObject({ ran: false, decision: 'deny', rule: { outcome: 'rejected' } });
    expect(await agent.exited).toBe(0);
    expect(runs().slice(before)).toEqual([]);
  });
});
