import { closeSync, mkdirSync, openSync, renameSync, statSync, symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { AgentPolicy, AgentPolicyError, PolicySource, type PolicyFileOptions } from './index.js';
import { useTempDirs } from './test-support/temp-dirs.js';

// drop_db is blocked by the policy in force and by the one replacing it; only a part of the new file omits it.
const OLD = `tools:\n  block:\n    - delete_file\n    - drop_db\n`;
const NEW = `budget:\n  max_spend: 5\ntools:\n  block:\n    - delete_file\n    - drop_db\n`;
// NEW as a writer in chunks leaves it on disk: each part parses on its own, and each would allow drop_db.
const PARTS = [`budget:\n  max_spend: 5\n`, `tools:\n  block:\n    - delete_file\n`, `    - drop_db\n`];
const FINAL = `budget:\n  max_spend: 7\ntools:\n  block: [delete_file, drop_db]\n`;

const oldHash = AgentPolicy.fromYamlString(OLD).hash;
const newHash = AgentPolicy.fromYamlString(NEW).hash;
const finalHash = AgentPolicy.fromYamlString(FINAL).hash;

// A hook run just before a watch starts: the moment between the first read of the file and the watch on it.
const fsHooks = vi.hoisted(() => ({ beforeWatch: undefined as (() => void) | undefined }));
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const watch = ((...args: Parameters<typeof actual.watch>) => {
    const hook = fsHooks.beforeWatch;
    fsHooks.beforeWatch = undefined;
    hook?.();
    return actual.watch(...args);
  }) as typeof actual.watch;
  return { ...actual, watch, default: { ...actual, watch } };
});

const tempDir = useTempDirs('agentpolicy-source-attacks-');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function policyFile(text: string): string {
  const file = join(tempDir(), 'policy.yaml');
  writeFileSync(file, text);
  return file;
}

