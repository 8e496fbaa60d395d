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
    [null, 'has no value'],
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

describe('neverAllowsTool (for listings)', () => {
  const policy = AgentPolicy.fromDict({
    tools: { allow: ['mcp__docs__*', 'search'], block: ['mcp__docs__delete*'] },
    approval: { require_for: [{ tool: 'mcp__docs__publish' }] },
    budget: { max_spend: 0.01 },
  });

  it('names the reason for a blocked tool, one outside the allow list, and an invalid name', () => {
    expect(policy.neverAllowsTool('mcp__docs__delete_page')).toMatch(/blocked by tools.block entry "mcp__docs__delete\*"/);
    expect(policy.neverAllowsTool('mcp__shell__run')).toMatch(/not in tools.allow/);
    expect(policy.neverAllowsTool('')).toBeTypeOf('string');
    expect(policy.neverAllowsTool(42)).toBeTypeOf('string');
  });

  it('is undefined for tools some call of which could be allowed (approval, cost and input aside)', () => {
    expect(policy.neverAllowsTool('mcp__docs__search')).toBeUndefined();
    expect(policy.neverAllowsTool('mcp__docs__publish')).toBeUndefined();
    expect(policy.neverAllowsTool('search')).toBeUndefined();
  });

  it('agrees with the decision of a free call for every name it rules out', async () => {
    const session = policy.session();
    for (const name of ['mcp__docs__delete_page', 'mcp__shell__run', 'MCP__DOCS__DELETE_ALL', 'mcp__docs__search']) {
      const decision = await session.checkTool(name, { input: { q: 'x' } });
      expect(policy.neverAllowsTool(name) !== undefined).toBe(decision.decision === 'deny');
    }
  });
});

describe('loading never widens a policy', () => {
  const load = (text: string) => issuesOf(() => AgentPolicy.fromYamlString(text));

  it.each([
    ['tools:\n  allow:\n  block: [delete_prod_db]\n', 'tools.allow', /\[\] and allows no tool/],
    ['tools:\n  allow: ~\n', 'tools.allow', /\[\]/],
    ['tools:\n  allow: null\n', 'tools.allow', /\[\]/],
    ['tools:\n  block:\n', 'tools.block', /\[\]/],
    ['network:\n  allow:\n', 'network.allow', /\[\] and allows no host/],
    ['network:\n  block:\n', 'network.block', /\[\]/],
    ['budget:\n', 'budget', /no budget/],
    ['budget:\n  max_spend:\n', 'budget.max_spend', /no budget/],
    ['budget:\n  max_spend: 5\n  soft_limit:\n', 'budget.soft_limit', /no value/],
    ['tools:\n', 'tools', /no value/],
    ['network:\n', 'network', /no value/],
    ['approval:\n', 'approval', /no value/],
    ['approval:\n  require_for:\n', 'approval.require_for', /no approval rules/],
    ['approval:\n  require_for:\n    - tool:\n', 'approval.require_for[0].tool', /no value/],
    ['approval:\n  require_for:\n    - cost_gt:\n', 'approval.require_for[0].cost_gt', /no value/],
    ['approval:\n  require_for:\n    - domain: bank.example\n      action:\n', 'approval.require_for[0].action', /no value/],
    ['approval:\n  require_for:\n    -\n', 'approval.require_for[0]', /must be a rule mapping/],
    ['pricing:\n', 'pricing', /no value/],
    ['pricing:\n  m:\n', 'pricing.m', /no value/],
    ['pricing:\n  m:\n    input: 1\n    output: 2\n    cached_input:\n', 'pricing.m.cached_input', /no value/],
    ['tools:\n  allow: [a, ~]\n', 'tools.allow[1]', /must be a string/],
  ])('%j is an error at %s', (text, path, message) => {
    const issues = load(text);
    expect(issues).toContainEqual({ path, message: expect.stringMatching(message) });
  });

  it('[] is the way to allow nothing, and it does', async () => {
    const session = AgentPolicy.fromYamlString('tools:\n  allow: []\nnetwork:\n  allow: []\n').session();
    expect((await session.checkTool('search_docs')).decision).toBe('deny');
    expect((await session.checkHttp('https://docs.python.org/')).decision).toBe('deny');
  });

  // Every key the format has, with its place in a valid document.
  const FULL = {
    version: 1,
    budget: { max_spend: 5, soft_limit: 0.8 },
    tools: { allow: ['a'], block: ['b'] },
    network: { allow: ['a.example'], block: ['b.example'] },
    approval: { require_for: [{ tool: 'a' }, { domain: 'a.example', action: 'http' }, { cost_gt: 1 }] },
    pricing: { m: { input: 1, output: 2, cached_input: 0.5 } },
  };
  function paths(value: unknown, path: string): Array<[string, string[]]> {
    if (Array.isArray(value)) return value.flatMap((item, index) => paths(item, `${path}[${index}]`));
    if (value === null || typeof value !== 'object') return [];
    return Object.entries(value).flatMap(([key, child]) => {
      const at = path ? `${path}.${key}` : key;
      return [[at, [...(path ? [path] : []), key]] as [string, string[]], ...paths(child, at)];
    });
  }
  function withValue(path: string, empty: null | undefined): unknown {
    const copy = structuredClone(FULL) as Record<string, unknown>;
    const steps = path.split(/\.|\[|\]\.?/).filter(Boolean);
    let node: Record<string, unknown> = copy;
    for (const step of steps.slice(0, -1)) node = node[step] as Record<string, unknown>;
    node[steps.at(-1) as string] = empty;
    return copy;
  }

  it('the full document loads', () => {
    expect(() => AgentPolicy.fromDict(FULL)).not.toThrow();
  });

  it.each(paths(FULL, '').filter(([path]) => !path.endsWith(']')).map(([path]) => [path]))('%s written with null or undefined is an error at that path', (path) => {
    for (const empty of [null, undefined]) {
      const issues = issuesOf(() => AgentPolicy.fromDict(withValue(path, empty)));
      expect(issues).toContainEqual({ path, message: expect.stringContaining('has no value') });
    }
  });

  it('a hole in a list is reported, not skipped', () => {
    // oxlint-disable-next-line no-sparse-arrays -- the hole is the point
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: [, 'x'] } }))[0]?.path).toBe('tools.block[0]');
    const holes: string[] = [];
    holes.length = 2;
    expect(issuesOf(() => new AgentPolicy({ allowedTools: holes }))[0]?.path).toBe('allowedTools[0]');
  });

  it('a getter or proxy that throws is a validation error, not a crash', () => {
    const throwing = { get tools() { throw new Error('boom'); } };
    expect(issuesOf(() => AgentPolicy.fromDict(throwing))[0]?.message).toContain('boom');
    const proxy = new Proxy({}, { ownKeys() { throw new Error('trap'); } });
    expect(issuesOf(() => AgentPolicy.fromDict(proxy))[0]?.message).toContain('trap');
  });
});

