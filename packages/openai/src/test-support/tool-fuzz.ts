/**
 * What the tool-flow fuzz tests of this package share: the failure they throw, the error a tool body throws, the
 * ledger of bodies that ran, and the checks made after every turn (a body runs only on an allow for exactly its
 * input, once per allow; tool spend is the declared cost of what ran; nothing stays held; spend within the budget;
 * only documented errors; no unhandled rejection). Not part of the package.
 */
import { AgentPolicy, ApprovalRequiredError, canonicalInput, findPolicyError, PolicyDeniedError, type Decision, type PolicySession } from '@agentpolicy/core';
import type { MockReply } from '@agentpolicy/test-servers';
import fc from 'fast-check';
import OpenAI from 'openai';
import OpenAIv6 from 'openai-v6';

/** A broken promise of the adapter, found by a fuzz run. */
export class Violation extends Error {
  override name = 'Violation';
}

/** The error a tool body throws; with `status` 404 (or another 4xx) for a body that refused the call. */
export class BodyError extends Error {
  override name = 'BodyError';
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

/** One body that ran: the tool, the very value it ran with, and what its run costs (0 when it released its cost). */
export interface BodyRun {
  readonly name: string;
  readonly input: unknown;
  readonly charged: number;
  readonly turn: number;
  /** The server request (1-based, in the turn) whose response the call came from. */
  readonly response: number;
}

export const inputKey = (input: unknown): string => (input === undefined ? '(none)' : canonicalInput(input));
const runKey = (name: string, input: unknown): string => `${name}|${inputKey(input)}`;

export const toolDecisions = (session: PolicySession): Decision[] => session.report().decisions.filter((d) => d.action.type === 'tool');
const decisionKey = (decision: Decision): string => {
  const action = decision.action as { name: string; input?: unknown };
  return runKey(action.name, action.input);
};

export const countBy = <T>(items: readonly T[], key: (item: T) => string): Map<string, number> => {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
};

export const explain = (error: unknown): string => {
  const policy = findPolicyError(error);
  const base = `${(error as Error)?.name ?? typeof error}: ${String((error as Error)?.message ?? error)}`;
  return policy !== undefined && policy !== error ? `${base} (cause ${policy.name} ${policy.code}: ${policy.message})` : base;
};

export const isPolicyRefusal = (error: unknown): boolean => {
  const found = findPolicyError(error);
  return found !== undefined && (PolicyDeniedError.isInstance(found) || ApprovalRequiredError.isInstance(found));
};

/**
 * A turn may end with a documented policy error (`PolicyDeniedError` / `ApprovalRequiredError`, possibly wrapped by
 * the client), the client's own error, or an error `also` accepts (a body's error under `runTools()`, a parse error
 * the client throws itself). `cut`: the server cut or dropped a response (openai 6 lets the fetch's error through).
 */
export function checkTurnError(error: unknown, where: string, cut: boolean, also: (error: unknown) => boolean = () => false): void {
  if (error === undefined) return;
  if (error instanceof Violation) throw error;
  const policy = findPolicyError(error);
  if (policy !== undefined) {
    if (PolicyDeniedError.isInstance(policy) || ApprovalRequiredError.isInstance(policy)) return;
    throw new Violation(`${where}: an undocumented agentpolicy error escaped: ${explain(error)}`);
  }
  if (also(error)) return;
  if (error instanceof OpenAI.OpenAIError || error instanceof OpenAIv6.OpenAIError) return;
  if (cut && error instanceof TypeError && /terminated|fetch failed|other side closed/i.test(error.message)) return;
  throw new Violation(`${where}: an unexpected error escaped: ${explain(error)}`);
}

/**
 * The ledger checks after a turn: each body that ran has an allow of its own for exactly that tool and input (runs
 * of a key never outnumber its allows); `mayRun` rejects a value the policy can never allow (a blocked tool, a call
 * the approver says no to); `mayAllow` rejects an allow the policy could not give; tool spend is the declared cost
 * of the bodies that ran; nothing stays held; spend within the budget.
 */
export function checkLedger(
  session: PolicySession,
  runs: readonly BodyRun[],
  where: string,
  rules: { budget: number; mayRun: (run: BodyRun) => string | undefined; mayAllow: (decision: Decision) => string | undefined; limits?: Readonly<Record<string, number>> },
): void {
  const report = session.report();
  const decisions = toolDecisions(session);
  const allows = decisions.filter((d) => d.decision === 'allow');
  const allowsByKey = countBy(allows, decisionKey);
  for (const [key, count] of countBy(runs, (run) => runKey(run.name, run.input))) {
    const allowed = allowsByKey.get(key) ?? 0;
    if (count > allowed) throw new Violation(`${where}: ${key} ran ${count} time(s) with ${allowed} allow(s) recorded for it`);
  }
  for (const run of runs) {
    const wrong = rules.mayRun(run);
    if (wrong !== undefined) throw new Violation(`${where}: ${run.name} ${inputKey(run.input)} ran: ${wrong}`);
  }
  for (const allow of allows) {
    const wrong = rules.mayAllow(allow);
    if (wrong !== undefined) throw new Violation(`${where}: ${decisionKey(allow)} was allowed: ${wrong} (${JSON.stringify(allow.approval)})`);
  }
  for (const [name, limit] of Object.entries(rules.limits ?? {})) {
    const ran = runs.filter((run) => run.name === name).length;
    if (ran > limit) throw new Violation(`${where}: ${name} ran ${ran} times under max_calls ${limit}`);
  }
  const toolSpent = decisions.reduce((sum, d) => sum + (d.settlement?.status === 'committed' ? d.settlement.actual : 0), 0);
  const expected = runs.reduce((sum, run) => sum + run.charged, 0);
  if (Math.abs(toolSpent - expected) > 1e-9) {
    throw new Violation(`${where}: tool spend ${toolSpent}, the bodies that ran cost ${expected} (runs: ${runs.map((r) => `${r.name} ${inputKey(r.input)}`).join(', ')})`);
  }
  if (report.reserved > 1e-12) {
    const held = report.decisions.filter((d) => d.settlement?.status === 'pending').map((d) => `${d.action.type} ${(d.action as { name?: string }).name ?? ''} ${inputKey((d.action as { input?: unknown }).input)}`);
    throw new Violation(`${where}: ${report.reserved} USD still held after the turn (${held.join(', ')})`);
  }
  if (report.spent > rules.budget + 1e-12) throw new Violation(`${where}: spent ${report.spent} > budget ${rules.budget}`);
}

/** Rejections nobody handled, collected while a fuzz runs (install in beforeAll, remove in afterAll). */
export class UnhandledRejections {
  readonly seen: unknown[] = [];
  private readonly listener = (reason: unknown): void => void this.seen.push(reason);
  install(): void {
    process.on('unhandledRejection', this.listener);
  }
  remove(): void {
    process.off('unhandledRejection', this.listener);
  }
  /** Throws a {@link Violation} for the first one seen since the last check. */
  check(where: string): void {
    const first = this.seen[0];
    this.seen.length = 0;
    if (first !== undefined) throw new Violation(`${where}: unhandled rejection: ${explain(first)}`);
  }
}

/** Lets pending settlements and rejection events run. */
export const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** Fails when the runs never went through some path the fuzz claims to check (unless replaying one path). */
export function checkCoverage(coverage: Readonly<Record<string, number>>): void {
  if (process.env['FUZZ_PATH'] !== undefined) return;
  const missing = Object.entries(coverage).filter(([, n]) => n === 0).map(([what]) => what);
  if (missing.length > 0) throw new Error(`the runs never went through: ${missing.join(', ')} (${JSON.stringify(coverage)})`);
  if (process.env['FUZZ_STATS'] !== undefined) console.log(coverage);
}

/** fast-check settings of a fuzz: FUZZ_SEED, FUZZ_RUNS (default `runs`) and FUZZ_PATH from the environment. */
export function fuzzSettings(seed: number, runs: number): { seed: number; numRuns: number; path?: string; endOnFailure: false } {
  const path = process.env['FUZZ_PATH'];
  return {
    seed: process.env['FUZZ_SEED'] === undefined ? seed : Number(process.env['FUZZ_SEED']),
    numRuns: process.env['FUZZ_RUNS'] === undefined ? runs : Number(process.env['FUZZ_RUNS']),
    ...(path !== undefined ? { path } : {}),
    endOnFailure: false,
  };
}

// ---- the world of the fuzzes whose tools take JSON arguments (chat and Responses) --------------------------------

export const BUDGET = 0.0064;
export const CHARGE = 0.003;
export const TOOL_COSTS: Readonly<Record<string, number>> = { charge: CHARGE };
export const PING_LIMIT = 2;

/** Argument texts each tool may be called with: valid JSON, malformed JSON, an empty string. */
export const ARGUMENTS = {
  lookup: ['{"q":"a"}', '{"q":"boom"}', '{"q":"gone"}', '{"q":', ''],
  charge: ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":', ''],
  send: ['{"to":"ada","amount":5}', '{"to":"ada","amount":500}', '{"to":"eve","amount":500}', '{"to":"boom","amount":500}'],
  wipe: ['{"path":"/"}'],
  ping: ['{}', '{"x":1}'],
} as const;
export type ToolName = keyof typeof ARGUMENTS;
export const TOOL_NAMES = Object.keys(ARGUMENTS) as ToolName[];
export const CALL_IDS = ['call_a', 'call_b', 'call_c'];

/** How a body ends, read from its input: returns, throws (its cost is kept), or throws with status 404 (released). */
export type Outcome = 'returned' | 'threw' | 'not-found';
export function outcomeOf(input: unknown): Outcome {
  const text = JSON.stringify(input ?? '');
  if (text.includes('boom') || /"n":2\b/.test(text)) return 'threw';
  if (text.includes('gone') || /"n":3\b/.test(text)) return 'not-found';
  return 'returned';
}

export const needsApproval = (name: string, input: unknown): boolean =>
  name === 'send' && typeof input === 'object' && input !== null && Number((input as { amount?: unknown }).amount) > 100;
export const approverSays = (input: unknown): boolean => (input as { to?: unknown }).to !== 'eve';
/** A call the policy denies whatever the budget: the blocked tool, or a send the approver rejects. */
export const surelyDenied = (name: string, input: unknown): boolean => name === 'wipe' || (needsApproval(name, input) && !approverSays(input));

/** A budget, a blocked tool, an approval rule for large sends (the approver refuses eve), a `max_calls` limit. */
export function makeSession(): PolicySession {
  return new AgentPolicy({
    budget: BUDGET,
    blockedTools: ['wipe'],
    rules: [{ require_approval: 'large sends', tool: 'send', if: { 'input.amount': { gt: 100 } } }],
    limits: [{ tool: 'ping', max_calls: PING_LIMIT, per: 'session' }],
  } as never).session({ approver: (request) => approverSays(request.action.type === 'tool' ? request.action.input : undefined) });
}

/** The ledger rules of this world (see {@link checkLedger}): what may run, what may be allowed, the limit. */
export const WORLD_RULES = {
  budget: BUDGET,
  limits: { ping: PING_LIMIT },
  mayRun: (run: BodyRun): string | undefined => (surelyDenied(run.name, run.input) ? 'the policy never allows it' : undefined),
  mayAllow: (allow: Decision): string | undefined => {
    const action = allow.action as { name: string; input?: unknown };
    if (action.name === 'wipe') return 'the tool is blocked';
    if (needsApproval(action.name, action.input) && (allow.approval?.via !== 'approver' || !approverSays(action.input))) return 'without the approver’s yes';
    return undefined;
  },
};

export interface Call {
  readonly id: string;
  readonly name: ToolName;
  readonly arguments: string;
}

export type Fault = 'none' | 'status-500' | 'drop' | 'cut';

export interface ModelResponse {
  readonly calls: readonly Call[];
  readonly fault: Fault;
  /** Where a cut stream stops (events sent), and the sizes its argument deltas are split into. */
  readonly cutAfter: number;
  readonly chunks: readonly number[];
}

export const aCall: fc.Arbitrary<Call> = fc
  .record({ id: fc.constantFrom(...CALL_IDS), name: fc.constantFrom(...TOOL_NAMES), pick: fc.nat() })
  .map(({ id, name, pick }) => ({ id, name, arguments: ARGUMENTS[name][pick % ARGUMENTS[name].length]! }));

/** A response of 0–3 calls, now and then a fault; a cut stream stops after 1–`maxCut` events. */
export const aResponse = (maxCut: number): fc.Arbitrary<ModelResponse> =>
  fc.record({
    calls: fc.array(aCall, { minLength: 0, maxLength: 3 }),
    fault: fc.constantFrom<Fault>('none', 'none', 'none', 'none', 'none', 'none', 'status-500', 'drop', 'cut'),
    cutAfter: fc.integer({ min: 1, max: maxCut }),
    chunks: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
  });

/** The server's answer for a response; `retry`: the client retries once (a fault becomes a 500 it may retry at once). */
export function replyOf(response: ModelResponse, streamed: boolean, retry: boolean): MockReply {
  const toolCalls = response.calls.map((c) => ({ ...c }));
  // A retried connection failure waits the client's backoff (no header can shorten it): a retried turn gets a 500.
  if (retry && response.fault !== 'none') return { status: 500, headers: { 'retry-after-ms': '0' } };
  switch (response.fault) {
    case 'status-500':
      return { status: 500 };
    case 'drop':
      return { drop: true };
    case 'cut':
      return streamed ? { toolCalls, argumentChunks: response.chunks, dropAfterEvents: response.cutAfter } : { drop: true };
    default:
      return { toolCalls, argumentChunks: response.chunks };
  }
}

/** A tool call as the caller got it from the client: its id (as the adapter keys it), tool and arguments text. */
export interface CallerCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: string;
}

/**
 * Every call the client handed the caller (in a result it returned without error) was decided: an allow is recorded
 * for exactly its tool and input (its arguments as `checkToolCalls` reads them), and it is not one the policy never
 * allows. Else the caller could run a call nobody decided.
 */
export function checkCallsHandedOut(session: PolicySession, calls: readonly CallerCall[], where: string, inputOf: (args: string) => unknown): void {
  const allowed = new Set(toolDecisions(session).filter((d) => d.decision === 'allow').map(decisionKey));
  for (const call of calls) {
    const input = inputOf(call.arguments);
    if (surelyDenied(call.name, input)) throw new Violation(`${where}: the caller got ${call.name} ${inputKey(input)} (${call.id}), a call the policy never allows`);
    if (!allowed.has(runKey(call.name, input))) throw new Violation(`${where}: the caller got ${call.name} ${inputKey(input)} (${call.id}) with no allow recorded for it`);
  }
}
