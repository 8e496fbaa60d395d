/**
 * A model-based fuzz of the middleware through a real `createAgent` loop (fakeModel, real tools, a MemorySaver) with
 * interrupts resumed by `Command({ resume })` as the README's approval loop does. Each run is a random sequence of
 * human messages on one or two threads sharing one session; every model turn calls 1–3 tools (a free one, a paid one
 * whose body sometimes throws, one that needs approval when `input.amount > 100`, a blocked one) with tool call ids
 * from a pool of three, so ids repeat within and across turns with other input. An interrupted thread is answered in
 * a random way: each request by its id or by its interrupt id, one request named, one bare value, a replayed or
 * unknown request id, the last value again, an empty map, or the thread is abandoned.
 *
 * The test keeps its own account of what the human approved and checks after every step:
 * 1. a tool body runs only for a call the policy allows for exactly that input, or for a require_approval call the
 *    human approved for exactly that request; never the blocked tool, never on a "no";
 * 2. one approval runs its call at most once, one allow runs at most once (a repeated id is decided again);
 * 3. spend equals the declared costs of the bodies that ran (a body that throws keeps its cost, unless its error
 *    carries a 4xx status) and never passes max_spend;
 * 4. every run has an allow recorded for it; no unhandled rejection; `invoke` throws nothing but the tool's own
 *    errors and the documented refusal of a bare value while several requests are pending.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>).
 */
import { AgentPolicy, AgentPolicyError, type PolicySession, type ToolAction } from '@agentpolicy/core';
import { HumanMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver } from '@langchain/langgraph';
import fc from 'fast-check';
import { createAgent } from 'langchain';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { z } from 'zod';
import { agentPolicyMiddleware, type ToolApprovalRequest } from './agent-policy-middleware.js';
import { aiMessage } from './test-support.js';

// ---- the policy and the tools ------------------------------------------------------------------------------------

const MAX_SPEND = 1;
const COSTS = { charge: 0.25, pay: 0.1 } as const;
const IDS = ['call_1', 'call_2', 'call_3'] as const;
const QS = ['a', 'b', 'boom', 'declined'] as const;
const AMOUNTS = [50, 150, 900] as const;
const NO_USAGE = { input_tokens: 0, output_tokens: 0, total_tokens: 0 };

const policy = () =>
  new AgentPolicy({
    budget: MAX_SPEND,
    blockedTools: ['wipe'],
    rules: [{ require_approval: 'a payment over 100 needs a human', tool: 'pay', if: { 'input.amount': { gt: 100 } } }],
    // Model calls cost nothing here, so spend is the tools' alone.
    pricing: { FakeBuiltModel: { input: 0, output: 0, maxOutputTokens: 16 } },
  });

/** A tool call a model turn makes. */
interface Call {
  readonly name: 'lookup' | 'charge' | 'pay' | 'wipe';
  readonly id: string;
  readonly args: Readonly<Record<string, string | number>>;
}

/** The error a tool body throws on purpose (`status` 402: the tool refused, a 4xx). */
class ToolFailure extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** A broken promise, found by the fuzz. */
class Violation extends Error {}

/** What the runs exercised, summed over all of them: a fuzz that stops reaching a path fails instead of passing. */
const seen = {
  approvedRun: 0,
  rejected: 0,
  bareRefused: 0,
  bareAnswered: 0,
  askedAgain: 0,
  keptCostOnThrow: 0,
  releasedOnThrow: 0,
  repeatedIdRun: 0,
  budgetDenied: 0,
  twoThreads: 0,
};

const isTrue = (value: unknown): boolean => value === true || (typeof value === 'object' && value !== null && (value as { approved?: unknown }).approved === true);
const keyOf = (name: string, id: string | undefined, input: unknown) => `${name}|${id ?? ''}|${JSON.stringify(input)}`;

// ---- what the application does -------------------------------------------------------------------------------------

type Verdict = boolean | { approved: boolean; by: string };
type Form = 'byRequest' | 'byInterrupt' | 'oneNamed' | 'bare' | 'replay' | 'unknown' | 'same' | 'empty';
type Op =
  | { readonly kind: 'message'; readonly slot: number; readonly turns: readonly (readonly Call[])[]; readonly again: boolean }
  | { readonly kind: 'answer'; readonly slot: number; readonly form: Form; readonly verdicts: readonly Verdict[]; readonly pick: number }
  | { readonly kind: 'abandon'; readonly slot: number };

