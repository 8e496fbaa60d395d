import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentPolicy, PolicyValidationError, PolicySource, type Decision, type HaltStore } from './index.js';
import { useTempDirs } from './test-support/temp-dirs.js';

const A = `budget:\n  max_spend: 10\ntools:\n  block: [deploy]\napproval:\n  require_for:\n    - tool: send_email\n`;
const B = `budget:\n  max_spend: 10\ntools:\n  block: [send_email]\n`;
const INVALID = `tools:\n  block: deploy\n  alow: [x]\n`;

const tempDir = useTempDirs('agentpolicy-source-');

function tempFile(text: string): string {
  const dir = tempDir();
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, text);
  return file;
}

// Replaces the file the way deploys do: write aside, then rename over it (readers never see half a file).
function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.new`, text);
  renameSync(`${file}.new`, file);
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Waits until `done()` holds (checked every millisecond), failing after 10 s with what it waited for. */
async function until(done: () => boolean, what: string): Promise<void> {
  const give = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > give) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('PolicySource.update', () => {
  it('swaps to a valid policy; an invalid one is refused with its issues and the old policy stays', async () => {
    const a = AgentPolicy.fromYamlString(A);
    const rejected: unknown[] = [];
    const source = new PolicySource(a, { onReject: (event) => rejected.push(event) });
    const session = source.session({ id: 's' });
    expect((await session.checkTool('deploy')).decision).toBe('deny');

    const bad = source.update(INVALID);
    expect(bad.ok).toBe(false);
    expect(bad.ok ? [] : bad.issues.map((issue) => issue.path)).toEqual(expect.arrayContaining(['tools.block']));
    expect(source.hash).toBe(a.hash);
    expect(rejected).toHaveLength(1);
    const still = await session.checkTool('deploy');
    expect([still.decision, still.policyHash]).toEqual(['deny', a.hash]);

    const good = source.update(B);
    const b = AgentPolicy.fromYamlString(B);
    expect(good).toEqual({ ok: true, changed: true, hash: b.hash, previousHash: a.hash });
    // The running session switches at its next check; a new session starts with the new policy.
    const after = await session.checkTool('deploy');
    expect([after.decision, after.policyHash]).toEqual(['allow', b.hash]);
    expect((await source.session().checkTool('send_email')).policyHash).toBe(b.hash);
    expect(source.update(B)).toMatchObject({ ok: true, changed: false });
    expect(source.update({ tools: { block: 'x' } })).toMatchObject({ ok: false });
    expect(source.update(42 as never)).toMatchObject({ ok: false });
  });

  it('a running session is held to the new budget from its next check; spend already recorded stays', async () => {
    const source = new PolicySource(AgentPolicy.fromYamlString('budget:\n  max_spend: 10\n'));
    const session = source.session();
    expect((await session.checkCost(4, { source: 'llm' })).decision).toBe('allow');
    source.update('budget:\n  max_spend: 5\n');
    expect((await session.checkCost(2, { source: 'llm' })).decision).toBe('deny');
    expect(session.remaining).toBe(1);
    expect(session.spent).toBe(4);
  });

  it('an open session keeps the budget period it opened with; a session opened after the change gets the new one', async () => {
    const source = new PolicySource(AgentPolicy.fromYamlString('budget:\n  max_spend: 10\n  period: day\n'));
    const open = source.session();
    expect((await open.checkCost(4, { source: 'llm' })).decision).toBe('allow');
    source.update('budget:\n  max_spend: 5\n  period: hour\n');
    // The new max applies at once, in the window its spend lives in.
    expect(open.report().period).toBe('day');
    expect((await open.checkCost(2, { source: 'llm' })).decision).toBe('deny');
    expect(source.session().report().period).toBe('hour');
  });

  it('sessions of one budget key share their budget across a reload', async () => {
    const source = new PolicySource(AgentPolicy.fromYamlString('budget:\n  max_spend: 10\n'));
    const first = source.session({ budgetKey: 'tenant' });
    expect((await first.checkCost(6, { source: 'llm' })).decision).toBe('allow');
    source.update('budget:\n  max_spend: 10\ntools:\n  block: [x]\n');
    const second = source.session({ budgetKey: 'tenant' });
    expect((await second.checkCost(6, { source: 'llm' })).decision).toBe('deny');
    expect((await second.checkCost(4, { source: 'llm' })).decision).toBe('allow');
    expect((await first.checkCost(0.01, { source: 'llm' })).decision).toBe('deny');
  });

  it('an approval in flight while the policy is swapped is decided again, wholly, by the policy in force when the answer comes', async () => {
    const a = AgentPolicy.fromYamlString(A);
    const source = new PolicySource(a);
    let answer!: (value: boolean) => void;
    const session = source.session({ approver: () => new Promise<boolean>((resolve) => (answer = resolve)) });
    const pending = session.checkTool('send_email');
    await tick();
    expect(source.update(B).ok).toBe(true);
    answer(true);
    const decision = await pending;
    // Policy A asked and the human said yes, but B blocks the tool: B's hash and B's rule, never A's allow kept.
    expect(decision).toMatchObject({ decision: 'deny', policyHash: source.hash, rule: { section: 'tools', list: 'block', entry: 'send_email' } });
    expect(decision.policyHash).not.toBe(a.hash);
    expect((await session.checkTool('send_email')).policyHash).toBe(source.hash);
  });

  it('the first file must be valid: there is no policy to fall back on', () => {
    const file = tempFile(INVALID);
    expect(() => PolicySource.fromFile(file, { watch: false })).toThrow(PolicyValidationError);
  });
});

describe('live reload under load', () => {
  it('1,000 concurrent checks while the file changes: each decision is wholly the old or the new policy; an invalid file never takes effect', async () => {
    const file = tempFile(A);
    const a = AgentPolicy.fromYamlString(A);
    const b = AgentPolicy.fromYamlString(B);
    const byHash = new Map([
      [a.hash, a],
      [b.hash, b],
    ]);
    const rejects: unknown[] = [];
    const updates: string[] = [];
    // A halt store that answers late: each check is really in flight (awaiting it) while the file changes.
    let n = 0;
    const slow: HaltStore = {
      halted: () => new Promise((resolve) => setTimeout(() => resolve(undefined), n++ % 7)),
      halt: () => undefined,
      resume: () => false,
      list: () => [],
    };
    // Every write renames a finished file over the policy, so it needs no settling: each version is taken at once.
    const source = PolicySource.fromFile(file, { halts: slow, debounceMs: 0, settleMs: 0, onReject: (event) => rejects.push(event), onUpdate: (event) => updates.push(event.hash) });
    try {
      const sessions = Array.from({ length: 10 }, (_, i) => source.session({ id: `load-${i}` }));
      const tools = ['deploy', 'send_email', 'search'];
      const writes = [B, INVALID, A, INVALID, B, A, B];
      const checks: Promise<Decision>[] = [];
      const pendingAtWrites: number[] = [];
      let settled = 0;
      for (let round = 0; round < 100; round++) {
        for (let i = 0; i < 10; i++) {
          const session = sessions[i] as (typeof sessions)[number];
          const check = session.checkTool(tools[(round + i) % 3] as string, { cost: 0.001 });
          void check.then(() => settled++);
          checks.push(check);
        }
        if (round % 14 === 7) {
          pendingAtWrites.push(checks.length - settled);
          const text = writes[(round / 14) | 0] as string;
          const seenBefore = text === INVALID ? rejects.length : updates.length;
          replaceFile(file, text);
          // Each version is taken (or refused) while checks are in flight, before the next write replaces it: on a
          // loaded machine the watcher may otherwise first read the file after the next write.
          await until(() => (text === INVALID ? rejects.length : updates.length) > seenBefore, `the watcher to take write ${(round / 14) | 0}`);
        } else {
          await tick();
        }
      }
      const decisions = await Promise.all(checks);
      // The file changed while hundreds of checks were still waiting to be decided.
      expect(Math.max(...pendingAtWrites)).toBeGreaterThan(100);
      expect(decisions).toHaveLength(1000);
      const seen = new Set<string>();
      for (const decision of decisions) {
        const policy = byHash.get(decision.policyHash);
        expect(policy, `unknown hash ${decision.policyHash}`).toBeDefined();
        seen.add(decision.policyHash);
        // Never a mix: the decision is exactly what its policy decides for that tool.
        const direct = (policy as AgentPolicy).session().evaluate({ type: 'tool', name: (decision.action as { name: string }).name, cost: 0.001 });
        expect([decision.decision, decision.reason]).toEqual([direct.decision, direct.reason]);
      }
      expect(seen.size).toBe(2);
      expect(rejects.length).toBeGreaterThan(0);
      for (const hash of updates) expect(byHash.has(hash)).toBe(true);
    } finally {
      source.close();
    }
  });

  it('a file replaced by an invalid one is refused and the old policy stays in force', async () => {
    const file = tempFile(A);
    const rejected: Array<{ issues: readonly unknown[] }> = [];
    const source = PolicySource.fromFile(file, { debounceMs: 0, onReject: (event) => rejected.push(event) });
    try {
      const hash = source.hash;
      replaceFile(file, INVALID);
      for (let i = 0; i < 100 && rejected.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(rejected.length).toBeGreaterThan(0);
      expect(source.hash).toBe(hash);
      rmSync(file);
      expect(source.reload()).toMatchObject({ ok: false, hash });
      expect((await source.session().checkTool('deploy')).decision).toBe('deny');
    } finally {
      source.close();
    }
  });
});
