/**
 * A property-based attack on policy loading: loading never widens a policy.
 *
 * A valid policy covering every section (tools and network allow/block lists with IP ranges, a budget with period
 * and soft limit, approval rules, `rules:` with `if` / `unless` and every operator, `limits:`, `mode` and per-rule
 * and per-limit `mode`) is generated, then changed in exactly one place toward "absent-ish": the value replaced by
 * `null`, `undefined` (from code), `''`, `{}`, `[]` (where it was not a list), a value of a wrong type (a number for
 * a string, a string for a list, an object for a list, a `Map`, `Set` or class instance for a mapping or list), a list
 * claiming billions of entries, a key renamed to a near miss (`alow`, `Allow`, `allow ` with a trailing space, `__proto__`, `constructor`), a
 * prototype-ish key added, an operator renamed to one that does not exist, or (in YAML text) a key written twice.
 *
 * The property, through `AgentPolicy.fromDict`, `new AgentPolicy(options)` and `AgentPolicy.fromYamlString` (which
 * must agree): either loading fails with a `PolicyValidationError` whose issues name the changed place, or the
 * changed policy decides every sample action (tools with inputs, HTTP requests by URL and method, costs) at least as
 * strictly as the original (deny ≥ require_approval ≥ allow), and allows a repeated action at most as often (limits,
 * budget).
 *
 * Left out on purpose, as explicit user choices rather than absent-ish values: an explicitly empty `block: []` list
 * (emptying a list is not generated: `[]` only replaces values that were not lists), another valid scalar for a
 * condition's `eq` / `ne` / `in` / `not_in` operand (`''`, a number or `true` is a value to compare with), a number for
 * an amount of money (numbers are amounts), another name for a model under `pricing` (it prices another model), one pattern for a list of them (`glob`, `domain`, `command` take either),
 * and renaming a field of a condition path below `input.` (`input.to` →
 * `input.t` reads another field, which the tool's input may well have). `null` for an operand is tested: it is a key
 * written without a value.
 *
 * Seeded: a failure prints its seed and counterexample; re-run it with FUZZ_SEED=<seed>, raise FUZZ_RUNS for a
 * longer run.
 */
import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { ActionInput } from './action-input.js';
import type { TokenUsage } from './pricing.js';
import { AgentPolicy, PolicyValidationError, type AgentPolicyOptions, type PolicyIssue } from './index.js';

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_202 : Number(process.env['FUZZ_SEED']);
const RUNS = process.env['FUZZ_RUNS'] === undefined ? 2000 : Number(process.env['FUZZ_RUNS']);
// A longer run (FUZZ_RUNS) gets the time it needs.
const TIMEOUT = Math.max(30_000, RUNS * 10);

type Doc = Record<string, unknown>;

// ---- the vocabulary documents and actions share ----------------------------------------------------------------

const TOOLS = ['search', 'send_email', 'shell', 'deploy', 'read_file', 'db_query'];
const TOOL_PATTERNS = [...TOOLS, 'db_*', 'send_*', 'Shell'];
const DOMAINS = ['api.example.com', 'evil.example', '*.corp.example', 'cdn.example.net', '10.0.0.0/8', '192.168.0.0/16', 'fd00::/8', '203.0.113.7'];
const RULE_DOMAINS = ['api.example.com', 'evil.example', '*.corp.example', 'corp.example'];
const MONEY = [0, 0.5, 1, '$5.00', '2'];

type Condition = readonly [path: string, op: string, operand: unknown];

const CONDITIONS: readonly Condition[] = [
  ['input.to', 'eq', 'x@evil.example'],
  ['input.to', 'ne', 'boss@corp.example'],
  ['input.to', 'in', ['x@evil.example', 'boss@corp.example']],
  ['input.to', 'not_in', ['boss@corp.example']],
  ['input.to', 'glob', '*@corp.example'],
  ['input.to', 'glob', ['*@evil.example', 'root@*']],
  ['input.to', 'exists', true],
  ['input.to', 'exists', false],
  ['input.amount', 'gt', 100],
  ['input.amount', 'gte', 150],
  ['input.amount', 'lt', 10],
  ['input.amount', 'lte', 5],
  ['input.amount', 'eq', 500],
  ['input.amount', 'in', [5, '150']],
  ['input.cmd', 'command', 'rm *'],
  ['input.cmd', 'command', ['ls *', 'cat *']],
  ['input.cmd', 'glob', 'rm -rf*'],
  ['input.url', 'domain', 'evil.example'],
  ['input.url', 'domain', ['*.corp.example', 'api.example.com']],
  ['input.tags', 'in', ['admin']],
  ['input.tags', 'not_in', ['public']],
  ['input.tags.0', 'eq', 'admin'],
  ['method', 'eq', 'POST'],
  ['method', 'in', ['DELETE', 'PUT']],
  ['method', 'ne', 'GET'],
  ['method', 'not_in', ['GET', 'HEAD']],
  ['host', 'domain', '*.corp.example'],
  ['host', 'eq', 'evil.example'],
  ['host', 'glob', '*.example.com'],
  ['path', 'glob', '/admin/*'],
  ['path', 'eq', '/'],
  ['cost', 'gt', 1],
  ['cost', 'gte', '0.5'],
  ['cost', 'lt', '$2'],
  ['cost', 'lte', 0.75],
  ['cost', 'eq', 0],
  ['cost', 'in', [0, 3]],
  ['cost', 'exists', true],
];

type Kind = 'tool' | 'http' | 'cost';
const ROOT_KINDS: Record<string, readonly Kind[]> = { input: ['tool'], method: ['http'], host: ['http'], path: ['http'], cost: ['tool', 'http', 'cost'] };

