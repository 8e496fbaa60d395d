// Across processes without a browser: agents in their own processes, the handler in this one, one store shared
// through the file system; answers given over HTTP to the JSON API and by signed link.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, FileApprovalStore } from './test-support/agent-child.js';
import { serveHandler, type ServedHandler } from './test-support/handler-server.js';

const SECRET = 'a-cross-process-secret-of-at-least-32-bytes';

describe('agents in other processes, answered through the handler', () => {
  let dir: string;
  let served: ServedHandler;
  let base: string;
  const agents: Agent[] = [];
  const toolLog = () => join(dir, 'tool.log');
  const runs = () => (existsSync(toolLog()) ? readFileSync(toolLog(), 'utf8').trim().split('\n').filter(Boolean) : []);
  const start = (input: unknown) => {
    const agent = new Agent([join(dir, 'store'), SECRET, toolLog(), `${base}/approvals`, JSON.stringify(input), '60000']);
    agents.push(agent);
    return agent;
  };
  const api = (path: string, body: unknown) => served.api(path, body);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentpolicy-approvals-xp-'));
    served = await serveHandler(new FileApprovalStore(join(dir, 'store')), SECRET);
    base = served.base;
  });

  afterAll(async () => {
    for (const agent of agents) agent.kill();
    await served?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('two agents wait; one is approved through the API and runs once, the other is rejected by link and never runs', async () => {
    const first = start({ to: 'one@example.com' });
    const second = start({ to: 'two@example.com' });
    const [a, b] = await Promise.all([first.next('request'), second.next('request')]);
    const listed = await (await fetch(`${base}/approvals/api/requests`, { headers: { authorization: 'Bearer ops' } })).json();
    expect(listed.requests.map((r: { id: string }) => r.id).sort()).toEqual([a.id, b.id].sort());
    expect(runs()).toEqual([]);

    expect((await api(`requests/${a.id}/resolve`, { answer: 'approve', reason: 'fine' })).status).toBe(200);
    const rejectLink = b.links?.reject ?? '';
    const token = rejectLink.slice(rejectLink.lastIndexOf('/') + 1);
    expect((await api('links/redeem', { token, reason: 'no' })).status).toBe(200);
    expect((await api('links/redeem', { token })).status).toBe(409);

    expect(await first.next('result')).toMatchObject({ ran: true, decision: 'allow', by: 'ops' });
    const rejected = await second.next('result');
    expect(rejected).toMatchObject({ ran: false, decision: 'deny', rule: { outcome: 'rejected' } });
    expect(rejected.reason).toContain('rejected by link: no');
    expect(await Promise.all([first.exited, second.exited])).toEqual([0, 0]);
    expect(runs()).toEqual([JSON.stringify({ to: 'one@example.com' })]);
  });
});