const callArb: fc.Arbitrary<Call> = fc.oneof(
  fc.record({ name: fc.constant('lookup' as const), id: fc.constantFrom(...IDS), args: fc.record({ q: fc.constantFrom('a', 'b') }) }),
  fc.record({ name: fc.constant('charge' as const), id: fc.constantFrom(...IDS), args: fc.record({ q: fc.constantFrom(...QS, 'a', 'b') }) }),
  fc.record({ name: fc.constant('pay' as const), id: fc.constantFrom(...IDS), args: fc.record({ amount: fc.constantFrom(...AMOUNTS) }) }),
  fc.record({ name: fc.constant('pay' as const), id: fc.constantFrom(...IDS), args: fc.record({ amount: fc.constantFrom(150, 900) }) }),
  fc.record({ name: fc.constant('wipe' as const), id: fc.constantFrom(...IDS), args: fc.record({ q: fc.constant('all') }) }),
);
const verdictArb: fc.Arbitrary<Verdict> = fc.oneof(fc.boolean(), fc.record({ approved: fc.boolean(), by: fc.constantFrom('alice', 'bob') }));
const opArb = (slots: number): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('message' as const),
        slot: fc.nat(slots - 1),
        turns: fc.array(fc.array(callArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
        // The same message as the last one (the same prompt on another thread): the same calls, ids and input.
        again: fc.boolean(),
      }),
    },
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant('answer' as const),
        slot: fc.nat(slots - 1),
        form: fc.constantFrom<Form>('byRequest', 'byRequest', 'byInterrupt', 'oneNamed', 'bare', 'bare', 'replay', 'unknown', 'same', 'empty'),
        verdicts: fc.array(verdictArb, { minLength: 3, maxLength: 3 }),
        pick: fc.nat(5),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('abandon' as const), slot: fc.nat(slots - 1) }) },
  );
const scenarioArb = fc.integer({ min: 1, max: 2 }).chain((slots) => fc.record({ slots: fc.constant(slots), ops: fc.array(opArb(slots), { minLength: 1, maxLength: 12 }) }));

// ---- the model of what the human approved ------------------------------------------------------------------------

interface Requested {
  readonly request: ToolApprovalRequest;
  /** The tool call ids the request was shown for: core raises one request for one tool and input while it is open. */
  readonly shownFor: Set<string | null>;
  /** `closed`: rejected by the middleware itself, which raised it for a call it refused (no human saw it). */
  state: 'pending' | 'approved' | 'rejected' | 'closed';
  runs: number;
}

interface Interrupt {
  readonly id: string | undefined;
  readonly request: ToolApprovalRequest;
}

interface Slot {
  thread: string;
  waiting: Interrupt[];
  last: unknown;
}

class World {
  readonly session: PolicySession = policy().session();
  readonly requests = new Map<string, Requested>();
  readonly violations: string[] = [];
  readonly runs = new Map<string, number>();
  readonly log: string[] = [];
  expectedSpend = 0;
  private threads = 0;
  private lastTurns: readonly (readonly Call[])[] | undefined;
  private readonly queue: Call[][] = [];
  readonly slots: Slot[];
  readonly agents: ReturnType<typeof this.agent>[];

  constructor(slots: number) {
    this.slots = Array.from({ length: slots }, () => ({ thread: this.newThread(), waiting: [], last: undefined }));
    // Each slot is its own agent (its own middleware instance) on the one session; the model turns come from one queue.
    this.agents = this.slots.map(() => this.agent());
  }

  newThread(): string {
    return `t${this.threads++}`;
  }