// ---- valid documents ----------------------------------------------------------------------------------------------

const selectorArb: fc.Arbitrary<{ selector: Doc; kinds: readonly Kind[] }> = fc.oneof(
  fc.constant({ selector: {}, kinds: ['tool', 'http', 'cost'] as const }),
  fc.constantFrom(...TOOL_PATTERNS).map((tool) => ({ selector: { tool }, kinds: ['tool'] as const })),
  fc.constantFrom(...RULE_DOMAINS).map((domain) => ({ selector: { domain }, kinds: ['http'] as const })),
  fc.constantFrom<Kind>('tool', 'http', 'cost').map((action) => ({ selector: { action }, kinds: [action] })),
);

function conditionsArb(kinds: readonly Kind[], sense: 'if' | 'unless'): fc.Arbitrary<Doc> {
  const usable = CONDITIONS.filter(([path, op, operand]) => {
    const root = path.split('.')[0] as string;
    if (!(ROOT_KINDS[root] as readonly Kind[]).some((kind) => kinds.includes(kind))) return false;
    return !(sense === 'unless' && op === 'exists' && operand === false);
  });
  return fc
    .uniqueArray(fc.constantFrom(...usable), { minLength: 1, maxLength: 2, selector: (condition) => condition[0] })
    .map((list) => Object.fromEntries(list.map(([path, op, operand]) => [path, { [op]: operand }])));
}

const ruleArb: fc.Arbitrary<Doc> = selectorArb.chain(({ selector, kinds }) =>
  fc
    .record(
      {
        effect: fc.constantFrom('deny', 'require_approval'),
        reason: fc.constantFrom('not that', 'ask first'),
        if: conditionsArb(kinds, 'if'),
        unless: conditionsArb(kinds, 'unless'),
        mode: fc.constantFrom('enforce', 'shadow'),
        shape: fc.constantFrom('if', 'unless', 'both'),
      },
      { requiredKeys: ['effect', 'reason', 'if', 'unless', 'shape'] },
    )
    .map(({ effect, reason, shape, mode, ...blocks }) => ({
      [effect]: reason,
      ...selector,
      ...(shape !== 'unless' ? { if: blocks.if } : {}),
      ...(shape !== 'if' ? { unless: blocks.unless } : {}),
      ...(mode !== undefined ? { mode } : {}),
    })),
);

const limitArb: fc.Arbitrary<Doc> = fc
  .record(
    {
      selector: selectorArb,
      max_calls: fc.constantFrom(1, 2),
      per: fc.constantFrom('1m', '1h', 'session'),
      scope: fc.constantFrom('session', 'budget'),
      mode: fc.constantFrom('enforce', 'shadow'),
    },
    { requiredKeys: ['selector', 'max_calls', 'per'] },
  )
  .map(({ selector, ...rest }) => ({ ...selector.selector, ...rest }));

const approvalArb: fc.Arbitrary<Doc> = fc.oneof(
  fc.constantFrom(...TOOL_PATTERNS).map((tool) => ({ tool })),
  fc.constantFrom(...RULE_DOMAINS).map((domain) => ({ domain })),
  fc.constantFrom('tool', 'http', 'cost').map((action) => ({ action })),
  fc.constantFrom(...MONEY).map((cost_gt) => ({ cost_gt })),
  fc.tuple(fc.constantFrom(...TOOLS), fc.constantFrom(...MONEY)).map(([tool, cost_gt]) => ({ tool, action: 'tool', cost_gt })),
  fc.constantFrom(...RULE_DOMAINS).map((domain) => ({ domain, action: 'http' })),
);

/** Allow and block lists that never name the same entry. */
function listsArb(entries: readonly string[], fold: (entry: string) => string): fc.Arbitrary<Doc> {
  return fc
    .record({ allow: fc.subarray([...entries]), block: fc.subarray([...entries], { minLength: 1 }) }, { requiredKeys: [] })
    .filter((lists) => lists.allow !== undefined || lists.block !== undefined)
    .map((lists) => {
      if (lists.allow && lists.block) {
        const blocked = new Set(lists.block.map(fold));
        lists.allow = lists.allow.filter((entry) => !blocked.has(fold(entry)));
      }
      return lists;
    });
}

const MODELS = ['acme-small', 'gpt-4o'];
const priceArb: fc.Arbitrary<Doc> = fc.oneof(
  fc.record(
    { input: fc.constantFrom(0.15, '2.50'), output: fc.constantFrom(0.6, '$10'), cached_input: fc.constantFrom(0.075, 1), max_output_tokens: fc.constantFrom(4096, 16_384) },
    { requiredKeys: ['input', 'output'] },
  ),
  fc.record({ per_image: fc.constantFrom<unknown>(0.04, { '1024x1024': 0.04, 'hd/1024x1024': '0.08', default: 0.1 }) }),
  fc.record({ per_second: fc.constantFrom(0.0001, '0.006') }),
);

