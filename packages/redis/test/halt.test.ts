import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AgentPolicy, PolicyDeniedError, PolicySource } from '@agentpolicy/core';
import { afterAll, describe, expect, inject, it, vi } from 'vitest';
import { createRedisHaltStore } from '../src/index.js';
import { connect, type ClientHandle, type ClientKind } from './clients.js';

const WORKER = fileURLToPath(new URL('./halt-worker.ts', import.meta.url));
const redisUrl = inject('redisUrl');
const clusterNodes = inject('clusterNodes');
const handles: ClientHandle[] = [];
afterAll(async () => {
  await Promise.all(handles.map((handle) => handle.close()));
});

const targets: Array<[string, { url: string } | { nodes: string[] } | null]> = [
  ['one node', redisUrl === null ? null : { url: redisUrl }],
  ['cluster', clusterNodes === null ? null : { nodes: clusterNodes }],
];

function secondProcess(kind: ClientKind, target: object, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [kind, JSON.stringify(target), ...args], { execArgv: ['--no-warnings'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', () => resolve());
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`halt worker exited with ${code}`))));
  });
}

for (const [where, target] of targets) {
  describe.skipIf(target === null)(`halts on Redis (${where})`, () => {
    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: a halt from a second process stops this one at its very next check; resume lets it go on', async (kind) => {
      const handle = await connect(kind, target!);
      handles.push(handle);
      const name = `fleet-${kind}-${where}-${Date.now()}`.replace(/[{}]/g, '');
      const source = new PolicySource(new AgentPolicy({ budget: 10 }), { halts: createRedisHaltStore({ client: handle.client, name }) });
      const session = source.session({ id: 'agent-1' });
      const other = source.session({ id: 'agent-2' });
      expect((await session.checkTool('search', { cost: 1 })).decision).toBe('allow');

      await secondProcess(kind, target!, [name, 'halt', 'runaway agent']);
      const next = await session.checkTool('search', { cost: 1 });
      expect(next.decision).toBe('deny');
      expect(next.rule).toMatchObject({ section: 'halt', reason: 'runaway agent', by: 'second process' });
      expect((await other.checkHttp('https://example.com/')).decision).toBe('deny');
      expect(session.spent).toBe(1);
      expect(await source.halted()).toHaveLength(1);

      await secondProcess(kind, target!, [name, 'resume', '']);
      expect((await session.checkTool('search', { cost: 1 })).decision).toBe('allow');

      // One budget key only.
      await secondProcess(kind, target!, [name, 'halt', 'agent 1 misbehaves', 'agent-1']);
      expect((await session.checkTool('search')).rule).toMatchObject({ section: 'halt', budgetKey: 'agent-1' });
      expect((await other.checkTool('search')).decision).toBe('allow');
      expect(await source.resume({ budgetKey: 'agent-1' })).toBe(true);
      expect((await session.checkTool('search')).decision).toBe('allow');
    });

    it.each(['node-redis@6', 'ioredis@6'] as const)('%s: an allow decided before a halt from a second process is refused where it would run, and its money given back', async (kind) => {
      const handle = await connect(kind, target!);
      handles.push(handle);
      const name = `queue-${kind}-${where}-${Date.now()}`.replace(/[{}]/g, '');
      const session = new AgentPolicy({ budget: 10 }).session({ id: 'worker-1', halts: createRedisHaltStore({ client: handle.client, name }) });
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        // Decided now, run later (a job queue): the halt comes in between.
        const queued = await session.reserveAction({ type: 'tool', name: 'deploy', cost: 2 });
        expect(queued.allowed).toBe(true);
        await secondProcess(kind, target!, [name, 'halt', 'release freeze']);
        vi.setSystemTime(Date.now() + 1500);
        const refused = await Promise.resolve(session.claim(queued.decision)).catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(PolicyDeniedError);
        expect((refused as PolicyDeniedError).decision.rule).toMatchObject({ section: 'halt', reason: 'release freeze' });
        expect(queued.settled).toBe(true);
        expect(session.report().reserved).toBe(0);
        expect(session.spent).toBe(0);
        await secondProcess(kind, target!, [name, 'resume', '']);
      } finally {
        vi.useRealTimers();
      }
    });
  });
}

describe('a halt store that cannot reach Redis', () => {
  it('denies (fail closed), naming the failure', async () => {
    const client = { evalsha: () => Promise.reject(new Error('connection lost')), eval: () => Promise.reject(new Error('connection lost')), status: 'ready' };
    const session = new AgentPolicy().session({ halts: createRedisHaltStore({ client }) });
    const decision = await session.checkTool('search');
    expect(decision.decision).toBe('deny');
    expect(decision.reason).toContain('connection lost');
  });
});
