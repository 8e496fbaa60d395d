import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog, GENESIS_HASH, recordHash, type AuditDecisionRecord, type AuditRecord } from './audit-log.js';
import { readAuditLog } from './audit-report.js';
import { verifyAuditLog } from './audit-verify.js';
import { AgentPolicyError } from './errors.js';
import { AgentPolicy } from './policy.js';
import { sourceChildScript, SOURCE_CHILD_ARGS } from './test-support/source-child.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentpolicy-audit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const policy = () =>
  AgentPolicy.fromDict({
    budget: { max_spend: 5 },
    tools: { allow: ['search_docs', 'send_email'], block: ['delete_*'] },
    network: { allow: ['docs.python.org'] },
    approval: { require_for: [{ tool: 'send_email' }] },
    pricing: { 'mock-model': { input: 10, output: 20 } },
  });

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean);
const records = (path: string) => lines(path).map((line) => JSON.parse(line) as AuditRecord);

/** Writes a log with an open record and `n` decisions (alternating allow and deny). */
async function writeLog(path: string, n: number, key?: string): Promise<void> {
  const log = createAuditLog(path, key === undefined ? {} : { key });
  const session = policy().session({ id: 'gen', sinks: [log] });
  for (let i = 0; i < n; i++) await session.checkTool(i % 2 ? 'delete_prod' : 'search_docs', { cost: i % 2 ? 0 : 0.01 });
  log.close();
}

/** Rewrites a line with its hash recomputed (what someone editing an unkeyed log carefully would do). */
function rehash(line: string, key?: string): string {
  const body = line.replace(/,"hash":"[0-9a-f]{64}"\}$/, '}');
  return `${body.slice(0, -1)},"hash":"${recordHash(body, key)}"}`;
}

