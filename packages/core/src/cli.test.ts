import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from './run-cli.js';
import { policyJsonSchema } from './json-schema.js';

const SEED = fileURLToPath(new URL('../../../examples/quickstart/policy.yaml', import.meta.url));

async function run(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, (line) => out.push(line), (line) => err.push(line));
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'agentpolicy-cli-')), 'policy.yaml');
  writeFileSync(path, text);
  return path;
}

describe('agentpolicy CLI', () => {
  it('validate: exit 0 and one line for a valid file', async () => {
    const result = await run('validate', SEED);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')).toHaveLength(1);
    expect(result.stdout).toContain('valid policy');
  });

  it('validate: exit 1 listing every issue as path: message, no stack trace', async () => {
    const result = await run('validate', file('tools:\n  alow: [a]\nbudget:\n  max_spend: "5 USD"\n'));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('tools.alow: unknown key "alow"; did you mean "allow"?');
    expect(result.stderr).toContain('budget.max_spend: must be an amount');
    expect(result.stderr).not.toMatch(/\bat .*\.js:\d+/);
  });

  it('explain prints machine-readable JSON', async () => {
    const result = await run('explain', SEED);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json).toMatchObject({ budget: { max_spend: 5 }, tools: { block: ['delete_prod_db'] }, approval: { require_for: [{ tool: 'send_email' }, { cost_gt: 1 }] } });
    expect(json.checks).toContain('checkHttp');
  });

  it('explain --tool/--url shows which rules and limits an action meets', async () => {
    const RULES = fileURLToPath(new URL('../../../examples/rules/policy.yaml', import.meta.url));
    const refund = await run('explain', RULES, '--tool', 'refund', '--input', '{"amount": 250}');
    expect(refund.code).toBe(0);
    const json = JSON.parse(refund.stdout);
    expect(json.decision).toMatchObject({ decision: 'allow', shadow: { decision: 'require_approval', rule: { section: 'rules', index: 1 } } });
    expect(json.rules.filter((rule: { applies: boolean }) => rule.applies).map((rule: { index: number }) => rule.index)).toEqual([1]);
    expect(json.limits.map((limit: { counts: boolean }) => limit.counts)).toEqual([false, true]);

    const post = JSON.parse((await run('explain', RULES, '--url', 'https://api.github.com/x', '--method', 'post')).stdout);
    expect(post.rules[3]).toMatchObject({ deny: 'writes to GitHub', selects: true, applies: true, mode: 'shadow' });

    expect((await run('explain', RULES, '--tool', 'refund', '--input', '{oops')).code).toBe(2);
    expect((await run('explain', RULES, '--tool', 'a', '--url', 'https://x.com')).code).toBe(2);
    expect((await run('explain', RULES, '--input', '{}')).code).toBe(2);
    const plain = JSON.parse((await run('explain', RULES)).stdout);
    expect(plain).toMatchObject({ mode: 'shadow', limits: [{ index: 0, tool: 'search', max_calls: 5, per: '1m' }, { index: 1, scope: 'budget' }] });
  });

  it('demo runs a session and prints the report', async () => {
    const result = await run('demo', SEED);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ sessionId: 'demo', budget: 5, policyHits: { deniedTools: ['delete_prod_db', 'unlisted_tool'], deniedDomains: ['twitter.com', 'example.org'] } });
    expect(report.policyHits.approvalRequired).toContain('send_email');
    expect(report.endedAt).not.toBeNull();
  });

  it('schema prints the JSON Schema', async () => {
    const result = await run('schema');
    expect(JSON.parse(result.stdout)).toEqual(JSON.parse(JSON.stringify(policyJsonSchema)));
  });

  it('unknown commands and missing files exit 2 with a clear message', async () => {
    expect(await run('frobnicate')).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown command "frobnicate"') });
    expect(await run('validate', '/no/such/policy.yaml')).toMatchObject({ code: 2, stderr: expect.stringContaining('no such file') });
    expect(await run()).toMatchObject({ code: 2 });
  });

  it('the built binary: --help, --version and exit codes', () => {
    const bin = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('validate <file>');
    const version = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' });
    expect(version.stdout).toMatch(/\d+\.\d+\.\d+/);
    const invalid = spawnSync(process.execPath, [bin, 'validate', file('budget: {max_spend: -1}\n')], { encoding: 'utf8' });
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toContain('budget.max_spend: must not be negative');
    const missing = spawnSync(process.execPath, [bin, 'explain', '/no/file.yaml'], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
  });
});
