// A policy file edited by someone careless or hostile, or built by a config pipeline: loading never widens a policy
// silently. Every trick below is a typed PolicyValidationError naming the place, or loads exactly what is written.
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentPolicy, PolicySource, PolicyValidationError, type PolicyIssue } from './index.js';
import { useTempDirs } from './test-support/temp-dirs.js';

function issuesOf(load: () => unknown): PolicyIssue[] {
  try {
    load();
  } catch (error) {
    expect(PolicyValidationError.isInstance(error)).toBe(true);
    return [...(error as PolicyValidationError).issues];
  }
  throw new Error('expected a PolicyValidationError');
}
const yamlIssues = (text: string) => issuesOf(() => AgentPolicy.fromYamlString(text));
const PLAIN = 'tools:\n  block: [shell]\nbudget:\n  max_spend: 1\n';

describe('YAML a hostile or careless editor writes', () => {
  it.each([
    ['a second block: under tools', 'tools:\n  block: [shell]\n  block: []\n', /unique/],
    ['a second block: spelled with quotes', 'tools:\n  block: [shell]\n  "block": []\n', /unique/],
    ['a second tools: mapping', 'tools:\n  block: [shell]\ntools:\n  allow: [shell]\n', /unique/],
    ['a duplicate in flow style', 'tools: {block: [shell], block: []}\n', /unique/],
    ['a merge key widening tools', 'base: &b {block: []}\ntools:\n  <<: *b\n', /unknown key "<<"|unknown key "base"/],
    ['a merge key under %YAML 1.1', '%YAML 1.1\n---\ntools:\n  <<: {block: []}\n', /unknown key "<<"/],
    ['mode: shadow slipped in through a merge', 'tools:\n  block: [shell]\n<<: {mode: shadow}\n', /unknown key "<<"/],
    ['a second document with mode: shadow', `${PLAIN}---\nmode: shadow\n`, /one YAML document/],
    ['!!js/function', 'tools:\n  block: !!js/function "function () {}"\n', /tag/],
    ['!!binary', 'tools:\n  block: [!!binary c2hlbGw=]\n', /tag/],
    ['a local tag', 'tools:\n  block: [!shell x]\n', /tag/],
    ['a tag on the whole document', '!policy\ntools:\n  block: [shell]\n', /tag/],
    ['the non-specific tag', 'tools:\n  block: [! shell]\n', /tag/],
    ['a number key', '1: x\ntools:\n  block: [shell]\n', /unknown key "1"/],
    ['a sequence as key', '? [tools]\n: {block: []}\n', /keys must be strings/],
    ['a number for a tool name', 'tools:\n  block: [123]\n', /must be a string/],
    ['true for a tool name', 'tools:\n  block: [true]\n', /must be a string/],
    ['~ for a block list', 'tools:\n  block: ~\n', /has no value \(null\)/],
    ['an empty allow list key', 'tools:\n  allow:\n', /has no value \(null\)/],
    ['a budget period without a value', 'budget:\n  max_spend: 5\n  period:\n', /has no value \(null\); write session.*leave the key out \(session\)/],
    ['a typo at the top (tool:)', 'tool:\n  block: [shell]\n', /did you mean "tools"/],
    ['a typo at the top (netwrok:)', 'netwrok:\n  block: [evil.example]\n', /did you mean "network"/],
    ['a typo inside (tools.blok)', 'tools:\n  blok: [shell]\n', /unknown key "blok"/],
    ['a look-alike key (Cyrillic o)', 't\u043eols:\n  block: [shell]\n', /unknown key/],
    ['a tab for indentation', 'tools:\n\tblock: [shell]\n', /Tabs/],
    ['mode written Shadow', 'mode: Shadow\n', /must be enforce or shadow/],
  ])('%s is refused', (_, text, message) => {
    const issues = yamlIssues(text);
    expect(issues.length).toBeGreaterThan(0);
    expect(issues.map((issue) => issue.message).join('\n')).toMatch(message);
  });

  it('anchors and aliases load exactly what they point at, within a bound', () => {
    const aliased = AgentPolicy.fromYamlString('network:\n  block: &hosts [evil.example]\ntools:\n  block: &tools [shell]\napproval:\n  require_for: [{tool: publish}]\n');
    expect(aliased.normalized.tools.block).toEqual(['shell']);
    // A bomb that stays under 1 MB of text is stopped by the alias bound, quickly.
    let bomb = 'a: &a [x, x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i < 12; i++) bomb += `l${i}: &l${i} [${Array(10).fill(i === 1 ? '*a' : `*l${i - 1}`).join(', ')}]\n`;
    const started = Date.now();
    expect(yamlIssues(`${bomb}tools:\n  block: *l11\n`).map((issue) => issue.message).join()).toMatch(/alias/i);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a deeply nested or oversized file is a typed error, never a crash', () => {
    expect(yamlIssues(`tools:\n  block: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`).length).toBeGreaterThan(0);
    expect(yamlIssues(`tools:\n  block:\n${'    - a\n'.repeat(200_000)}`)[0]?.message).toMatch(/larger than/);
  });

  it('a BOM or CRLF line ends load the same policy as the plain file', () => {
    const plain = AgentPolicy.fromYamlString(PLAIN);
    expect(AgentPolicy.fromYamlString(`\ufeff${PLAIN}`).hash).toBe(plain.hash);
    expect(AgentPolicy.fromYamlString(PLAIN.replaceAll('\n', '\r\n')).hash).toBe(plain.hash);
    // yes/no/on/off are strings in YAML 1.2 core: tool names, never booleans that change a list's meaning.
    expect(AgentPolicy.fromYamlString('tools:\n  block: [yes, no, on, off]\n').normalized.tools.block).toEqual(['yes', 'no', 'on', 'off']);
  });
});

