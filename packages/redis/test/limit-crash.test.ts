// Redis killed (SIGKILL) and restarted in the middle of a burst of limited checks and approval uses: checks are denied
// with a typed reason while it is down, nothing throws, and no limit or approval lets more through than it allows.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentPolicy, type Decision } from '@agentpolicy/core';
import { describe, expect, inject, it } from 'vitest';
import { createRedisApprovalStore, createRedisRateLimitStore } from '../src/index.js';
import { connect, type ClientKind } from './clients.js';
import { freePort, startRedis } from './redis-server.js';

const canStart = inject('redisServer');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!canStart)('redis-server killed mid-burst of limited checks and approval uses (appendfsync always)', () => {
  it.each<ClientKind>(['node-redis@6', 'ioredis@6'])('%s: never more than max allowed, never an approval used twice, only allow / limit deny / error deny', async (kind) => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-redis-limits-aof-'));
    const durable = ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'];
    let server = await startRedis(port, durable);
    const handle = await connect(kind, { url: server.url });
    const limitStore = createRedisRateLimitStore({ client: handle.client, timeoutMs: 300 });
    const approvals = createRedisApprovalStore({ client: handle.client, timeoutMs: 300 });
    const policy = AgentPolicy.fromDict({
      tools: { allow: ['search', 'fetch', 'send_email'] },
      approval: { require_for: [{ tool: 'send_email' }] },
      limits: [
        { tool: 'search', max_calls: 5, per: '1m', scope: 'budget' },
        { tool: 'fetch', max_calls: 5, per: 'session', scope: 'budget' },
      ],
    });
    const budgetKey = `crash-${kind}`;
    const sessionId = `crash-approval-${kind}`;
    const open = () => policy.session({ limitStore, approvals, budgetKey, id: sessionId });
    const requestId = (await open().checkTool('send_email', { input: { to: 'a@example.com' } })).approvalRequest!.id;
    expect((await approvals.resolve(requestId, { approved: true, by: 'alice', at: new Date().toISOString() })).ok).toBe(true);
    const decisions: Decision[] = [];
    let stop = false;
    const loop = async (i: number) => {
      const session = open();
      for (let n = 0; !stop; n++) {
        if (n % 8 === 0) await new Promise((resolve) => setImmediate(resolve));
        const which = (i + n) % 3;
        decisions.push(
          which === 2
            ? await session.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId } })
            : await session.checkTool(which === 0 ? 'search' : 'fetch', { input: { n } }),
        );
        await sleep(5);
      }
    };
    try {
      const loops = Array.from({ length: 8 }, (_, i) => loop(i));
      await sleep(60);
      await server.stop(); // SIGKILL
      await sleep(300);
      server = await startRedis(port, durable);
      await sleep(1500);
      stop = true;
      await Promise.all(loops);
      const allowed = (tool: string) => decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool' && d.action.name === tool).length;
      expect(allowed('search')).toBeLessThanOrEqual(5);
      expect(allowed('fetch')).toBeLessThanOrEqual(5);
      expect(allowed('send_email')).toBeLessThanOrEqual(1);
      // Some checks ran while Redis was down, and were denied as errors; every other outcome is an allow or the limit's deny.
      expect(decisions.some((d) => d.rule.section === 'error')).toBe(true);
      for (const d of decisions) {
        if (d.decision === 'allow') continue;
        expect(['error', 'limits', 'approval'].includes(d.rule.section) || d.decision === 'require_approval').toBe(true);
      }
      // After the restart the counts came back with the server: nothing more is allowed from a new session.
      const later = open();
      for (let i = 0; i < 100 && (await later.checkTool('search', { input: { probe: i } })).rule.section === 'error'; i++) await sleep(100);
      expect(allowed('search') + allowed('fetch')).toBeGreaterThan(0);
      if (allowed('fetch') === 5) expect(await later.checkTool('fetch')).toMatchObject({ decision: 'deny', rule: { section: 'limits' } });
    } finally {
      stop = true;
      await handle.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
