import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog, GENESIS_HASH, recordHash, type AuditDecisionRecord, type AuditRecord } from './audit-log.js';
import { readAuditLog } from './audit-report.js';
import { verifyAuditLog } from './audit-verify.js';
import { AgentPolicyError } from './errors.js';
import { formatDecision, formatReport } from './format-report.js';
import { AgentPolicy } from './policy.js';
import { formatReplayReport, replayAuditLog } from './replay.js';
import { main } from './run-cli.js';
import { sourceChildScript, SOURCE_CHILD_ARGS } from './test-support/source-child.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentpolicy-audit-attack-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean);
const records = (path: string) => lines(path).map((line) => JSON.parse(line) as AuditRecord);
const decisions = (path: string) => records(path).filter((record): record is AuditDecisionRecord => record.kind === 'decision');


/** Runs `body` in a child Node process that imports the TypeScript sources; `shell` wraps it (e.g. a ulimit). */
function runChild(body: string, shell = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const args = [...SOURCE_CHILD_ARGS, sourceChildScript(body)];
  const child =
    shell === ''
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('bash', ['-c', `${shell}; exec "$0" "$@"`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += String(chunk)));
  child.stderr.on('data', (chunk) => (stderr += String(chunk)));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('audit log: nothing recorded is lost', () => {
  it('a process that exits right after a decision (process.exit, no close) leaves the record on disk and no lock behind', async () => {
    const path = join(dir, 'audit.jsonl');
    const child = await runChild(`
      const log = createAuditLog(${JSON.stringify(path)});
      const session = AgentPolicy.fromDict({ tools: { block: ['delete_*'] } }).session({ id: 'exit', sinks: [log] });
      const a = await session.checkTool('search', { cost: 0.25 });
      const b = await session.checkTool('delete_prod');
      process.stdout.write(JSON.stringify([a.id, b.id]));
      process.exit(0);
    `);
    expect(child.stderr).toBe('');
    expect(child.code).toBe(0);
    const ids = JSON.parse(child.stdout) as string[];
    expect(decisions(path).map((record) => record.decision.id)).toEqual(ids);
    expect(verifyAuditLog(path)).toMatchObject({ ok: true, partial: null });
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it('a disk that fills up mid-run (EFBIG under a file-size limit): the decision it could not record is denied, nothing half-written stays, the chain verifies', async () => {
    const path = join(dir, 'audit.jsonl');
    // `ulimit -f 16`: the file may grow to 16 KiB, then every write fails as on a full disk (Node ignores SIGXFSZ).
    const child = await runChild(
      `
      const log = createAuditLog(${JSON.stringify(path)}, { maxBytes: 1024 * 1024 });
      const session = AgentPolicy.fromDict({ budget: { max_spend: 1000 } }).session({ id: 'full', sinks: [log] });
      const out = [];
      for (let i = 0; i < 200; i++) {
        const d = await session.checkTool('search', { cost: 0.01, metadata: { i, pad: 'p'.repeat(300) } });
        out.push({ id: d.id, decision: d.decision, section: d.rule.section });
      }
      process.stdout.write(JSON.stringify({ out, spent: session.spent }));
    `,
      'ulimit -f 16',
    );
    expect(child.code).toBe(0);
    const { out, spent } = JSON.parse(child.stdout) as { out: { id: string; decision: string; section: string }[]; spent: number };
    const allowed = out.filter((d) => d.decision === 'allow');
    const denied = out.filter((d) => d.decision === 'deny');
    expect(allowed.length).toBeGreaterThan(5);
    expect(denied.length).toBeGreaterThan(0);
    expect(denied.every((d) => d.section === 'error')).toBe(true);
    // Every allow that was handed out is in the log; no deny-because-unrecorded is presented as recorded.
    const logged = new Map(decisions(path).map((record) => [record.decision.id, record.decision.decision]));
    for (const d of allowed) expect(logged.get(d.id)).toBe('allow');
    // No money is held for actions that were refused because they could not be recorded.
    expect(spent).toBeCloseTo(allowed.length * 0.01, 9);
    // Whole lines only: the write that failed half-way was cut.
    expect(readFileSync(path, 'utf8').endsWith('\n')).toBe(true);
    expect(verifyAuditLog(path)).toMatchObject({ ok: true, partial: null, breaks: [] });
  });

  it('a directory where the log file should be: a typed error, no lock left behind', () => {
    const path = join(dir, 'audit.jsonl');
    mkdirSync(path);
    expect(() => createAuditLog(path)).toThrow(AgentPolicyError);
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it('a rotation that cannot rename (a directory in the way) denies what it could not record, and never closes or writes a descriptor the log no longer owns', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path, { maxBytes: 4096 });
    const session = AgentPolicy.fromDict({ tools: { allow: ['*'] } }).session({ id: 'rot', sinks: [log], maxDecisions: 0 });
    const pad = 'r'.repeat(600);
    // Something else already holds the name the first rotation uses.
    mkdirSync(join(dir, 'audit.1.jsonl'));
    let denied = 0;
    for (let i = 0; i < 12; i++) {
      const decision = await session.checkTool('search', { metadata: { i, pad } });
      if (decision.decision === 'deny') denied++;
    }
    expect(denied).toBeGreaterThan(0);
    // Another part of the application opens a file: it must not receive audit records, nor be closed by the log.
    const other = join(dir, 'other.txt');
    const fd = openSync(other, 'w+');
    try {
      rmSync(join(dir, 'audit.1.jsonl'), { recursive: true });
      for (let i = 0; i < 12; i++) expect((await session.checkTool('search', { metadata: { i, pad } })).decision).toBe('allow');
      writeSync(fd, 'mine\n');
      const buffer = Buffer.alloc(64);
      const read = readSync(fd, buffer, 0, 64, 0);
      expect(buffer.toString('utf8', 0, read)).toBe('mine\n');
    } finally {
      closeSync(fd);
    }
    log.close();
    const rotated = readdirSync(dir)
      .filter((name) => /^audit\.\d+\.jsonl$/.test(name))
      .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
    expect(rotated.length).toBeGreaterThan(1);
    expect(verifyAuditLog([...rotated.map((name) => join(dir, name)), path])).toMatchObject({ ok: true, breaks: [] });
  });
});

describe('audit log: one record per line, whatever the action holds', () => {
  it('newlines, U+2028/U+2029, NEL, ANSI escapes and NULs in names, inputs and metadata stay inside one line, under any line-splitting reader', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    const session = AgentPolicy.fromDict({ tools: { block: ['delete_*'] } }).session({ id: 'lines', sinks: [log] });
    const nasty = 'a\nb\rc\u2028d\u2029e\u0085f\u000bg\u000ch\u001ci\u001dj\u001ek\u0000l\u001b[31mred\u001b]0;title\u0007';
    await session.checkTool(`delete_${nasty}`, { input: { [nasty]: nasty }, metadata: { note: nasty } });
    await session.checkTool(nasty, { input: [nasty] });
    log.close();
    const text = readFileSync(path, 'utf8');
    // JavaScript's own line terminators and those of Python's str.splitlines() are all escaped.
    // oxlint-disable-next-line no-control-regex -- control characters are what this matches
    expect(text.split(/\r\n|[\n\r\u000b\u000c\u001c\u001d\u001e\u0085\u2028\u2029]/).filter(Boolean)).toHaveLength(3);
    // oxlint-disable-next-line no-control-regex -- control characters are what this matches
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f\u0085\u2028\u2029]/);
    expect(verifyAuditLog(path)).toMatchObject({ ok: true, records: 3 });
    const [, first, second] = records(path) as [AuditRecord, AuditDecisionRecord, AuditDecisionRecord];
    expect(first.decision.action).toMatchObject({ type: 'tool', name: `delete_${nasty}` });
    expect(second.decision.action).toMatchObject({ type: 'tool', name: nasty });
  });
});

