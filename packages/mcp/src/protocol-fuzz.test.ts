/**
 * A model-based fuzz of the MCP gates at the JSON-RPC level.
 *
 * Client side: random JSON-RPC traffic in both directions through `wrapMcpTransport` over the SDK's in-memory
 * transport pair — `tools/call` requests (single and batched) from a small tool set (free, with a cost, needing an
 * approver's yes by a rule on the arguments, blocked, under a `max_calls` limit) under ids from a small pool (`1` and
 * `"1"`, a huge id, null, none), odd arguments, cancellations, and a peer that answers with results, error results,
 * JSON-RPC errors, answers for ids never asked or already answered, batches, or never, until a close from either end.
 *
 * Server side: a real `McpServer` behind `gateMcpServer`, driven by an SDK `Client` with random calls whose handlers
 * return, throw, throw with a 4xx status, refuse their arguments or hang until cancelled.
 *
 * After every step the gate is compared with a model of the README's rules: a call reaches the peer (runs its handler)
 * only when the policy allowed exactly that call, once; the session's spend and reservations equal the model's (a
 * result or an error result charged, a cancelled or lost call charged, invalid-params / method-not-found released, a
 * 4xx throw released) and never pass max_spend; every call that ran has its allow recorded; an answer the gate did
 * not expect goes on unchanged and settles nothing; no error escapes. After the close and `session.end()` nothing is
 * left reserved.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>).
 */
import { actionFingerprint, AgentPolicy, AgentPolicyError, canonicalInput, type ApprovalRequest, type PolicySession } from '@agentpolicy/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { gateMcpServer } from './gate-mcp-server.js';
import { wrapMcpTransport } from './policy-transport.js';

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_201 : Number(process.env['FUZZ_SEED']);
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 1000);
const fuzzOptions = (runs: number) => ({ seed: SEED, numRuns: runs, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false });

// ---- the policy and the model's reading of it -------------------------------------------------------------------

const SERVER = 'fz';
/** Costs in tenths of a dollar, so the model counts in integers; the budget is 10 tenths. */
const COST_TENTHS: Record<string, number> = { paid: 3, gated: 2, limited: 1 };
const BUDGET_TENTHS = 10;
const LIMITED_MAX = 2;
const COSTS = Object.fromEntries(Object.entries(COST_TENTHS).map(([tool, tenths]) => [tool, tenths / 10]));
const POLICY = {
  tools: { block: [`mcp__${SERVER}__blocked`] },
  rules: [{ require_approval: 'a high level needs a human', tool: `mcp__${SERVER}__gated`, if: { 'input.level': { gt: 5 } } }],
  limits: [{ tool: `mcp__${SERVER}__limited`, max_calls: LIMITED_MAX, per: 'session' }],
  budget: { max_spend: BUDGET_TENTHS / 10 },
};
/** The approver says yes exactly when the arguments it is shown carry `ok: true`. */
const approver = async (request: ApprovalRequest): Promise<boolean> => {
  const input = request.action.type === 'tool' ? request.action.input : undefined;
  return typeof input === 'object' && input !== null && (input as { ok?: unknown }).ok === true;
};
/** The same approver, but for arguments with `hold: true` it answers only when `release` is called (in order). */
function holdingApprover(): { approver: (request: ApprovalRequest) => Promise<boolean>; held: (() => void)[] } {
  const held: (() => void)[] = [];
  return {
    held,
    approver: async (request) => {
      const input = request.action.type === 'tool' ? (request.action.input as { hold?: unknown }) : undefined;
      if (input?.hold === true) await new Promise<void>((resolve) => held.push(resolve));
      return approver(request);
    },
  };
}
const TOOLS = ['free', 'paid', 'gated', 'blocked', 'limited'] as const;
type ToolName = (typeof TOOLS)[number] | 7;

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
/** Whether the approval rule applies: arguments with an own `level` above 5 (the only levels generated are 3 and 9). */
const needsApproval = (input: unknown) => isPlainObject(input) && Object.hasOwn(input, 'level') && input['level'] === 9;

// ---- odd arguments, named so a counterexample reads well ----------------------------------------------------------

