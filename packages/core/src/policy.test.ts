import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentPolicyError, PolicyValidationError } from './errors.js';
import { AgentPolicy } from './policy.js';

const SEED_YAML = `budget:
  max_spend: 5.00
tools:
  allow: [search_docs, read_file, send_email]
  block: [delete_prod_db]
network:
  allow: [docs.python.org]
  block: [twitter.com]
approval:
  require_for:
    - tool: send_email
    - cost_gt: 1.00
`;

const SEED_DICT = {
  budget: { max_spend: 5.0 },
  tools: { allow: ['search_docs', 'read_file', 'send_email'], block: ['delete_prod_db'] },
  network: { allow: ['docs.python.org'], block: ['twitter.com'] },
  approval: { require_for: [{ tool: 'send_email' }, { cost_gt: 1.0 }] },
};

function issuesOf(fn: () => unknown) {
  try {
    fn();
  } catch (error) {
    expect(PolicyValidationError.isInstance(error)).toBe(true);
    return (error as PolicyValidationError).issues;
  }
  throw new Error('expected a PolicyValidationError');
}

function tempFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('three sources give the same policy', () => {
  it('YAML, dict and constructor options hash the same', () => {
    const fromYaml = AgentPolicy.fromYaml(tempFile('policy.yaml', SEED_YAML));
    const fromDict = AgentPolicy.fromDict(SEED_DICT);
    const fromOptions = new AgentPolicy({
      budget: '$5.00',
      allowedTools: ['search_docs', 'read_file', 'send_email'],
      blockedTools: ['delete_prod_db'],
      allowedDomains: ['docs.python.org'],
      blockedDomains: ['twitter.com'],
      approvalRules: [{ tool: 'send_email' }, { costGt: 1 }],
    });
    expect(fromDict.hash).toBe(fromYaml.hash);
    expect(fromOptions.hash).toBe(fromYaml.hash);
    expect(fromOptions.toDocument()).toEqual(fromYaml.toDocument());
  });

  it('money strings and numbers are the same amount', () => {
    const a = AgentPolicy.fromDict({ budget: { max_spend: '$5.00' } });
    const b = AgentPolicy.fromDict({ budget: { max_spend: '5' } });
    const c = new AgentPolicy({ budget: 5 });
    expect(a.hash).toBe(b.hash);
    expect(b.hash).toBe(c.hash);
  });
});