describe('constructor options never widen a policy', () => {
  class Config {
    budget = 1;
    allowedTools = ['read_file'];
  }

  it.each([
    ['a Map', () => new AgentPolicy(new Map([['budget', 1]]) as never), /got a Map/],
    ['a class instance', () => new AgentPolicy(new Config() as never), /got a Config/],
    ['undefined', () => new AgentPolicy(undefined), /options is undefined/],
    ['null', () => new AgentPolicy(null as never), /got null/],
    ['an array', () => new AgentPolicy([] as never), /got an array/],
    ['a string', () => new AgentPolicy('budget: 5' as never), /got the string/],
  ])('%s as options is an error', (_label, build, message) => {
    expect(issuesOf(build)[0]?.message).toMatch(message);
  });

  it('fromDict refuses a Map or class instance the same way', () => {
    expect(issuesOf(() => AgentPolicy.fromDict(new Map([['budget', { max_spend: 1 }]])))[0]?.message).toMatch(/got a Map/);
    expect(issuesOf(() => AgentPolicy.fromDict(new Config()))[0]?.message).toMatch(/got a Config/);
  });

  it('new AgentPolicy() with no argument is still the policy with no rules', () => {
    expect(new AgentPolicy().normalized.tools.allow).toBeNull();
    expect(new AgentPolicy({}).hash).toBe(new AgentPolicy().hash);
  });

  it.each(['budget', 'softLimit', 'allowedTools', 'blockedTools', 'allowedDomains', 'blockedDomains', 'approvalRules', 'pricing'])(
    '%s present with undefined or null is an error at that key',
    (key) => {
      for (const empty of [undefined, null]) {
        const issues = issuesOf(() => new AgentPolicy({ [key]: empty } as never));
        expect(issues).toContainEqual({ path: key, message: expect.stringContaining('has no value') });
      }
    },
  );

  it('the hints say what an empty list means', () => {
    expect(issuesOf(() => new AgentPolicy({ allowedTools: undefined } as never))[0]?.message).toMatch(/written \[\] and allows no tool/);
    expect(issuesOf(() => new AgentPolicy({ budget: undefined } as never))[0]?.message).toMatch(/no budget/);
  });

  it('rule and price entries are checked the same way', () => {
    expect(issuesOf(() => new AgentPolicy({ approvalRules: [{ tool: undefined }] } as never))).toContainEqual({ path: 'approvalRules[0].tool', message: expect.stringContaining('has no value') });
    expect(issuesOf(() => new AgentPolicy({ approvalRules: [{ costGt: null }] } as never))).toContainEqual({ path: 'approvalRules[0].costGt', message: expect.stringContaining('has no value') });
    expect(issuesOf(() => new AgentPolicy({ approvalRules: [new Map([['tool', 'x']])] } as never))[0]).toEqual({ path: 'approvalRules[0]', message: expect.stringContaining('got a Map') });
    expect(issuesOf(() => new AgentPolicy({ pricing: new Map() } as never))[0]).toEqual({ path: 'pricing', message: expect.stringContaining('got a Map') });
    expect(issuesOf(() => new AgentPolicy({ pricing: { m: { input: 1, output: 2, cachedInput: undefined } } } as never))[0]).toEqual({
      path: 'pricing.m.cachedInput',
      message: expect.stringContaining('has no value'),
    });
    expect(issuesOf(() => new AgentPolicy({ allowedTools: new Set(['a']) } as never))[0]).toEqual({ path: 'allowedTools', message: expect.stringContaining('got a Set') });
  });

  it('a policy built from valid options is unaffected', async () => {
    const session = new AgentPolicy({ budget: 1, allowedTools: ['read_file'], blockedTools: [] }).session();
    expect((await session.checkTool('read_file')).decision).toBe('allow');
    expect((await session.checkTool('write_file')).decision).toBe('deny');
  });
});