type ArgsShape = 'missing' | 'empty' | 'level9-ok' | 'level9-no' | 'level9-ok-held' | 'level9-no-held' | 'level3' | 'array' | 'deep' | 'proto' | 'long' | 'null' | 'string';
/** Shapes of a batch's calls: none whose approver holds its answer (the batch's send would wait for it). */
const BATCH_ARG_SHAPES: ArgsShape[] = ['missing', 'empty', 'level9-ok', 'level9-no', 'level3', 'array', 'deep', 'proto', 'long', 'null', 'string'];
const ARG_SHAPES: ArgsShape[] = [...BATCH_ARG_SHAPES, 'level9-ok-held', 'level9-no-held'];
function materialise(shape: ArgsShape): unknown {
  switch (shape) {
    case 'missing':
      return undefined;
    case 'empty':
      return {};
    case 'level9-ok':
      return { level: 9, ok: true };
    case 'level9-no':
      return { level: 9, ok: false };
    // The approver holds its answer until a later step gives it (the call is still being decided meanwhile).
    case 'level9-ok-held':
      return { level: 9, ok: true, hold: true };
    case 'level9-no-held':
      return { level: 9, ok: false, hold: true };
    case 'level3':
      return { level: 3 };
    case 'array':
      return ['level', 9, { ok: true }];
    case 'deep': {
      let value: unknown = { leaf: 'x' };
      for (let i = 0; i < 40; i++) value = { a: value };
      return value;
    }
    case 'proto':
      // An own "__proto__" key (what JSON.parse makes of it): not a `level` of the arguments.
      return JSON.parse('{"__proto__": {"level": 9, "ok": true}, "q": "p"}') as unknown;
    case 'long':
      return { q: 'x'.repeat(20_000) };
    case 'null':
      return null;
    case 'string':
      return 'level=9';
  }
}

// ---- request ids --------------------------------------------------------------------------------------------------

type Id = number | string | null | undefined;
const HUGE = Number.MAX_SAFE_INTEGER;
const ID_POOL: Id[] = [1, '1', 2, 'a', HUGE, null, undefined];
const idArb = fc.constantFrom(...ID_POOL);
const validId = (id: Id): id is number | string => typeof id === 'number' || typeof id === 'string';
const keyOf = (id: number | string) => `${typeof id}:${String(id)}`;

function callMessage(id: Id, name: ToolName, shape: ArgsShape): Record<string, unknown> {
  const args = materialise(shape);
  const params: Record<string, unknown> = { name };
  if (args !== undefined) params['arguments'] = args;
  return { jsonrpc: '2.0', ...(id === undefined ? {} : { id }), method: 'tools/call', params };
}

/**
 * The tool and the fingerprint core records for a call of `tool` with these arguments (what an allow binds to: its
 * name, cost and whole input), as `mcp__fz__tool #<fingerprint>`.
 */
function fingerprintOf(tool: string, args: unknown): string {
  return `mcp__${SERVER}__${tool} #` + actionFingerprint({ type: 'tool', name: `mcp__${SERVER}__${tool}`, costNanos: (COST_TENTHS[tool] ?? 0) * 100_000_000, input: canonicalInput(args === undefined ? {} : args) });
}
function allowedFingerprints(session: PolicySession): string[] {
  return session
    .report()
    .decisions.filter((d) => d.action.type === 'tool' && d.decision === 'allow')
    .map((d) => `${d.action.type === 'tool' ? d.action.name : ''} #${d.fingerprint}`);
}