describe('objects a config pipeline hands to fromDict', () => {
  it('prototype tricks change nothing: __proto__ / constructor / prototype are unknown keys, inherited keys are not read', () => {
    const json = JSON.parse('{"tools": {"block": ["shell"], "__proto__": {"allow": []}}, "prototype": {"mode": "shadow"}}');
    expect(issuesOf(() => AgentPolicy.fromDict(json)).map((issue) => issue.path).sort()).toEqual(['prototype', 'tools.__proto__']);
    expect(({} as Record<string, unknown>)['allow']).toBeUndefined();
    expect(issuesOf(() => AgentPolicy.fromDict(Object.create({ mode: 'shadow' })))[0]?.message).toMatch(/mapping/);
    class Config {
      tools = { block: ['shell'] };
    }
    expect(issuesOf(() => AgentPolicy.fromDict(new Config()))[0]?.message).toMatch(/mapping/);
  });

  it('a key hidden from enumeration is still read and shows in the document and hash (never applied out of sight)', async () => {
    const hidden = Object.defineProperty({ tools: { block: ['shell'] } }, 'mode', { value: 'shadow', enumerable: false });
    const policy = AgentPolicy.fromDict(hidden);
    expect(policy.toDocument().mode).toBe('shadow');
    expect(policy.hash).toBe(AgentPolicy.fromDict({ tools: { block: ['shell'] }, mode: 'shadow' }).hash);
    expect(policy.hash).not.toBe(AgentPolicy.fromDict({ tools: { block: ['shell'] } }).hash);
    expect((await policy.session().checkTool('shell')).decision).toBe('allow');
  });

  it('lists that are not arrays, and holes in arrays, are refused', () => {
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: new Set(['shell']) } }))[0]?.path).toBe('tools.block');
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: 'shell' } }))[0]?.path).toBe('tools.block');
    // eslint-disable-next-line no-sparse-arrays
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: [, 'shell'] } }))[0]?.path).toBe('tools.block[0]');
  });

  it('a document whose reads throw something that cannot itself be read is a validation error, and update() refuses it', () => {
    const unreadable = (): object => new Proxy({}, { get: () => { throw new Error('trap'); }, getPrototypeOf: () => { throw new Error('trap'); } });
    const document = new Proxy({}, { get: () => { throw unreadable(); }, ownKeys: () => { throw unreadable(); }, getPrototypeOf: () => { throw unreadable(); } });
    expect(issuesOf(() => AgentPolicy.fromDict(document))).toEqual([{ path: '', message: 'the policy could not be read: an unreadable error' }]);
    const source = new PolicySource(AgentPolicy.fromDict({ tools: { block: ['shell'] } }));
    const before = source.hash;
    expect(source.update(document as never)).toMatchObject({ ok: false, issues: [{ path: '' }] });
    expect(source.hash).toBe(before);
    source.close();
  });
});