  private agent() {
    let model = fakeModel();
    for (let i = 0; i < 200; i++) {
      model = model.respond(() => {
        const turn = this.queue.shift();
        return turn === undefined
          ? aiMessage({ content: 'Done.', usage_metadata: NO_USAGE })
          : aiMessage({ content: '', tool_calls: turn.map((c) => ({ name: c.name, args: { ...c.args }, id: c.id, type: 'tool_call' as const })), usage_metadata: NO_USAGE });
      });
    }
    const body =
      (name: Call['name'], run: (input: Record<string, unknown>, id: string | undefined) => void) =>
      async (input: Record<string, unknown>, config: { toolCall?: { id?: string } }): Promise<string> => {
        const id = config.toolCall?.id;
        this.log.push(`  ran ${name} ${id} ${JSON.stringify(input)}`);
        if ([...this.runs.keys()].some((key) => key.split('|')[1] === id)) seen.repeatedIdRun++;
        this.runs.set(keyOf(name, id, input), (this.runs.get(keyOf(name, id, input)) ?? 0) + 1);
        run(input, id);
        return `${name} ok`;
      };
    const tools = [
      tool(
        body('lookup', () => undefined),
        { name: 'lookup', description: 'Look up', schema: z.object({ q: z.string() }) },
      ),
      tool(
        body('charge', ({ q }) => {
          if (q === 'declined') {
            seen.releasedOnThrow++;
            throw new ToolFailure('card declined', 402);
          }
          this.expectedSpend += COSTS.charge;
          if (q === 'boom') {
            seen.keptCostOnThrow++;
            throw new ToolFailure('gateway timeout');
          }
        }),
        { name: 'charge', description: 'Charge', schema: z.object({ q: z.string() }) },
      ),
      tool(
        body('pay', (input, id) => {
          this.expectedSpend += COSTS.pay;
          if ((input['amount'] as number) > 100) this.useApproval(input, id);
        }),
        { name: 'pay', description: 'Pay', schema: z.object({ amount: z.number() }) },
      ),
      tool(
        body('wipe', () => this.violations.push('the blocked tool ran')),
        { name: 'wipe', description: 'Wipe', schema: z.object({ q: z.string() }) },
      ),
    ];
    return createAgent({ model, tools, middleware: [agentPolicyMiddleware(this.session, { toolCosts: { ...COSTS } })], checkpointer: new MemorySaver() });
  }

  /** A pay over 100 ran: a request the human approved for exactly this call and input, not used before, is used. */
  private useApproval(input: Record<string, unknown>, id: string | undefined): void {
    const approved = [...this.requests.values()].find(
      (r) => r.state === 'approved' && r.runs === 0 && r.request.tool === 'pay' && r.shownFor.has(id ?? null) && JSON.stringify(r.request.args) === JSON.stringify(input),
    );
    if (approved === undefined) this.violations.push(`pay ${id} ${JSON.stringify(input)} ran without an unused human approval for it`);
    else {
      approved.runs++;
      seen.approvedRun++;
    }
  }

  /** The human's answer `verdict` to request `requestId`, if it is pending (an answer to a settled request is no answer). */
  private answer(requestId: string, verdict: unknown): void {
    const requested = this.requests.get(requestId);
    if (requested?.state !== 'pending') return;
    requested.state = isTrue(verdict) ? 'approved' : 'rejected';
    if (requested.state === 'rejected') seen.rejected++;
    this.log.push(`  human: ${requestId.slice(-6)} ${requested.state}`);
  }

  /** What a resume value means to the human who gave it, on a slot whose interrupts are `waiting`. */
  private heard(value: unknown, waiting: readonly Interrupt[]): void {
    const bag = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
    if (bag === undefined || (typeof bag['requestId'] !== 'string' && 'approved' in bag)) {
      // A bare value answers a request shown here only while it is the one request pending; it answers no other.
      const pending = [...this.requests.values()].filter((r) => r.state === 'pending');
      if (pending.length === 1 && waiting.some((i) => i.request.requestId === pending[0]!.request.requestId)) {
        seen.bareAnswered++;
        this.answer(pending[0]!.request.requestId, value);
      }
      return;
    }
    if (typeof bag['requestId'] === 'string') return this.answer(bag['requestId'], bag);
    for (const [key, verdict] of Object.entries(bag)) {
      const byInterrupt = waiting.find((i) => i.id === key);
      this.answer(byInterrupt?.request.requestId ?? key, verdict);
    }
  }

  /** Requests the middleware closed (rejected by `agentpolicy`): no human answers them any more. */
  private async learnClosed(): Promise<void> {
    for (const r of this.requests.values()) {
      if (r.state !== 'pending') continue;
      const state = await this.session.getApproval(r.request.requestId);
      if (state?.status === 'rejected' && state.resolution?.by === 'agentpolicy') r.state = 'closed';
    }
  }

  private show(slot: Slot, result: { __interrupt__?: { id?: string; value?: unknown }[] }): void {
    slot.waiting = (result.__interrupt__ ?? []).map((i) => ({ id: i.id, request: i.value as ToolApprovalRequest }));
    for (const { request } of slot.waiting) {
      const known = this.requests.get(request.requestId);
      if (known === undefined) this.requests.set(request.requestId, { request, shownFor: new Set([request.toolCallId]), state: 'pending', runs: 0 });
      else if (known.request.tool !== request.tool || JSON.stringify(known.request.args) !== JSON.stringify(request.args)) this.violations.push(`request ${request.requestId} shown for two different calls`);
      else known.shownFor.add(request.toolCallId);
    }
    if (slot.waiting.length > 0) this.log.push(`  interrupts: ${slot.waiting.map((i) => `${i.request.requestId.slice(-6)}=${i.request.toolCallId}:${JSON.stringify(i.request.args)}`).join(' ')}`);
  }

