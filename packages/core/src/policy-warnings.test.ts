import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PolicyValidationError } from './errors.js';
import { AgentPolicy } from './policy.js';
import { validatePolicyDocument } from './policy-document.js';
import { main } from './run-cli.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/python-agentpolicy/${name}`, import.meta.url));
const SEED = fileURLToPath(new URL('../../../examples/quickstart/policy.yaml', import.meta.url));

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'agentpolicy-warnings-')), 'policy.yaml');
  writeFileSync(path, text);
  return path;
}

async function run(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, (line) => out.push(line), (line) => err.push(line));
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

const codes = (policy: AgentPolicy) => policy.warnings.map((warning) => `${warning.code} ${warning.path}`);

describe('policy warnings', () => {
  describe('max_spend 0', () => {
    it.each([['0'], ['0.0'], ['"0"'], ['"$0.00"']])('max_spend: %s warns, with the fix', (amount) => {
      const policy = AgentPolicy.fromYamlString(`budget:\n  max_spend: ${amount}\n`);
      expect(policy.warnings).toEqual([
        expect.objectContaining({ code: 'zero_budget', path: 'budget.max_spend', fix: expect.stringContaining('remove the budget section') }),
      ]);
    });

    it('the warning tells the truth: a zero budget denies every costed action, and the fix restores "no budget"', async () => {
      const zero = AgentPolicy.fromDict({ budget: { max_spend: 0 } }).session();
      expect((await zero.checkCost(0.01, { source: 'llm' })).decision).toBe('deny');
      expect((await zero.checkTool('search_docs')).decision).toBe('allow');
      const fixed = AgentPolicy.fromDict({}).session();
      expect((await fixed.checkCost(100, { source: 'llm' })).decision).toBe('allow');
    });

    it('the constructor form warns too; a real budget or none does not', () => {
      expect(codes(new AgentPolicy({ budget: 0 }))).toEqual(['zero_budget budget.max_spend']);
      expect(new AgentPolicy({ budget: '$0.01' }).warnings).toEqual([]);
      expect(new AgentPolicy({}).warnings).toEqual([]);
    });
  });

  describe('allow entries a block entry makes unreachable', () => {
    it('a host under a blocked domain warns, and really is denied; the fix gives the Python decisions back', async () => {
      const document = { network: { allow: ['docs.python.org', 'api.twitter.com'], block: ['twitter.com'] } };
      const policy = AgentPolicy.fromDict(document);
      expect(codes(policy)).toEqual(['allow_entry_blocked network.allow[1]']);
      expect(policy.warnings[0]?.message).toContain('api.twitter.com can never be reached');
      expect(policy.warnings[0]?.fix).toContain('remove the network.block entry "twitter.com"');
      const session = policy.session();
      expect((await session.checkHttp('https://api.twitter.com/2/tweets')).decision).toBe('deny');

      const fixed = AgentPolicy.fromDict({ network: { allow: document.network.allow } }).session();
      expect((await fixed.checkHttp('https://api.twitter.com/2/tweets')).decision).toBe('allow');
      expect((await fixed.checkHttp('https://twitter.com/home')).decision).toBe('deny');
      expect((await fixed.checkHttp('https://docs.python.org/3/')).decision).toBe('allow');
    });

    it('an allowed address or range that a block range covers whole warns; a range only partly covered does not', async () => {
      const policy = AgentPolicy.fromDict({ network: { allow: ['10.1.2.3', '10.1.0.0/16', '10.0.0.0/7', '172.16.0.0/12', '[::a00:1]'], block: ['10.0.0.0/8', '172.16.0.0/13'] } });
      expect(codes(policy)).toEqual(['allow_entry_blocked network.allow[0]', 'allow_entry_blocked network.allow[1]', 'allow_entry_blocked network.allow[4]']);
      expect(policy.warnings[0]?.message).toBe('10.1.2.3 can never be reached: network.block entry "10.0.0.0/8" covers that address');
      expect(policy.warnings[1]?.message).toBe('no address of 10.1.0.0/16 can be reached: network.block entry "10.0.0.0/8" covers that whole range');
      const session = policy.session();
      expect((await session.checkHttp('http://10.1.9.9/')).decision).toBe('deny');
      expect((await session.checkHttp('http://11.1.9.9/')).decision).toBe('allow');
      expect((await session.checkHttp('http://172.24.0.1/')).decision).toBe('allow');
      expect((await session.checkHttp('http://172.17.0.1/')).decision).toBe('deny');
    });

    it('a wildcard allow under a blocked domain warns; unrelated and parent entries do not', () => {
      expect(codes(AgentPolicy.fromDict({ network: { allow: ['*.twitter.com'], block: ['twitter.com'] } }))).toEqual([
        'allow_entry_blocked network.allow[0]',
      ]);
      expect(AgentPolicy.fromDict({ network: { allow: ['twitter.com'], block: ['*.twitter.com'] } }).warnings).toEqual([]);
      expect(AgentPolicy.fromDict({ network: { allow: ['docs.python.org'], block: ['python.com', 'org.example'] } }).warnings).toEqual([]);
      expect(AgentPolicy.fromDict({ network: { block: ['twitter.com'] } }).warnings).toEqual([]);
    });

    it('a tool a block pattern or a case variant covers warns, and really is denied', async () => {
      const policy = AgentPolicy.fromDict({
        tools: { allow: ['search_docs', 'mcp__shell__read', 'Mcp__Db__Query', 'mcp__fs__*'], block: ['mcp__shell__*', 'MCP__DB__*', 'mcp__fs_*'] },
      });
      expect(codes(policy)).toEqual(['allow_entry_blocked tools.allow[1]', 'allow_entry_blocked tools.allow[2]', 'allow_entry_blocked tools.allow[3]']);
      const session = policy.session();
      expect((await session.checkTool('mcp__shell__read')).decision).toBe('deny');
      expect((await session.checkTool('Mcp__Db__Query')).decision).toBe('deny');
      expect((await session.checkTool('mcp__fs__write')).decision).toBe('deny');
      expect((await session.checkTool('search_docs')).decision).toBe('allow');
    });

    it('an allow pattern only partly blocked does not warn', () => {
      expect(AgentPolicy.fromDict({ tools: { allow: ['search_*'], block: ['search_admin'] } }).warnings).toEqual([]);
      expect(AgentPolicy.fromDict({ tools: { allow: ['mcp__*'], block: ['mcp__shell__*'] } }).warnings).toEqual([]);
    });
  });

  it('the seed policy and the Python package\'s example files load without warnings', () => {
    for (const path of [SEED, fixture('policy.yaml'), fixture('readme-policy.yaml')]) expect(AgentPolicy.fromYaml(path).warnings).toEqual([]);
  });

  it('validatePolicyDocument returns the warnings as data; an invalid document has issues only', () => {
    const result = validatePolicyDocument({ budget: { max_spend: 0 } });
    expect(result).toMatchObject({ ok: true, warnings: [{ code: 'zero_budget', path: 'budget.max_spend' }] });
    expect(validatePolicyDocument({ budget: { max_spend: 0 }, tools: { alow: [] } })).toMatchObject({ ok: false });
  });

  it('Python spellings of approval rule keys get an error that says what to write instead', () => {
    let error: unknown;
    try {
      AgentPolicy.fromDict({ approval: { require_for: [{ action_type: 'http' }, { source: 'llm', cost_gt: 1 }] } });
    } catch (caught) {
      error = caught;
    }
    expect(PolicyValidationError.isInstance(error)).toBe(true);
    expect((error as PolicyValidationError).issues).toEqual([
      { path: 'approval.require_for[0].action_type', message: expect.stringContaining('the key is "action" here') },
      { path: 'approval.require_for[1].source', message: expect.stringContaining('use action: cost') },
    ]);
  });

  describe('CLI', () => {
    it('validate prints each warning with its fix on stderr and still exits 0', async () => {
      const result = await run('validate', file('budget:\n  max_spend: 0\nnetwork:\n  allow: [api.twitter.com]\n  block: [twitter.com]\n'));
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/valid policy \(sha256 [0-9a-f]{12}\), 2 warnings$/);
      const lines = result.stderr.split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/^warning: budget\.max_spend: max_spend 0 is a budget of \$0\.00.*\. Fix: remove the budget section/);
      expect(lines[1]).toMatch(/^warning: network\.allow\[0\]: api\.twitter\.com can never be reached.*\. Fix: /);
    });

    it('a file without warnings prints none; an invalid file exits 1 with its issues and no warnings', async () => {
      expect(await run('validate', SEED)).toMatchObject({ code: 0, stderr: '' });
      const invalid = await run('validate', file('budget:\n  max_spend: 0\ntools:\n  alow: [a]\n'));
      expect(invalid.code).toBe(1);
      expect(invalid.stderr).not.toContain('warning:');
    });

    it('explain carries the warnings in its JSON; demo and explain also print them on stderr', async () => {
      const path = file('budget:\n  max_spend: "$0"\n');
      const explain = await run('explain', path);
      expect(explain.code).toBe(0);
      expect(JSON.parse(explain.stdout).warnings).toEqual([expect.objectContaining({ code: 'zero_budget', path: 'budget.max_spend' })]);
      expect(explain.stderr).toContain('warning: budget.max_spend');
      const demo = await run('demo', path);
      expect(demo.code).toBe(0);
      expect(demo.stderr).toContain('warning: budget.max_spend');
      expect(JSON.parse(demo.stdout).decisionSummary.deny).toBeGreaterThan(0);
    });
  });
});