const settle = async () => {
  for (let i = 0; i < 6; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** Spend and reservations in tenths, as the session reports them. */
function money(session: PolicySession): { spent: number; reserved: number } {
  const report = session.report();
  return { spent: Math.round(report.spent * 10 * 1e6) / 1e6, reserved: Math.round(report.reserved * 10 * 1e6) / 1e6 };
}

/** After the close: the invariants hold, and once the session ends nothing stays reserved. */
async function endChecked(session: PolicySession, check: (where: string) => void, where: string): Promise<void> {
  await settle();
  check(where);
  session.end();
  await settle();
  expect(session.pendingReservations, 'reservations open after session.end()').toBe(0);
  check('after session.end()');
}

let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

// ---- client side ---------------------------------------------------------------------------------------------------

type Reply = 'result' | 'error-result' | 'internal-error' | 'invalid-params' | 'method-not-found';
type ClientStep =
  | { readonly kind: 'call'; readonly id: Id; readonly tool: ToolName; readonly args: ArgsShape }
  | { readonly kind: 'batch'; readonly calls: readonly { readonly id: Id; readonly tool: ToolName; readonly args: ArgsShape }[] }
  | { readonly kind: 'cancel'; readonly id: Id }
  | { readonly kind: 'reply'; readonly id: Id; readonly reply: Reply }
  | { readonly kind: 'reply-batch'; readonly replies: readonly { readonly id: Id; readonly reply: Reply }[] }
  | { readonly kind: 'peer-cancel'; readonly id: Id }
  | { readonly kind: 'close'; readonly from: 'client' | 'peer' }
  | { readonly kind: 'answer'; readonly which: number }
  | { readonly kind: 'request'; readonly id: Id; readonly method: 'tools/list' | 'ping' };

const toolArb = fc.constantFrom<ToolName>(...TOOLS, 7);
const callArb = fc.record({ id: idArb, tool: toolArb, args: fc.constantFrom(...ARG_SHAPES) });
const batchCallArb = fc.record({ id: idArb, tool: toolArb, args: fc.constantFrom(...BATCH_ARG_SHAPES) });
const replyArb = fc.constantFrom<Reply>('result', 'error-result', 'internal-error', 'invalid-params', 'method-not-found');
const clientStepArb: fc.Arbitrary<ClientStep> = fc.oneof(
  { weight: 5, arbitrary: callArb.map((call) => ({ kind: 'call' as const, ...call })) },
  { weight: 1, arbitrary: fc.array(batchCallArb, { minLength: 1, maxLength: 3 }).map((calls) => ({ kind: 'batch' as const, calls })) },
  { weight: 2, arbitrary: idArb.map((id) => ({ kind: 'cancel' as const, id })) },
  { weight: 4, arbitrary: fc.record({ id: idArb, reply: replyArb }).map((r) => ({ kind: 'reply' as const, ...r })) },
  { weight: 1, arbitrary: fc.array(fc.record({ id: idArb, reply: replyArb }), { minLength: 1, maxLength: 3 }).map((replies) => ({ kind: 'reply-batch' as const, replies })) },
  { weight: 1, arbitrary: idArb.map((id) => ({ kind: 'peer-cancel' as const, id })) },
  { weight: 1, arbitrary: fc.constantFrom<'client' | 'peer'>('client', 'peer').map((from) => ({ kind: 'close' as const, from })) },
  { weight: 2, arbitrary: fc.nat(3).map((which) => ({ kind: 'answer' as const, which })) },
  { weight: 1, arbitrary: fc.record({ id: idArb, method: fc.constantFrom<'tools/list' | 'ping'>('tools/list', 'ping') }).map((r) => ({ kind: 'request' as const, ...r })) },
);

function replyMessage(id: Id, reply: Reply): Record<string, unknown> {
  const base = { jsonrpc: '2.0', id: id ?? null };
  switch (reply) {
    case 'result':
      return { ...base, result: { content: [{ type: 'text', text: `done ${String(id)}` }] } };
    case 'error-result':
      return { ...base, result: { content: [{ type: 'text', text: 'tool failed' }], isError: true } };
    case 'internal-error':
      return { ...base, error: { code: -32603, message: 'boom' } };
    case 'invalid-params':
      return { ...base, error: { code: -32602, message: 'bad arguments' } };
    case 'method-not-found':
      return { ...base, error: { code: -32601, message: 'no such method' } };
  }
}

/**
 * What the wrapper should hand up to the client: a message exactly, a refusal of a call under this id, or the
 * JSON-RPC error refusing another request under an id in use.
 */
type Up = { readonly exact: Record<string, unknown> } | { readonly refusalOf: number | string } | { readonly requestRefusedOf: number | string };

class ClientModel {
  spent = 0;
  limitedUsed = 0;
  /** Calls passed to the peer and not yet settled, by id. */
  readonly running = new Map<string, { readonly tool: string; readonly cost: number }>();
  /** Every tools/call the peer should have received, in order. */
  readonly sent: Record<string, unknown>[] = [];
  readonly up: Up[] = [];
  /** Allowed after the connection closed: their send failed, and they are charged (they may have gone out). */
  readonly failed: Record<string, unknown>[] = [];
  /** Allowed while cancelled (or closed) as their approver decided: never sent, their money given back. */
  readonly dropped: Record<string, unknown>[] = [];
  /** Calls whose approver holds its answer, in the order asked; their money is held meanwhile. */
  readonly deciding: { readonly key: string; readonly message: Record<string, unknown>; readonly cost: number; readonly ok: boolean; cancelled: boolean; readonly sent: Promise<unknown> }[] = [];
  /** Other requests sent and not answered yet, by id. */
  readonly open = new Set<string>();
  closed = false;

  /** Another request: refused under an id still in use (its answer would settle or answer the other); else sent. */
  request(id: Id): 'failed' | undefined {
    if (validId(id) && this.inUse(keyOf(id))) return void this.up.push({ requestRefusedOf: id });
    if (this.closed) return 'failed';
    if (validId(id)) this.open.add(keyOf(id));
    return undefined;
  }

  inUse(key: string): boolean {
    return this.running.has(key) || this.open.has(key) || this.deciding.some((call) => call.key === key);
  }

  get reserved(): number {
    let sum = 0;
    for (const call of this.running.values()) sum += call.cost;
    for (const call of this.deciding) sum += call.cost;
    return sum;
  }

  /**
   * The approver's held answer comes: the call runs (or is dropped, if it was cancelled or lost meanwhile) or is
   * refused. `failed` when it was allowed on a connection closed since it came (not by the close that dropped it).
   */
  answer(index: number): 'failed' | undefined {
    const [call] = this.deciding.splice(index, 1);
    if (call === undefined) return;
    const id = call.message['id'] as number | string;
    // A cancelled call gets no answer: a refusal is not handed up, an allow is given back.
    if (call.cancelled) return void (call.ok && this.dropped.push(call.message));
    if (!call.ok) return void this.up.push({ refusalOf: id });
    if (this.closed) {
      this.failed.push(call.message);
      this.spent += call.cost;
      return 'failed';
    }
    this.running.set(call.key, { tool: 'gated', cost: call.cost });
    this.sent.push(call.message);
  }

  /** A call cancelled while its approver decides is never sent; the notification settles nothing else. */
  cancelDeciding(id: number | string): void {
    for (const call of this.deciding) if (call.key === keyOf(id)) call.cancelled = true;
  }

  /**
   * `busy`: the ids of the calls before it in the same batch, still being decided when it comes. Returns `held` for
   * a call whose approver holds its answer (its money held): the caller records how its send ends.
   */
  call(message: Record<string, unknown>, busy: ReadonlySet<string> = new Set()): 'held' | undefined {
    const id = message['id'] as Id;
    // A tools/call without a usable id is not a request: the wrapper never puts it on the wire undecided.
    if (!validId(id)) return;
    if (this.inUse(keyOf(id)) || busy.has(keyOf(id))) return void this.up.push({ refusalOf: id });
    const params = message['params'] as { name: unknown; arguments?: unknown };
    const tool = params.name;
    const input = params.arguments === undefined ? {} : params.arguments;
    if (typeof tool !== 'string' || tool === 'blocked') return void this.up.push({ refusalOf: id });
    const held = tool === 'gated' && needsApproval(input) && (input as { hold?: unknown }).hold === true;
    if (!held && tool === 'gated' && needsApproval(input) && (input as { ok?: unknown }).ok !== true) return void this.up.push({ refusalOf: id });
    const cost = COST_TENTHS[tool] ?? 0;
    // The money is held before the approver is asked: a call that does not fit is refused without asking.
    if (cost > 0 && this.spent + this.reserved + cost > BUDGET_TENTHS) return void this.up.push({ refusalOf: id });
    if (held) return 'held';
    if (tool === 'limited') {
      if (this.limitedUsed >= LIMITED_MAX) return void this.up.push({ refusalOf: id });
      this.limitedUsed++;
    }
    if (this.closed) {
      this.failed.push(message);
      this.spent += cost;
      return;
    }
    this.running.set(keyOf(id), { tool, cost });
    this.sent.push(message);
  }

  reply(message: Record<string, unknown>, reply: Reply): void {
    const id = message['id'] as Id;
    this.up.push({ exact: message });
    if (!validId(id)) return;
    this.open.delete(keyOf(id));
    const running = this.running.get(keyOf(id));
    if (running === undefined) return;
    this.running.delete(keyOf(id));
    if (reply !== 'invalid-params' && reply !== 'method-not-found') this.spent += running.cost;
  }

  /** A cancelled or lost call may have run: charged. */
  lose(id: number | string): void {
    this.open.delete(keyOf(id));
    const running = this.running.get(keyOf(id));
    if (running === undefined) return;
    this.running.delete(keyOf(id));
    this.spent += running.cost;
  }

  /**
   * A close: from the client's end it always reaches the wrapper; from the peer's, only while the pair is still
   * linked (a peer closed already tells nobody).
   */
  close(from: 'client' | 'peer'): void {
    if (from === 'client' || !this.closed) this.loseAll();
    this.closed = true;
  }

  loseAll(): void {
    for (const running of this.running.values()) this.spent += running.cost;
    this.running.clear();
    this.open.clear();
    for (const call of this.deciding) call.cancelled = true;
  }
}

async function runClient(steps: readonly ClientStep[], closeFrom: 'client' | 'peer'): Promise<void> {
  unhandled = [];
  const approvals = holdingApprover();
  const session = AgentPolicy.fromDict(POLICY).session({ approver: approvals.approver });
  const model = new ClientModel();
  const [clientSide, peer] = InMemoryTransport.createLinkedPair();
  const peerGot: Record<string, unknown>[] = [];
  peer.onmessage = (message) => void peerGot.push(message as Record<string, unknown>);
  await peer.start();
  const wrapped = wrapMcpTransport(clientSide, session, { server: SERVER, costs: COSTS });
  const up: Record<string, unknown>[] = [];
  const errors: unknown[] = [];
  wrapped.onmessage = (message) => void up.push(message as Record<string, unknown>);
  wrapped.onerror = (error) => void errors.push(error);
  await wrapped.start();

  // The calls of a batch are decided side by side, so what they give back may come in another order: compared sorted.
  const sorted = (values: readonly unknown[]) => values.map((value) => JSON.stringify(value)).sort();
  const upKey = (message: Record<string, unknown> | undefined): unknown => {
    const result = message?.['result'] as { isError?: unknown; _meta?: Record<string, { decision?: unknown }> } | undefined;
    const decision = result?._meta?.['agentpolicy/decision']?.decision;
    // A refusal: an error result under the call's id that carries a decision other than allow.
    if (result?.isError === true && typeof decision === 'string' && decision !== 'allow') return { refusalOf: message?.['id'] };
    const error = message?.['error'] as { code?: unknown; message?: unknown } | undefined;
    if (error?.code === -32600 && String(error.message).startsWith('agentpolicy:')) return { requestRefusedOf: message?.['id'] };
    return message;
  };
  const check = (where: string) => {
    const calls = peerGot.filter((m) => m['method'] === 'tools/call');
    // (1) what reached the peer is exactly the calls the model allowed, each once, with the arguments decided.
    expect(sorted(calls), `${where}: tools/call messages the peer received`).toEqual(sorted(model.sent));
    // (3) each of them has its allow recorded, for that name and those arguments, and no allow went unsent.
    const expected = [...calls, ...model.failed, ...model.dropped].map((m) => {
      const params = m['params'] as { name: string; arguments?: unknown };
      return fingerprintOf(params.name, params.arguments);
    });
    expect(allowedFingerprints(session).sort(), `${where}: allows recorded`).toEqual(expected.sort());
    // (2) spend and reservations are the model's, within the budget.
    const { spent, reserved } = money(session);
    expect({ spent, reserved }, `${where}: spent and reserved (tenths)`).toEqual({ spent: model.spent, reserved: model.reserved });
    expect(spent + reserved).toBeLessThanOrEqual(BUDGET_TENTHS);
    // (3) what the client was handed: refusals for refused calls, the peer's answers unchanged (never re-matched).
    expect(sorted(up.map(upKey)), `${where}: messages handed to the client`).toEqual(sorted(model.up.map((u) => ('exact' in u ? u.exact : u))));
    expect(errors, `${where}: errors reported by the transport`).toEqual([]);
    expect(unhandled, `${where}: unhandled rejections`).toEqual([]);
  };

  for (const [index, step] of steps.entries()) {
    const where = `step ${index} (${JSON.stringify(step)})`;
    switch (step.kind) {
      case 'call':
      case 'batch': {
        const calls = step.kind === 'call' ? [step] : step.calls;
        const messages = calls.map((call) => callMessage(call.id, call.tool, call.args));
        const failed = model.failed.length;
        const busy = new Set<string>();
        let held = false;
        for (const message of messages) {
          held = model.call(message, busy) === 'held' || held;
          if (validId(message['id'] as Id)) busy.add(keyOf(message['id'] as number | string));
        }
        if (held) {
          // Its send ends when the approver answers: kept, and checked by the answer step.
          const message = messages[0] as Record<string, unknown>;
          const sent = wrapped.send(message as JSONRPCMessage).then(
            () => undefined,
            (error: unknown) => error,
          );
          await settle();
          expect(approvals.held.length, `${where}: the approver was asked`).toBe(model.deciding.length + 1);
          model.deciding.push({ key: keyOf(message['id'] as number | string), message, cost: COST_TENTHS['gated'] as number, ok: (materialise(step.kind === 'call' ? step.args : 'missing') as { ok?: unknown }).ok === true, cancelled: false, sent });
          break;
        }
        // A call without a usable id is refused with a typed error (the others of a batch are still decided); an
        // allowed one after the close fails to send.
        const stray = calls.some((call) => !validId(call.id));
        const sent = await wrapped.send((step.kind === 'call' ? messages[0] : messages) as JSONRPCMessage).then(
          () => undefined,
          (error: unknown) => error,
        );
        if (stray) expect(AgentPolicyError.isInstance(sent) && sent.code === 'INVALID_ARGUMENT', `${where}: send of a call without an id rejects with INVALID_ARGUMENT, got ${String(sent)}`).toBe(true);
        else if (model.failed.length > failed) expect(String(sent), `${where}: send after the close`).toMatch(/Not connected/);
        else expect(sent, `${where}: send`).toBeUndefined();
        break;
      }
      case 'answer': {
        if (model.deciding.length === 0) break;
        const index = step.which % model.deciding.length;
        const call = model.deciding[index];
        approvals.held.splice(index, 1)[0]?.();
        const failed = model.answer(index) === 'failed';
        const sent = await call?.sent;
        if (failed) expect(String(sent), `${where}: the held call's send after the close`).toMatch(/Not connected/);
        else expect(sent, `${where}: the held call's send`).toBeUndefined();
        break;
      }
      case 'cancel': {
        if (validId(step.id)) {
          model.lose(step.id);
          model.cancelDeciding(step.id);
        }
        const sent = wrapped.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: step.id, reason: 'fuzz' } } as JSONRPCMessage);
        if (model.closed) await expect(sent, `${where}: a notification after the close`).rejects.toThrow(/Not connected/);
        else await sent;
        break;
      }
      case 'close': {
        model.close(step.from);
        await (step.from === 'client' ? wrapped.close() : peer.close());
        break;
      }
      case 'reply': {
        if (model.closed) break; // a closed peer sends nothing
        const message = replyMessage(step.id, step.reply);
        model.reply(message, step.reply);
        await peer.send(message as JSONRPCMessage);
        break;
      }
      case 'reply-batch': {
        if (model.closed) break; // a closed peer sends nothing
        const messages = step.replies.map((r) => replyMessage(r.id, r.reply));
        step.replies.forEach((r, i) => model.reply(messages[i] as Record<string, unknown>, r.reply));
        await peer.send(messages as unknown as JSONRPCMessage);
        break;
      }
      case 'request': {
        const failed = model.request(step.id) === 'failed';
        const sent = wrapped.send({ jsonrpc: '2.0', ...(step.id === undefined ? {} : { id: step.id }), method: step.method } as JSONRPCMessage);
        if (failed) await expect(sent, `${where}: a request after the close`).rejects.toThrow(/Not connected/);
        else await sent;
        break;
      }
      case 'peer-cancel': {
        if (model.closed) break; // a closed peer sends nothing
        // A cancellation from the server's side concerns its own requests: passed to the client, settles nothing.
        const message = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: step.id ?? null } };
        model.up.push({ exact: message });
        await peer.send(message as JSONRPCMessage);
        break;
      }
    }
    await settle();
    check(where);
  }

  // A close from either end (again, if it closed already) loses every call still running: charged; and drops every
  // call still being decided, whose approver then answers. Then nothing stays reserved.
  model.close(closeFrom);
  await (closeFrom === 'client' ? wrapped.close() : peer.close());
  while (model.deciding.length > 0) {
    const call = model.deciding[0];
    approvals.held.shift()?.();
    const failed = model.answer(0) === 'failed';
    const sent = await call?.sent;
    if (failed) expect(String(sent), 'the send of a call answered after the close').toMatch(/Not connected/);
    else expect(sent, 'the send of a call answered after the close').toBeUndefined();
  }
  await endChecked(session, check, `after a close from the ${closeFrom}`);
}