describe('a watched policy file written in place', () => {
  const tempDir = useTempDirs('agentpolicy-load-');

  it('cut off mid-write (invalid), emptied, or removed: the old policy stays in force and the reload is refused with its cause', async () => {
    const file = join(tempDir(), 'policy.yaml');
    const full = 'tools:\n  block:\n    - deploy\n    - shell\nbudget:\n  max_spend: 1\n';
    writeFileSync(file, full);
    const rejected: string[] = [];
    const source = PolicySource.fromFile(file, { watch: false, onReject: (event) => rejected.push(event.issues.map((issue) => issue.message).join()) });
    const before = source.hash;
    writeFileSync(file, full.slice(0, full.indexOf('shell') + 2).replace('    - sh', '    - [sh'));
    expect(source.reload().ok).toBe(false);
    truncateSync(file, 0);
    expect(source.reload().ok).toBe(false);
    writeFileSync(file, '');
    writeFileSync(file, 'tools:\n  block: [deploy, shell\n');
    expect(source.reload().ok).toBe(false);
    writeFileSync(file, '\u0000\u0000\u0000');
    expect(source.reload().ok).toBe(false);
    expect(source.hash).toBe(before);
    expect(rejected).toHaveLength(4);
    expect(rejected[1]).toMatch(/empty/);
    expect((await source.session().checkTool('shell')).decision).toBe('deny');
    source.close();
  });
});

describe('changes that loaded as "not set" (found by load-fuzz.test.ts)', () => {
  const paths = (load: () => unknown) => issuesOf(load).map((issue) => issue.path);

  it('an empty section ({}) is refused: it would load as the section left out, restricting nothing', () => {
    for (const section of ['tools', 'network', 'approval', 'pricing']) {
      const issues = issuesOf(() => AgentPolicy.fromDict({ [section]: {} }));
      expect(issues).toEqual([{ path: section, message: expect.stringMatching(/^is empty \(\{\}\); .*leave the key out/) }]);
      expect(yamlIssues(`${section}: {}\n`)[0]?.path).toBe(section);
    }
    // What it says instead, and what an empty allow-list means.
    expect(issuesOf(() => AgentPolicy.fromDict({ network: {} }))[0]?.message).toMatch(/allow: \[\] allows no host/);
    expect(AgentPolicy.fromDict({ tools: { allow: [] } }).normalized.tools.allow).toEqual([]);
  });

  it('a condition operand written without a value (eq: null, in: [.., null]) is refused: null never matches, so the rule never applied', () => {
    expect(yamlIssues('rules:\n  - deny: no evil mail\n    tool: send_email\n    if:\n      input.to:\n        eq:\n')).toEqual([
      { path: 'rules[0].if.input.to.eq', message: expect.stringMatching(/has no value \(null\).*exists: false/) },
    ]);
    for (const [op, operand, at] of [['eq', null, 'eq'], ['ne', null, 'ne'], ['in', ['x@evil.example', null], 'in[1]'], ['not_in', [null], 'not_in[0]']] as const) {
      expect(paths(() => AgentPolicy.fromDict({ rules: [{ deny: 'no', tool: 'send_email', if: { 'input.to': { [op]: operand } } }] }))).toEqual([`rules[0].if.input.to.${at}`]);
    }
  });

  it('a condition path with a space or invisible character at the end of a segment is refused: it read another field, so the rule never applied', () => {
    for (const key of ['input.to ', 'input.to\u200b', 'input. to', 'input.user .email']) {
      expect(paths(() => AgentPolicy.fromDict({ rules: [{ deny: 'no', tool: 'send_email', if: { [key]: { glob: '*@evil.example' } } }] }))).toEqual([`rules[0].if.${key}`]);
    }
    // A space inside a field name is a field name.
    expect(AgentPolicy.fromDict({ rules: [{ deny: 'no', tool: 't', if: { 'input.first name': { eq: 'x' } } }] }).normalized.rules).toHaveLength(1);
  });

  it('a rule or limit key set to undefined from code is refused, not read as "not set" (a rule mode: undefined followed a shadow policy)', () => {
    const rule = { deny: 'no', tool: 'deploy', if: { 'input.env': { eq: 'prod' } } };
    expect(paths(() => AgentPolicy.fromDict({ mode: 'shadow', rules: [{ ...rule, mode: undefined }] }))).toEqual(['rules[0].mode']);
    expect(paths(() => AgentPolicy.fromDict({ rules: [{ ...rule, tool: undefined }] }))).toEqual(['rules[0].tool']);
    expect(paths(() => AgentPolicy.fromDict({ rules: [{ ...rule, unless: undefined }] }))).toEqual(['rules[0].unless']);
    const limit = { tool: 'search', max_calls: 1, per: '1m' };
    expect(paths(() => AgentPolicy.fromDict({ limits: [{ ...limit, scope: undefined }] }))).toEqual(['limits[0].scope']);
    expect(paths(() => AgentPolicy.fromDict({ mode: 'shadow', limits: [{ ...limit, mode: undefined }] }))).toEqual(['limits[0].mode']);
    expect(paths(() => AgentPolicy.fromDict({ limits: [{ ...limit, max_calls: undefined }] }))).toEqual(['limits[0].max_calls']);
  });

  it('new AgentPolicy({ rules: undefined }) (and limits, mode) is refused like every other option without a value', () => {
    expect(paths(() => new AgentPolicy({ blockedTools: ['shell'], rules: undefined } as never))).toEqual(['rules']);
    expect(paths(() => new AgentPolicy({ limits: undefined } as never))).toEqual(['limits']);
    expect(paths(() => new AgentPolicy({ mode: undefined } as never))).toEqual(['mode']);
  });
});