// Writes the file in place (truncated, then written part by part with a pause after each but the last).
async function writeInPlace(file: string, parts: readonly string[], pauseMs: number): Promise<void> {
  const fd = openSync(file, 'w');
  try {
    for (const [i, part] of parts.entries()) {
      if (i > 0) await sleep(pauseMs);
      writeSync(fd, part);
    }
  } finally {
    closeSync(fd);
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Watched {
  source: PolicySource;
  updates: string[];
  rejects: string[];
}

function watched(file: string, options: PolicyFileOptions): Watched {
  const updates: string[] = [];
  const rejects: string[] = [];
  const source = PolicySource.fromFile(file, {
    ...options,
    onUpdate: (event) => updates.push(event.hash),
    onReject: (event) => rejects.push(event.issues.map((issue) => issue.message).join('; ')),
  });
  return { source, updates, rejects };
}

// A session of the source asking for drop_db over and over until stopped: what it was answered, under which policy.
function keepChecking(source: PolicySource): () => Promise<{ checks: number; allowed: number; hashes: Set<string> }> {
  const session = source.session({ id: 'checker' });
  let stopped = false;
  let checks = 0;
  let allowed = 0;
  const hashes = new Set<string>();
  const running = (async () => {
    while (!stopped) {
      const decision = await session.checkTool('drop_db');
      checks++;
      hashes.add(decision.policyHash);
      if (decision.decision !== 'deny') allowed++;
      await sleep(1);
    }
  })();
  return async () => {
    stopped = true;
    await running;
    return { checks, allowed, hashes };
  };
}

// Runs `write` while a session asks for drop_db over and over: drop_db is never allowed, NEW is the one policy
// taken, and nothing is refused on the way.
async function onlyNewTaken(file: string, options: PolicyFileOptions, write: () => Promise<void>, what = 'the new policy'): Promise<void> {
  const { source, updates, rejects } = watched(file, options);
  try {
    const stop = keepChecking(source);
    await write();
    await waitFor(() => source.hash === newHash, what);
    const seen = await stop();
    expect(seen.allowed).toBe(0);
    expect(updates).toEqual([newHash]);
    expect(rejects).toEqual([]);
  } finally {
    source.close();
  }
}

describe('a watched policy file written in place', () => {
  it('written in parts with pauses longer than debounceMs: no part is ever taken, the whole file is', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, { debounceMs: 20, settleMs: 800 });
    try {
      expect(source.hash).toBe(oldHash);
      const stop = keepChecking(source);
      // Each pause is long enough for a reader that only waits debounceMs to take the part written so far.
      await writeInPlace(file, PARTS, 150);
      await waitFor(() => source.hash === newHash, 'the new policy');
      await sleep(50);
      const seen = await stop();
      expect(seen.checks).toBeGreaterThan(50);
      expect(seen.allowed).toBe(0);
      expect([...seen.hashes].sort()).toEqual([newHash, oldHash].sort());
      expect(updates).toEqual([newHash]);
      expect(rejects).toEqual([]);
      expect((await source.session().checkTool('drop_db')).decision).toBe('deny');
    } finally {
      source.close();
    }
  });

  it('emptied in place (truncated to zero, or only whitespace and comments) and left so: refused, the policy in force stays', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, { debounceMs: 10, settleMs: 100 });
    try {
      truncateSync(file, 0);
      await waitFor(() => rejects.length === 1, 'the refusal of the empty file');
      expect(rejects[0]).toMatch(/empty/);
      expect(source.hash).toBe(oldHash);
      expect((await source.session().checkTool('drop_db')).decision).toBe('deny');

      writeFileSync(file, '  \n\t\n');
      await waitFor(() => rejects.length === 2, 'the refusal of the blank file');
      writeFileSync(file, '# tools:\n#   block: [drop_db]\n');
      await waitFor(() => rejects.length === 3, 'the refusal of the comment-only file');
      expect(rejects.slice(1).every((message) => /empty/.test(message))).toBe(true);
      expect(source.hash).toBe(oldHash);
      expect(updates).toEqual([]);
      expect((await source.session().checkTool('drop_db')).decision).toBe('deny');
    } finally {
      source.close();
    }
  });

  it('truncated to zero and written after a pause: the empty file is never the policy, the written one is', async () => {
    const file = policyFile(OLD);
    // The empty file it went through is never read as a policy, so there is nothing to refuse either.
    await onlyNewTaken(file, { debounceMs: 20, settleMs: 800 }, () => writeInPlace(file, ['', NEW], 200));
  });

  it('a file that keeps changing is refused once settleTimeoutMs passes, never half-taken, and loads once it stops', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, { debounceMs: 10, settleMs: 300, settleTimeoutMs: 700 });
    try {
      const stop = keepChecking(source);
      const until = Date.now() + 1_800;
      while (Date.now() < until) {
        writeFileSync(file, `${PARTS[0]}${PARTS[1]}`);
        await sleep(5);
        writeFileSync(file, NEW);
        await sleep(5);
      }
      writeFileSync(file, FINAL);
      await waitFor(() => source.hash === finalHash, 'the final policy');
      const seen = await stop();
      expect(seen.allowed).toBe(0);
      expect(rejects.length).toBeGreaterThan(0);
      for (const message of rejects) expect(message).toMatch(/kept changing for 700 ms/);
      // Only ever a whole version (and no other than the last in practice): never the part without drop_db.
      for (const hash of updates) expect([newHash, finalHash]).toContain(hash);
      expect(updates.at(-1)).toBe(finalHash);
    } finally {
      source.close();
    }
  });

  it('renamed over with the default settling: reloaded', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, {});
    try {
      writeFileSync(`${file}.new`, NEW);
      renameSync(`${file}.new`, file);
      await waitFor(() => source.hash === newHash, 'the renamed-over policy');
      expect(updates).toEqual([newHash]);
      expect(rejects).toEqual([]);
    } finally {
      source.close();
    }
  });

  it('closed while a change settles: nothing is reloaded, then or after', async () => {
    const file = policyFile(OLD);
    const options = { debounceMs: 10, settleMs: 600 };
    const closed = watched(file, options);
    // A second source on the same file, left open, shows the change would have been taken.
    const open = watched(file, options);
    try {
      writeFileSync(file, NEW);
      // Past debounceMs: the file has been read once and the settling wait is running.
      await sleep(150);
      closed.source.close();
      await waitFor(() => open.source.hash === newHash, 'the open source to reload');
      writeFileSync(file, FINAL);
      await waitFor(() => open.source.hash === finalHash, 'the open source to reload again');
      await sleep(100);
      expect(closed.source.hash).toBe(oldHash);
      expect(closed.updates).toEqual([]);
      expect(closed.rejects).toEqual([]);
      closed.source.close();
    } finally {
      open.source.close();
    }
  });

  it('settling times that are not milliseconds are refused with a typed error', () => {
    const file = policyFile(OLD);
    for (const options of [{ settleMs: -1 }, { settleMs: Number.NaN }, { debounceMs: Infinity }, { settleTimeoutMs: '5' as never }, { settleMs: 500, settleTimeoutMs: 100 }]) {
      expect(() => PolicySource.fromFile(file, options), JSON.stringify(options)).toThrow(AgentPolicyError);
    }
    // Not watching: nothing to settle, the times are not read.
    expect(PolicySource.fromFile(file, { watch: false, settleMs: -1 }).hash).toBe(oldHash);
  });
});