describe('strict, complete validation', () => {
  it('reports every issue at once, with paths and did-you-mean', () => {
    const issues = issuesOf(() =>
      AgentPolicy.fromDict({
        budgte: { max_spend: 5 },
        tools: { alow: ['a'], block: 'delete_prod_db' },
        network: { allow: ['https://docs.python.org/'] },
        approval: { require_for: [{ toool: 'send_email' }, { cost_gt: '5,000' }, { action: 'email' }] },
      }),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'budgte', message: expect.stringContaining('did you mean "budget"') },
        { path: 'tools.alow', message: expect.stringContaining('did you mean "allow"') },
        { path: 'tools.block', message: expect.stringContaining('must be a list') },
        { path: 'network.allow[0]', message: expect.stringContaining('bare domain') },
        { path: 'approval.require_for[0].toool', message: expect.stringContaining('did you mean "tool"') },
        { path: 'approval.require_for[1].cost_gt', message: expect.stringContaining('no commas') },
        { path: 'approval.require_for[2].action', message: expect.stringContaining('tool, http, cost') },
      ]),
    );
    expect(issues).toHaveLength(7);
  });

  it('constructor options get option names in paths', () => {
    const issues = issuesOf(() => new AgentPolicy({ budget: '-5', allowedTols: ['x'], approvalRules: [{ costGt: 'NaN' }] } as never));
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'budget', message: expect.stringContaining('negative') },
        { path: 'allowedTols', message: expect.stringContaining('did you mean "allowedTools"') },
        { path: 'approvalRules[0].costGt', message: expect.stringContaining('amount like') },
      ]),
    );
  });

  it.each([
    [-1, 'negative'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'finite'],
    ['', 'empty'],
    ['5,000', 'commas'],
    ['0x10', 'hex'],
    ['5 USD', 'units'],
    ['lots', 'amount like'],
    [true, 'boolean'],
    [null, 'required'],
  ])('max_spend %j is refused', (value, message) => {
    const issues = issuesOf(() => AgentPolicy.fromDict({ budget: { max_spend: value } }));
    expect(issues[0]?.path).toBe('budget.max_spend');
    expect(issues[0]?.message).toContain(message);
  });

  it('a name both allowed and blocked is an error (also across case and look-alikes)', () => {
    const issues = issuesOf(() => AgentPolicy.fromDict({ tools: { allow: ['send_email', 'Read_File'], block: ['SEND_EMAIL', 'read_file'] } }));
    expect(issues.map((issue) => issue.path)).toEqual(['tools.allow[0]', 'tools.allow[1]']);
    expect(issues[0]?.message).toContain('both allowed and blocked');
    const domains = issuesOf(() => AgentPolicy.fromDict({ network: { allow: ['Docs.Python.org'], block: ['docs.python.org.'] } }));
    expect(domains[0]?.path).toBe('network.allow[0]');
  });

  it('wrong types and shapes', () => {
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: ['a'] }))[0]).toEqual({ path: 'tools', message: 'must be a mapping, got an array' });
    expect(issuesOf(() => AgentPolicy.fromDict({ approval: { require_for: [{}] } }))[0]?.message).toContain('at least one');
    expect(issuesOf(() => AgentPolicy.fromDict({ approval: { require_for: [{ tool: 'a', domain: 'b.com' }] } }))[0]?.message).toContain('never match');
    expect(issuesOf(() => AgentPolicy.fromDict({ approval: { require_for: [{ tool: 'a', action: 'http' }] } }))[0]?.path).toBe('approval.require_for[0].action');
    expect(issuesOf(() => AgentPolicy.fromDict({ budget: { max_spend: 1, soft_limit: 1.5 } }))[0]?.path).toBe('budget.soft_limit');
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: ['bad name'] } }))[0]?.message).toContain('whitespace');
    expect(issuesOf(() => AgentPolicy.fromDict({ pricing: { 'my-model': { input: 1 } } }))[0]).toEqual({ path: 'pricing.my-model.output', message: expect.stringContaining('required') });
    expect(issuesOf(() => AgentPolicy.fromDict({ version: 2 }))[0]?.path).toBe('version');
    expect(issuesOf(() => AgentPolicy.fromDict(null))[0]?.message).toContain('empty');
    expect(issuesOf(() => AgentPolicy.fromDict([1, 2]))[0]?.message).toContain('mapping');
    expect(issuesOf(() => AgentPolicy.fromDict('budget: 5'))[0]?.message).toContain('mapping');
  });

  it('__proto__ and constructor keys change nothing and are reported', () => {
    const document = JSON.parse('{"__proto__": {"budget": {"max_spend": 1}}, "constructor": {"x": 1}, "tools": {"block": ["a"]}}');
    const issues = issuesOf(() => AgentPolicy.fromDict(document));
    expect(issues.map((issue) => issue.path).sort()).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).budget).toBeUndefined();
  });

  it('is immutable once built', async () => {
    const allowed = ['read_file'];
    const rules = [{ tool: 'read_file' }];
    const policy = new AgentPolicy({ allowedTools: allowed, approvalRules: rules });
    allowed.push('delete_prod_db');
    rules[0]!.tool = 'other';
    const session = policy.session();
    expect((await session.checkTool('delete_prod_db')).decision).toBe('deny');
    expect((await session.checkTool('read_file')).decision).toBe('require_approval');
    expect(Object.isFrozen(policy)).toBe(true);
    expect(Object.isFrozen(policy.normalized.tools.allow)).toBe(true);
  });
});