describe('client side: random JSON-RPC traffic through wrapMcpTransport, both directions', () => {
  it('calls reach the peer only as allowed, once; spend follows the settlement rule; stray answers settle nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(clientStepArb, { minLength: 1, maxLength: 24 }), fc.constantFrom<'client' | 'peer'>('client', 'peer'), (steps, closeFrom) => runClient(steps, closeFrom)),
      fuzzOptions(RUNS),
    );
  });
});

// ---- server side ---------------------------------------------------------------------------------------------------

type Mode = 'return' | 'throw' | 'throw-400' | 'hang';
const MODES: Mode[] = ['return', 'throw', 'throw-400', 'hang'];
const INPUT_SCHEMA = { mode: z.enum(['return', 'throw', 'throw-400', 'hang']), level: z.number().optional(), ok: z.boolean().optional(), q: z.string().optional() };
const parseInput = z.object(INPUT_SCHEMA);
/** Arguments of a server-side call: what the schema accepts (a level, an ok, extra keys it strips) or rejects. */
type ServerArgs = 'plain' | 'level9-ok' | 'level9-no' | 'level3' | 'extra-key' | 'wrong-type' | 'missing-mode';
const SERVER_ARGS: ServerArgs[] = ['plain', 'level9-ok', 'level9-no', 'level3', 'extra-key', 'wrong-type', 'missing-mode'];
function serverArgs(shape: ServerArgs, mode: Mode): Record<string, unknown> {
  switch (shape) {
    case 'plain':
      return { mode };
    case 'level9-ok':
      return { mode, level: 9, ok: true };
    case 'level9-no':
      return { mode, level: 9, ok: false };
    case 'level3':
      return { mode, level: 3 };
    case 'extra-key':
      return { mode, level: 9, ok: true, sneaky: 'x' };
    case 'wrong-type':
      return { mode, level: 'nine' };
    case 'missing-mode':
      return { level: 3 };
  }
}

