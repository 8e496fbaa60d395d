/**
 * A seeded fuzz of approvals answered from outside the call, and of a policy that changes mid-run, through a real
 * `McpServer` and an SDK `Client`, the gate on either side (`wrapMcpClient` or `gateMcpServer`).
 *
 * Without an approver: a call that needs approval comes back at once naming its request; the fuzz answers requests
 * (yes or no) from the session itself, from another session of the same id on the same approval store (another
 * process), or with a signed token, in any order, swaps the live policy (`PolicySource.update`: the approved tool
 * blocked, its approval dropped, a tool limited), and calls again — the same arguments, other arguments, an extra key
 * the tool's schema strips, two identical calls at once.
 *
 * With a call held open — by an approver that holds its answers, or by the gate waiting (`approvalWaitMs`) for an
 * answer to the call's request from outside — the policy is swapped and calls are cancelled meanwhile, then the
 * answer comes.
 *
 * Checked after every step: a handler runs only for a call allowed for exactly that input, at most once per allow; a
 * run that needed a human used an approved request raised for exactly what the handler got, each request once; a
 * rejected request never lets a call run; no blocked call runs, no limited tool runs past its limit; spend equals the
 * declared costs of the handlers that ran and never passes the budget; nothing stays reserved; every refused call
 * comes back as a readable error result whose decision is recorded, and one that needs approval names a pending
 * request for exactly its input; nothing is reported as an error and no rejection goes unhandled. Each run must reach
 * the paths it checks (counted; the test fails if a path is never reached).
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>).
 */
import { AgentPolicy, InMemoryApprovalStore, PolicySource, canonicalInput, type ApprovalRequest, type PolicySession } from '@agentpolicy/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { moneyInTenths, pathCounter, settle, unhandledRejections } from './test-support/fuzz-support.js';
import { gateMcpServer, wrapMcpClient } from './gate-mcp-server.js';
import type { McpPolicyOptions } from './tool-gate.js';

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_202 : Number(process.env['FUZZ_SEED']);
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 400);
const fuzzOptions = (runs: number) => ({ seed: SEED, numRuns: runs, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false });

const SERVER = 'fz';
const SECRET = 'an approval secret of at least thirty-two bytes';
const TOOLS = ['gated', 'paid', 'limited', 'blocked'] as const;
type Tool = (typeof TOOLS)[number];
/** Costs in tenths of a dollar; the budget is 10 tenths under every policy. */
const COST_TENTHS: Record<Tool, number> = { gated: 2, paid: 3, limited: 1, blocked: 0 };
const BUDGET_TENTHS = 10;
const LIMITED_MAX = 2;
const COSTS = Object.fromEntries(Object.entries(COST_TENTHS).map(([tool, tenths]) => [tool, tenths / 10]));
const name = (tool: Tool) => `mcp__${SERVER}__${tool}`;

/** The policies a run swaps between; what each means for a tool, as the model reads it. */
const POLICIES = [
  { label: 'gated needs approval', approval: ['gated'], blocked: ['blocked'] },
  { label: 'gated blocked', approval: [], blocked: ['blocked', 'gated'] },
  { label: 'gated needs no approval', approval: [], blocked: ['blocked'] },
  { label: 'paid needs approval too', approval: ['gated', 'paid'], blocked: ['blocked'] },
] as const;
type PolicyIndex = 0 | 1 | 2 | 3;
function policyDict(index: PolicyIndex): Record<string, unknown> {
  const policy = POLICIES[index];
  return {
    tools: { block: policy.blocked.map((tool) => name(tool)) },
    ...(policy.approval.length > 0 ? { approval: { require_for: policy.approval.map((tool) => ({ tool: name(tool) })) } } : {}),
    limits: [{ tool: name('limited'), max_calls: LIMITED_MAX, per: 'session' }],
    budget: { max_spend: BUDGET_TENTHS / 10 },
  };
}

/** Arguments: two values, and one with a key the tool's schema strips (the same input on the server's side). */
type ArgsShape = 'a' | 'b' | 'a-extra';
const ARGS: ArgsShape[] = ['a', 'b', 'a-extra'];
const INPUT_SCHEMA = { q: z.string(), n: z.number().default(1) };
const parseInput = z.object(INPUT_SCHEMA);
function argsOf(shape: ArgsShape): Record<string, unknown> {
  return shape === 'a' ? { q: 'a' } : shape === 'b' ? { q: 'b' } : { q: 'a', extra: true };
}
const canon = (value: unknown) => canonicalInput(value);
/** What a handler gets for these arguments (the server's parse), as text. */
const handled = (args: unknown) => canon(parseInput.parse(args));


