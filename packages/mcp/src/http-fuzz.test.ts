/**
 * A seeded fuzz of the MCP gates over Streamable HTTP: a real `StreamableHTTPServerTransport` per MCP session on
 * 127.0.0.1 (port 0) in front of an `McpServer`, and the SDK's `StreamableHTTPClientTransport` sending raw JSON-RPC,
 * the gate on the client's transport (`wrapMcpTransport`) or on the server (`gateMcpServer`, one policy session for
 * every MCP session, so the budget spans reconnects).
 *
 * Random steps: calls (free, with a cost, needing an approver's yes by their arguments, blocked, limited, slow until
 * released) sent without waiting for their answers, under ids from a small pool (so an id is reused while its call
 * still runs) or fresh ones; cancellations; releasing the slow handlers; a reconnect that cuts the connection with
 * calls still running (their HTTP streams cut mid-way) and opens a new MCP session. Some runs give the gate a
 * `requestTimeoutMs` short enough to end a slow call itself.
 *
 * Checked after every step: spend plus reservations never pass the budget. At the end: every handler run had an
 * allow for exactly its tool and input, at most once per allow; no blocked call, no refused approval, no limited call
 * past its limit ran; spend is at least the declared costs of the handlers that ran and at most those of the calls
 * allowed (a call cut or cancelled after its allow is charged: it may have run), and nothing stays reserved; every
 * call neither cut nor cancelled got exactly one readable answer under its id (a result, an error result with its
 * decision, or a JSON-RPC error); no rejection went unhandled. Each path must be reached (counted).
 *
 * One thing the SDK's server transport does that no gate can mend: it maps a request id to the HTTP stream of the
 * last POST that carried it, so a client that reuses an id while its first call runs (over two POSTs) loses the first
 * call's answer — the gate refuses the second, and the first is still settled by its own answer (the fuzz allows that
 * loss, for that call only).
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>).
 */
import { AgentPolicy, canonicalInput, type ApprovalRequest } from '@agentpolicy/core';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { moneyInTenths, pathCounter, settle, unhandledRejections } from './test-support/fuzz-support.js';
import { gateMcpServer } from './gate-mcp-server.js';
import { wrapMcpTransport } from './policy-transport.js';
import { serveHttp } from './test-support/servers.js';

const SEED = process.env['FUZZ_SEED'] === undefined ? 20_261_203 : Number(process.env['FUZZ_SEED']);
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 150);
const fuzzOptions = (runs: number) => ({ seed: SEED, numRuns: runs, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false });

const SERVER = 'fz';
const TOOLS = ['free', 'paid', 'gated', 'blocked', 'limited', 'slow'] as const;
type Tool = (typeof TOOLS)[number];
/** Costs in tenths of a dollar; the budget is 10 tenths. */
const COST_TENTHS: Record<Tool, number> = { free: 0, paid: 3, gated: 2, blocked: 0, limited: 1, slow: 2 };
const BUDGET_TENTHS = 10;
const LIMITED_MAX = 2;
const COSTS = Object.fromEntries(Object.entries(COST_TENTHS).map(([tool, tenths]) => [tool, tenths / 10]));
const POLICY = {
  tools: { block: [`mcp__${SERVER}__blocked`] },
  approval: { require_for: [{ tool: `mcp__${SERVER}__gated` }] },
  limits: [{ tool: `mcp__${SERVER}__limited`, max_calls: LIMITED_MAX, per: 'session' }],
  budget: { max_spend: BUDGET_TENTHS / 10 },
};
/** The approver says yes exactly when the arguments it is shown carry `ok: true`. */
const approver = async (request: ApprovalRequest): Promise<boolean> => (request.action.type === 'tool' ? (request.action.input as { ok?: unknown }).ok === true : false);
const INPUT_SCHEMA = { n: z.number(), ok: z.boolean() };
const INIT = { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'fuzz', version: '1' } };

