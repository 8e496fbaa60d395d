/**
 * A model-based fuzz of the public session surface: random sequences of checks, reservations, claims, tool runs,
 * halts, approvals, reports and live policy changes, with hostile argument values (wrong types, NaN and huge costs,
 * lone surrogates, proxies whose traps throw or lie, getters that change, cycles, deep nesting, class instances…).
 * After every step it checks what the engine promises: a thrown error is an agentpolicy error (or the caller's own
 * error, rethrown unchanged); nothing is left rejecting unhandled; money held and spent by checks never passes
 * max_spend; every decision handed out is frozen and is the one the report keeps; a blocked tool or host is never
 * allowed; no tool body runs without an allow.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Decision } from './decision.js';
import { InMemoryCallKeyStore } from './call-key-store.js';
import { AgentPolicyError } from './errors.js';
import { AgentPolicy } from './policy.js';
import { PolicySource } from './policy-source.js';
import type { PolicySession } from './session.js';
import type { Reservation } from './reservation.js';
import { foldToolName } from './tool-matcher.js';
import { nanos, pastBudgetNanos, Violation } from './test-support/fuzz.js';

// ---- hostile values ---------------------------------------------------------------------------------------------

/** A value made afresh each time it is used (a proxy's counter, a getter's state), printed by name. */
interface Hostile {
  readonly name: string;
  make(): unknown;
}
const hostile = (name: string, make: () => unknown): Hostile => ({ name, make, [fc.toStringMethod]: () => name }) as Hostile;
const plain = (name: string, value: unknown): Hostile => hostile(name, () => value);

class Thing {
  amount = 5;
  get doubled(): number {
    return this.amount * 2;
  }
}

function throwingProxy(): object {
  const boom = (): never => {
    throw new Error('trap');
  };
  return new Proxy({}, { get: boom, has: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom, set: boom, defineProperty: boom, deleteProperty: boom, isExtensible: boom, preventExtensions: boom, setPrototypeOf: boom });
}
function throwingNonErrorProxy(): object {
  // Throws a value that is itself a proxy whose every trap throws: `instanceof Error` on it throws too.
  const boom = (): never => {
    throw throwingProxy();
  };
  return new Proxy({}, { get: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom, has: boom });
}
function lyingKeysProxy(): object {
  let n = 0;
  return new Proxy({} as Record<string, unknown>, {
    ownKeys: () => [`k${n++}`, 'amount'],
    getOwnPropertyDescriptor: (_t, key) => ({ value: key === 'amount' ? n * 1000 : n, enumerable: true, configurable: true, writable: true }),
    get: (_t, key) => (key === 'amount' ? n * 1000 : typeof key === 'string' ? n : undefined),
  });
}
function lyingPrototypeProxy(): object {
  return new Proxy({ amount: 5 }, { getPrototypeOf: () => Array.prototype });
}
function throwingGetter(): object {
  return Object.defineProperty({ q: 'x' }, 'amount', {
    enumerable: true,
    get() {
      throw new Error('getter');
    },
  });
}
function changingGetter(): object {
  let n = 0;
  return Object.defineProperty({}, 'amount', {
    enumerable: true,
    get() {
      return n++ === 0 ? 5 : 5000;
    },
  });
}
function cyclic(): object {
  const a: Record<string, unknown> = { amount: 5 };
  a['self'] = a;
  a['list'] = [a, { back: a }];
  return a;
}
function deep(): object {
  let value: Record<string, unknown> = { amount: 5 };
  for (let i = 0; i < 20_000; i++) value = { next: value };
  return value;
}
function sparseHuge(): unknown[] {
  const list: unknown[] = [];
  list.length = 2 ** 32 - 1;
  return list;
}

const HOSTILE_OBJECTS: Hostile[] = [
  plain('null', null),
  plain('undefined', undefined),
  hostile('Symbol()', () => Symbol('s')),
  plain('10n', 10n),
  plain('true', true),
  plain('NaN', Number.NaN),
  hostile('Object.create(null)', () => Object.assign(Object.create(null), { amount: 5, q: 'x' })),
  hostile('proxy(every trap throws)', throwingProxy),
  hostile('proxy(throws a throwing proxy)', throwingNonErrorProxy),
  hostile('proxy(ownKeys lies)', lyingKeysProxy),
  hostile('proxy(getPrototypeOf lies)', lyingPrototypeProxy),
  hostile('{get amount() throws}', throwingGetter),
  hostile('{get amount() changes}', changingGetter),
  hostile('cyclic', cyclic),
  hostile('20,000 deep', deep),
  hostile('frozen', () => Object.freeze({ amount: 5, nested: Object.freeze([1, 2]) })),
  hostile('sealed', () => Object.seal({ amount: 5 })),
  hostile('class instance', () => new Thing()),
  hostile('Date', () => new Date(0)),
  hostile('invalid Date', () => new Date(Number.NaN)),
  hostile('Map', () => new Map<unknown, unknown>([['amount', 5], [{}, 1]])),
  hostile('Set', () => new Set([1, 2])),
  hostile('Uint8Array(1e6)', () => new Uint8Array(1_000_000)),
  hostile('function', () => Object.assign(() => 1, { amount: 5 })),
  hostile('__proto__/constructor keys', () => JSON.parse('{"__proto__":{"amount":5000},"constructor":{"prototype":{"x":1}},"amount":5}')),
  hostile('array with holes', () => [1, , 3]), // oxlint-disable-line no-sparse-arrays
  hostile('sparse 2^32-1 array', sparseHuge),
  hostile('toJSON throws', () => ({ amount: 5, toJSON: () => { throw new Error('toJSON'); } })),
  hostile('Symbol.toPrimitive throws', () => ({ [Symbol.toPrimitive]: () => { throw new Error('toPrimitive'); }, toString: () => { throw new Error('toString'); } })),
  hostile('Error', () => new Error('e')),
  hostile('Promise', () => Promise.resolve(1)),
  hostile('RegExp', () => /x/g),
  hostile('boxed string', () => new String('search')), // oxlint-disable-line no-new-wrappers
  hostile('plain input', () => ({ amount: 5, q: 'cats' })),
  hostile('refund over the limit', () => ({ amount: 5000 })),
  hostile('refund as string', () => ({ amount: '5000' })),
];