describe('a watched policy file reached through a symlink', () => {
  it('the link swapped to another file (ln -sfn, rename of a new link over it): reloaded', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'v1'));
    mkdirSync(join(dir, 'v2'));
    writeFileSync(join(dir, 'v1', 'policy.yaml'), OLD);
    writeFileSync(join(dir, 'v2', 'policy.yaml'), NEW);
    const file = join(dir, 'policy.yaml');
    symlinkSync('v1/policy.yaml', file);
    const { source, updates } = watched(file, { debounceMs: 10, settleMs: 100 });
    try {
      symlinkSync('v2/policy.yaml', `${file}.tmp`);
      renameSync(`${file}.tmp`, file);
      await waitFor(() => source.hash === newHash, 'the policy the link now names');
      expect(updates).toEqual([newHash]);
    } finally {
      source.close();
    }
  });

  it('a link into a directory link that is swapped (a Kubernetes ConfigMap volume): reloaded', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, '..2026_01'));
    mkdirSync(join(dir, '..2026_02'));
    writeFileSync(join(dir, '..2026_01', 'policy.yaml'), OLD);
    writeFileSync(join(dir, '..2026_02', 'policy.yaml'), NEW);
    symlinkSync('..2026_01', join(dir, '..data'));
    const file = join(dir, 'policy.yaml');
    symlinkSync('..data/policy.yaml', file);
    const { source, updates, rejects } = watched(file, { debounceMs: 10, settleMs: 100 });
    try {
      expect(source.hash).toBe(oldHash);
      symlinkSync('..2026_02', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      await waitFor(() => source.hash === newHash, 'the policy of the new ConfigMap version');
      expect(updates).toEqual([newHash]);
      expect(rejects).toEqual([]);
    } finally {
      source.close();
    }
  });
});

describe('a watched policy file written while the source starts', () => {
  it('the rest written between the first read and the start of the watch: the whole file is loaded, not the part', async () => {
    const file = policyFile(`${PARTS[0]}${PARTS[1]}`);
    fsHooks.beforeWatch = () => writeFileSync(file, NEW);
    const { source, updates } = watched(file, { debounceMs: 10, settleMs: 100 });
    try {
      expect(source.hash).not.toBe(newHash);
      await waitFor(() => source.hash === newHash, 'the whole file');
      expect(updates).toEqual([newHash]);
      expect((await source.session().checkTool('drop_db')).decision).toBe('deny');
    } finally {
      source.close();
    }
  });

  it('a file that does not change after the start is read once more and changes nothing', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, { debounceMs: 10, settleMs: 50 });
    try {
      await sleep(400);
      expect(source.hash).toBe(oldHash);
      expect(updates).toEqual([]);
      expect(rejects).toEqual([]);
    } finally {
      source.close();
    }
  });
});

describe('other writers of a watched policy file', () => {
  it('a writer that puts the modification time back after each part: the bytes differ, no part is taken', async () => {
    const file = policyFile(OLD);
    const { atime, mtime } = statSync(file);
    await onlyNewTaken(file, { debounceMs: 20, settleMs: 800 }, async () => {
      const fd = openSync(file, 'w');
      try {
        for (const [i, part] of PARTS.entries()) {
          if (i > 0) await sleep(150);
          writeSync(fd, part);
          utimesSync(file, atime, mtime);
        }
      } finally {
        closeSync(fd);
      }
    });
  });

  it('a part renamed over while an in-place write settles: only the finished file is taken', async () => {
    const file = policyFile(OLD);
    await onlyNewTaken(
      file,
      { debounceMs: 20, settleMs: 600 },
      async () => {
        await writeInPlace(file, [PARTS[0] as string], 0);
        await sleep(150);
        writeFileSync(`${file}.new`, NEW);
        renameSync(`${file}.new`, file);
      },
      'the renamed-over policy',
    );
  });

  it('deleted and left so: refused once, the policy in force stays; recreated: loaded', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, { debounceMs: 10, settleMs: 100 });
    try {
      unlinkSync(file);
      await waitFor(() => rejects.length === 1, 'the refusal of the missing file');
      expect(rejects[0]).toMatch(/cannot read/);
      await sleep(300);
      expect(rejects).toHaveLength(1);
      expect((await source.session().checkTool('drop_db')).decision).toBe('deny');
      writeFileSync(file, NEW);
      await waitFor(() => source.hash === newHash, 'the recreated policy');
      expect(updates).toEqual([newHash]);
    } finally {
      source.close();
    }
  });

  it('invalid versions written on the way to a valid one within settleMs: no refusal, no flood, the valid one loads', async () => {
    const file = policyFile(OLD);
    const { source, updates, rejects } = watched(file, { debounceMs: 10, settleMs: 400 });
    try {
      for (let i = 0; i < 20; i++) {
        writeFileSync(file, i % 2 === 0 ? 'tools: [' : 'tools:\n  block: {');
        await sleep(5);
      }
      writeFileSync(file, NEW);
      await waitFor(() => source.hash === newHash, 'the valid policy');
      expect(updates).toEqual([newHash]);
      expect(rejects).toEqual([]);
    } finally {
      source.close();
    }
  });
});