type Message = Record<string, unknown> & { id?: unknown; result?: Record<string, unknown>; error?: { code?: unknown; message?: unknown } };
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const unhandled = unhandledRejections();
const { reach, expectReached } = pathCounter(SEED);

/** One McpServer per MCP session on 127.0.0.1; `prepare` gates it (server side). */
async function startServer(prepare: (server: McpServer) => void, ran: { tool: Tool; input: string }[], slow: Set<() => void>) {
  const http = await serveHttp(() => {
    const server = new McpServer({ name: 'fuzz', version: '1.0.0' });
    for (const tool of TOOLS) {
      server.registerTool(tool, { inputSchema: INPUT_SCHEMA }, async (args, extra) => {
        ran.push({ tool, input: canonicalInput(args) });
        if (tool === 'slow') {
          await new Promise<void>((resolve) => {
            const done = () => {
              slow.delete(done);
              resolve();
            };
            slow.add(done);
            extra.signal.addEventListener('abort', done);
          });
        }
        return { content: [{ type: 'text' as const, text: `${tool} done` }] };
      });
    }
    // A reply that cannot be delivered (its HTTP stream was cut) is the SDK's to report; the fuzz checks money.
    server.server.onerror = () => undefined;
    prepare(server);
    return server;
  });
  return {
    url: http.url,
    close: async () => {
      for (const release of slow) release();
      await http.close();
    },
  };
}