const documentArb: fc.Arbitrary<Doc> = fc
  .record(
  {
    version: fc.constant(1),
    budget: fc.record(
      { max_spend: fc.constantFrom(...MONEY, 3), soft_limit: fc.constantFrom(0.5, 1), period: fc.constantFrom('session', 'day', 'month') },
      { requiredKeys: ['max_spend'] },
    ),
    tools: listsArb(TOOL_PATTERNS, (entry) => entry.toLowerCase()),
    network: listsArb(DOMAINS, (entry) => entry),
    approval: fc.record({ require_for: fc.array(approvalArb, { minLength: 1, maxLength: 3 }) }),
    rules: fc.array(ruleArb, { minLength: 1, maxLength: 3 }),
    limits: fc.array(limitArb, { minLength: 1, maxLength: 2 }),
    mode: fc.constantFrom('enforce', 'shadow'),
    pricing: fc.uniqueArray(fc.constantFrom(...MODELS), { minLength: 1 }).chain((models) => fc.tuple(...models.map(() => priceArb)).map((prices) => Object.fromEntries(models.map((model, i) => [model, prices[i]])))),
  },
  { requiredKeys: [] },
  )
  .map((doc) => clone(doc) as Doc);

// ---- sample actions -----------------------------------------------------------------------------------------------

const INPUTS: readonly unknown[] = [
  {},
  { to: 'x@evil.example', amount: 500, cmd: 'rm -rf /tmp/x', url: 'https://evil.example/a', tags: ['admin'] },
  { to: 'boss@corp.example', amount: 5, cmd: 'ls -la', url: 'https://api.example.com/b', tags: ['public'] },
  { to: 'BOSS@corp.example', amount: '150', cmd: 'cat notes', url: 'https://x.corp.example/', tags: [] },
];
const COSTS = [0, 0.75, 3];
const HOSTS = ['api.example.com', 'evil.example', 'x.corp.example', 'corp.example', '10.1.2.3', '192.168.1.5', '[fd00::1]', '203.0.113.7', 'cdn.example.net', 'other.test'];
const METHODS = ['GET', 'POST', 'DELETE'];
const PATHS = ['/', '/admin/users'];

const ACTIONS: readonly ActionInput[] = [
  ...[...TOOLS, 'unlisted_tool', 'SHELL', 'db_admin'].flatMap((name, i) =>
    INPUTS.map((input, k): ActionInput => ({ type: 'tool', name, input, cost: COSTS[(i + k) % COSTS.length] as number })),
  ),
  ...HOSTS.flatMap((host, i) =>
    METHODS.map((method, k): ActionInput => ({ type: 'http', url: `https://${host}${PATHS[(i + k) % 2]}`, method, cost: COSTS[(i + 2 * k) % COSTS.length] as number })),
  ),
  ...[0.2, 0.75, 1.5, 10].map((cost): ActionInput => ({ type: 'cost', cost, source: 'model:test' })),
];

const USAGES: readonly TokenUsage[] = MODELS.flatMap((model) => [
  { model, inputTokens: 1000, outputTokens: 500 },
  { model, inputTokens: 1000, outputTokens: 0, cachedInputTokens: 800 },
  { model, inputTokens: 0, outputTokens: 0, audioSeconds: 30 },
]);

const SEVERITY = { allow: 0, require_approval: 1, deny: 2 } as const;

/** How the policy decides each sample action: severity of a fresh evaluation, and allows of three checks in a row. */
async function outcomes(policy: AgentPolicy): Promise<{ severity: number[]; allows: number[]; prices: number[] }> {
  const severity: number[] = [];
  const allows: number[] = [];
  // What a model's usage costs under the policy's prices; a model it cannot price is refused, the most strict.
  const prices = USAGES.map((usage) => {
    const price = policy.session().priceUsage(usage);
    return price.ok ? price.nanos : Number.POSITIVE_INFINITY;
  });
  for (const action of ACTIONS) {
    severity.push(SEVERITY[policy.session().evaluate(action).decision]);
    const session = policy.session();
    let allowed = 0;
    for (let i = 0; i < 3; i++) {
      const decision =
        action.type === 'tool'
          ? await session.checkTool(action.name, { input: action.input, ...(action.cost !== undefined ? { cost: action.cost } : {}) })
          : action.type === 'http'
            ? await session.checkHttp(action.url, { ...(action.method !== undefined ? { method: action.method } : {}), ...(action.cost !== undefined ? { cost: action.cost } : {}) })
            : await session.checkCost(action.cost, { source: action.source });
      if (decision.decision === 'allow') allowed++;
    }
    allows.push(allowed);
  }
  return { severity, allows, prices };
}

function describeAction(action: ActionInput): string {
  if (action.type === 'tool') return `checkTool(${JSON.stringify(action.name)}, ${JSON.stringify({ input: action.input, cost: action.cost })})`;
  if (action.type === 'http') return `checkHttp(${JSON.stringify(String(action.url))}, ${JSON.stringify({ method: action.method, cost: action.cost })})`;
  return `checkCost(${action.cost})`;
}

// ---- mutation sites -----------------------------------------------------------------------------------------------

type Segment = string | number;
/** A place to change: the value at a path, the key naming it, or the mapping at a path (to add a key to). */
interface Site {
  readonly path: readonly Segment[];
  readonly at: 'value' | 'key' | 'object';
}

function sitesOf(value: unknown, path: Segment[] = [], out: Site[] = []): Site[] {
  if (path.length > 0) out.push({ path, at: 'value' });
  if (Array.isArray(value)) value.forEach((item, index) => sitesOf(item, [...path, index], out));
  else if (isObject(value)) {
    out.push({ path, at: 'object' });
    for (const key of Object.keys(value)) {
      out.push({ path: [...path, key], at: 'key' });
      sitesOf(value[key], [...path, key], out);
    }
  }
  return out;
}