const unhandled = unhandledRejections();
const { reach, expectReached } = pathCounter(SEED);

// ---- the harness: a gated McpServer and an SDK Client, the gate on one side ------------------------------------

interface Harness {
  readonly session: PolicySession;
  readonly source: PolicySource;
  readonly store: InMemoryApprovalStore;
  /** Handler runs: the tool and what it got (canonical), in order. */
  readonly ran: { readonly tool: Tool; readonly input: string }[];
  readonly errors: unknown[];
  call(tool: Tool, args: Record<string, unknown>, signal?: AbortSignal): Promise<CallToolResult>;
  close(): Promise<void>;
}

async function harness(side: 'client' | 'server', approver?: (request: ApprovalRequest) => Promise<boolean>, gateOptions: Partial<McpPolicyOptions> = {}): Promise<Harness> {
  const source = new PolicySource(AgentPolicy.fromDict(policyDict(0)));
  const store = new InMemoryApprovalStore();
  const session = source.session({ id: 'fuzz-session', approvals: store, approvalSecret: SECRET, ...(approver ? { approver } : {}) });
  const ran: { tool: Tool; input: string }[] = [];
  const errors: unknown[] = [];
  const server = new McpServer({ name: 'fuzz', version: '1.0.0' });
  for (const tool of TOOLS) {
    server.registerTool(tool, { inputSchema: INPUT_SCHEMA }, async (args) => {
      ran.push({ tool, input: canon(args) });
      return { content: [{ type: 'text' as const, text: `${tool} done` }] };
    });
  }
  server.server.onerror = (error) => void errors.push(error);
  const options = { server: SERVER, costs: COSTS, ...gateOptions };
  if (side === 'server') gateMcpServer(server, session, options);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'fuzz', version: '1.0.0' });
  client.onerror = (error) => void errors.push(error);
  if (side === 'client') wrapMcpClient(client, session, options);
  await client.connect(clientSide);
  return {
    session,
    source,
    store,
    ran,
    errors,
    call: (tool, args, signal) => client.callTool({ name: tool, arguments: args }, undefined, signal ? { signal } : undefined) as Promise<CallToolResult>,
    close: () => client.close(),
  };
}

/** The decision a refusal carries, checked to be readable and recorded. */
function refusalOf(session: PolicySession, result: CallToolResult, where: string): { decision: string; approvalRequestId?: string } {
  expect(result.isError, `${where}: a refusal is an error result`).toBe(true);
  expect(result.content, `${where}: with its reason as text`).toMatchObject([{ type: 'text', text: expect.stringMatching(/^agentpolicy: /) }]);
  const meta = result._meta?.['agentpolicy/decision'] as { id?: unknown; decision?: unknown; approvalRequestId?: unknown } | undefined;
  expect(meta?.decision === 'deny' || meta?.decision === 'require_approval', `${where}: the decision in _meta (${JSON.stringify(meta)})`).toBe(true);
  const recorded = session.report().decisions.find((d) => d.id === meta?.id);
  expect(recorded?.decision, `${where}: the refusal's decision is the one recorded`).toBe(meta?.decision);
  return { decision: meta?.decision as string, ...(typeof meta?.approvalRequestId === 'string' ? { approvalRequestId: meta.approvalRequestId } : {}) };
}

// ---- without an approver: answers from outside, retries, policy swaps ---------------------------------------