describe('audit log', () => {
  it('writes one chained line per decision and settlement, with what a re-decision needs', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    const p = policy();
    const session = p.session({ id: 'run-1', sinks: [log] });
    await session.checkTool('search_docs', { cost: 0.02, metadata: { toolCallId: 'c1', input: { q: 'pricing' } } });
    await session.checkTool('delete_prod');
    await session.checkHttp('https://docs.python.org/3/', { method: 'get' });
    await session.checkTool('send_email');
    const call = await session.reserveModelCall({ model: 'mock-model', inputTokens: 1000, maxOutputTokens: 1000 });
    await call.commit({ inputTokens: 1000, outputTokens: 100 });
    log.close();

    const all = records(path);
    expect(all.map((r) => r.kind)).toEqual(['open', 'decision', 'decision', 'decision', 'decision', 'decision', 'settlement']);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all[0]!.prev).toBe(GENESIS_HASH);
    for (let i = 1; i < all.length; i++) expect(all[i]!.prev).toBe(all[i - 1]!.hash);
    const first = all[1] as AuditDecisionRecord;
    // The ledger as the record was written: this decision's own charge is still held (reserved) at that moment.
    expect(first).toMatchObject({ sessionId: 'run-1', policyHash: p.hash, budget: 5, remaining: 4.98 });
    expect(first.decision).toMatchObject({
      decision: 'allow',
      reason: expect.any(String),
      rule: { section: 'default' },
      action: { type: 'tool', name: 'search_docs', cost: 0.02, metadata: { toolCallId: 'c1', input: { q: 'pricing' } } },
      sessionId: 'run-1',
      timestamp: expect.any(String),
    });
    expect((all[2] as AuditDecisionRecord).decision).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block', entry: 'delete_*' } });
    expect((all[3] as AuditDecisionRecord).decision.action).toMatchObject({ type: 'http', domain: 'docs.python.org', method: 'GET' });
    expect((all[4] as AuditDecisionRecord).decision.decision).toBe('require_approval');
    expect(all[6]).toMatchObject({ kind: 'settlement', decisionId: (all[5] as AuditDecisionRecord).decision.id, settlement: { status: 'committed', estimated: 0.03, actual: 0.012 } });
    expect(verifyAuditLog(path)).toMatchObject({ ok: true, records: 7, firstSeq: 1, lastSeq: 7, head: all[6]!.hash, breaks: [], partial: null });
  });

  it('continues the chain when reopened, and keeps a second writer out', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    expect(() => createAuditLog(path)).toThrow(expect.objectContaining({ code: 'AUDIT_LOG_LOCKED' }));
    await policy().session({ sinks: [log] }).checkTool('search_docs');
    const head = log.head;
    log.close();
    expect(existsSync(`${path}.lock`)).toBe(false);
    const again = createAuditLog(path);
    await policy().session({ sinks: [again] }).checkTool('delete_x');
    again.close();
    const all = records(path);
    expect(all.map((r) => r.kind)).toEqual(['open', 'decision', 'open', 'decision']);
    expect(all[2]).toMatchObject({ seq: head.seq + 1, prev: head.hash });
    expect(verifyAuditLog(path).ok).toBe(true);
  });

  it('an action the log could not record does not go ahead (a deny under the error rule), unless told to only warn', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    log.close();
    const session = policy().session({ sinks: [log] });
    const decision = await session.checkTool('search_docs', { cost: 0.5 });
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'error' } });
    expect(decision.reason).toContain('is closed');
    expect(session.spent).toBe(0);
    const lenient = policy().session({ sinks: [log], onDecisionError: 'warn' });
    expect((await lenient.checkTool('search_docs', { cost: 0.5 })).decision).toBe('allow');
  });

  it('refuses to continue a file whose last line is not a record', () => {
    const path = join(dir, 'audit.jsonl');
    writeFileSync(path, 'hello\n');
    expect(() => createAuditLog(path)).toThrow(expect.objectContaining({ code: 'AUDIT_LOG_INVALID' }));
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it('writes a record whatever the metadata holds (cycles, BigInts)', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    const cyclic: Record<string, unknown> = { n: 10n };
    cyclic['self'] = cyclic;
    await policy().session({ sinks: [log] }).checkTool('search_docs', { metadata: cyclic });
    await policy().session({ sinks: [log] }).checkTool('search_docs', { metadata: { n: 10n } });
    log.close();
    const all = records(path) as AuditDecisionRecord[];
    expect(all.map((r) => r.kind)).toEqual(['open', 'decision', 'decision']);
    expect(JSON.stringify(all[1]!.decision.action.metadata)).toContain('n');
    expect(all[2]!.decision.action.metadata).toHaveProperty('n');
    expect(verifyAuditLog(path).ok).toBe(true);
  });

  it('rotates by size; the files chain into each other and verify together', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path, { maxBytes: 2048 });
    const session = policy().session({ id: 'rot', sinks: [log] });
    for (let i = 0; i < 40; i++) await session.checkTool(i % 2 ? 'delete_prod' : 'search_docs');
    log.close();
    const rotated = readdirSync(dir).filter((name) => /^audit\.\d+\.jsonl$/.test(name)).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
    expect(rotated.length).toBeGreaterThan(3);
    const files = [...rotated.map((name) => join(dir, name)), path];
    for (const file of files) expect(readFileSync(file).length).toBeLessThanOrEqual(2048);
    const result = verifyAuditLog(files);
    expect(result).toMatchObject({ ok: true, firstSeq: 1, continuesFrom: null });
    expect(result.lastSeq).toBe(records(path).at(-1)!.seq);
    // The newest file alone verifies and says it continues another.
    const alone = verifyAuditLog(path);
    expect(alone.ok).toBe(true);
    expect(alone.continuesFrom).toBe(records(files.at(-2)!).at(-1)!.hash);
    expect(records(path)[0]).toMatchObject({ kind: 'open', rotatedFrom: rotated.at(-1) });
    // A rotated file that goes missing is a deletion.
    const gap = verifyAuditLog([files[0]!, ...files.slice(2)]);
    expect(gap.ok).toBe(false);
    expect(gap.breaks[0]).toMatchObject({ kind: 'deleted', file: files[2], line: 1 });
    // The report reads all files as one session.
    expect(readAuditLog(files).sessions[0]?.decisionSummary).toMatchObject({ total: 40, allow: 20, deny: 20 });
  });

  describe('verify catches each kind of tampering', () => {
    let path: string;
    let original: string[];
    beforeEach(async () => {
      path = join(dir, 'audit.jsonl');
      await writeLog(path, 10);
      original = lines(path);
      expect(original).toHaveLength(11);
    });
    const tamper = (edit: (l: string[]) => string[]) => {
      const out = join(dir, 'tampered.jsonl');
      writeFileSync(out, `${edit([...original]).join('\n')}\n`);
      return verifyAuditLog(out);
    };

    it('an intact log verifies', () => {
      expect(verifyAuditLog(path)).toMatchObject({ ok: true, records: 11, breaks: [] });
    });

    it('an edited line', () => {
      const result = tamper((l) => {
        l[4] = l[4]!.replace('"decision":"deny"', '"decision":"allow"');
        return l;
      });
      expect(result.ok).toBe(false);
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'edited', line: 5, seq: 5 })]);
    });

    it('an edited line with its hash recomputed', () => {
      const result = tamper((l) => {
        l[4] = rehash(l[4]!.replace('"decision":"deny"', '"decision":"allow"'));
        return l;
      });
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'edited', line: 6, seq: 6 })]);
    });

    it('a deleted line', () => {
      const result = tamper((l) => l.filter((_, i) => i !== 4));
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'deleted', line: 5, seq: 6 })]);
      expect(result.breaks[0]?.message).toContain('seq 5 is missing');
    });

    it('several deleted lines', () => {
      const result = tamper((l) => l.filter((_, i) => i < 3 || i > 6));
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'deleted', line: 4, seq: 8 })]);
      expect(result.breaks[0]?.message).toContain('4 records deleted');
    });

    it('reordered lines', () => {
      const result = tamper((l) => {
        [l[4], l[5]] = [l[5]!, l[4]!];
        return l;
      });
      expect(result.ok).toBe(false);
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'reordered', line: 5, seq: 6 })]);
    });

    it('a line moved far down', () => {
      const result = tamper((l) => {
        const [moved] = l.splice(2, 1);
        l.splice(8, 0, moved!);
        return l;
      });
      expect(result.ok).toBe(false);
      expect(result.breaks.map((b) => b.kind)).toContain('reordered');
      expect(result.breaks.every((b) => b.kind === 'reordered')).toBe(true);
    });

    it('an inserted copy of a line', () => {
      const result = tamper((l) => {
        l.splice(7, 0, l[3]!);
        return l;
      });
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'inserted', line: 8, seq: 4 })]);
      expect(result.breaks[0]?.message).toContain('copy');
    });

    it('an inserted forged line that links to the one before it', () => {
      const result = tamper((l) => {
        // A copy of line 7 (seq 7, linking to line 6) turned from a deny into an allow, hash recomputed.
        const forged = rehash(l[6]!.replace('"decision":"deny"', '"decision":"allow"'));
        expect(forged).not.toBe(l[6]);
        l.splice(6, 0, forged);
        return l;
      });
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'inserted', line: 7, seq: 7 })]);
    });

    it('deleted first lines (the file no longer starts with the record that opened it)', () => {
      const result = tamper((l) => l.slice(2));
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'deleted', line: 1, seq: 3 })]);
    });

    it('any single deletion (but of the last line), move, copy or changed character is caught', () => {
      const n = original.length;
      const op = fc.oneof(
        fc.record({ kind: fc.constant('delete' as const), at: fc.integer({ min: 0, max: n - 2 }) }),
        fc.record({ kind: fc.constant('move' as const), from: fc.integer({ min: 0, max: n - 1 }), to: fc.integer({ min: 0, max: n - 1 }) }).filter((m) => m.from !== m.to),
        fc.record({ kind: fc.constant('copy' as const), from: fc.integer({ min: 0, max: n - 1 }), to: fc.integer({ min: 0, max: n }) }),
        fc.record({ kind: fc.constant('char' as const), line: fc.integer({ min: 0, max: n - 1 }), at: fc.nat(), to: fc.constantFrom('0', '7', 'a', 'f', 'x', '"', ' ', '}') }),
      );
      fc.assert(
        fc.property(op, (change) => {
          let same = false;
          const edited = tamper((l) => {
            if (change.kind === 'delete') l.splice(change.at, 1);
            else if (change.kind === 'move') l.splice(change.to, 0, ...l.splice(change.from, 1));
            else if (change.kind === 'copy') l.splice(change.to, 0, l[change.from]!);
            else {
              const line = l[change.line]!;
              const at = change.at % line.length;
              same = line[at] === change.to;
              l[change.line] = line.slice(0, at) + change.to + line.slice(at + 1);
            }
            return l;
          });
          // A character replaced by itself leaves the file as it was; everything else must break the chain.
          expect(edited.ok).toBe(same);
        }),
        { numRuns: 300 },
      );
    });

    it('a line that is not a record', () => {
      const result = tamper((l) => {
        l.splice(3, 0, '{"note":"hello"}');
        return l;
      });
      expect(result.breaks).toEqual([expect.objectContaining({ kind: 'malformed', line: 4 })]);
    });

    it('a keyed log: a rewrite without the key is caught, and verifying needs the key', async () => {
      const keyed = join(dir, 'keyed.jsonl');
      await writeLog(keyed, 4, 'secret');
      expect(verifyAuditLog(keyed, { key: 'secret' })).toMatchObject({ ok: true, keyed: true });
      expect(verifyAuditLog(keyed).breaks[0]).toMatchObject({ kind: 'key_required' });
      const l = lines(keyed);
      l[2] = rehash(l[2]!.replace('"decision":"deny"', '"decision":"allow"'));
      writeFileSync(keyed, `${l.join('\n')}\n`);
      expect(verifyAuditLog(keyed, { key: 'secret' }).breaks[0]).toMatchObject({ kind: 'edited', line: 3 });
    });
  });

  describe('crashes', () => {
    it('an incomplete last line is reported as partial, and cut (and recorded) when the log is reopened', async () => {
      const path = join(dir, 'audit.jsonl');
      await writeLog(path, 3);
      const whole = lines(path);
      const torn = whole[2]!.slice(0, 40);
      appendFileSync(path, torn);
      const result = verifyAuditLog(path);
      expect(result).toMatchObject({ ok: true, records: 4, lastSeq: 4, partial: { line: 5, bytes: 40 } });

      const log = createAuditLog(path);
      log.close();
      const all = records(path);
      expect(all).toHaveLength(5);
      expect(all[4]).toMatchObject({ kind: 'open', seq: 5, prev: all[3]!.hash, recovered: { bytes: 40 } });
      expect(verifyAuditLog(path)).toMatchObject({ ok: true, partial: null, lastSeq: 5 });
    });

    it('a writer killed mid-run (SIGKILL) leaves a log that verifies up to its last whole line, and the next writer takes over', async () => {
      const path = join(dir, 'audit.jsonl');
      // The child imports the TypeScript sources directly (Node's type transform, `.js` specifiers mapped to `.ts`).
      const script = sourceChildScript(`
        const log = createAuditLog(${JSON.stringify(path)});
        const session = AgentPolicy.fromDict({ tools: { block: ['delete_*'] } }).session({ id: 'child', sinks: [log], maxDecisions: 0 });
        const big = 'x'.repeat(20000);
        process.stdout.write('ready\\n');
        for (let i = 0; ; i++) await session.checkTool(i % 2 ? 'delete_prod' : 'search', { metadata: { i, big } });
      `);
      const child = spawn(process.execPath, [...SOURCE_CHILD_ARGS, script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += String(chunk)));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk) => String(chunk).includes('ready') && resolve());
        child.on('exit', (code) => reject(new Error(`child exited ${code}: ${stderr}`)));
      });
      // Let it write for a while, then kill it without warning.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGKILL');
      await exited;

      expect(existsSync(`${path}.lock`)).toBe(true);
      const result = verifyAuditLog(path);
      expect(result.ok).toBe(true);
      expect(result.breaks).toEqual([]);
      expect(result.lastSeq).toBeGreaterThan(10);
      if (result.partial) expect(result.partial.line).toBe(result.records + 1);

      // The lock of the dead writer is taken over; the chain continues from the last whole line.
      const log = createAuditLog(path);
      log.close();
      const after = verifyAuditLog(path);
      expect(after).toMatchObject({ ok: true, partial: null, lastSeq: (result.lastSeq ?? 0) + 1 });
    });
  });

  it('rejects bad options with typed errors', () => {
    expect(() => createAuditLog('')).toThrow(AgentPolicyError);
    expect(() => createAuditLog(join(dir, 'a.jsonl'), { maxBytes: 10 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => createAuditLog(join(dir, 'missing', 'a.jsonl'))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
