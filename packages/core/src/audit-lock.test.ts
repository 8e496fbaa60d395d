import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// The lock race needs a second writer to act at one exact moment inside the first one's lock step: fs calls pass
// through, and a test can arm a hook that runs once, the first time a matching call is made.
type Hook = { match: (name: string, args: unknown[]) => boolean; run: () => void } | undefined;
const state = vi.hoisted(() => ({ hook: undefined as Hook }));

vi.mock('node:fs', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:fs')>();
  const wrap = <F extends (...args: never[]) => unknown>(name: string, fn: F): F =>
    ((...args: Parameters<F>) => {
      const hook = state.hook;
      if (hook !== undefined && hook.match(name, args)) {
        state.hook = undefined;
        hook.run();
      }
      return fn(...args);
    }) as F;
  const wrapped = {
    ...original,
    writeSync: wrap('writeSync', original.writeSync),
    writeFileSync: wrap('writeFileSync', original.writeFileSync),
    readFileSync: wrap('readFileSync', original.readFileSync),
    unlinkSync: wrap('unlinkSync', original.unlinkSync),
    renameSync: wrap('renameSync', original.renameSync),
  };
  return { ...wrapped, default: wrapped };
});

const { createAuditLog } = await import('./audit-log.js');
type Log = ReturnType<typeof createAuditLog>;

/** A pid no process has any more: a child that has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid as number;
}

describe('the audit log lock under a race', () => {
  let dir: string;
  let path: string;
  const opened: Log[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentpolicy-lock-'));
    path = join(dir, 'audit.jsonl');
  });
  afterEach(() => {
    state.hook = undefined;
    for (const log of opened.splice(0)) log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (): Log | Error => {
    try {
      const log = createAuditLog(path);
      opened.push(log);
      return log;
    } catch (error) {
      return error as Error;
    }
  };

  it('two writers starting at the same moment: exactly one gets the log (the lock is never seen empty)', () => {
    let second: Log | Error | undefined;
    // The second writer runs at the first write the first one makes while taking the lock.
    state.hook = {
      match: (name, args) => (name === 'writeSync' && args[1] === String(process.pid)) || (name === 'writeFileSync' && String(args[0]).includes('.lock')),
      run: () => {
        second = open();
      },
    };
    const first = open();
    const outcomes = [first, second];
    expect(outcomes.filter((outcome) => !(outcome instanceof Error))).toHaveLength(1);
    const refused = outcomes.find((outcome) => outcome instanceof Error) as Error & { code?: string };
    expect(refused.code).toBe('AUDIT_LOG_LOCKED');
    expect(readFileSync(`${path}.lock`, 'utf8')).toMatch(new RegExp(`^${process.pid}\\b`));
  });

  it('two writers taking over a dead writer’s lock at the same moment: exactly one gets the log', () => {
    writeFileSync(`${path}.lock`, String(deadPid()));
    let second: Log | Error | undefined;
    let reads = 0;
    // The second writer takes the dead lock over right after the first one has read it as dead.
    state.hook = {
      match: (name, args) => name === 'readFileSync' && String(args[0]) === `${path}.lock` && ++reads === 1,
      run: () => {
        // Let the first read finish before the second writer acts: re-arm for the step right after it.
        state.hook = {
          match: (name) => name === 'unlinkSync' || name === 'renameSync',
          run: () => {
            second = open();
          },
        };
      },
    };
    const first = open();
    const outcomes = [first, second];
    expect(second).toBeDefined();
    expect(outcomes.filter((outcome) => !(outcome instanceof Error))).toHaveLength(1);
    expect((outcomes.find((outcome) => outcome instanceof Error) as Error & { code?: string }).code).toBe('AUDIT_LOG_LOCKED');
    // The lock on disk is the holder's, and nothing is left beside it.
    expect(readFileSync(`${path}.lock`, 'utf8')).toMatch(new RegExp(`^${process.pid}\\b`));
    expect(readdirSync(dir).sort()).toEqual(['audit.jsonl', 'audit.jsonl.lock']);
  });

  it('a writer closing removes only its own lock, not one another writer holds now', () => {
    const log = createAuditLog(path);
    writeFileSync(`${path}.lock`, '999999 someone-else');
    log.close();
    expect(readFileSync(`${path}.lock`, 'utf8')).toBe('999999 someone-else');
  });

  it('a dead writer’s lock is still taken over, and a lock left empty counts as dead', () => {
    writeFileSync(`${path}.lock`, String(deadPid()));
    const log = open();
    expect(log).not.toBeInstanceOf(Error);
    (log as Log).close();
    writeFileSync(`${path}.lock`, '');
    const again = open();
    expect(again).not.toBeInstanceOf(Error);
    (again as Log).close();
    expect(fs.existsSync(`${path}.lock`)).toBe(false);
    expect(readdirSync(dir)).toEqual(['audit.jsonl']);
  });
});