describe('terminal output never replays control sequences from a record', () => {
  const hostile = 'search\u001b[2K\r\u001b[32mallow\u001b[0m\u001b]52;c;cm0gLXJmIH4=\u0007\u009b31m\u202eevil';
  // oxlint-disable-next-line no-control-regex -- control characters are what this matches
  const control = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

  it('agentpolicy report and replay print a hostile tool name and reason as visible text', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    const policy = AgentPolicy.fromDict({ tools: { allow: ['search'] } });
    const session = policy.session({ id: `s\u001b[1m`, sinks: [log] });
    await session.checkTool(hostile, { input: { q: hostile } });
    await session.checkHttp(`https://example.com/${hostile}`);
    log.close();

    const out: string[] = [];
    const err: string[] = [];
    expect(await main(['report', path, '--decisions', '5'], (line) => out.push(line), (line) => err.push(line))).toBe(0);
    const printed = out.join('\n');
    expect(printed).toContain('deny');
    expect(printed).not.toMatch(control);
    expect(printed).toContain('\\u001b[2K');

    const report = readAuditLog(path).sessions[0]!;
    expect(formatReport(report, { decisions: 5 })).not.toMatch(control);
    expect(formatDecision(report.decisions[0]!)).not.toMatch(control);

    const replayed = formatReplayReport(replayAuditLog(path, AgentPolicy.fromDict({ tools: { allow: ['other'] } })), { source: path }).join('\n');
    expect(replayed).not.toMatch(control);
  });
});