describe('lists and mappings from code that only a program can build', () => {
  it('a list claiming billions of entries (sparse, or a proxy) is refused by its length at once, through fromDict and the constructor', () => {
    const sparse = () => Object.assign([] as string[], { length: 2 ** 32 - 1 });
    const endless = () => new Proxy(['shell'], { get: (target, key) => (key === 'length' ? 2 ** 32 - 1 : typeof key === 'string' && /^\d+$/.test(key) ? 'shell' : Reflect.get(target, key)) });
    for (const list of [sparse, endless]) {
      expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: list() } }))).toEqual([{ path: 'tools.block', message: 'has 4294967295 entries; at most 1000000 are allowed' }]);
      expect(issuesOf(() => AgentPolicy.fromDict({ rules: list() }))[0]?.path).toBe('rules');
      expect(issuesOf(() => AgentPolicy.fromDict({ approval: { require_for: list() } }))[0]?.path).toBe('approval.require_for');
      expect(issuesOf(() => AgentPolicy.fromDict({ rules: [{ deny: 'x', tool: 't', if: { 'input.a': { in: list() } } }] }))[0]?.path).toBe('rules[0].if.input.a.in');
      expect(issuesOf(() => new AgentPolicy({ blockedDomains: list(), approvalRules: list() as never }))).toHaveLength(2);
    }
    // A hole is reported, in every list (rules and limits too), and the walk stops there.
    // eslint-disable-next-line no-sparse-arrays
    expect(issuesOf(() => AgentPolicy.fromDict({ rules: [, { deny: 'x', tool: 't', if: { 'input.a': { eq: 1 } } }] })).map((issue) => issue.path)).toEqual(['rules[0]']);
    expect(issuesOf(() => AgentPolicy.fromDict({ tools: { block: Object.assign(['a'], { length: 1_000_000 }) } })).map((issue) => issue.path)).toEqual(['tools.block[1]']);
  });

  it('a rule or limit key read through a getter is read once: it cannot pass the check and then answer undefined', () => {
    let reads = 0;
    const rule = { deny: 'no', tool: 'deploy', if: { 'input.env': { eq: 'prod' } }, get mode() { return reads++ === 0 ? 'enforce' : undefined; } };
    const policy = AgentPolicy.fromDict({ mode: 'shadow', rules: [rule] });
    expect(policy.normalized.rules[0]?.mode).toBe('enforce');
    expect(reads).toBe(1);
  });
});