const STRINGS: Hostile[] = [
  'search', 'send_email', 'rm', 'RM', 'r\u0301m', 'rm\u0000', 'refund', 'SEARCH', 'se\u0301arch', '\uD800', '\uDFFFsearch', '',
  '__proto__', 'constructor', 'toString', 'https://example.com/a', 'http://evil.com/x', 'https://sub.evil.com', 'http://169.254.169.254/',
  'ftp://example.com', 'http://[::1]/', 'https://exa\u0000mple.com', 'https://EXAMPLE.com.', 'model:openai/gpt-4o',
].map((text) => plain(JSON.stringify(text), text));
STRINGS.push(hostile('"x" × 200,000', () => 'x'.repeat(200_000)));

const NUMBERS: Hostile[] = [0, -0, 1, 0.5, 3, 9.99, 10, 11, Number.NaN, Infinity, -Infinity, -1, 1e308, 5e-324, 1e-10, Number.MAX_SAFE_INTEGER, 2 ** 53 + 1, 0.1 + 0.2].map((n) =>
  plain(Object.is(n, -0) ? '-0' : String(n), n),
);

const anyValue = fc.constantFrom(...STRINGS, ...NUMBERS, ...HOSTILE_OBJECTS);
const aName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...STRINGS.slice(0, 13)) }, { weight: 1, arbitrary: anyValue });
const aUrl = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...STRINGS.slice(15, 23)) }, { weight: 1, arbitrary: anyValue });
const aCost = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...NUMBERS) }, { weight: 1, arbitrary: anyValue }, { weight: 2, arbitrary: fc.constant(plain('absent', undefined)) });

/** How a check's options are built: absent, a whole hostile value, or fields each drawn (present or not). */
type OptionsSpec = { kind: 'absent' } | { kind: 'whole'; value: Hostile } | { kind: 'fields'; fields: Record<string, Hostile>; as: 'object' | 'null-proto' | 'array' | 'map' | 'proxy' | 'frozen' };
const anOptions: fc.Arbitrary<OptionsSpec> = fc.oneof(
  { weight: 1, arbitrary: fc.constant({ kind: 'absent' } as const) },
  { weight: 1, arbitrary: anyValue.map((value) => ({ kind: 'whole', value }) as const) },
  {
    weight: 5,
    arbitrary: fc.record(
      {
        fields: fc.record(
          {
            cost: aCost,
            input: fc.oneof(fc.constantFrom(...HOSTILE_OBJECTS), anyValue),
            metadata: anyValue,
            approved: fc.constantFrom(plain('true', true), plain('"true"', 'true'), plain('1', 1), ...HOSTILE_OBJECTS.slice(0, 8)),
            approval: fc.constantFrom(
              plain('true', true),
              plain('false', false),
              plain('{approved:true}', { approved: true, by: 'x' }),
              plain('{approved:"yes"}', { approved: 'yes' }),
              plain('{requestId: unknown}', { requestId: 'nope', approved: true }),
              hostile('{requestId: proxy}', () => ({ requestId: throwingProxy() })),
              ...HOSTILE_OBJECTS.slice(0, 14),
            ),
            idempotencyKey: fc.oneof(fc.constantFrom(plain('"k1"', 'k1'), plain('"k2"', 'k2')), anyValue),
            method: fc.oneof(fc.constantFrom(plain('"GET"', 'GET'), plain('"post"', 'post')), anyValue),
            source: fc.oneof(fc.constantFrom(plain('"model:x"', 'model:x')), anyValue),
          },
          { requiredKeys: [] },
        ),
        as: fc.constantFrom('object', 'object', 'object', 'null-proto', 'array', 'map', 'proxy', 'frozen'),
      },
      { requiredKeys: ['fields', 'as'] },
    ).map((spec) => ({ kind: 'fields', ...spec }) as const),
  },
);

function buildOptions(spec: OptionsSpec): unknown {
  if (spec.kind === 'absent') return undefined;
  if (spec.kind === 'whole') return spec.value.make();
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(spec.fields)) fields[key] = value.make();
  switch (spec.as) {
    case 'object':
      return fields;
    case 'null-proto':
      return Object.assign(Object.create(null), fields);
    case 'array':
      return Object.assign([], fields);
    case 'map':
      return new Map(Object.entries(fields));
    case 'proxy': {
      let reads = 0;
      // Each read of a field gives another answer: the field, then undefined, then a throw.
      return new Proxy(fields, {
        get(target, key) {
          const turn = reads++ % 3;
          if (turn === 2) throw new Error('options trap');
          return turn === 0 ? Reflect.get(target, key) : undefined;
        },
      });
    }
    case 'frozen':
      return Object.freeze(fields);
  }
}

// ---- policies ---------------------------------------------------------------------------------------------------