type IdChoice = 1 | 2 | '1' | 'fresh';
type Step =
  | { readonly kind: 'call'; readonly id: IdChoice; readonly tool: Tool; readonly ok: boolean }
  | { readonly kind: 'release' }
  | { readonly kind: 'cancel'; readonly which: number }
  | { readonly kind: 'reconnect' }
  | { readonly kind: 'wait' };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ id: fc.constantFrom<IdChoice>(1, 1, 2, '1', 'fresh'), tool: fc.constantFrom<Tool>(...TOOLS, 'slow', 'slow'), ok: fc.boolean() }).map((r) => ({ kind: 'call' as const, ...r })) },
  { weight: 2, arbitrary: fc.constant({ kind: 'release' as const }) },
  { weight: 1, arbitrary: fc.nat(3).map((which) => ({ kind: 'cancel' as const, which })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reconnect' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'wait' as const }) },
);

interface Sent {
  readonly conn: number;
  readonly id: number | string;
  readonly tool: Tool;
  /** Cut with its connection, or cancelled: it may get no answer. */
  lost: boolean;
  /** Sent under an id still waiting for its answer on the server side (see above): the earlier call's answer may be lost. */
  shadowed: boolean;
  answers: Message[];
}

async function run(side: 'client' | 'server', requestTimeoutMs: number, steps: readonly Step[]): Promise<void> {
  unhandled.reset();
  const session = AgentPolicy.fromDict(POLICY).session({ approver });
  const ran: { tool: Tool; input: string }[] = [];
  const slow = new Set<() => void>();
  const options = { server: SERVER, costs: COSTS, requestTimeoutMs };
  const http = await startServer((server) => {
    if (side === 'server') gateMcpServer(server, () => session, options);
  }, ran, slow);
  const sent: Sent[] = [];
  let conn = 0;
  let fresh = 100;
  let transport: Transport | undefined;
  const sends: Promise<unknown>[] = [];

  const connect = async () => {
    conn++;
    const mine = conn;
    const inner = new StreamableHTTPClientTransport(http.url);
    const t: Transport = side === 'client' ? wrapMcpTransport(inner, session, options) : inner;
    let initialised: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (initialised = resolve));
    t.onmessage = (message) => {
      const m = message as Message;
      if (m.id === 'init') return initialised();
      // An answer goes to the oldest call under its id on this connection still waiting for one.
      // (A cancelled one gets none: MCP sends no answer for a cancelled request.)
      const under = sent.filter((s) => s.conn === mine && s.id === m.id);
      // The refusal of a call under an id in use is the newest's; a handler's result is its tool's; any other
      // answer the oldest's.
      const inUse = JSON.stringify(m).includes('is already in use by another request');
      const text = (m.result?.['content'] as { text?: unknown }[] | undefined)?.[0]?.text;
      const byTool = typeof text === 'string' && text.endsWith(' done') ? text.slice(0, -' done'.length) : undefined;
      const open = under.filter((s) => !s.lost && s.answers.length === 0 && (byTool === undefined || s.tool === byTool));
      // (A call whose id was reused while it ran may have lost its answer: the others are served first.)
      const served = open.filter((s) => !s.shadowed);
      const to = (inUse ? open.at(-1) : (served[0] ?? open[0])) ?? under.find((s) => s.answers.length === 0) ?? under[0];
      if (to === undefined) throw new Error(`an answer for no call: ${JSON.stringify(m)}`);
      to.answers.push(m);
    };
    t.onerror = () => undefined; // a cut stream is reported here; what matters is checked below
    await t.start();
    await t.send({ jsonrpc: '2.0', id: 'init', method: 'initialize', params: INIT } as JSONRPCMessage);
    await ready;
    await t.send({ jsonrpc: '2.0', method: 'notifications/initialized' } as JSONRPCMessage);
    transport = t;
  };
  const waiting = () => sent.filter((s) => s.conn === conn && !s.lost && s.answers.length === 0);

  const check = (where: string) => {
    const { spent, reserved } = moneyInTenths(session);
    expect(spent + reserved, `${where}: spent + reserved (tenths)`).toBeLessThanOrEqual(BUDGET_TENTHS);
    expect(unhandled.list(), `${where}: unhandled rejections`).toEqual([]);
  };

  try {
    await connect();
    for (const [index, step] of steps.entries()) {
      const where = `step ${index} (${JSON.stringify(step)})`;
      const t = transport as Transport;
      switch (step.kind) {
        case 'call': {
          const id = step.id === 'fresh' ? fresh++ : step.id;
          const busy = waiting().some((s) => s.id === id);
          if (busy) reach('id reused while its call waits');
          if (waiting().length > 0) reach('calls at once');
          if (busy && side === 'server') for (const s of waiting()) if (s.id === id) s.shadowed = true;
          sent.push({ conn, id, tool: step.tool, lost: false, shadowed: false, answers: [] });
          const message = { jsonrpc: '2.0', id, method: 'tools/call', params: { name: step.tool, arguments: { n: index, ok: step.ok } } };
          sends.push(t.send(message as JSONRPCMessage).catch((error: unknown) => error));
          await settle();
          break;
        }
        case 'release':
          for (const release of slow) release();
          await tick(15);
          break;
        case 'cancel': {
          const open = waiting();
          const target = open[step.which % Math.max(1, open.length)];
          if (target === undefined) break;
          // Every call under that id is cancelled with it.
          for (const s of open) if (s.id === target.id) s.lost = true;
          if (target.tool === 'slow') reach('cancelled while running');
          await t.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: target.id, reason: 'fuzz' } } as JSONRPCMessage);
          await tick(10);
          break;
        }
        case 'reconnect': {
          // The connection is cut with its calls' HTTP streams still open; a new MCP session follows.
          const open = waiting();
          if (open.some((s) => s.tool === 'slow')) reach('cut mid-call, reconnected');
          for (const s of sent) if (s.conn === conn) s.lost = s.lost || s.answers.length === 0;
          await t.close();
          await connect();
          break;
        }
        case 'wait':
          await tick(30);
          break;
      }
      check(where);
    }
    // Every handler finishes; every answer that is coming comes.
    for (let i = 0; i < 100 && (slow.size > 0 || waiting().some((s) => !s.shadowed)); i++) {
      for (const release of slow) release();
      await tick(10);
    }
    await Promise.all(sends);
  } finally {
    await transport?.close();
    await http.close();
  }
  await settle();
  check('after the close');
  session.end();
  await settle();

  // Runs: each had an allow for exactly its tool and input, at most once per allow; none blocked, refused or over.
  const allows = session
    .report()
    .decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool')
    .map((d) => `${d.action.type === 'tool' ? d.action.name.replace(`mcp__${SERVER}__`, '') : ''} ${canonicalInput(d.action.type === 'tool' ? d.action.input : undefined)}`);
  const left = [...allows];
  for (const r of ran) {
    const key = `${r.tool} ${r.input}`;
    const at = left.indexOf(key);
    expect(at, `a run without an allow of its own: ${key} (allows ${JSON.stringify(allows)})`).toBeGreaterThanOrEqual(0);
    left.splice(at, 1);
    expect(r.tool, 'a blocked tool ran').not.toBe('blocked');
    if (r.tool === 'gated') expect((JSON.parse(r.input) as { ok: boolean }).ok, 'a call the approver refused ran').toBe(true);
  }
  expect(ran.filter((r) => r.tool === 'limited').length, 'limited runs').toBeLessThanOrEqual(LIMITED_MAX);
  // Money: at least what ran, at most what was allowed, within the budget; nothing held.
  const cost = (keys: readonly string[]) => keys.reduce((sum, key) => sum + COST_TENTHS[key.split(' ')[0] as Tool], 0);
  const { spent, reserved } = moneyInTenths(session);
  expect(reserved, 'reserved after session.end()').toBe(0);
  expect(session.pendingReservations).toBe(0);
  expect(spent, 'spent, at least the costs of the handlers that ran').toBeGreaterThanOrEqual(cost(ran.map((r) => `${r.tool} x`)));
  // Every allow here is charged: its handler ran, or it was cut or cancelled after its allow (it may have run).
  expect(spent, 'spent, the costs of the calls allowed').toBe(cost(allows));
  expect(spent).toBeLessThanOrEqual(BUDGET_TENTHS);
  // Answers: one readable answer for every call neither cut nor cancelled (nor shadowed, see above).
  for (const s of sent) {
    const label = `call ${JSON.stringify(s.id)} (${s.tool}) on connection ${s.conn}`;
    for (const answer of s.answers) {
      if (answer.error !== undefined) {
        expect(typeof answer.error.code === 'number' && typeof answer.error.message === 'string', `${label}: a JSON-RPC error`).toBe(true);
        if (answer.error.code === -32001 && String(answer.error.message).startsWith('agentpolicy:')) reach('ended by requestTimeoutMs');
      } else {
        const result = answer.result as { isError?: unknown; content?: unknown; _meta?: Record<string, { decision?: unknown }> };
        expect(Array.isArray(result?.content), `${label}: a readable result`).toBe(true);
        const decision = result._meta?.['agentpolicy/decision']?.decision;
        if (decision !== undefined) expect(['deny', 'require_approval'], `${label}: a refusal's decision`).toContain(decision);
        if (result.isError === true && decision !== undefined) reach('a refusal read by the client');
      }
    }
    expect(s.answers.length, `${label}: answers`).toBeLessThanOrEqual(1);
    if (!s.lost && !s.shadowed) expect(s.answers.length, `${label}: answered`).toBe(1);
  }
}

describe('Streamable HTTP on 127.0.0.1: sessions, reconnects, cut requests, reused ids, concurrent calls', () => {
  afterAll(() => {
    const paths = ['ended by requestTimeoutMs', 'id reused while its call waits', 'calls at once', 'cancelled while running', 'cut mid-call, reconnected', 'a refusal read by the client'];
    expectReached(paths);
  });

  it('handlers run only as allowed, once; spend stays within what ran and was allowed; every call gets one answer', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<'client' | 'server'>('client', 'server'),
        // The gate's own timeout: never, or short enough that a slow call not released in time is ended by it.
        fc.constantFrom(Infinity, Infinity, 25),
        fc.array(stepArb, { minLength: 1, maxLength: 16 }),
        (side, timeout, steps) => run(side, timeout, steps),
      ),
      fuzzOptions(RUNS),
    );
  }, 600_000);
});
