import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AgentPolicyError, assertPolicyTests, loadPolicyTests, PolicyValidationError, runPolicyTests } from './index.js';
import { main } from './run-cli.js';
import { useTempDirs } from './test-support/temp-dirs.js';

const examples = fileURLToPath(new URL('../../../examples', import.meta.url));
const fixtures = fileURLToPath(new URL('../test-data/policy-tests', import.meta.url));

async function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, (line) => out.push(line), (line) => err.push(line));
  return { code, out, err };
}

const tempDir = useTempDirs('agentpolicy-ptest-');

describe('agentpolicy test', () => {
  it("passes the examples' policy tests (every test file under examples/)", async () => {
    const report = await assertPolicyTests(examples);
    expect(report.files.length).toBeGreaterThan(0);
    expect(report.failed).toBe(0);
    expect(report.passed).toBeGreaterThanOrEqual(10);
    const { code, out } = await cli(['test', examples]);
    expect(code).toBe(0);
    expect(out.at(-1)).toBe(`${report.passed} passed, 0 failed`);
  });

  it('fails the failing fixture, showing the diff of expected and actual for each failed case', async () => {
    const { code, out } = await cli(['test', join(fixtures, 'failing.test.yaml')]);
    expect(code).toBe(1);
    const text = out.join('\n');
    expect(out.slice(1)).toEqual([
      '  ✓ blocked tool is denied',
      '  ✗ e-mail goes out without approval',
      '      tool send_email',
      '        - decision: allow',
      '        + decision: require_approval',
      `          reason: ${JSON.stringify('tool "send_email" requires approval (approval.require_for[0] {"tool":"send_email"})')}`,
      '  ✗ budget allows six dollars',
      '      step 2: tool read_file',
      '        - decision: allow',
      '        + decision: deny',
      '        - rule: default',
      '        + rule: budget.max_spend',
      `          reason: ${JSON.stringify('cost $1.00 exceeds the remaining budget $0.00 (max_spend $5.00, spent $5.00)')}`,
      '1 passed, 2 failed',
    ]);
    expect(text).not.toContain('undefined');
    await expect(assertPolicyTests(join(fixtures, 'failing.test.yaml'))).rejects.toThrow(/- decision: allow\n\s+\+ decision: require_approval/);
  });

  it('--json gives every case with expected, actual and diff', async () => {
    const { code, out } = await cli(['test', '--json', join(fixtures, 'failing.test.yaml')]);
    expect(code).toBe(1);
    const report = JSON.parse(out.join('\n'));
    expect(report).toMatchObject({ passed: 1, failed: 2, ok: false });
    expect(report.files[0].cases[1].steps[0]).toMatchObject({
      expected: { decision: 'allow' },
      actual: { decision: 'require_approval', rule: 'approval[0]' },
      ok: false,
    });
  });

  it('catches a policy change: the same tests against a policy that no longer blocks the database fail', async () => {
    const dir = tempDir();
    copyFileSync(join(examples, 'quickstart', 'policy.test.yaml'), join(dir, 'policy.test.yaml'));
    writeFileSync(join(dir, 'policy.yaml'), readFileSync(join(examples, 'quickstart', 'policy.yaml'), 'utf8').replace('block: [delete_prod_db]', 'block: []').replace('allow: [search_docs, read_file, send_email]', 'allow: [search_docs, read_file, send_email, delete_prod_db]'));
    const report = await runPolicyTests(dir);
    expect(report.failed).toBe(1);
    expect(report.files[0]?.cases.find((c) => !c.ok)?.name).toBe('the production database can never be dropped');
  });

  it('a malformed test file is a failure naming every problem, never a silent pass', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'policy.yaml'), 'tools:\n  block: [x]\n');
    writeFileSync(
      join(dir, 'policy.test.yaml'),
      'cases:\n  - name: a\n    tool: x\n    expect: denied\n  - name: a\n    tool: y\n    http: https://e.com\n    expect: deny\n  - tool: z\n    expect: allow\n    extra: 1\n',
    );
    expect(() => loadPolicyTests(join(dir, 'policy.test.yaml'))).toThrow(PolicyValidationError);
    const { code, out } = await cli(['test', dir]);
    expect(code).toBe(1);
    const text = out.join('\n');
    expect(text).toContain('cases[0].expect: expect must be one of allow, deny, require_approval');
    expect(text).toContain('another case is already named "a"');
    expect(text).toContain('cases[1]: a step is one action');
    expect(text).toContain('cases[2].name');
    expect(text).toContain('cases[2].extra');
    expect(out.at(-1)).toBe('0 passed, 1 failed');

    writeFileSync(join(dir, 'policy.test.yaml'), 'policy: missing.yaml\ncases:\n  - { name: a, tool: x, expect: deny }\n');
    expect(() => loadPolicyTests(join(dir, 'policy.test.yaml'))).toThrow(AgentPolicyError);
    expect((await cli(['test', dir])).code).toBe(1);
    writeFileSync(join(dir, 'policy.test.yaml'), 'cases: []\n');
    expect((await cli(['test', dir])).code).toBe(1);
  });

  it('no test files, or a path that does not exist, is not a pass', async () => {
    const dir = tempDir();
    const empty = await cli(['test', dir]);
    expect(empty.code).toBe(1);
    expect(empty.out).toContain('no policy test files found (*.test.yaml)');
    expect((await cli(['test', join(dir, 'nope')])).code).toBe(2);
  });
});