describe('audit verify: what it proves', () => {
  async function writeLog(path: string, n: number, key?: string): Promise<void> {
    const log = createAuditLog(path, key === undefined ? {} : { key });
    const session = AgentPolicy.fromDict({ tools: { block: ['delete_*'] } }).session({ id: 'v', sinks: [log] });
    for (let i = 0; i < n; i++) await session.checkTool(i % 2 ? 'delete_prod' : 'search');
    log.close();
  }

  /** A whole log written from scratch by someone without the key: every hash recomputed, self-consistent. */
  function forge(path: string, from: readonly string[], change: (record: Record<string, unknown>) => void): void {
    let prev = GENESIS_HASH;
    const out = from.map((line) => {
      const record = JSON.parse(line) as Record<string, unknown>;
      delete record['hash'];
      record['prev'] = prev;
      if (record['kind'] === 'open') record['alg'] = 'sha256';
      change(record);
      const body = JSON.stringify(record);
      prev = recordHash(body, undefined);
      return `${body.slice(0, -1)},"hash":"${prev}"}`;
    });
    writeFileSync(path, `${out.join('\n')}\n`);
  }

  it('a keyed log replaced by a self-consistent forged chain fails verification with the key', async () => {
    const key = 'k'.repeat(32);
    const path = join(dir, 'audit.jsonl');
    await writeLog(path, 6, key);
    expect(verifyAuditLog(path, { key }).ok).toBe(true);
    forge(path, lines(path), (record) => {
      const decision = record['decision'] as { decision?: string } | undefined;
      if (decision?.decision === 'deny') decision.decision = 'allow';
    });
    const result = verifyAuditLog(path, { key });
    expect(result.ok).toBe(false);
    expect(result.breaks.length).toBeGreaterThan(0);
  });

  it('an unkeyed forged chain verifies without a key (what an unkeyed chain cannot prove), but not against a kept head', async () => {
    const path = join(dir, 'audit.jsonl');
    await writeLog(path, 6);
    const anchor = verifyAuditLog(path).head;
    forge(path, lines(path), (record) => {
      const decision = record['decision'] as { decision?: string } | undefined;
      if (decision?.decision === 'deny') decision.decision = 'allow';
    });
    const result = verifyAuditLog(path);
    expect(result.ok).toBe(true);
    expect(result.head).not.toBe(anchor);
  });

  it('a cut tail verifies but its head no longer matches the anchor kept elsewhere', async () => {
    const path = join(dir, 'audit.jsonl');
    await writeLog(path, 6);
    const anchor = verifyAuditLog(path).head;
    writeFileSync(path, `${lines(path).slice(0, -2).join('\n')}\n`);
    const result = verifyAuditLog(path);
    expect(result.ok).toBe(true);
    expect(result.head).not.toBe(anchor);
  });
});