describe('YAML loading is safe', () => {
  const load = (text: string) => issuesOf(() => AgentPolicy.fromYamlString(text));

  it('an empty file or a non-mapping top level is a clear error', () => {
    expect(load('')[0]?.message).toContain('empty');
    expect(load('# only a comment\n')[0]?.message).toContain('empty');
    expect(load('- a\n- b\n')[0]?.message).toContain('mapping');
    expect(load('just a string\n')[0]?.message).toContain('mapping');
  });

  it('rejects duplicate keys, several documents and custom tags', () => {
    expect(load('budget: {max_spend: 1}\nbudget: {max_spend: 2}\n')[0]?.message).toMatch(/unique/i);
    expect(load('tools: {}\n---\ntools: {}\n')[0]?.message).toContain('one YAML document');
    expect(load('budget: !!python/object:os.system {max_spend: 1}\n')[0]?.message).toMatch(/tag/i);
    expect(load('budget:\n  max_spend: !custom 5\n')[0]?.message).toMatch(/tag/i);
    expect(load('tools:\n  allow: !!set {a, b}\n')[0]?.message).toMatch(/tag/i);
  });

  it('bounds alias expansion (billion laughs)', () => {
    const bomb = `a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
tools: {allow: *f}
`;
    expect(load(bomb)[0]?.message).toMatch(/alias/i);
  });

  it('uses the YAML 1.2 core schema even under %YAML 1.1', () => {
    // In YAML 1.1 `yes` is a boolean and 010 is octal 8; in 1.2 core, "yes" is a string and 010 is 10.
    const issues = load('%YAML 1.1\n---\nbudget:\n  max_spend: 010\n  soft_limit: yes\n');
    expect(issues).toEqual([{ path: 'budget.soft_limit', message: expect.stringContaining('the string "yes"') }]);
    const policy = AgentPolicy.fromYamlString('%YAML 1.1\n---\nbudget:\n  max_spend: 010\n');
    expect(policy.normalized.budget?.maxSpendNanos).toBe(10_000_000_000);
  });

  it('merge keys are not special', () => {
    expect(load('base: &b {max_spend: 1}\nbudget:\n  <<: *b\n').map((issue) => issue.path)).toEqual(expect.arrayContaining(['base', 'budget.<<']));
  });

  it('__proto__ in YAML is just an unknown key', () => {
    expect(load('__proto__:\n  polluted: true\n')[0]?.path).toBe('__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('syntax errors are reported, not thrown raw', () => {
    expect(load('tools: [a, b\n')[0]?.message).toMatch(/^YAML/);
  });

  it('a missing file is a load error with the path', () => {
    try {
      AgentPolicy.fromYaml('/nonexistent/policy.yaml');
      throw new Error('unreachable');
    } catch (error) {
      expect(AgentPolicyError.isInstance(error) && error.code).toBe('POLICY_LOAD_FAILED');
    }
  });
});

describe('explain', () => {
  it('summarises the rules as data', () => {
    const explained = AgentPolicy.fromDict({ ...SEED_DICT, pricing: { 'my-model': { input: 1, output: '2.5' } } }).explain();
    expect(explained).toMatchObject({
      budget: { max_spend: 5, soft_limit: null, period: 'session', currency: 'USD' },
      tools: { allow: ['search_docs', 'read_file', 'send_email'], block: ['delete_prod_db'] },
      network: { allow: ['docs.python.org'], block: ['twitter.com'] },
      approval: { require_for: [{ index: 0, tool: 'send_email' }, { index: 1, cost_gt: 1 }] },
      pricing: { 'my-model': { input_per_million: 1, output_per_million: 2.5, cached_input_per_million: 1 } },
      precedence: ['block', 'allow-list miss', 'rule deny', 'limits', 'budget', 'approval (approval.require_for, then rule require_approval)', 'allow'],
    });
    expect(explained.checks).toContain('checkTool');
  });
});