type How = 'session' | 'other-session' | 'token';
type Step =
  | { readonly kind: 'call'; readonly tool: Tool; readonly args: ArgsShape; readonly twice: boolean }
  | { readonly kind: 'answer'; readonly which: number; readonly approve: boolean; readonly how: How }
  | { readonly kind: 'retry'; readonly which: number; readonly twice: boolean }
  | { readonly kind: 'swap'; readonly policy: PolicyIndex }
  | { readonly kind: 'stale-token'; readonly which: number; readonly other: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({ tool: fc.constantFrom<Tool>('gated', 'gated', 'paid', 'limited', 'blocked'), args: fc.constantFrom(...ARGS), twice: fc.boolean() })
      .map((r) => ({ kind: 'call' as const, ...r })),
  },
  { weight: 4, arbitrary: fc.record({ which: fc.nat(3), approve: fc.boolean(), how: fc.constantFrom<How>('session', 'other-session', 'token') }).map((r) => ({ kind: 'answer' as const, ...r })) },
  { weight: 3, arbitrary: fc.record({ which: fc.nat(3), twice: fc.boolean() }).map((r) => ({ kind: 'retry' as const, ...r })) },
  { weight: 2, arbitrary: fc.constantFrom<PolicyIndex>(0, 0, 1, 2, 3).map((policy) => ({ kind: 'swap' as const, policy })) },
  { weight: 1, arbitrary: fc.record({ which: fc.nat(3), other: fc.nat(3) }).map((r) => ({ kind: 'stale-token' as const, ...r })) },
);

/** What the model knows of an approval request the gate named. */
interface Raised {
  readonly id: string;
  /** The call it was raised for. */
  readonly tool: Tool;
  readonly args: ArgsShape;
  /** What the handler would get for the input the request was raised for. */
  readonly input: string;
  answer?: boolean;
}