function isObject(value: unknown): value is Doc {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function pathText(path: readonly Segment[]): string {
  let out = '';
  for (const segment of path) out = typeof segment === 'number' ? `${out}[${segment}]` : out ? `${out}.${segment}` : segment;
  return out;
}

/** Where the site sits: a condition's path key, its operator, its operand (or an item of it), money. */
function roleOf(site: Site): 'condition-path' | 'model-name' | 'operator' | 'scalar-operand' | 'pattern-operand' | 'money' | 'other' {
  const path = site.path;
  if (path[0] === 'pricing' && path.length === 2 && site.at === 'key') return 'model-name';
  if (path[0] === 'rules' && (path[2] === 'if' || path[2] === 'unless')) {
    if (path.length === 4 && site.at === 'key') return 'condition-path';
    if (path.length === 5 && site.at === 'key') return 'operator';
    if (site.at === 'value' && (path.length === 5 || path.length === 6)) {
      const op = path[4];
      if (path[3] === 'cost' && op !== 'exists') return 'money';
      if (op === 'eq' || op === 'ne' || op === 'in' || op === 'not_in') return 'scalar-operand';
      if (path.length === 5 && (op === 'glob' || op === 'domain' || op === 'command')) return 'pattern-operand';
    }
    return 'other';
  }
  const last = path[path.length - 1];
  const amount = last === 'max_spend' || last === 'cost_gt' || (path[0] === 'pricing' && !String(last).startsWith('max_'));
  return site.at === 'value' && amount && typeof last === 'string' ? 'money' : 'other';
}

type Mutation =
  | { kind: 'replace'; label: string; make: () => unknown; jsOnly?: boolean }
  | { kind: 'rename'; label: string; key: (key: string) => string }
  | { kind: 'add'; label: string; key: string; value: unknown }
  | { kind: 'duplicate'; label: string; value: unknown; first: boolean };

class Options {
  constructor(entries: Doc) {
    Object.assign(this, entries);
  }
}

function mutationsFor(site: Site, original: unknown): Mutation[] {
  const role = roleOf(site);
  if (site.at === 'object') {
    return [
      { kind: 'add', label: 'a __proto__ key added', key: '__proto__', value: { allow: [], mode: 'shadow' } },
      { kind: 'add', label: 'a constructor key added', key: 'constructor', value: { prototype: { mode: 'shadow' } } },
      { kind: 'add', label: 'a prototype key added', key: 'prototype', value: null },
    ];
  }
  if (site.at === 'key') {
    const out: Mutation[] = [
      { kind: 'duplicate', label: 'the key written again with null after it (YAML)', value: null, first: false },
      { kind: 'duplicate', label: 'the key written again with [] after it (YAML)', value: [], first: false },
      { kind: 'duplicate', label: 'the key written with {} before it (YAML)', value: {}, first: true },
    ];
    if (role === 'model-name') {
      // A model's name is the user's own: another name prices another model.
      out.push({ kind: 'rename', label: 'a model name with a trailing space', key: (key) => `${key} ` });
      return out;
    }
    if (role === 'condition-path') {
      // Only the root word: a field below input. is the user's own name.
      out.push(
        { kind: 'rename', label: 'condition root misspelt', key: (key) => key.replace(/^(\w)\w/, '$1') },
        { kind: 'rename', label: 'condition root capitalised', key: (key) => key[0]?.toUpperCase() + key.slice(1) },
        { kind: 'rename', label: 'condition path with a trailing space', key: (key) => `${key} ` },
        { kind: 'rename', label: 'condition path with a leading space', key: (key) => ` ${key}` },
      );
      return out;
    }
    out.push(
      { kind: 'rename', label: 'a letter dropped', key: (key) => (key.length > 2 ? key.slice(0, 1) + key.slice(2) : `${key}_`) },
      { kind: 'rename', label: 'capitalised', key: (key) => key[0]?.toUpperCase() + key.slice(1) },
      { kind: 'rename', label: 'a trailing space', key: (key) => `${key} ` },
      { kind: 'rename', label: 'renamed __proto__', key: () => '__proto__' },
      { kind: 'rename', label: 'renamed constructor', key: () => 'constructor' },
    );
    if (role === 'operator') {
      out.push(
        { kind: 'rename', label: 'an unknown operator', key: (key) => ({ eq: 'equals', ne: 'neq', in: 'one_of', not_in: 'notin', glob: 'regex', lt: 'less', lte: 'le', gt: 'more', gte: 'ge', exists: 'present', domain: 'host', command: 'cmd' })[key] ?? `${key}x` },
        { kind: 'rename', label: 'an operator upper-cased', key: (key) => key.toUpperCase() },
      );
    }
    return out;
  }
  const list = Array.isArray(original);
  const out: Mutation[] = [
    { kind: 'replace', label: 'null', make: () => null },
    { kind: 'replace', label: 'undefined', make: () => undefined, jsOnly: true },
    { kind: 'replace', label: '{}', make: () => ({}) },
  ];
  const scalarOperand = role === 'scalar-operand' && !list;
  if (!scalarOperand) out.push({ kind: 'replace', label: "''", make: () => '' });
  if (!list) out.push({ kind: 'replace', label: '[]', make: () => [] });
  if (typeof original === 'string' && role !== 'money' && !scalarOperand) out.push({ kind: 'replace', label: 'a number for a string', make: () => 42 });
  if (typeof original === 'number' && !scalarOperand) {
    out.push(
      { kind: 'replace', label: 'a word for a number', make: () => 'many' },
      { kind: 'replace', label: 'NaN', make: () => Number.NaN, jsOnly: true },
      { kind: 'replace', label: 'Infinity', make: () => Number.POSITIVE_INFINITY, jsOnly: true },
      { kind: 'replace', label: 'a negative number', make: () => -(original as number) - 1 },
    );
  }
  if (!scalarOperand && typeof original !== 'boolean') out.push({ kind: 'replace', label: 'true', make: () => true });
  if (list) {
    out.push(
      ...(role === 'pattern-operand' ? [] : [{ kind: 'replace' as const, label: 'a string for a list', make: () => (original as unknown[]).join(',') || 'x' }]),
      { kind: 'replace', label: 'an object for a list', make: () => ({ ...(original as unknown[]) }) },
      { kind: 'replace', label: 'a Set for a list', make: () => new Set(original as unknown[]), jsOnly: true },
      { kind: 'replace', label: 'a list claiming 2^32-1 entries', make: () => Object.assign([...(original as unknown[])], { length: 2 ** 32 - 1 }), jsOnly: true },
    );
  }
  if (isObject(original)) {
    out.push(
      { kind: 'replace', label: 'a Map for a mapping', make: () => new Map(Object.entries(original)), jsOnly: true },
      { kind: 'replace', label: 'a class instance for a mapping', make: () => new Options(original), jsOnly: true },
    );
  }
  return out;
}

/** A copy of `value` whose objects are built with own properties only (so `__proto__` stays an ordinary key). */
function clone(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clone);
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, clone(item)]));
  return value;
}