type ServerStep =
  | { readonly kind: 'call'; readonly tool: (typeof TOOLS)[number]; readonly mode: Mode; readonly args: ServerArgs }
  | { readonly kind: 'cancel'; readonly which: number };
const serverStepArb: fc.Arbitrary<ServerStep> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ tool: fc.constantFrom(...TOOLS), mode: fc.constantFrom(...MODES), args: fc.constantFrom(...SERVER_ARGS) }).map((call) => ({ kind: 'call' as const, ...call })) },
  { weight: 1, arbitrary: fc.nat(3).map((which) => ({ kind: 'cancel' as const, which })) },
);

class ServerModel {
  spent = 0;
  limitedUsed = 0;
  /** Handlers still running (hanging), in call order. */
  readonly hanging: { readonly cost: number; readonly abort: AbortController; readonly done: Promise<unknown> }[] = [];
  /** Fingerprints of the allows the model expects, and the handler runs (tool and the arguments it got). */
  readonly allowed: string[] = [];
  readonly ran: string[] = [];

  get reserved(): number {
    return this.hanging.reduce((sum, call) => sum + call.cost, 0);
  }

  /** What becomes of one call: refused, rejected by the schema, or run with the handler's behaviour. */
  decide(tool: string, args: Record<string, unknown>): 'refuse' | 'rejected' | 'run' {
    const parsed = parseInput.safeParse(args);
    const input = parsed.success ? parsed.data : args;
    if (tool === 'blocked') return 'refuse';
    // The rule applies to a level above 5, and to one it cannot read as a number (a word counts as holding).
    const level = (input as { level?: unknown }).level;
    const needsHuman = level !== undefined && (typeof level !== 'number' || level > 5);
    if (tool === 'gated' && needsHuman && (input as { ok?: unknown }).ok !== true) return 'refuse';
    const cost = COST_TENTHS[tool] ?? 0;
    if (cost > 0 && this.spent + this.reserved + cost > BUDGET_TENTHS) return 'refuse';
    if (tool === 'limited') {
      if (this.limitedUsed >= LIMITED_MAX) return 'refuse';
      this.limitedUsed++;
    }
    this.allowed.push(fingerprintOf(tool, input));
    if (!parsed.success) return 'rejected';
    this.ran.push(JSON.stringify([tool, parsed.data]));
    return 'run';
  }
}