const BLOCKED_TOOL = 'rm';
const SHAPES: Record<string, Record<string, unknown>> = {
  lists: {
    budget: { max_spend: 10 },
    tools: { allow: ['search', 'send_email', 'refund', 'pay'], block: [BLOCKED_TOOL] },
    network: { allow: ['example.com'], block: ['evil.com', '169.254.169.254'] },
  },
  rules: {
    budget: { max_spend: 10, soft_limit: 0.5 },
    tools: { block: [BLOCKED_TOOL] },
    network: { block: ['evil.com'] },
    rules: [
      { deny: 'too large', tool: 'refund', if: { 'input.amount': { gt: 1000 } } },
      { require_approval: 'large refunds', tool: 'refund', if: { 'input.amount': { gt: 100 } } },
    ],
    approval: { require_for: [{ tool: 'send_email' }] },
  },
  limits: {
    budget: { max_spend: 3 },
    tools: { block: [BLOCKED_TOOL] },
    network: { block: ['evil.com'] },
    limits: [{ tool: 'search', max_calls: 2, per: 'session' }],
    approval: { require_for: [{ tool: 'pay' }] },
  },
  shadow: { mode: 'shadow', budget: { max_spend: 2 }, tools: { block: [BLOCKED_TOOL] }, network: { block: ['evil.com'] }, approval: { require_for: [{ tool: 'send_email' }] } },
  unbudgeted: { tools: { block: [BLOCKED_TOOL] }, network: { block: ['evil.com'] }, approval: { require_for: [{ tool: 'send_email' }] } },
};
const shapeName = fc.constantFrom(...Object.keys(SHAPES));
/** The policies that block `rm` and evil.com (every shape but shadow): a decision made under another may allow them. */
const RULES_HASH = AgentPolicy.fromDict(SHAPES['rules']).hash;
const BLOCKING = new Set(Object.entries(SHAPES).filter(([name]) => name !== 'shadow').map(([, document]) => AgentPolicy.fromDict(document).hash));

const maxSpendOf = (shape: string): number | null => ((SHAPES[shape] as { budget?: { max_spend: number } }).budget?.max_spend ?? null);

// ---- operations -------------------------------------------------------------------------------------------------

type Op =
  | { op: 'checkTool' | 'decideTool'; name: Hostile; options: OptionsSpec }
  | { op: 'checkHttp'; url: Hostile; options: OptionsSpec }
  | { op: 'checkCost' | 'reserve'; cost: Hostile; options: OptionsSpec }
  | { op: 'evaluate' | 'enforce' | 'reserveAction'; type: Hostile; target: Hostile; options: OptionsSpec }
  | { op: 'settle'; pick: number; how: 'commit' | 'release' | 'fail'; value: Hostile }
  | { op: 'claim' | 'consume'; pick: number; foreign: Hostile | null }
  | { op: 'runTool'; name: Hostile; options: OptionsSpec; body: 'value' | 'throws' | 'async-throws' }
  | { op: 'guardTool'; name: Hostile; args: Hostile[]; cost: Hostile }
  | { op: 'halt'; reason: Hostile } | { op: 'resume'; options: Hostile }
  | { op: 'pending' }
  | { op: 'resolve'; pick: number; answer: Hostile; foreignId: Hostile | null }
  | { op: 'answerBound'; pick: number; approved: Hostile }
  | { op: 'token'; pick: number; foreignId: Hostile | null; options: Hostile; redeemWith: Hostile; tamper: boolean }
  | { op: 'wait'; pick: number; options: Hostile }
  | { op: 'reconcile' }
  | { op: 'model'; estimate: Hostile; usage: boolean }
  | { op: 'wouldExceed'; cost: Hostile }
  | { op: 'report' } | { op: 'end' } | { op: 'settlePending' }
  | { op: 'update'; shape: string }
  | { op: 'updateHostile'; document: Hostile; path: 'update' | 'fromDict' };

