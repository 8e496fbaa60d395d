import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from './audit-log.js';
import { AgentPolicy } from './policy.js';
import { main } from './run-cli.js';

async function run(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, (line) => out.push(line), (line) => err.push(line));
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

let dir: string;
let path: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentpolicy-cli-audit-'));
  path = join(dir, 'audit.jsonl');
  const log = createAuditLog(path);
  const session = AgentPolicy.fromDict({ budget: { max_spend: 2 }, tools: { block: ['delete_*'] }, approval: { require_for: [{ tool: 'send_email' }] } }).session({ id: 'cli', sinks: [log] });
  await session.checkTool('search', { cost: 0.5 });
  await session.checkTool('delete_prod');
  await session.checkTool('send_email');
  log.close();
});

describe('agentpolicy audit verify', () => {
  it('exit 0 for an intact log, with its head', async () => {
    const result = await run('audit', 'verify', path);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/audit\.jsonl: intact, 4 records \(seq 1–4\), head [0-9a-f]{64}/);
  });

  it('exit 1 naming the line and the kind of tampering', async () => {
    const lines = readFileSync(path, 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"decision":"deny"', '"decision":"allow"');
    const edited = join(dir, 'edited.jsonl');
    writeFileSync(edited, lines.join('\n'));
    const result = await run('audit', 'verify', edited);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('chain broken, 1 problem');
    expect(result.stdout).toContain('edited.jsonl:3: edited: line 3 (seq 3) was changed after it was written');
  });

  it('reports a cut-off last line without failing', async () => {
    const torn = join(dir, 'torn.jsonl');
    writeFileSync(torn, `${readFileSync(path, 'utf8')}{"v":1,"seq":5,"pre`);
    const result = await run('audit', 'verify', torn);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('torn.jsonl:5: partial: the last line is incomplete');
  });

  it('verifies a keyed log with the key from the environment, and says when it is missing', async () => {
    const keyed = join(dir, 'keyed.jsonl');
    const log = createAuditLog(keyed, { key: 'k'.repeat(32) });
    await AgentPolicy.fromDict({}).session({ sinks: [log] }).checkTool('search');
    log.close();
    expect((await run('audit', 'verify', keyed)).stdout).toContain('key_required');
    process.env['TEST_AUDIT_KEY'] = 'k'.repeat(32);
    try {
      const result = await run('audit', 'verify', keyed, '--key-env', 'TEST_AUDIT_KEY');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('intact, 2 records');
      expect(result.stdout).toContain('(hmac-sha256)');
    } finally {
      delete process.env['TEST_AUDIT_KEY'];
    }
  });

  it('exit 2 for a missing file or an unknown audit command', async () => {
    expect((await run('audit', 'verify', join(dir, 'nope.jsonl'))).code).toBe(2);
    expect((await run('audit', 'verify')).code).toBe(2);
    const unknown = await run('audit', 'check', path);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown audit command "check"');
  });
});

describe('agentpolicy report', () => {
  it('prints the report of a log, and writes the HTML page with --html', async () => {
    const html = join(dir, 'report.html');
    const result = await run('report', path, '--html', html, '--decisions', '2');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('agentpolicy report: session cli');
    expect(result.stdout).toContain('budget $2.00: spent $0.50');
    expect(result.stdout).toContain('decisions 3: allow 1, deny 1, require_approval 1');
    expect(result.stdout).toContain('tools.block:delete_*');
    expect(result.stdout).toContain('last 2 decisions:');
    expect(result.stdout).toContain(`wrote ${html}`);
    expect(existsSync(html)).toBe(true);
    expect(readFileSync(html, 'utf8')).toContain('Spend against budget over time');
  });

  it('exit 2 for a missing file', async () => {
    expect((await run('report', join(dir, 'nope.jsonl'))).code).toBe(2);
  });
});
