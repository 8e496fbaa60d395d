// Attacks on approval requests kept on Redis: answers racing from several clients, an approval used by several
// processes at once, an answer of another session, and a resolve that Redis runs after its caller gave up.
import { AgentPolicy } from '@agentpolicy/core';
import { describe, expect, inject, it } from 'vitest';
import { createRedisApprovalStore } from '../src/index.js';
import { clientsClosedAfterAll, connect, type ClientKind } from './clients.js';
import { freePort, startRedis } from './redis-server.js';

const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const canStart = inject('redisServer');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const open = clientsClosedAfterAll();

const policy = () => AgentPolicy.fromDict({ tools: { allow: ['send_email'] }, approval: { require_for: [{ tool: 'send_email' }] } });
const at = () => new Date().toISOString();

const targets: Array<[string, { url: string } | { nodes: string[] } | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`approval races on Redis (${where})`, () => {
    it.each<ClientKind>(['node-redis@6', 'ioredis@6'])('%s: 8 clients answer at once, half approve, half reject: one answer wins, every caller reads the same one', async (kind) => {
      const sessionId = `race-${kind}-${where}-${Date.now()}`;
      const raising = policy().session({ id: sessionId, approvals: createRedisApprovalStore({ client: (await open(kind, target!)).client }) });
      const requestId = (await raising.checkTool('send_email', { input: { to: 'a@example.com' } })).approvalRequest!.id;
      const stores = await Promise.all(Array.from({ length: 8 }, async () => createRedisApprovalStore({ client: (await open(kind, target!)).client })));
      const results = await Promise.all(stores.map((store, i) => store.resolve(requestId, { approved: i % 2 === 0, by: `human-${i}`, at: at() })));
      const winners = results.filter((r) => r.ok);
      expect(winners).toHaveLength(1);
      const winner = winners[0]!.request!;
      for (const r of results) {
        if (!r.ok) expect(r.problem).toBe('answered');
        expect(r.request?.status).toBe(winner.status);
        expect(r.request?.resolution).toEqual(winner.resolution);
      }
      const decision = await raising.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } });
      expect(decision.decision).toBe(winner.status === 'approved' ? 'allow' : 'deny');
    });

    it.each<ClientKind>(['node-redis@6', 'ioredis@6'])('%s: one approval, 8 sessions of the same id in 8 clients use it at once: exactly one runs', async (kind) => {
      const sessionId = `use-${kind}-${where}-${Date.now()}`;
      const raising = policy().session({ id: sessionId, approvals: createRedisApprovalStore({ client: (await open(kind, target!)).client }) });
      const requestId = (await raising.checkTool('send_email', { input: { to: 'a@example.com' } })).approvalRequest!.id;
      expect((await raising.resolveApproval(requestId, { approved: true, by: 'alice' })).ok).toBe(true);
      const sessions = await Promise.all(Array.from({ length: 8 }, async () => policy().session({ id: sessionId, approvals: createRedisApprovalStore({ client: (await open(kind, target!)).client }) })));
      const decisions = await Promise.all(sessions.map((s) => s.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } })));
      expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(1);
      for (const d of decisions.filter((d) => d.decision !== 'allow')) expect(d).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'already_used' } });
    });

    it('an approval of one session does not count in another, even for the same action', async () => {
      const client = (await open('ioredis@6', target!)).client;
      const owner = policy().session({ id: `owner-${where}-${Date.now()}`, approvals: createRedisApprovalStore({ client }) });
      const requestId = (await owner.checkTool('send_email', { input: { to: 'a@example.com' } })).approvalRequest!.id;
      expect((await owner.resolveApproval(requestId, { approved: true, by: 'alice' })).ok).toBe(true);
      const thief = policy().session({ id: `thief-${where}-${Date.now()}`, approvals: createRedisApprovalStore({ client }) });
      expect(await thief.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } })).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_session' } });
      expect(await thief.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId, approved: true } })).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_session' } });
      await expect(thief.resolveApproval(requestId, { approved: false })).resolves.toMatchObject({ ok: false });
      // The owner's approval is untouched and still used once.
      expect(await owner.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } })).toMatchObject({ decision: 'allow' });
    });
  });
}

describe.skipIf(!canStart)('a resolve that Redis runs after its caller gave up', () => {
  it.each<ClientKind>(['node-redis@6', 'ioredis@6'])('%s: the caller was told it failed, so the answer is not recorded: the request is pending again and can be answered', async (kind) => {
    const server = await startRedis(await freePort());
    const handle = await connect(kind, { url: server.url });
    const pauser = await connect('node-redis@6', { url: server.url });
    const store = createRedisApprovalStore({ client: handle.client, timeoutMs: 150 });
    const session = policy().session({ id: `late-resolve-${kind}`, approvals: store });
    try {
      const requestId = (await session.checkTool('send_email', { input: { to: 'a@example.com' } })).approvalRequest!.id;
      await (pauser.client as unknown as { sendCommand(args: string[]): Promise<unknown> }).sendCommand(['CLIENT', 'PAUSE', '600', 'ALL']);
      // A human's approval (an approvals page would answer "nothing was changed, retry"), and an inline one with a check.
      await expect(store.resolve(requestId, { approved: true, by: 'alice', at: at() })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await sleep(900);
      expect((await store.get(requestId))?.status).toBe('pending');
      expect(await session.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } })).toMatchObject({ decision: 'require_approval' });
      // Answered again once Redis answers: that answer is the one that stands.
      expect(await store.resolve(requestId, { approved: false, by: 'alice', reason: 'changed my mind', at: at() })).toMatchObject({ ok: true, request: { status: 'rejected' } });
      expect(await session.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } })).toMatchObject({ decision: 'deny' });
    } finally {
      await handle.close();
      await pauser.close();
      await server.stop();
    }
  });
});