async function runWithoutApprover(side: 'client' | 'server', steps: readonly Step[]): Promise<void> {
  unhandled.reset();
  const h = await harness(side);
  const other = AgentPolicy.fromDict(policyDict(0)).session({ id: 'fuzz-session', approvals: h.store, approvalSecret: SECRET });
  let policy: PolicyIndex = 0;
  const raised: Raised[] = [];
  /** Approved requests used by a run: request id → run index. */
  const used = new Set<string>();
  let limitedRuns = 0;
  let checkedRuns = 0;

  const check = async (where: string) => {
    // Every run is accounted for: each run that needed a human used one approved request raised for what it got.
    for (const run of h.ran.slice(checkedRuns)) expect(run, `${where}: a run the model did not expect`).toBeUndefined();
    const { spent, reserved } = moneyInTenths(h.session);
    const expectedSpent = h.ran.reduce((sum, run) => sum + COST_TENTHS[run.tool], 0);
    expect({ spent, reserved }, `${where}: spent and reserved (tenths)`).toEqual({ spent: expectedSpent, reserved: 0 });
    expect(spent).toBeLessThanOrEqual(BUDGET_TENTHS);
    // Every allow recorded is one run of that tool with that input, and every run has its allow.
    const allows = h.session
      .report()
      .decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool')
      .map((d) => `${d.action.type === 'tool' ? d.action.name : ''} ${handled(d.action.type === 'tool' ? d.action.input : undefined)}`);
    expect(allows.sort(), `${where}: allows recorded`).toEqual(h.ran.map((run) => `${name(run.tool)} ${run.input}`).sort());
    expect(h.errors, `${where}: errors reported`).toEqual([]);
    expect(unhandled.list(), `${where}: unhandled rejections`).toEqual([]);
  };

  /** One call's outcome, judged against the policy in force and the approvals given. */
  const judge = async (tool: Tool, shape: ArgsShape, args: Record<string, unknown>, result: CallToolResult, runsBefore: number, newRuns: { tool: Tool; input: string }[], where: string) => {
    const input = handled(args);
    const mine = newRuns.findIndex((run) => run.tool === tool && run.input === input);
    const ranHere = mine >= 0 ? newRuns.splice(mine, 1)[0] : undefined;
    const decision = h.session.report().decisions.filter((d) => d.action.type === 'tool' && d.action.name === name(tool));
    void runsBefore;
    if (ranHere === undefined) {
      const refused = refusalOf(h.session, result, where);
      if (refused.decision === 'require_approval') {
        // It needs approval under the policy in force, and names a pending request for exactly its input.
        expect((POLICIES[policy].approval as readonly string[]).includes(tool), `${where}: approval asked under "${POLICIES[policy].label}"`).toBe(true);
        const state = await h.session.getApproval(refused.approvalRequestId as string);
        expect(state?.status, `${where}: the request named is pending`).toBe('pending');
        expect(state?.action.type === 'tool' && state.action.name, `${where}: the request is for this tool`).toBe(name(tool));
        expect(handled(state?.action.type === 'tool' ? state.action.input : undefined), `${where}: the request is for this input`).toBe(input);
        if (!raised.some((r) => r.id === state?.id)) raised.push({ id: state?.id as string, tool, args: shape, input });
        reach('approval requested');
      } else if (raised.some((r) => r.answer === false && r.input === input) && tool === 'gated' && policy === 0) reach('rejected, then refused');
      return;
    }
    expect(result.isError, `${where}: a call that ran is answered with its result`).not.toBe(true);
    expect(result.content, `${where}: the handler's own result`).toEqual([{ type: 'text', text: `${tool} done` }]);
    // Never a blocked call; never the limited tool past its limit.
    expect((POLICIES[policy].blocked as readonly string[]).includes(tool), `${where}: a blocked tool ran under "${POLICIES[policy].label}"`).toBe(false);
    if (tool === 'limited') expect(++limitedRuns, `${where}: limited runs`).toBeLessThanOrEqual(LIMITED_MAX);
    if ((POLICIES[policy].approval as readonly string[]).includes(tool)) {
      // It ran on an approval: one request, approved, raised for exactly what the handler got, not used before.
      const allow = decision.filter((d) => d.decision === 'allow').find((d) => d.approval?.requestId !== undefined && !used.has(d.approval.requestId));
      const requestId = allow?.approval?.requestId;
      expect(requestId, `${where}: the run's allow names the approval it used`).toBeDefined();
      const request = raised.find((r) => r.id === requestId);
      expect(request?.answer, `${where}: the approval used was given by the fuzz as a yes`).toBe(true);
      expect(request?.input, `${where}: the approval was for what the handler got`).toBe(ranHere.input);
      used.add(requestId as string);
      const state = await h.session.getApproval(requestId as string);
      expect(state?.status, `${where}: the approval is used`).toBe('used');
      reach('approved, then ran once');
    }
  };

  try {
    for (const [index, step] of steps.entries()) {
      const where = `step ${index} (${JSON.stringify(step)}) under "${POLICIES[policy].label}"`;
      switch (step.kind) {
        case 'call':
        case 'retry': {
          // A retry calls again what an open or answered request was raised for (the same arguments as sent).
          const again = step.kind === 'retry' ? raised[step.which % Math.max(1, raised.length)] : undefined;
          if (step.kind === 'retry' && again === undefined) break;
          const tool = step.kind === 'call' ? step.tool : (again as Raised).tool;
          const shape = step.kind === 'call' ? step.args : (again as Raised).args;
          const args = argsOf(shape);
          const runsBefore = h.ran.length;
          const results = await Promise.all(step.twice ? [h.call(tool, args), h.call(tool, args)] : [h.call(tool, args)]);
          await settle();
          const newRuns = h.ran.slice(runsBefore);
          checkedRuns = h.ran.length;
          if (step.twice && raised.some((r) => r.answer === true && r.input === handled(args) && !used.has(r.id))) reach('two calls at once on one approval');
          for (const result of results) await judge(tool, shape, args, result, runsBefore, newRuns, where);
          expect(newRuns, `${where}: runs no call of this step accounts for`).toEqual([]);
          break;
        }
        case 'answer': {
          // Mostly a request still open; sometimes one answered already (the first answer wins).
          const open = raised.filter((r) => r.answer === undefined);
          const request = step.which === 3 || open.length === 0 ? raised[step.which % Math.max(1, raised.length)] : open[step.which % open.length];
          if (request === undefined) break;
          const given = { approved: step.approve, by: 'fuzz' };
          let result: { ok: boolean };
          if (step.how === 'session') result = await h.session.resolveApproval(request.id, given);
          else if (step.how === 'other-session') result = await other.resolveApproval(request.id, given);
          else result = await h.session.resolveApprovalToken(await tokenOrNothing(h.session, request.id, step.approve), { by: 'fuzz' });
          // The first answer wins; a later one changes nothing.
          if (result.ok) {
            expect(request.answer, `${where}: a second answer was taken`).toBeUndefined();
            request.answer = step.approve;
            reach(`answered by ${step.how}`);
          }
          break;
        }
        case 'stale-token': {
          // A token for one request, redeemed after that request was answered, or tampered to name another: refused.
          const request = raised[step.which % Math.max(1, raised.length)];
          const target = raised[step.other % Math.max(1, raised.length)];
          if (request === undefined || target === undefined || target.id === request.id) break;
          const state = await h.session.getApproval(request.id);
          if (state?.status !== 'pending') {
            await expect(h.session.approvalToken(request.id), `${where}: a token for an answered request`).rejects.toThrow(/not pending/);
            break;
          }
          const token = await h.session.approvalToken(request.id);
          const [prefix, payload, signature] = token.split('.');
          const claims = JSON.parse(Buffer.from(payload as string, 'base64url').toString('utf8')) as unknown[];
          claims[0] = target.id;
          const forged = `${prefix}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
          const outcome = await h.session.resolveApprovalToken(forged);
          expect(outcome.ok, `${where}: a token changed to name another request`).toBe(false);
          reach('forged token refused');
          break;
        }
        case 'swap': {
          if (raised.some((r) => r.answer === undefined) && step.policy !== policy) reach('policy swapped with a request open');
          policy = step.policy;
          h.source.update(policyDict(policy));
          break;
        }
      }
      await check(where);
    }
  } finally {
    await h.close();
  }
  await settle();
  h.session.end();
  other.end();
  await check('after the close and session.end()');
  expect(h.session.pendingReservations).toBe(0);
}

async function tokenOrNothing(session: PolicySession, requestId: string, approve: boolean): Promise<string> {
  try {
    return await session.approvalToken(requestId, { answer: approve ? 'approve' : 'reject' });
  } catch {
    // Answered already: a token cannot be made; redeeming nothing is refused.
    return 'apt1.not.a-token';
  }
}

// ---- with an approver that holds its answers while the policy changes ------------------------------------------

type HeldStep =
  | { readonly kind: 'call'; readonly tool: Tool; readonly args: ArgsShape }
  | { readonly kind: 'swap'; readonly policy: PolicyIndex }
  | { readonly kind: 'answer'; readonly which: number; readonly approve: boolean }
  | { readonly kind: 'cancel'; readonly which: number };
const heldStepArb: fc.Arbitrary<HeldStep> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ tool: fc.constantFrom<Tool>('gated', 'paid', 'limited'), args: fc.constantFrom(...ARGS) }).map((r) => ({ kind: 'call' as const, ...r })) },
  { weight: 2, arbitrary: fc.constantFrom<PolicyIndex>(0, 1, 2, 3).map((policy) => ({ kind: 'swap' as const, policy })) },
  { weight: 3, arbitrary: fc.record({ which: fc.nat(3), approve: fc.boolean() }).map((r) => ({ kind: 'answer' as const, ...r })) },
  { weight: 1, arbitrary: fc.nat(3).map((which) => ({ kind: 'cancel' as const, which })) },
);

/**
 * `approver`: the session's approver holds each answer (the call's money held meanwhile). `wait`: no approver; the
 * gate waits (`approvalWaitMs`) for an answer given from outside (the session, another session on the same store,
 * a token), nothing held meanwhile, and decides the call again when it comes.
 */
async function runHeld(side: 'client' | 'server', mode: 'approver' | 'wait', steps: readonly HeldStep[]): Promise<void> {
  unhandled.reset();
  const waiting: { readonly request: ApprovalRequest; readonly answer: (yes: boolean) => void }[] = [];
  const h =
    mode === 'approver'
      ? await harness(side, (request) => new Promise<boolean>((answer) => waiting.push({ request, answer })))
      : await harness(side, undefined, { approvalWaitMs: 60_000, approvalPollMs: 2 });
  const other = AgentPolicy.fromDict(policyDict(0)).session({ id: 'fuzz-session', approvals: h.store, approvalSecret: SECRET });
  let answers = 0;
  /** Wait mode: the request a new call waits on, once the gate raised it; answering it answers the call. */
  const raisedFor = async (input: string, known: ReadonlySet<string>): Promise<ApprovalRequest> => {
    for (;;) {
      const found = (await h.session.pendingApprovals()).find((r) => !known.has(r.id) && handled(r.action.type === 'tool' ? r.action.input : undefined) === input);
      if (found !== undefined) return found;
      await settle();
    }
  };
  if (mode === 'wait') {
    // The "approver" of a waiting call is whoever answers its stored request.
    const answerFrom = async (request: ApprovalRequest, yes: boolean) => {
      const how = answers++ % 3;
      const given = { approved: yes, by: 'fuzz' };
      const result =
        how === 0
          ? await h.session.resolveApproval(request.id, given)
          : how === 1
            ? await other.resolveApproval(request.id, given)
            : await h.session.resolveApprovalToken(await h.session.approvalToken(request.id, { answer: yes ? 'approve' : 'reject' }));
      expect(result.ok, 'an answer to a pending request is taken').toBe(true);
    };
    answerOutside = answerFrom;
  }
  let policy: PolicyIndex = 0;
  /** Calls still being decided (their approver holds its answer), in order asked. */
  const pending: { readonly tool: Tool; readonly input: string; readonly result: Promise<CallToolResult>; readonly policyAsked: PolicyIndex; readonly abort: AbortController; cancelled: boolean }[] = [];
  // Money is held while an approver decides; a call waiting for an answer from outside holds none.
  const heldTenths = () => (mode === 'approver' ? pending.reduce((sum, call) => sum + COST_TENTHS[call.tool], 0) : 0);
  const expectedRuns: { tool: Tool; input: string }[] = [];
  let limitedAllowed = 0;

  const check = (where: string) => {
    expect([...h.ran].map((r) => `${r.tool} ${r.input}`).sort(), `${where}: handlers that ran`).toEqual(expectedRuns.map((r) => `${r.tool} ${r.input}`).sort());
    const { spent, reserved } = moneyInTenths(h.session);
    expect({ spent, reserved }, `${where}: spent and reserved (tenths)`).toEqual({ spent: expectedRuns.reduce((sum, run) => sum + COST_TENTHS[run.tool], 0), reserved: heldTenths() });
    expect(spent + reserved).toBeLessThanOrEqual(BUDGET_TENTHS);
    expect(h.errors, `${where}: errors reported`).toEqual([]);
    expect(unhandled.list(), `${where}: unhandled rejections`).toEqual([]);
  };
  const fits = (tool: Tool) => moneyInTenths(h.session).spent + heldTenths() + COST_TENTHS[tool] <= BUDGET_TENTHS;

  try {
    for (const [index, step] of steps.entries()) {
      const where = `step ${index} (${JSON.stringify(step)}) under "${POLICIES[policy].label}"`;
      if (step.kind === 'call') {
        const args = argsOf(step.args);
        const input = handled(args);
        const needsHuman = (POLICIES[policy].approval as readonly string[]).includes(step.tool);
        // Wait mode: two calls waiting on one request would both be answered by one answer; one at a time.
        if (mode === 'wait' && needsHuman && pending.some((c) => c.tool === step.tool && c.input === input)) continue;
        const limitedOver = step.tool === 'limited' && limitedAllowed >= LIMITED_MAX;
        const blocked = (POLICIES[policy].blocked as readonly string[]).includes(step.tool);
        const fitting = fits(step.tool);
        const asked = waiting.length;
        const abort = new AbortController();
        const result = h.call(step.tool, args, abort.signal);
        if (needsHuman && fitting && !limitedOver && !blocked) {
          // Held by the approver, its money held meanwhile; or waiting for an answer to its request from outside.
          if (mode === 'wait') {
            const request = await raisedFor(input, new Set(waiting.map((w) => w.request.id)));
            waiting.push({ request, answer: (yes) => void answerOutside(request, yes) });
          }
          while (waiting.length === asked) await settle();
          const shown = waiting.at(-1)?.request.action;
          expect(handled(shown?.type === 'tool' ? shown.input : undefined), `${where}: the approver is shown the input`).toBe(input);
          pending.push({ tool: step.tool, input, result, policyAsked: policy, abort, cancelled: false });
        } else {
          const answer = await result;
          await settle();
          if (!fitting || limitedOver || blocked) refusalOf(h.session, answer, where);
          else {
            expect(answer.isError, `${where}: ran`).not.toBe(true);
            if (step.tool === 'limited') limitedAllowed++;
            expectedRuns.push({ tool: step.tool, input });
          }
        }
      } else if (step.kind === 'cancel') {
        // The client gives up on a call while its approver decides: the SDK sends notifications/cancelled.
        const call = pending.filter((c) => !c.cancelled)[step.which % Math.max(1, pending.filter((c) => !c.cancelled).length)];
        if (call === undefined) continue;
        call.cancelled = true;
        call.abort.abort('the user gave up');
        await expect(call.result, `${where}: the cancelled call rejects at the client`).rejects.toThrow();
      } else if (step.kind === 'swap') {
        if (pending.length > 0 && step.policy !== policy) reach(`${mode}: policy swapped while the approver decides`);
        policy = step.policy;
        h.source.update(policyDict(policy));
      } else {
        if (pending.length === 0) continue;
        const i = step.which % pending.length;
        const [call] = pending.splice(i, 1);
        const [held] = waiting.splice(i, 1);
        if (call === undefined || held === undefined) continue;
        const spentBefore = moneyInTenths(h.session).spent;
        if (mode === 'wait') await answerOutside(held.request, step.approve);
        else held.answer(step.approve);
        if (call.cancelled) {
          // Never runs, whatever the answer; nothing is answered under its id (the client would report an unknown id).
          // Its money comes back once the gate has the answer.
          for (let i = 0; i < 50 && moneyInTenths(h.session).reserved !== heldTenths(); i++) await settle();
          reach(`${mode}: cancelled while the approver decides, then answered`);
        } else {
          const answer = await call.result;
          await settle();
          // It runs only on a yes, and only if the policy in force when the answer comes still allows it (waiting
          // for an answer from outside, its money is reserved then: it must fit then).
          const blockedNow = (POLICIES[policy].blocked as readonly string[]).includes(call.tool);
          const fitsNow = mode === 'approver' || spentBefore + COST_TENTHS[call.tool] <= BUDGET_TENTHS;
          if (step.approve && !blockedNow && fitsNow) {
            expect(answer.isError, `${where}: approved and still allowed: ran`).not.toBe(true);
            expectedRuns.push({ tool: call.tool, input: call.input });
            if (call.policyAsked !== policy) reach(`${mode}: approved, policy changed, still allowed: ran`);
          } else {
            refusalOf(h.session, answer, where);
            if (step.approve) reach(`${mode}: approved, then blocked by the new policy: refused`);
          }
        }
      }
      await settle();
      check(where);
    }
  } finally {
    // The rest are answered with a no before the close.
    for (const held of waiting.splice(0)) {
      if (mode === 'wait') await answerOutside(held.request, false);
      else held.answer(false);
    }
    await Promise.all(pending.splice(0).map((call) => call.result.catch(() => undefined)));
    await h.close();
  }
  await settle();
  h.session.end();
  other.end();
  check('after the close and session.end()');
}

/** Answers a stored request from outside the call (set per run in wait mode). */
let answerOutside: (request: ApprovalRequest, yes: boolean) => Promise<void> = async () => undefined;

describe('approvals answered from outside the call, and policy changes mid-run', () => {
  afterAll(() => {
    // A fuzz that never reaches a path checks nothing there.
    const paths = [
      'approval requested',
      'answered by session',
      'answered by other-session',
      'answered by token',
      'approved, then ran once',
      'rejected, then refused',
      'two calls at once on one approval',
      'forged token refused',
      'policy swapped with a request open',
      ...(['approver', 'wait'] as const).flatMap((mode) => [
        `${mode}: policy swapped while the approver decides`,
        `${mode}: approved, policy changed, still allowed: ran`,
        `${mode}: approved, then blocked by the new policy: refused`,
        `${mode}: cancelled while the approver decides, then answered`,
      ]),
    ];
    expectReached(paths);
  });

  it('without an approver: an answer counts only for its request, for exactly the input shown, once', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<'client' | 'server'>('client', 'server'), fc.array(stepArb, { minLength: 1, maxLength: 24, size: 'medium' }), (side, steps) => runWithoutApprover(side, steps)),
      fuzzOptions(RUNS),
    );
  });

  it('with an approver deciding, or a call waiting for an answer from outside, while the policy changes: a yes runs only what the policy in force then allows', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<'client' | 'server'>('client', 'server'),
        fc.constantFrom<'approver' | 'wait'>('approver', 'wait'),
        fc.array(heldStepArb, { minLength: 1, maxLength: 16 }),
        (side, mode, steps) => runHeld(side, mode, steps),
      ),
      fuzzOptions(RUNS * 3),
    );
  });
});