function nodeAt(root: Doc, path: readonly Segment[]): Record<Segment, unknown> {
  let node: unknown = root;
  for (const segment of path) node = (node as Record<Segment, unknown>)[segment];
  return node as Record<Segment, unknown>;
}

const parentOf = (root: Doc, path: readonly Segment[]) => nodeAt(root, path.slice(0, -1));

/** Rewrites the own properties of `object` in place, in order (a renamed key stays where it was; `__proto__` stays a key). */
function rebuild(object: Doc, edit: (entries: Array<[string, unknown]>) => Array<[string, unknown]>): Doc {
  const entries = edit(Object.entries(object));
  for (const key of Object.keys(object)) delete object[key];
  for (const [key, value] of entries) Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  return object;
}

interface Mutated {
  /** The changed document (for the dictionary path), or undefined when only YAML can write the change. */
  doc: Doc | undefined;
  /** The changed document as YAML text, or undefined when YAML cannot write the change (`undefined`, a `Map`, …). */
  yaml: string | undefined;
  /** Where the change is, as the validator writes paths. */
  where: string[];
}

function mutate(original: Doc, site: Site, mutation: Mutation, flow: boolean): Mutated {
  const doc = clone(original) as Doc;
  const path = site.path;
  const text = (value: Doc) => (flow ? JSON.stringify(value) : stringify(value));
  switch (mutation.kind) {
    case 'replace': {
      if (path.length === 0) throw new Error('no root replacements');
      parentOf(doc, path)[path[path.length - 1] as Segment] = mutation.make();
      return { doc, yaml: mutation.jsOnly ? undefined : text(doc), where: [pathText(path)] };
    }
    case 'rename': {
      const key = path[path.length - 1] as string;
      const renamed = mutation.key(key);
      rebuild(parentOf(doc, path) as Doc, (entries) => entries.map(([k, v]) => [k === key ? renamed : k, v]));
      return { doc, yaml: text(doc), where: [pathText([...path.slice(0, -1), renamed]), pathText(path)] };
    }
    case 'add': {
      const target = nodeAt(doc, path) as Doc;
      rebuild(target, (entries) => [...entries, [mutation.key, clone(mutation.value)]]);
      return { doc, yaml: text(doc), where: [pathText([...path, mutation.key])] };
    }
    case 'duplicate':
      return { doc: undefined, yaml: withDuplicate(doc, path, mutation.value, mutation.first), where: [pathText(path)] };
  }
}

/** JSON text (which is YAML) of `doc` with the key at `path` written twice: once with `value`. */
function withDuplicate(doc: Doc, path: readonly Segment[], value: unknown, first: boolean): string {
  const emit = (node: unknown, at: readonly Segment[]): string => {
    if (Array.isArray(node)) return `[${node.map((item, index) => emit(item, [...at, index])).join(', ')}]`;
    if (isObject(node)) {
      const parts: string[] = [];
      for (const [key, item] of Object.entries(node)) {
        const here = [...at, key];
        const own = `${JSON.stringify(key)}: ${emit(item, here)}`;
        if (pathText(here) === pathText(path)) {
          const extra = `${JSON.stringify(key)}: ${JSON.stringify(value)}`;
          parts.push(...(first ? [extra, own] : [own, extra]));
        } else parts.push(own);
      }
      return `{${parts.join(', ')}}`;
    }
    return JSON.stringify(node);
  };
  return emit(doc, []);
}