async function runServer(steps: readonly ServerStep[]): Promise<void> {
  unhandled = [];
  const session = AgentPolicy.fromDict(POLICY).session({ approver });
  const model = new ServerModel();
  const ran: string[] = [];
  const closed = new AbortController();
  const server = new McpServer({ name: 'fuzz', version: '1.0.0' });
  for (const tool of TOOLS) {
    server.registerTool(tool, { inputSchema: INPUT_SCHEMA }, async (args, extra) => {
      ran.push(JSON.stringify([tool, args]));
      if (args.mode === 'throw') throw new Error('upstream 503');
      if (args.mode === 'throw-400') throw Object.assign(new Error('no such page'), { status: 404 });
      if (args.mode === 'hang') {
        await new Promise((resolve) => {
          extra.signal.addEventListener('abort', resolve);
          closed.signal.addEventListener('abort', resolve);
        });
      }
      return { content: [{ type: 'text' as const, text: `${tool} done` }] };
    });
  }
  const errors: unknown[] = [];
  server.server.onerror = (error) => void errors.push(error);
  gateMcpServer(server, session, { server: SERVER, costs: COSTS });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'fuzz', version: '1.0.0' });
  client.onerror = (error) => void errors.push(error);
  await client.connect(clientSide);

  const check = (where: string) => {
    // (1) a handler ran only for an allowed call, with the arguments decided, once per allow.
    expect([...ran].sort(), `${where}: handlers that ran`).toEqual([...model.ran].sort());
    expect(allowedFingerprints(session).sort(), `${where}: allows recorded`).toEqual([...model.allowed].sort());
    // (2) spend and reservations are the model's, within the budget.
    const { spent, reserved } = money(session);
    expect({ spent, reserved }, `${where}: spent and reserved (tenths)`).toEqual({ spent: model.spent, reserved: model.reserved });
    expect(spent + reserved).toBeLessThanOrEqual(BUDGET_TENTHS);
    expect(errors, `${where}: errors reported`).toEqual([]);
    expect(unhandled, `${where}: unhandled rejections`).toEqual([]);
  };

  try {
    for (const [index, step] of steps.entries()) {
      const where = `step ${index} (${JSON.stringify(step)})`;
      if (step.kind === 'call') {
        const args = serverArgs(step.args, step.mode);
        const outcome = model.decide(step.tool, args);
        const cost = COST_TENTHS[step.tool] ?? 0;
        const abort = new AbortController();
        const pending = client.callTool({ name: step.tool, arguments: args }, undefined, { signal: abort.signal });
        if (outcome === 'run' && step.mode === 'hang') {
          // Caught here: the call is settled by its cancellation or the close.
          const done = pending.catch((error: unknown) => error);
          model.hanging.push({ cost, abort, done });
          while (ran.length < model.ran.length) await settle();
        } else {
          const result = await pending;
          const decision = (result._meta?.['agentpolicy/decision'] as { decision?: unknown } | undefined)?.decision;
          expect(decision === undefined ? 'answered' : decision === 'allow' ? 'allow?' : 'refused', `${where}: how the call came back`).toBe(outcome === 'refuse' ? 'refused' : 'answered');
          expect(result.isError === true, `${where}: an error result`).toBe(outcome !== 'run' || step.mode !== 'return');
          // The handler's answer is the spend: a result or a plain throw charged; a 4xx throw or a schema rejection released.
          if (outcome === 'run' && step.mode !== 'throw-400') model.spent += cost;
        }
      } else {
        const call = model.hanging.splice(step.which % Math.max(1, model.hanging.length), 1)[0];
        if (call !== undefined) {
          call.abort.abort('cancelled by the fuzz');
          model.spent += call.cost;
          await call.done;
        }
      }
      await settle();
      check(where);
    }
  } finally {
    // Calls still hanging are lost with the connection: charged.
    for (const call of model.hanging) model.spent += call.cost;
    const hanging = model.hanging.splice(0).map((call) => call.done);
    await client.close();
    closed.abort();
    await Promise.all(hanging);
  }
  await endChecked(session, check, 'after the close');
}

describe('server side: random calls through an SDK Client to a gated McpServer', () => {
  it('handlers run only as allowed; throws, 4xx throws, schema rejections, cancellations and a close settle by the rule', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(serverStepArb, { minLength: 1, maxLength: 16 }), (steps) => runServer(steps)),
      fuzzOptions(Math.max(20, Math.round(RUNS / 3))),
    );
  });
});
