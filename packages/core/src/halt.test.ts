import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AgentPolicy, AgentPolicyError, FileHaltStore, PolicySource, type Decision, type HaltStore } from './index.js';
import { main } from './run-cli.js';
import { useTempDirs } from './test-support/temp-dirs.js';

const tempDir = useTempDirs('agentpolicy-halt-');

describe('halt in memory', () => {
  it('denies every session of the policy from the very next check, in the same tick, naming the halt; resume lifts it', async () => {
    const policy = new AgentPolicy({ budget: 5 });
    const one = policy.session({ id: 'one' });
    const two = policy.session({ id: 'two' });
    const before = one.checkTool('search', { cost: 1 });
    policy.halt('runaway loop in prod', { by: 'oncall' });
    // Started after the halt in the same tick: denied, and nothing charged.
    const [first, second] = await Promise.all([one.checkTool('search', { cost: 1 }), two.checkHttp('https://example.com/')]);
    expect((await before).decision).toBe('allow');
    for (const decision of [first, second]) {
      expect(decision.decision).toBe('deny');
      expect(decision.reason).toContain('halted: runaway loop in prod');
      expect(decision.reason).toContain('by oncall');
      expect(decision.rule).toMatchObject({ section: 'halt', reason: 'runaway loop in prod', by: 'oncall' });
    }
    expect(one.spent).toBe(1);
    // A keyed repeat of an allow given before the halt is not handed out again.
    await policy.resume();
    const keyed = await one.checkTool('search', { idempotencyKey: 'call-1' });
    expect(keyed.decision).toBe('allow');
    policy.halt('runaway loop in prod', { by: 'oncall' });
    expect((await one.checkTool('search', { idempotencyKey: 'call-1' })).decision).toBe('deny');
    // Approvals and keys do not get past a halt.
    expect((await one.checkTool('search', { approved: true, idempotencyKey: 'k' })).decision).toBe('deny');
    expect(one.evaluate({ type: 'tool', name: 'search' }).decision).toBe('deny');
    await expect(one.runTool('search', {}, () => 'ran')).rejects.toThrow(/halted/);
    expect(await policy.resume()).toBe(true);
    expect((await one.checkTool('search')).decision).toBe('allow');
    expect(await policy.resume()).toBe(false);
  });

  it('a halt of one budget key stops only that key', async () => {
    const source = new PolicySource(new AgentPolicy());
    const a = source.session({ id: 'tenant-a' });
    const b = source.session({ id: 'tenant-b' });
    source.halt('tenant a is over its quota', { budgetKey: 'tenant-a' });
    expect((await a.checkTool('x')).rule).toMatchObject({ section: 'halt', budgetKey: 'tenant-a' });
    expect((await b.checkTool('x')).decision).toBe('allow');
    expect(await source.halted()).toHaveLength(1);
    source.resume({ budgetKey: 'tenant-a' });
    expect((await a.checkTool('x')).decision).toBe('allow');
  });

  it('a halt needs a reason; a halt store that fails counts as a halt', async () => {
    const policy = new AgentPolicy();
    expect(() => policy.halt('')).toThrow(AgentPolicyError);
    expect(() => policy.halt(undefined as never)).toThrow(/reason/);
    const broken: HaltStore = {
      halted: () => {
        throw new Error('store down');
      },
      halt: () => undefined,
      resume: () => false,
      list: () => [],
    };
    const decision = await policy.session({ halts: broken }).checkTool('x');
    expect(decision.decision).toBe('deny');
    expect(decision.reason).toContain('store down');
    const rejecting: HaltStore = { ...broken, halted: () => Promise.reject(new Error('timeout')) };
    expect((await policy.session({ halts: rejecting }).checkTool('x')).decision).toBe('deny');
  });
});

describe('halt and resume options', () => {
  it('resume with options that are not an object is refused, never read as "resume everything"', async () => {
    const policy = new AgentPolicy({ budget: 5 });
    policy.halt('incident', { budgetKey: 'tenant-b' });
    policy.halt('everything');
    for (const options of ['tenant-a', null, 7, Symbol('x')]) {
      expect(() => policy.resume(options as never), String(options)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    const unreadable = Object.defineProperty({}, 'budgetKey', {
      get() {
        throw new Error('getter');
      },
    });
    expect(() => policy.resume(unreadable)).toThrow(/resume options cannot be read: getter/);
    expect(await policy.session({ id: 'tenant-a' }).checkTool('search')).toMatchObject({ decision: 'deny', rule: { section: 'halt' } });
    const source = new PolicySource(policy);
    expect(() => source.resume('tenant-a' as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    source.close();
  });

  it('halt options that are not an object, or cannot be read, are refused with a typed error', () => {
    const policy = new AgentPolicy({ budget: 5 });
    expect(() => policy.halt('x', null as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const by = { toString: () => { throw new Error('toString'); } };
    expect(() => policy.halt('x', { by: by as never })).toThrow(/halt options cannot be read: toString/);
    expect(policy.resume()).toBe(false);
  });
});

describe('halt through a shared halt file', () => {
  it('a corrupt or unreadable halt file denies (fail closed); the CLI replaces it', async () => {
    const file = join(tempDir(), 'halt.json');
    const store = new FileHaltStore(file);
    const session = new AgentPolicy().session({ halts: store });
    expect((await session.checkTool('x')).decision).toBe('allow');
    writeFileSync(file, '{not json');
    const denied = await session.checkTool('x');
    expect(denied.decision).toBe('deny');
    expect(denied.reason).toContain('cannot be read');
    const lines: string[] = [];
    expect(await main(['resume', '--file', file], (line) => lines.push(line), () => undefined)).toBe(0);
    expect((await session.checkTool('x')).decision).toBe('allow');
    expect(await main(['halt', '--file', file], () => undefined, (line) => lines.push(line))).toBe(2);
    expect(await main(['halt', 'x'], () => undefined, (line) => lines.push(line))).toBe(2);
  });

  it('agentpolicy halt from another process stops this one at its next check; resume lets it go on', async () => {
    const file = join(tempDir(), 'halt.json');
    const store = new FileHaltStore(file);
    const session = new AgentPolicy().session({ id: 'worker', halts: store });
    expect((await session.checkTool('search')).decision).toBe('allow');
    const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
    const run = (args: string[]) =>
      new Promise<string>((resolve, reject) => {
        const child = fork(cli, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${out}`))));
      });
    expect(await run(['halt', '--file', file, '--by', 'sre', 'bad', 'deploy'])).toContain('halted every session');
    // The very next check after the other process wrote the halt.
    const next: Decision = await session.checkTool('search');
    expect(next.decision).toBe('deny');
    expect(next.rule).toMatchObject({ section: 'halt', reason: 'bad deploy', by: 'sre' });
    expect(await run(['halt', '--file', file, '--list'])).toContain('bad deploy');
    expect(await run(['resume', '--file', file])).toContain('resumed every session');
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect(await run(['halt', '--file', file, '--key', 'worker', 'just', 'this', 'one'])).toContain('budget key worker');
    expect((await session.checkTool('search')).reason).toContain('halted: just this one');
    expect((await new AgentPolicy().session({ id: 'other', halts: store }).checkTool('search')).decision).toBe('allow');
  });
});