/** The document as constructor options, when it has the shape the options mirror; undefined otherwise. */
function toOptions(doc: Doc): AgentPolicyOptions | undefined {
  const out: Record<string, unknown> = {};
  const known = (value: unknown, keys: readonly string[]) => isObject(value) && Object.keys(value).every((key) => keys.includes(key));
  for (const key of Object.keys(doc)) {
    const value = doc[key];
    switch (key) {
      case 'version':
        if (value !== 1) return undefined;
        break;
      case 'budget': {
        if (!known(value, ['max_spend', 'soft_limit', 'period'])) return undefined;
        const budget = value as Doc;
        if (!Object.hasOwn(budget, 'max_spend')) return undefined;
        out.budget = budget.max_spend;
        if (Object.hasOwn(budget, 'soft_limit')) out.softLimit = budget.soft_limit;
        if (Object.hasOwn(budget, 'period')) out.period = budget.period;
        break;
      }
      case 'tools':
      case 'network': {
        // An empty section has no options form (the options mirror its lists only).
        if (!known(value, ['allow', 'block']) || Object.keys(value as Doc).length === 0) return undefined;
        const lists = value as Doc;
        const [allow, block] = key === 'tools' ? ['allowedTools', 'blockedTools'] : ['allowedDomains', 'blockedDomains'];
        if (Object.hasOwn(lists, 'allow')) out[allow as string] = lists.allow;
        if (Object.hasOwn(lists, 'block')) out[block as string] = lists.block;
        break;
      }
      case 'approval': {
        if (!known(value, ['require_for']) || !Object.hasOwn(value as Doc, 'require_for')) return undefined;
        const rules = (value as Doc).require_for;
        out.approvalRules = Array.isArray(rules) && rules.length < 1000
          ? rules.map((rule: unknown) => (isObject(rule) ? Object.fromEntries(Object.entries(rule).map(([k, v]) => [k === 'cost_gt' ? 'costGt' : k, v])) : rule))
          : rules;
        break;
      }
      case 'rules':
      case 'limits':
      case 'mode':
        out[key] = value;
        break;
      case 'pricing': {
        if (!isObject(value) || Object.keys(value).length === 0) return undefined;
        const camel: Record<string, string> = { cached_input: 'cachedInput', per_image: 'perImage', per_second: 'perSecond', per_character: 'perCharacter', max_output_tokens: 'maxOutputTokens', max_input_tokens: 'maxInputTokens', max_audio_seconds: 'maxAudioSeconds' };
        const models: Record<string, unknown> = {};
        for (const [model, price] of Object.entries(value)) {
          if (!isObject(price) || Object.keys(price).some((field) => Object.values(camel).includes(field))) return undefined;
          models[model] = Object.fromEntries(Object.entries(price).map(([field, amount]) => [camel[field] ?? field, amount]));
        }
        out.pricing = models;
        break;
      }
      default:
        return undefined;
    }
  }
  return out as AgentPolicyOptions;
}

// ---- loading --------------------------------------------------------------------------------------------------------

type Loaded = { ok: true; policy: AgentPolicy } | { ok: false; issues: readonly PolicyIssue[] };

function load(make: () => AgentPolicy): Loaded {
  try {
    return { ok: true, policy: make() };
  } catch (error) {
    if (!PolicyValidationError.isInstance(error)) throw new Error(`loading threw something other than a PolicyValidationError: ${String(error)}`, { cause: error });
    if (error.issues.length === 0) throw new Error('a PolicyValidationError without issues');
    return { ok: false, issues: error.issues };
  }
}

function related(issuePath: string, where: string): boolean {
  if (issuePath === where || where === '') return true;
  const prefix = (a: string, b: string) => b.startsWith(`${a}.`) || b.startsWith(`${a}[`);
  return prefix(issuePath, where) || prefix(where, issuePath);
}

function namesThePlace(issues: readonly PolicyIssue[], where: readonly string[], yaml: boolean): boolean {
  return issues.some((issue) => where.some((place) => related(issue.path, place)) || (yaml && issue.path === '' && /YAML|line \d+/.test(issue.message)));
}

function summary(loaded: Loaded): string {
  return loaded.ok ? `loaded ${loaded.policy.hash.slice(0, 12)}` : `refused: ${loaded.issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')}`;
}

const caseArb = fc.record({ doc: documentArb, site: fc.nat(), mutation: fc.nat(), flow: fc.boolean() });
type CaseValue = { doc: Doc; site: number; mutation: number; flow: boolean };

type Tally = Map<string, { refused: number; loaded: number }>;

/** One case of the property: throws when the changed policy is refused without its place, loads unequally or widens. */
async function checkCase({ doc, site: siteIndex, mutation: mutationIndex, flow }: CaseValue, tally: Tally): Promise<void> {
  const sites = sitesOf(doc);
  fc.pre(sites.length > 0);
  const site = sites[siteIndex % sites.length] as Site;
  const original = parentOf(doc, site.path)[site.path[site.path.length - 1] as Segment];
  const mutations = mutationsFor(site, original);
  const mutation = mutations[mutationIndex % mutations.length] as Mutation;
  const changed = mutate(doc, site, mutation, flow);
  const label = `${mutation.label} at ${pathText(site.path) || '(top level)'} [${site.at}]`;

  const results: Array<[string, Loaded]> = [];
  if (changed.doc !== undefined) {
    const dict = load(() => AgentPolicy.fromDict(changed.doc));
    if (!dict.ok && !namesThePlace(dict.issues, changed.where, false)) throw new Error(`${label}: fromDict refused it without naming ${changed.where.join(' or ')}: ${summary(dict)}`);
    results.push(['fromDict', dict]);
    const options = toOptions(changed.doc);
    if (options !== undefined) results.push(['new AgentPolicy', load(() => new AgentPolicy(options))]);
  }
  if (changed.yaml !== undefined) {
    const yaml = load(() => AgentPolicy.fromYamlString(changed.yaml as string));
    if (!yaml.ok && !namesThePlace(yaml.issues, changed.where, true)) throw new Error(`${label}: YAML refused it without naming ${changed.where.join(' or ')}: ${summary(yaml)}\n${changed.yaml}`);
    results.push(['fromYamlString', yaml]);
  }
  const [first, ...others] = results;
  if (first === undefined) throw new Error(`${label}: nothing to load`);
  for (const [how, loaded] of others) {
    if (loaded.ok !== first[1].ok || (loaded.ok && first[1].ok && loaded.policy.hash !== first[1].policy.hash)) {
      throw new Error(`${label}: ${first[0]} and ${how} disagree: ${summary(first[1])} / ${summary(loaded)}`);
    }
  }
  const count = tally.get(mutation.label) ?? { refused: 0, loaded: 0 };
  tally.set(mutation.label, count);
  if (!first[1].ok) {
    count.refused++;
    return;
  }
  count.loaded++;
  const before = await outcomes(AgentPolicy.fromDict(doc));
  const after = await outcomes(first[1].policy);
  ACTIONS.forEach((action, i) => {
    const was = before.severity[i] as number;
    const now = after.severity[i] as number;
    if (now < was) throw new Error(`${label} loads and widens: ${describeAction(action)} was ${was}, is now ${now} (2 deny, 1 approval, 0 allow)`);
    if ((after.allows[i] as number) > (before.allows[i] as number)) {
      throw new Error(`${label} loads and widens: ${describeAction(action)} three times in a row was allowed ${before.allows[i]}×, now ${after.allows[i]}×`);
    }
  });
  USAGES.forEach((usage, i) => {
    if ((after.prices[i] as number) < (before.prices[i] as number)) throw new Error(`${label} loads and prices lower: ${JSON.stringify(usage)} cost ${before.prices[i]} nanos, now ${after.prices[i]}`);
  });
}