const PICK = fc.nat(50);
const tookName = fc.constantFrom(...STRINGS.slice(0, 13));
const answers = fc.constantFrom(
  plain('{approved:true}', { approved: true, by: 'alice' }),
  plain('{approved:false}', { approved: false }),
  plain('{approved:"yes"}', { approved: 'yes' }),
  ...HOSTILE_OBJECTS.slice(0, 14),
);
const anOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 30, arbitrary: fc.record({ op: fc.constantFrom('checkTool', 'decideTool'), name: aName, options: anOptions }) },
  { weight: 15, arbitrary: fc.record({ op: fc.constant('checkHttp'), url: aUrl, options: anOptions }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constantFrom('checkCost', 'reserve'), cost: aCost, options: anOptions }) },
  { weight: 15, arbitrary: fc.record({ op: fc.constantFrom('evaluate', 'enforce', 'reserveAction'), type: fc.oneof(fc.constantFrom(plain('"tool"', 'tool'), plain('"http"', 'http'), plain('"cost"', 'cost')), anyValue), target: fc.oneof(aName, aUrl), options: anOptions }) },
  { weight: 15, arbitrary: fc.record({ op: fc.constant('settle'), pick: PICK, how: fc.constantFrom('commit', 'release', 'fail'), value: fc.oneof(aCost, anyValue) }) },
  { weight: 15, arbitrary: fc.record({ op: fc.constantFrom('claim', 'consume'), pick: PICK, foreign: fc.option(anyValue, { freq: 3 }) }) },
  { weight: 20, arbitrary: fc.record({ op: fc.constant('runTool'), name: aName, options: anOptions, body: fc.constantFrom('value', 'throws', 'async-throws') }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant('guardTool'), name: tookName, args: fc.array(anyValue, { maxLength: 3 }), cost: aCost }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('halt'), reason: fc.oneof(fc.constant(plain('"stop"', 'stop')), anyValue) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('resume'), options: fc.oneof(fc.constant(plain('{}', {})), anyValue) }) },
  { weight: 5, arbitrary: fc.constant({ op: 'pending' } as const) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant('resolve'), pick: PICK, answer: answers, foreignId: fc.option(anyValue, { freq: 3 }) }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant('answerBound'), pick: PICK, approved: fc.constantFrom(plain('absent', undefined), plain('true', true), plain('false', false), ...HOSTILE_OBJECTS.slice(0, 8)) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('token'), pick: PICK, foreignId: fc.option(anyValue, { freq: 3 }), options: fc.oneof(fc.constantFrom(plain('{}', {}), plain('{answer:"reject"}', { answer: 'reject' }), plain('{answer:"maybe"}', { answer: 'maybe' })), anyValue), redeemWith: fc.oneof(fc.constantFrom(plain('{by:"carol"}', { by: 'carol' }), plain('absent', undefined)), anyValue), tamper: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('wait'), pick: PICK, options: fc.oneof(fc.constantFrom(plain('{timeoutMs:0}', { timeoutMs: 0 }), plain('{timeoutMs:NaN, intervalMs:-1}', { timeoutMs: Number.NaN, intervalMs: -1 }), hostile('{signal: aborted}', () => ({ timeoutMs: 50, signal: AbortSignal.abort() }))), anyValue) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'reconcile' } as const) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant('model'), estimate: fc.oneof(fc.constantFrom(plain('gpt-4o call', { model: 'gpt-4o', maxOutputTokens: 100, prompt: 'hi' }), plain('gpt-4o usage', { model: 'gpt-4o', inputTokens: 1000, outputTokens: 1000 }), hostile('usage: NaN tokens', () => ({ model: 'gpt-4o', inputTokens: Number.NaN, outputTokens: -1 }))), anyValue), usage: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('wouldExceed'), cost: aCost }) },
  { weight: 5, arbitrary: fc.constantFrom({ op: 'report' } as const, { op: 'settlePending' } as const) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('update'), shape: shapeName }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('updateHostile'), document: fc.oneof(anyValue, fc.constantFrom(
  hostile('budget NaN', () => ({ budget: { max_spend: Number.NaN } })),
  hostile('budget getter throws', () => ({ get budget() { throw new Error('doc getter'); } })),
  hostile('tools proxy', () => ({ tools: throwingProxy() })),
  hostile('rules cyclic', () => { const rule: Record<string, unknown> = { deny: 'x', tool: 't' }; rule['if'] = rule; return { rules: [rule] }; }),
  hostile('__proto__ budget', () => JSON.parse('{"__proto__":{"budget":{"max_spend":0}},"tools":{"allow":["search"]}}')),
  hostile('YAML text', () => 'budget:\n  max_spend: 1\n'),
  hostile('YAML bomb', () => `a: &a ["x","x","x","x","x","x","x","x","x"]\n${Array.from({ length: 12 }, (_, i) => `b${i}: &b${i} [*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`},*${i === 0 ? 'a' : `b${i - 1}`}]`).join('\n')}\n`),
  hostile('limits huge', () => ({ limits: [{ tool: 'search', max_calls: 1e308, per: 'session' }] })),
)), path: fc.constantFrom('update', 'fromDict') }) },
  { weight: 1, arbitrary: fc.constant({ op: 'end' } as const) },
) as fc.Arbitrary<Op>;

// ---- the model ----------------------------------------------------------------------------------------------------

/** An error the caller's own function throws: it must come back unchanged. */
class CallerError extends Error {}

interface World {
  session: PolicySession;
  policy: AgentPolicy;
  source: PolicySource | undefined;
  /** Decisions handed out (returned, or carried by an error), by id: what the report must keep. */
  handedOut: Map<string, Decision>;
  reservations: Reservation[];
  /** Tool bodies that ran, with the allow each ran under (found afterwards by id). */
  bodiesRun: { name: string }[];
  /** Spend the engine records past the budget on purpose: usage that happened, overruns of estimates. */
  externalNanos: number;
  /** The largest max_spend the session was ever under; null once it ran with no budget at all. */
  bound: number | null;
  shadow: boolean;
}

function noteDecision(world: World, value: unknown, where: string): void {
  if (typeof value !== 'object' || value === null || !('id' in value)) throw new Violation(`${where} handed out ${String(value)}, not a decision`);
  const decision = value as Decision;
  if (!Object.isFrozen(decision) || !Object.isFrozen(decision.action) || !Object.isFrozen(decision.rule)) throw new Violation(`${where}: decision ${decision.id} is not frozen`);
  if (decision.sessionId === world.session.id && !world.handedOut.has(decision.id)) world.handedOut.set(decision.id, decision);
  world.externalNanos += pastBudgetNanos(decision);
}

/** What a call did: its value, or the error it threw (synchronously or by rejecting). */
async function attempt(world: World, where: string, call: () => unknown, allowCallerError = false): Promise<unknown> {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    judgeError(world, where, error, allowCallerError, true);
    return undefined;
  }
  if (result instanceof Promise) {
    try {
      return await result;
    } catch (error) {
      judgeError(world, where, error, allowCallerError, false);
      return undefined;
    }
  }
  return result;
}

/** Methods that answer with a promise must not throw synchronously (a `.catch()` on the call would miss it). */
const PROMISED = new Set(['token', 'wait', 'reconcile', 'checkTool', 'checkHttp', 'checkCost', 'reserve', 'enforce', 'reserveAction', 'runTool', 'resolve', 'answerBound', 'model', 'settle', 'pending', 'guarded']);

/** `value instanceof type`, false for a thrown proxy whose traps throw. */
function isA(value: unknown, type: new (...args: never[]) => unknown): boolean {
  try {
    return value instanceof type;
  } catch {
    return false;
  }
}

function judgeError(world: World, where: string, error: unknown, allowCallerError: boolean, synchronous: boolean): void {
  if (isA(error, Violation)) throw error;
  if (allowCallerError && isA(error, CallerError)) return;
  if (!AgentPolicyError.isInstance(error)) {
    let text: string;
    try {
      text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    } catch {
      text = 'unreadable value (a proxy whose traps throw)';
    }
    throw new Violation(`${where} threw a raw ${text}${synchronous ? ' (synchronously)' : ''}\n${isA(error, Error) ? (error as Error).stack : ''}`);
  }
  if (synchronous && PROMISED.has(where.split(' ')[0] as string)) throw new Violation(`${where} threw ${error.message} synchronously instead of rejecting`);
  const carried = (error as { decision?: unknown }).decision;
  if (carried !== undefined) noteDecision(world, carried, `${where} (error)`);
}

function pickDecision(world: World, pick: number): Decision | undefined {
  const all = [...world.handedOut.values()];
  return all.length === 0 ? undefined : all[pick % all.length];
}

async function pickRequestId(world: World, pick: number): Promise<string | undefined> {
  const pending = await world.session.pendingApprovals();
  const ids = [...pending.map((request) => request.id), ...[...world.handedOut.values()].flatMap((d) => (d.approvalRequest ? [d.approvalRequest.id] : []))];
  return ids.length === 0 ? undefined : ids[pick % ids.length];
}

async function step(world: World, op: Op): Promise<void> {
  const { session } = world;
  const decided = (where: string) => (value: unknown) => {
    if (value !== undefined) noteDecision(world, value, where);
  };
  switch (op.op) {
    case 'checkTool':
    case 'decideTool': {
      const name = op.name.make();
      const options = buildOptions(op.options);
      const value = await attempt(world, op.op, () => (op.op === 'checkTool' ? session.checkTool(name as string, options as never) : session.decideTool(name as string, options as never)));
      decided(op.op)(value);
      return;
    }
    case 'checkHttp':
      decided('checkHttp')(await attempt(world, 'checkHttp', () => session.checkHttp(op.url.make() as string, buildOptions(op.options) as never)));
      return;
    case 'checkCost':
      decided('checkCost')(await attempt(world, 'checkCost', () => session.checkCost(op.cost.make() as number, buildOptions(op.options) as never)));
      return;
    case 'reserve': {
      const reservation = (await attempt(world, 'reserve', () => session.reserve(op.cost.make() as number, buildOptions(op.options) as never))) as Reservation | undefined;
      if (reservation !== undefined) {
        world.reservations.push(reservation);
        noteDecision(world, reservation.decision, 'reserve');
      }
      return;
    }
    case 'evaluate':
    case 'enforce':
    case 'reserveAction': {
      const options = buildOptions(op.options);
      const type = op.type.make();
      const target = op.target.make();
      let action: unknown;
      try {
        action =
          typeof options === 'object' && options !== null && !(options instanceof Map) && !Array.isArray(options) && Object.getPrototypeOf(options) === Object.prototype
            ? { ...(options as object), type, name: target, url: target, source: (options as { source?: unknown }).source ?? target }
            : (options ?? { type, name: target, url: target, cost: 0 });
      } catch {
        action = options; // a proxy or getter that cannot even be spread: passed as the action itself
      }
      if (op.op === 'evaluate') {
        const value = (await attempt(world, 'evaluate', () => session.evaluate(action as never))) as Decision | undefined;
        if (value !== undefined && !Object.isFrozen(value)) throw new Violation('evaluate handed out a decision that is not frozen');
        return;
      }
      if (op.op === 'enforce') {
        decided('enforce')(await attempt(world, 'enforce', () => session.enforce(action as never)));
        return;
      }
      const reservation = (await attempt(world, 'reserveAction', () => session.reserveAction(action as never))) as Reservation | undefined;
      if (reservation !== undefined) {
        world.reservations.push(reservation);
        noteDecision(world, reservation.decision, 'reserveAction');
      }
      return;
    }
    case 'settle': {
      const reservation = world.reservations[op.pick % Math.max(1, world.reservations.length)];
      if (reservation === undefined) return;
      const value = op.value.make();
      const settled = await attempt(world, `settle ${op.how}`, () =>
        op.how === 'commit' ? reservation.commit(value as never) : op.how === 'release' ? reservation.release() : reservation.fail(value as never),
      );
      decided('settle')(settled);
      return;
    }
    case 'claim':
    case 'consume': {
      const target = op.foreign === null ? pickDecision(world, op.pick) : op.foreign.make();
      if (target === undefined) return;
      const value = await attempt(world, op.op, () => (op.op === 'claim' ? session.claim(target as Decision) : session.consume(target as Decision)));
      if (value !== undefined && typeof value !== 'boolean') throw new Violation(`${op.op} answered ${String(value)}, not a boolean`);
      if (value === true && (target as Decision).decision !== 'allow') throw new Violation(`${op.op} took a ${(target as Decision).decision}`);
      return;
    }
    case 'runTool': {
      const name = op.name.make();
      const options = buildOptions(op.options);
      let ran = 0;
      const execute = () => {
        ran++;
        world.bodiesRun.push({ name: typeof name === 'string' ? name : '' });
        if (op.body === 'throws') throw new CallerError('tool failed');
        if (op.body === 'async-throws') return Promise.reject(new CallerError('tool failed later'));
        return 'done';
      };
      let rejectedWith: unknown;
      let outcome: unknown;
      try {
        outcome = await session.runTool(name as string, options as never, execute);
      } catch (error) {
        rejectedWith = error;
      }
      if (rejectedWith !== undefined) {
        if (isA(rejectedWith, CallerError)) {
          if (ran !== 1) throw new Violation(`runTool rethrew the tool's error but the tool ran ${ran} times`);
        } else {
          judgeError(world, 'runTool', rejectedWith, false, false);
          if (ran !== 0) throw new Violation(`runTool rejected with ${(rejectedWith as Error).message} after the tool ran`);
        }
      } else if (ran !== 1 || outcome !== 'done') throw new Violation(`runTool resolved (${String(outcome)}) with the tool run ${ran} times`);
      if (ran > 0) {
        // The allow it ran under is the newest tool allow for that name in the report.
        const allow = session
          .report()
          .decisions.filter((d) => d.action.type === 'tool' && d.decision === 'allow')
          .at(-1);
        if (allow === undefined) throw new Violation(`runTool ran ${String(name)} with no allow recorded`);
        if (BLOCKING.has(allow.policyHash) && allow.action.type === 'tool' && foldToolName(allow.action.name) === BLOCKED_TOOL) throw new Violation('runTool ran a blocked tool');
        if (allow.action.type === 'tool' && allow.action.name === 'refund' && allow.policyHash === RULES_HASH) {
          const amount = (allow.action.input as { amount?: unknown } | undefined)?.amount;
          if (typeof amount === 'number' && amount > 100 && allow.approved !== true) throw new Violation(`refund of ${amount} ran without an approval`);
          if (typeof amount === 'number' && amount > 1000) throw new Violation(`refund of ${amount} ran although rules[0] denies it`);
        }
      }
      return;
    }
    case 'guardTool': {
      let ran = 0;
      const fn = async (...args: unknown[]) => {
        ran++;
        return args.length;
      };
      const cost = op.cost.make();
      const guarded = await attempt(world, 'guardTool', () => session.guardTool(fn, { name: op.name.make() as string, ...(cost !== undefined ? { cost: cost as number } : {}) }));
      if (typeof guarded !== 'function') return;
      const before = session.report().decisionSummary.allow;
      const args = op.args.map((arg) => arg.make());
      const value = await attempt(world, 'guarded call', () => (guarded as (...a: unknown[]) => Promise<unknown>)(...args));
      if (ran > 0 && session.report().decisionSummary.allow <= before) throw new Violation('a guarded function ran with no allow recorded');
      if (value !== undefined && value !== args.length) throw new Violation('a guarded function answered something else');
      return;
    }
    case 'halt':
      await attempt(world, 'halt', () => (world.source ?? world.policy).halt(op.reason.make() as string));
      return;
    case 'resume':
      await attempt(world, 'resume', () => (world.source ?? world.policy).resume(op.options.make() as never));
      return;
    case 'pending': {
      const pending = await attempt(world, 'pending', () => session.pendingApprovals());
      if (pending !== undefined && !Array.isArray(pending)) throw new Violation('pendingApprovals answered no list');
      return;
    }
    case 'resolve': {
      const id = op.foreignId === null ? await pickRequestId(world, op.pick) : op.foreignId.make();
      if (id === undefined) return;
      await attempt(world, 'resolve', () => session.resolveApproval(id as string, op.answer.make() as never));
      await attempt(world, 'resolve getApproval', () => session.getApproval(id as string));
      return;
    }
    case 'answerBound': {
      // The agent resumes: the same action as a pending request, answered with its request id.
      const withRequest = [...world.handedOut.values()].filter((d) => d.approvalRequest !== undefined);
      const request = withRequest[op.pick % Math.max(1, withRequest.length)];
      if (request === undefined) return;
      const approved = op.approved.make();
      const approval = approved === undefined ? { requestId: request.approvalRequest?.id } : { requestId: request.approvalRequest?.id, approved };
      const action = request.action;
      if (action.type === 'tool') {
        const value = await attempt(world, 'answerBound', () => session.checkTool(action.name, { input: action.input, cost: action.cost, approval: approval as never }));
        decided('answerBound')(value);
      }
      return;
    }
    case 'token': {
      const id = op.foreignId === null ? await pickRequestId(world, op.pick) : op.foreignId.make();
      if (id === undefined) return;
      const token = await attempt(world, 'token', () => session.approvalToken(id as string, op.options.make() as never));
      const text = typeof token === 'string' ? (op.tamper ? `${token.slice(0, -2)}AA` : token) : op.options.make();
      const redeemed = await attempt(world, 'token redeem', () => session.resolveApprovalToken(text as string, op.redeemWith.make() as never));
      if (redeemed !== undefined && (typeof redeemed !== 'object' || redeemed === null || typeof (redeemed as { ok?: unknown }).ok !== 'boolean')) throw new Violation('resolveApprovalToken answered no result');
      return;
    }
    case 'wait': {
      const id = await pickRequestId(world, op.pick);
      await attempt(world, 'wait', () => session.waitForApproval((id ?? op.options.make()) as string, op.options.make() as never));
      return;
    }
    case 'reconcile':
      await attempt(world, 'reconcile', () => session.reconcile());
      return;
    case 'model': {
      const estimate = op.estimate.make();
      if (op.usage) {
        decided('model usage')(await attempt(world, 'model usage', () => session.recordUsage(estimate as never)));
        return;
      }
      const reservation = (await attempt(world, 'model reserve', () => session.reserveModelCall(estimate as never))) as Reservation | undefined;
      if (reservation !== undefined) {
        world.reservations.push(reservation);
        noteDecision(world, reservation.decision, 'model reserve');
      }
      return;
    }
    case 'wouldExceed': {
      const value = await attempt(world, 'wouldExceed', () => session.wouldExceed(op.cost.make() as number));
      if (typeof value !== 'boolean') throw new Violation('wouldExceed answered no boolean');
      return;
    }
    case 'report':
      await attempt(world, 'report', () => session.report());
      return;
    case 'settlePending':
      await attempt(world, 'settlePending', () => session.settlePending());
      return;
    case 'end':
      await attempt(world, 'end', () => session.end());
      return;
    case 'updateHostile': {
      const document = op.document.make();
      if (op.path === 'fromDict') {
        await attempt(world, 'fromDict', () => AgentPolicy.fromDict(document));
        return;
      }
      if (world.source === undefined) return;
      const result = await attempt(world, 'update', () => (world.source as PolicySource).update(document as never));
      if (result !== undefined && typeof (result as { ok?: unknown }).ok !== 'boolean') throw new Violation('update answered no result');
      if ((result as { ok?: boolean } | undefined)?.ok) {
        world.policy = world.source.current;
        const limit = world.policy.normalized.budget?.maxSpendNanos;
        world.bound = world.bound === null || limit === undefined ? null : Math.max(world.bound, limit / 1e9);
        if (world.policy.normalized.mode !== 'enforce') {
          world.shadow = true;
          world.bound = null;
        }
      }
      return;
    }
    case 'update': {
      if (world.source === undefined) return;
      const result = await attempt(world, 'update', () => (world.source as PolicySource).update(SHAPES[op.shape] as Record<string, unknown>));
      if ((result as { ok?: boolean } | undefined)?.ok) {
        world.policy = world.source.current;
        const limit = op.shape === 'shadow' ? null : maxSpendOf(op.shape);
        world.bound = world.bound === null || limit === null ? null : Math.max(world.bound, limit);
        if (op.shape === 'shadow') world.shadow = true;
      }
      return;
    }
  }
}