  async step(op: Op): Promise<void> {
    const slot = this.slots[op.slot]!;
    const agent = this.agents[op.slot]!;
    const config = () => ({ configurable: { thread_id: slot.thread } });
    let invoke: (() => Promise<unknown>) | undefined;
    let before: Map<string, Requested['state']> | undefined;
    if (op.kind === 'abandon') {
      slot.thread = this.newThread();
      slot.waiting = [];
      slot.last = undefined;
      this.log.push(`[${op.slot}] abandon → ${slot.thread}`);
      return;
    }
    if (op.kind === 'message') {
      // A new message to a thread that waits for answers goes to a new thread: the old one is abandoned.
      if (slot.waiting.length > 0) Object.assign(slot, { thread: this.newThread(), waiting: [], last: undefined });
      const turns = op.again && this.lastTurns !== undefined ? this.lastTurns : op.turns;
      this.lastTurns = turns;
      // Turns an earlier run left (it ended on an error or an interrupt) are dropped: one message, at most three
      // turns, well inside LangGraph's recursion limit. A thread resumed later finds the turns queued then.
      this.queue.length = 0;
      this.queue.push(...turns.map((turn) => [...turn]));
      this.log.push(`[${op.slot}] message on ${slot.thread}: ${turns.map((t) => t.map((c) => `${c.name}#${c.id}${JSON.stringify(c.args)}`).join(',')).join(' | ')}`);
      invoke = () => agent.invoke({ messages: [new HumanMessage('go')] }, config());
    } else {
      if (slot.waiting.length === 0) return;
      const value = this.resumeValue(op, slot);
      this.log.push(`[${op.slot}] ${op.form} on ${slot.thread}: ${JSON.stringify(value)}`);
      await this.learnClosed();
      before = new Map([...this.requests].map(([id, r]) => [id, r.state]));
      this.heard(value, slot.waiting);
      slot.last = value;
      invoke = () => agent.invoke(new Command({ resume: value }), config());
    }
    try {
      const result = (await invoke()) as { __interrupt__?: { id?: string; value?: unknown }[] };
      this.show(slot, result);
    } catch (error) {
      if (!expected(error)) this.violations.push(`invoke threw an unexpected error: ${describeError(error)}`);
      this.log.push(`  threw: ${describeError(error)}`);
      // A bare value refused before it was taken answered nothing and leaves the thread waiting; any other error
      // ends the thread.
      if (refusal(error)) {
        seen.bareRefused++;
        for (const [id, state] of before ?? []) this.requests.get(id)!.state = state;
      }
      else Object.assign(slot, { thread: this.newThread(), waiting: [], last: undefined });
      // Tasks of the step that were still running when the step failed finish before anything is checked.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private resumeValue(op: Extract<Op, { kind: 'answer' }>, slot: Slot): unknown {
    const verdict = (i: number) => op.verdicts[i % op.verdicts.length]!;
    const requestIds = [...new Set(slot.waiting.map((i) => i.request.requestId))];
    const settled = [...this.requests.keys()].filter((id) => this.requests.get(id)!.state !== 'pending');
    switch (op.form) {
      case 'byRequest':
        return Object.fromEntries(requestIds.map((id, i) => [id, verdict(i)]));
      case 'byInterrupt':
        // Interrupts of one request get one verdict.
        return Object.fromEntries(slot.waiting.map((i) => [i.id, verdict(requestIds.indexOf(i.request.requestId))]));
      case 'oneNamed': {
        const v = verdict(0);
        return { requestId: requestIds[op.pick % requestIds.length], approved: isTrue(v), by: 'alice' };
      }
      case 'bare':
        return verdict(0);
      case 'replay':
        if (settled.length === 0) return { apr_0000000000000000000000: true };
        return op.pick % 2 === 0 ? { [settled[op.pick % settled.length]!]: true } : { requestId: settled[op.pick % settled.length], approved: true };
      case 'unknown':
        return op.pick % 2 === 0 ? { apr_0000000000000000000000: true } : { requestId: 'apr_0000000000000000000000', approved: true };
      case 'same':
        return slot.last ?? {};
      case 'empty':
        return {};
    }
  }

  /** The invariants, after a step. */
  check(): void {
    const report = this.session.report();
    const problems = [...this.violations];
    const allows = new Map<string, number>();
    for (const d of report.decisions) {
      if (d.action.type !== 'tool' || d.decision !== 'allow') continue;
      const id = (d.action.metadata as { toolCallId?: string } | undefined)?.toolCallId;
      allows.set(keyOf(d.action.name, id, d.action.input), (allows.get(keyOf(d.action.name, id, d.action.input)) ?? 0) + 1);
      if (d.action.name === 'wipe') problems.push(`the blocked tool was allowed (${d.id})`);
      if (d.action.name === 'pay' && (d.action.input as { amount: number }).amount > 100) {
        const requestId = d.approval?.via === 'request' ? d.approval.requestId : undefined;
        if (requestId === undefined || this.requests.get(requestId)?.state !== 'approved') problems.push(`pay ${id} ${JSON.stringify(d.action.input)} allowed without the human's approval (${JSON.stringify(d.approval)})`);
      }
    }
    for (const [key, runs] of this.runs) {
      if (runs > (allows.get(key) ?? 0)) problems.push(`${key} ran ${runs} time(s) on ${allows.get(key) ?? 0} allow(s)`);
    }
    for (const r of this.requests.values()) if (r.runs > 1) problems.push(`request ${r.request.requestId} ran its call ${r.runs} times`);
    if (Math.abs(this.session.spent - this.expectedSpend) > 1e-9) problems.push(`spent ${this.session.spent}, but the bodies that ran cost ${this.expectedSpend}`);
    if (this.session.spent > MAX_SPEND + 1e-9 || report.spent + report.reserved > MAX_SPEND + 1e-9) problems.push(`spent ${report.spent} + reserved ${report.reserved} passes max_spend ${MAX_SPEND}`);
    if (problems.length > 0) {
      const trail = report.decisions
        .filter((d) => d.action.type === 'tool')
        .map((d) => {
          const action = d.action as ToolAction;
          const id = (action.metadata as { toolCallId?: string } | undefined)?.toolCallId;
          const request = d.approvalRequest?.id.slice(-6) ?? '';
          const approval = d.approval ? ` approval=${d.approval.via}:${d.approval.requestId?.slice(-6) ?? ''}` : '';
          const unused = d.unusedAnswer ? ` unused=${d.unusedAnswer.requestId.slice(-6)}:${d.unusedAnswer.problem}` : '';
          return `  ${d.decision} ${action.name} ${id} ${JSON.stringify(action.input)} ${request}${approval}${unused}`;
        });
      throw new Violation(`${problems.join('\n')}\n--- steps ---\n${this.log.join('\n')}\n--- tool decisions ---\n${trail.join('\n')}`);
    }
  }
}

// ---- errors --------------------------------------------------------------------------------------------------------

function chain(error: unknown, seen = new Set<unknown>()): unknown[] {
  if (typeof error !== 'object' || error === null || seen.has(error)) return [];
  seen.add(error);
  const { cause, errors } = error as { cause?: unknown; errors?: unknown };
  return [error, ...chain(cause, seen), ...(Array.isArray(errors) ? errors.flatMap((e) => chain(e, seen)) : [])];
}
const refusal = (error: unknown): boolean =>
  chain(error).some((e) => AgentPolicyError.isInstance(e) && (e as AgentPolicyError).code === 'INVALID_ARGUMENT' && /one resume value cannot answer/.test((e as Error).message));
const expected = (error: unknown): boolean => refusal(error) || chain(error).some((e) => e instanceof ToolFailure);
const describeError = (error: unknown): string => chain(error).map((e) => `${(e as Error).name}: ${(e as Error).message}`).join(' <- ') || String(error);

// ---- the property --------------------------------------------------------------------------------------------------

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_201 : Number(process.env['FUZZ_SEED']);
const DEFAULT_RUNS = 500;

const pay = (id: string, amount: number): Call => ({ name: 'pay', id, args: { amount } });
const lookup = (id: string): Call => ({ name: 'lookup', id, args: { q: 'b' } });
const message = (slot: number, ...turns: Call[][]): Op => ({ kind: 'message', slot, turns, again: false });
const answer = (slot: number, form: Form, ...verdicts: Verdict[]): Op => ({ kind: 'answer', slot, form, verdicts: [...verdicts, false, false, false].slice(0, 3), pick: 0 });
/** Runs that broke an invariant once (shrunk counterexamples), replayed before the random ones. */
const EXAMPLES: [{ slots: number; ops: Op[] }][] = [
  // The same call twice in one turn: two requests were raised at once, and the answers given by interrupt id went to
  // each other's request (the human's "no" recorded as alice's approval).
  [{ slots: 1, ops: [message(0, [pay('call_2', 900), pay('call_2', 900)]), answer(0, 'byInterrupt', { approved: true, by: 'alice' }, { approved: false, by: 'alice' })] }],
  // Then the call asked again for a new request: the yes LangGraph kept for its first interrupt answered the new
  // request, and the tool ran after the human said no to it.
  [{ slots: 1, ops: [message(0, [pay('call_1', 150), pay('call_1', 150)]), answer(0, 'byInterrupt', { approved: true, by: 'alice' }), answer(0, 'byRequest', false)] }],
  [{ slots: 1, ops: [message(0, [pay('call_1', 150), pay('call_1', 150)]), answer(0, 'replay'), answer(0, 'bare', true), answer(0, 'byRequest', false)] }],
  // Two threads show one request; one thread's human approves it; the other's yes was taken by a request raised on
  // its resume, which nobody saw.
  [{ slots: 2, ops: [message(1, [pay('call_2', 150)]), message(0, [pay('call_2', 150)]), answer(0, 'byRequest', { approved: true, by: 'alice' }), answer(1, 'bare', { approved: true, by: 'alice' })] }],
  // A bare value with one request pending, shown next to an interrupt whose request was answered already: one call
  // ran on it and the other refused it, so the run failed after the tool ran.
  [{ slots: 1, ops: [message(0, [pay('call_2', 900), pay('call_1', 150)]), message(0, [pay('call_1', 900)]), answer(0, 'byRequest', false), message(0, [pay('call_1', 150), pay('call_2', 900)]), answer(0, 'bare', true)] }],
  // The same call three times in one turn: the third run found the second's fresh allow taken and failed the run.
  [{ slots: 1, ops: [message(0, [lookup('call_1'), lookup('call_1'), lookup('call_1')])] }],
  // The request raised for the refused call stayed pending; another thread's call with the same id and input was
  // decided under it, and a bare yes given for the request that thread showed approved it.
  [{ slots: 2, ops: [message(1, [pay('call_1', 150)]), message(0, [pay('call_1', 150), pay('call_1', 150)]), answer(0, 'byRequest', { approved: true, by: 'alice' }), answer(1, 'bare', { approved: true, by: 'alice' })] }],
  // The same call id and input in two threads: after thread 0's call used the request both showed, its next call
  // got a new one; thread 1's bare yes (given for the used request it showed) approved that, which it never showed.
  [{ slots: 2, ops: [message(1, [pay('call_1', 150)]), message(0, [pay('call_1', 150)]), answer(0, 'byRequest', { approved: true, by: 'alice' }), message(0, [pay('call_1', 150)]), answer(1, 'bare', { approved: true, by: 'alice' })] }],
];
const RUNS = Number(process.env['FUZZ_RUNS'] ?? DEFAULT_RUNS);

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => process.off('unhandledRejection', onUnhandled));

describe('createAgent + agentPolicyMiddleware under random interrupt answers', () => {
  it('runs only what the policy or the human allowed, once, and charges exactly what ran', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ slots, ops }) => {
        const world = new World(slots);
        for (const op of ops) {
          await world.step(op);
          world.check();
        }
        if (process.env['FUZZ_LOG']) console.log(world.log.join('\n') + '\n=====');
        for (const d of world.session.report().decisions) {
          if (d.action.type === 'tool' && d.decision === 'deny' && d.rule.section === 'budget') seen.budgetDenied++;
          if (d.unusedAnswer?.problem === 'already_used') seen.askedAgain++;
        }
        if (slots === 2) seen.twoThreads++;
        if (unhandled.length > 0) throw new Violation(`unhandled rejection: ${unhandled.map(describeError).join('; ')}\n${world.log.join('\n')}`);
      }),
      { seed: SEED, numRuns: RUNS, examples: EXAMPLES, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false },
    );
    // Every path the invariants are about was reached (the default number of runs reaches each many times).
    if (RUNS >= DEFAULT_RUNS) {
      const missed = Object.entries(seen).filter(([, count]) => count === 0);
      if (missed.length > 0) throw new Error(`the fuzz never reached: ${missed.map(([name]) => name).join(', ')} (${JSON.stringify(seen)})`);
    }
    if (process.env['FUZZ_LOG']) console.log(seen);
  });
});