describe('loading never widens a policy (property)', () => {
  it('every valid generated policy loads the same through fromDict, the constructor and YAML', async () => {
    await fc.assert(
      fc.asyncProperty(documentArb, fc.boolean(), async (doc, flow) => {
        const dict = AgentPolicy.fromDict(doc);
        expect(AgentPolicy.fromYamlString(flow ? JSON.stringify(doc) : stringify(doc)).hash).toBe(dict.hash);
        const options = toOptions(doc);
        expect(options).toBeDefined();
        expect(new AgentPolicy(options).hash).toBe(dict.hash);
      }),
      { seed: SEED, numRuns: Math.max(50, Math.round(RUNS / 4)) },
    );
  }, TIMEOUT);

  it('one absent-ish change anywhere is refused with its path, or decides every action at least as strictly', async () => {
    const tally: Tally = new Map();
    await fc.assert(
      fc.asyncProperty(caseArb, (c) => checkCase(c, tally)),
      { seed: SEED, numRuns: RUNS },
    );
    if (process.env['FUZZ_REPORT']) console.log([...tally].map(([label, count]) => `${label}: ${count.refused} refused, ${count.loaded} loaded`).join('\n'));
    // Every kind of change was tried, and most are refused; the ones that load were checked above.
    if (RUNS >= 400) expect(tally.size).toBeGreaterThanOrEqual(30);
    const refused = [...tally.values()].reduce((sum, count) => sum + count.refused, 0);
    expect(refused).toBeGreaterThan(RUNS / 2);
  }, TIMEOUT);
});

// ---- YAML text attacks ----------------------------------------------------------------------------------------------

interface FlowEdit {
  /** Text before the value (an anchor, a tag). */
  prefix?: string;
  /** Raw text instead of the value (an alias, a bomb). */
  replace?: string;
  /** Raw entries added first to the mapping (a merge key). */
  entries?: string[];
}

/** The document as one line of flow YAML, edited at the places `edit` names (by validator path). */
function flowYaml(doc: unknown, edit: (path: string) => FlowEdit = () => ({})): string {
  const emit = (node: unknown, path: readonly Segment[]): string => {
    const { prefix = '', replace, entries = [] } = edit(pathText(path));
    if (replace !== undefined) return replace;
    if (Array.isArray(node)) return `${prefix}[${node.map((item, index) => emit(item, [...path, index])).join(', ')}]`;
    if (isObject(node)) {
      const parts = [...entries, ...Object.entries(node).map(([key, item]) => `${JSON.stringify(key)}: ${emit(item, [...path, key])}`)];
      return `${prefix}{${parts.join(', ')}}`;
    }
    return `${prefix}${JSON.stringify(node)}`;
  };
  return emit(doc, []);
}

function yamlIssues(text: string): readonly PolicyIssue[] {
  const loaded = load(() => AgentPolicy.fromYamlString(text));
  if (loaded.ok) throw new Error(`expected the YAML to be refused, it loaded:\n${text.slice(0, 2000)}`);
  return loaded.issues;
}

const siteArb = (at: Site['at']) =>
  fc.tuple(documentArb, fc.nat()).map(([doc, n]) => {
    const sites = sitesOf(doc).filter((site) => site.at === at);
    return { doc, site: pathText((sites[n % sites.length] as Site).path) };
  });