/** A step that does not settle within a few seconds hangs (every call here answers at once or within ~50 ms). */
async function bounded(promise: Promise<void>, op: Op): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Violation(`${op.op} did not settle within 5 s: ${fc.stringify(op)}`)), 5000);
  });
  try {
    await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** What must hold after every step. */
function invariants(world: World, where: string): void {
  const { session } = world;
  let report: ReturnType<PolicySession['report']>;
  try {
    report = session.report();
  } catch (error) {
    throw new Violation(`report() threw after ${where}: ${String(error)}`);
  }
  if (report.decisionsDropped !== 0) return; // the run keeps far fewer than the default 10,000
  if (world.bound !== null) {
    const held = nanos(report.spent) + nanos(report.reserved) - world.externalNanos;
    if (held > nanos(world.bound) + 1) throw new Violation(`after ${where}: spent ${report.spent} + reserved ${report.reserved} (less ${world.externalNanos / 1e9} recorded usage and overruns) passes max_spend ${world.bound}`);
  }
  if (report.decisionSummary.total !== report.decisions.length) throw new Violation(`after ${where}: the summary counts ${report.decisionSummary.total} decisions, the report keeps ${report.decisions.length}`);
  const kept = new Map(report.decisions.map((d) => [d.id, d]));
  for (const [id, given] of world.handedOut) {
    const recorded = kept.get(id);
    if (recorded === undefined) throw new Violation(`after ${where}: decision ${id} (${given.decision}: ${given.reason}) was handed out but is not in the report`);
    if (!Object.isFrozen(recorded)) throw new Violation(`after ${where}: the report's decision ${id} is not frozen`);
    for (const field of ['decision', 'reason', 'fingerprint', 'policyHash', 'sessionId'] as const) {
      if (recorded[field] !== given[field]) throw new Violation(`after ${where}: decision ${id} has ${field} ${String(given[field])} but the report says ${String(recorded[field])}`);
    }
    if (JSON.stringify(recorded.rule) !== JSON.stringify(given.rule)) throw new Violation(`after ${where}: decision ${id}'s rule differs in the report`);
  }
  {
    for (const d of report.decisions) {
      if (d.decision !== 'allow' || !BLOCKING.has(d.policyHash)) continue;
      if (d.action.type === 'tool' && foldToolName(d.action.name) === BLOCKED_TOOL) throw new Violation(`after ${where}: blocked tool allowed: ${d.id}`);
      if (d.action.type === 'http' && /(^|\.)evil\.com$/.test(d.action.domain)) throw new Violation(`after ${where}: blocked host allowed: ${d.id} ${d.action.url}`);
    }
  }
}

// ---- the run ------------------------------------------------------------------------------------------------------

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_201 : Number(process.env['FUZZ_SEED']);
const RUNS = process.env['FUZZ_RUNS'] === undefined ? 1000 : Number(process.env['FUZZ_RUNS']);

/** One step or a few steps at once (they race: checks, claims and settlements interleave). */
const aBatch = fc.array(anOp, { minLength: 1, maxLength: 3 }).chain((ops) => fc.tuple(fc.constant(ops), fc.boolean()));

describe('session fuzz: hostile calls in random order keep every promise', () => {
  it('errors are typed, decisions are kept, the budget holds, nothing blocked runs', async () => {
    await fc.assert(
      fc.asyncProperty(shapeName, fc.boolean(), fc.boolean(), fc.array(aBatch, { minLength: 1, maxLength: 25 }), async (shape, live, sharedKeys, batches) => {
        const policy = AgentPolicy.fromDict(SHAPES[shape]);
        const source = live ? new PolicySource(policy) : undefined;
        // With a shared call-key store, keyed allows are claimed through the store (consume refuses them, typed).
        const options = { approvalSecret: 'fuzz-secret-of-at-least-32-bytes!!', ...(sharedKeys ? { callKeys: new InMemoryCallKeyStore() } : {}) };
        const session = source ? source.session(options) : policy.session(options);
        const limit = maxSpendOf(shape);
        // Shadow mode records what enforcement would have done and lets everything through, the budget included.
        const shadow = shape === 'shadow';
        const world: World = { session, policy, source, handedOut: new Map(), reservations: [], bodiesRun: [], externalNanos: 0, bound: shadow ? null : limit, shadow };
        unhandled.length = 0;
        try {
          for (const [ops, together] of batches) {
            if (together) await Promise.all(ops.map((op) => bounded(step(world, op), op)));
            else for (const op of ops) await bounded(step(world, op), op);
            invariants(world, ops.map((op) => op.op).join('+'));
          }
          // Let anything left dangling settle, then look for unhandled rejections.
          await new Promise((resolve) => setTimeout(resolve, 0));
          if (unhandled.length > 0) throw new Violation(`unhandled rejection: ${String(unhandled[0])}`);
          session.end();
          invariants(world, 'end');
        } finally {
          source?.close();
          await (world.source ?? world.policy).resume();
        }
      }),
      { seed: SEED, numRuns: RUNS, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false },
    );
  }, 120_000);

  it('hostile session options are refused with a typed error, or give a session whose checks decide and record', async () => {
    const OPTION_VALUES: Record<string, Hostile[]> = {
      id: [plain('"s1"', 's1'), plain('""', ''), ...HOSTILE_OBJECTS.slice(0, 10)],
      budgetKey: [plain('"tenant"', 'tenant'), ...HOSTILE_OBJECTS.slice(0, 8)],
      maxDecisions: [plain('0', 0), plain('Infinity', Infinity), ...NUMBERS.slice(8, 12), ...HOSTILE_OBJECTS.slice(0, 6)],
      leaseTtlMs: [plain('1', 1), ...NUMBERS.slice(8, 14), ...HOSTILE_OBJECTS.slice(0, 6)],
      approvalTimeoutMs: [plain('10', 10), ...NUMBERS.slice(8, 12)],
      approvalTtlMs: [plain('10', 10), ...NUMBERS.slice(8, 12)],
      inlineApprovals: [plain('false', false), plain('"no"', 'no'), ...HOSTILE_OBJECTS.slice(0, 4)],
      onDecisionError: [plain('"warn"', 'warn'), plain('"explode"', 'explode')],
      telemetry: [plain('false', false), plain('"no"', 'no')],
      approvalSecret: [plain('short', 'short'), plain('32 bytes', 'x'.repeat(32)), ...HOSTILE_OBJECTS.slice(0, 6)],
      defaultMaxOutputTokens: NUMBERS.slice(8, 14),
      onDecision: [hostile('throws', () => () => { throw new Error('sink'); }), plain('"x"', 'x'), ...HOSTILE_OBJECTS.slice(0, 4)],
      sinks: [plain('"x"', 'x'), hostile('[{}]', () => [{}]), hostile('[throwing sink]', () => [{ decision: () => { throw new Error('sink'); } }]), ...HOSTILE_OBJECTS.slice(0, 8)],
      store: [hostile('{}', () => ({})), ...HOSTILE_OBJECTS.slice(6, 10)],
      limitStore: [hostile('{}', () => ({})), ...HOSTILE_OBJECTS.slice(6, 10)],
      approvals: [hostile('{}', () => ({})), ...HOSTILE_OBJECTS.slice(6, 10)],
      halts: [hostile('{}', () => ({})), ...HOSTILE_OBJECTS.slice(6, 10)],
      callKeys: [hostile('{}', () => ({})), ...HOSTILE_OBJECTS.slice(6, 10)],
      approver: [hostile('approves', () => () => true), hostile('throws', () => () => { throw new Error('approver'); }), hostile('never answers', () => () => new Promise(() => {})), ...HOSTILE_OBJECTS.slice(0, 6)],
      onSoftLimit: [hostile('throws', () => () => { throw new Error('soft'); }), ...HOSTILE_OBJECTS.slice(0, 4)],
    };
    const anOptionsRecord = fc.record(Object.fromEntries(Object.entries(OPTION_VALUES).map(([key, values]) => [key, fc.constantFrom(...values)])), { requiredKeys: [] });
    await fc.assert(
      fc.asyncProperty(shapeName, anOptionsRecord, fc.array(fc.constantFrom(...STRINGS.slice(0, 13)), { minLength: 1, maxLength: 4 }), async (shape, spec, names) => {
        const policy = AgentPolicy.fromDict(SHAPES[shape]);
        const options: Record<string, unknown> = { approvalTimeoutMs: 20 };
        for (const [key, value] of Object.entries(spec)) options[key] = (value as Hostile).make();
        const world: World = { session: undefined as unknown as PolicySession, policy, source: undefined, handedOut: new Map(), reservations: [], bodiesRun: [], externalNanos: 0, bound: null, shadow: shape === 'shadow' };
        const session = await attempt(world, 'session', () => policy.session(options as never));
        if (session === undefined) return;
        world.session = session as PolicySession;
        unhandled.length = 0;
        for (const name of names) {
          const options = { cost: 0.5, input: { amount: 5 } };
          // An approver that never answers is given approvalTimeoutMs (20 ms here): a check that takes seconds hangs.
          await bounded(
            attempt(world, 'checkTool', () => world.session.checkTool(name.make() as string, options)).then((value: unknown) => {
              if (value !== undefined) noteDecision(world, value, 'checkTool');
            }),
            { op: 'checkTool', name, options: { kind: 'absent' } },
          );
          await bounded(attempt(world, 'runTool', () => world.session.runTool(name.make() as string, { input: { amount: 5 } }, () => 'done')).then(() => undefined), { op: 'runTool', name, options: { kind: 'absent' }, body: 'value' });
        }
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (unhandled.length > 0) throw new Violation(`unhandled rejection: ${String(unhandled[0])}`);
        if (typeof options['maxDecisions'] !== 'number' || (options['maxDecisions'] as number) >= 100) invariants(world, 'session options');
      }),
      { seed: SEED, numRuns: Math.max(50, Math.round(RUNS / 4)) },
    );
  }, 120_000);
});