describe('YAML text attacks on generated policies', () => {
  const runs = { seed: SEED, numRuns: Math.max(50, Math.round(RUNS / 10)) };

  it('a BOM, CRLF line ends, document markers, comments and flow style load the very same policy', () => {
    fc.assert(
      fc.property(documentArb, (doc) => {
        const hash = AgentPolicy.fromDict(doc).hash;
        const block = stringify(doc);
        for (const text of [`\ufeff${block}`, block.replaceAll('\n', '\r\n'), `---\n${block}...\n`, `# policy\n---\n${flowYaml(doc)}\n`]) {
          expect(AgentPolicy.fromYamlString(text).hash).toBe(hash);
        }
        // An empty document before or after it: the same policy, or refused as a second document.
        for (const text of [`${block}---\n`, `---\n---\n${block}`, `${flowYaml(doc)}\n---\n`]) {
          const loaded = load(() => AgentPolicy.fromYamlString(text));
          if (loaded.ok) expect(loaded.policy.hash).toBe(hash);
          else expect(loaded.issues.map((issue) => issue.message).join()).toMatch(/one YAML document/);
        }
      }),
      runs,
    );
  });

  it('an anchor and its aliases load exactly the value they point at', () => {
    fc.assert(
      fc.property(siteArb('value'), ({ doc, site }) => {
        expect(AgentPolicy.fromYamlString(flowYaml(doc, (path) => (path === site ? { prefix: '&x ' } : {}))).hash).toBe(AgentPolicy.fromDict(doc).hash);
        const rules = doc['rules'] as Doc[] | undefined;
        if (rules === undefined) return;
        // The first rule written again through an alias: the policy has it twice, and nothing else.
        const twice = { ...doc, rules: [...rules, rules[0]] };
        const text = flowYaml(twice, (path) => (path === 'rules[0]' ? { prefix: '&r ' } : path === `rules[${rules.length}]` ? { replace: '*r' } : {}));
        expect(text).toContain('*r');
        expect(AgentPolicy.fromYamlString(text).hash).toBe(AgentPolicy.fromDict(twice).hash);
      }),
      runs,
    );
  });

  it('a merge key (<<) in any mapping is refused, whatever it would merge', () => {
    const merged = fc.constantFrom('{mode: shadow}', '{allow: []}', '{block: []}', '{}', '[{mode: shadow}, {allow: []}]', '*x');
    fc.assert(
      fc.property(siteArb('object'), merged, fc.constantFrom('<<', '"<<"', '? <<'), ({ doc, site }, what, key) => {
        // `*x` merges the document's own top-level mapping, anchored (at the top level itself: an empty mapping).
        const text = flowYaml(doc, (path) => ({ ...(path === site ? { entries: [`${key}: ${what === '*x' && site === '' ? '{}' : what}`] } : {}), ...(what === '*x' && path === '' ? { prefix: '&x ' } : {}) }));
        const issues = yamlIssues(text);
        expect(issues.some((issue) => issue.message.includes('"<<"') || issue.path.includes('<<') || /YAML/.test(issue.message)), JSON.stringify(issues)).toBe(true);
      }),
      runs,
    );
  });

  it('a tag other than the core ones, on any value, is refused (the non-specific ! on a mapping or list changes nothing)', () => {
    const tags = fc.constantFrom('!!js/function', '!!js/regexp', '!!binary', '!!set', '!!omap', '!!pairs', '!!timestamp', '!!python/object:os.system', '!policy', '!', '!<tag:example.com,2000:x>');
    fc.assert(
      fc.property(siteArb('value'), tags, ({ doc, site }, tag) => {
        const loaded = load(() => AgentPolicy.fromYamlString(flowYaml(doc, (path) => (path === site ? { prefix: `${tag} ` } : {}))));
        if (loaded.ok) {
          // `!` on a collection is its default tag: the same mapping or list, so the same policy.
          expect(tag).toBe('!');
          expect(loaded.policy.hash).toBe(AgentPolicy.fromDict(doc).hash);
        } else expect(loaded.issues.some((issue) => /tag/i.test(issue.message)), JSON.stringify(loaded.issues)).toBe(true);
      }),
      runs,
    );
  });

  it('a second document is refused whether it is wider, narrower or the same', () => {
    const second = fc.oneof(documentArb.map((doc) => stringify(doc)), fc.constantFrom('mode: shadow\n', 'tools: {}\n', '{}\n', '[]\n', 'x\n'));
    fc.assert(
      fc.property(documentArb, second, fc.boolean(), (doc, other, otherFirst) => {
        const text = otherFirst ? `${other}---\n${stringify(doc)}` : `${stringify(doc)}---\n${other}`;
        expect(yamlIssues(text).map((issue) => issue.message).join()).toMatch(/one YAML document/);
      }),
      runs,
    );
  });

  it('an alias bomb (billion laughs) at any place is refused by its alias count, before it expands', () => {
    fc.assert(
      fc.property(siteArb('value'), fc.integer({ min: 2, max: 10 }), fc.integer({ min: 2, max: 40 }), ({ doc, site }, width, depth) => {
        const levels = [`&l0 ["lol"]`];
        for (let i = 1; i < depth; i++) levels.push(`&l${i} [${Array(width).fill(`*l${i - 1}`).join(', ')}]`);
        const bomb = `[${levels.join(', ')}, *l${depth - 1}]`;
        const aliases = width * (depth - 1) + 1;
        const issues = yamlIssues(flowYaml(doc, (path) => (path === site ? { replace: bomb } : {})));
        if (aliases > 100) expect(issues.map((issue) => issue.message).join()).toMatch(/alias/i);
      }),
      { ...runs, numRuns: Math.min(runs.numRuns, 60) },
    );
  });

  it('deep nesting at any place and an oversized file are typed errors, never a crash', () => {
    fc.assert(
      fc.property(siteArb('value'), fc.integer({ min: 100, max: 20_000 }), fc.constantFrom('[', '{"a": '), ({ doc, site }, depth, open) => {
        const nested = `${open.repeat(depth)}1${(open === '[' ? ']' : '}').repeat(depth)}`;
        expect(yamlIssues(flowYaml(doc, (path) => (path === site ? { replace: nested } : {}))).length).toBeGreaterThan(0);
      }),
      { ...runs, numRuns: Math.min(runs.numRuns, 40) },
    );
    expect(yamlIssues(`tools:\n  block:\n${'    - tool_with_a_long_name\n'.repeat(40_000)}`)[0]?.message).toMatch(/larger than/);
  });
});
