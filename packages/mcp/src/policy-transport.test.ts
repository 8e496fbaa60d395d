// The client-side wrapper against real MCP servers built with the SDK: a child process over stdio and Streamable
// HTTP on 127.0.0.1. The server logs every handler that runs, so "never reached the server" is checked at the server.
import { AgentPolicy, type PolicySession } from '@agentpolicy/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { CallToolResultSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wrapMcpClient } from './gate-mcp-server.js';
import { wrapMcpTransport } from './policy-transport.js';
import type { McpPolicyOptions } from './tool-gate.js';
import { callLog, firstPendingApproval, startHttpServer, stdioTransport } from './test-support/servers.js';

const POLICY = {
  tools: { block: ['mcp__docs__run_shell', 'mcp__docs__delete_*'] },
  approval: { require_for: [{ tool: 'mcp__docs__publish' }] },
  budget: { max_spend: 1 },
};

const text = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;
const requestIdOf = (result: { _meta?: Record<string, unknown> | undefined }) => (result._meta?.['agentpolicy/decision'] as { approvalRequestId?: string } | undefined)?.approvalRequestId as string;

type Kind = 'stdio' | 'http';
let http: Awaited<ReturnType<typeof startHttpServer>>;
const httpLog = callLog();
beforeAll(async () => {
  http = await startHttpServer(httpLog.path);
});
afterAll(async () => {
  await http?.close();
});

/** A governed client on a fresh server connection; `calls()` lists the tools that ran on the server since. */
async function connect(kind: Kind, session: PolicySession, options: Partial<McpPolicyOptions> = {}) {
  let transport: Transport;
  let calls: () => string[];
  if (kind === 'stdio') {
    const log = callLog();
    transport = stdioTransport(log.path);
    calls = log.calls;
  } else {
    const before = httpLog.calls().length;
    transport = http.transport();
    calls = () => httpLog.calls().slice(before);
  }
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(wrapMcpTransport(transport, session, { server: 'docs', ...options }));
  return { client, calls, [Symbol.asyncDispose]: () => client.close() };
}

describe.each<Kind>(['stdio', 'http'])('wrapMcpTransport over %s', (kind) => {
  it('an allowed call runs on the server; its arguments are the action input', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session, { costs: { search: 0.01 } });
    const result = await mcp.client.callTool({ name: 'search', arguments: { q: 'budgets' } });
    expect(result.isError).toBeFalsy();
    expect(text(result)).toBe('3 pages about budgets');
    expect(mcp.calls()).toEqual(['search']);
    const [decision] = session.report().decisions;
    expect(decision).toMatchObject({ decision: 'allow', action: { type: 'tool', name: 'mcp__docs__search', input: { q: 'budgets' }, metadata: { via: 'mcp-client', server: 'docs', tool: 'search' } } });
    expect(decision?.settlement).toMatchObject({ status: 'committed', actual: 0.01 });
    expect(session.spent).toBe(0.01);
  });

  it('a blocked call never reaches the server and comes back as an error result with the reason', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session);
    const result = await mcp.client.callTool({ name: 'run_shell', arguments: { cmd: 'rm -rf /' } });
    expect(result.isError).toBe(true);
    expect(text(result)).toBe('agentpolicy: tool "mcp__docs__run_shell" is blocked by tools.block entry "mcp__docs__run_shell"');
    expect(result._meta).toMatchObject({ 'agentpolicy/decision': { decision: 'deny', rule: 'tools' } });
    // A tool hidden from the listing is refused all the same when called by name, and so is a case variant.
    const hidden = await mcp.client.callTool({ name: 'delete_page', arguments: { page: 'home' } });
    expect(hidden.isError).toBe(true);
    expect((await mcp.client.callTool({ name: 'Run_Shell', arguments: { cmd: 'id' } })).isError).toBe(true);
    // The connection still works afterwards.
    expect(text(await mcp.client.callTool({ name: 'search', arguments: { q: 'x' } }))).toBe('3 pages about x');
    expect(mcp.calls()).toEqual(['search']);
    expect(session.report().decisions.map((d) => `${d.action.type === 'tool' ? d.action.name : ''}:${d.decision}`)).toEqual([
      'mcp__docs__run_shell:deny',
      'mcp__docs__delete_page:deny',
      'mcp__docs__Run_Shell:deny',
      'mcp__docs__search:allow',
    ]);
  });

  it('tools/list leaves out the tools the policy never allows and keeps those that need approval', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session);
    const { tools } = await mcp.client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(['flaky', 'publish', 'search', 'slow']);
    const unhidden = await connect(kind, AgentPolicy.fromDict(POLICY).session(), { hideDenied: false });
    expect((await unhidden.client.listTools()).tools).toHaveLength(6);
    await unhidden.client.close();
    // An allow list hides everything else.
    const strict = await connect(kind, AgentPolicy.fromDict({ tools: { allow: ['mcp__docs__search'] } }).session());
    expect((await strict.client.listTools()).tools.map((tool) => tool.name)).toEqual(['search']);
    await strict.client.close();
  });

  it('an approval round trip: refused with the request id, answered elsewhere, then exactly that call runs once', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session);
    const first = await mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    expect(first.isError).toBe(true);
    const requestId = requestIdOf(first);
    expect(text(first)).toContain(`Approval is needed: request ${requestId}`);
    expect(mcp.calls()).toEqual([]);
    // Asking again before the answer is the same request, not a new one.
    const again = await mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    expect(requestIdOf(again)).toBe(requestId);

    expect((await session.resolveApproval(requestId, { approved: true, by: 'ada' })).ok).toBe(true);
    // The approval is for publishing "pricing": another page still needs its own.
    const other = await mcp.client.callTool({ name: 'publish', arguments: { page: 'home' } });
    expect(other.isError).toBe(true);
    expect(mcp.calls()).toEqual([]);

    const approved = await mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    expect(approved.isError).toBeFalsy();
    expect(text(approved)).toBe('published pricing');
    expect(mcp.calls()).toEqual(['publish']);
    expect(session.report().decisions.at(-1)).toMatchObject({ decision: 'allow', approval: { via: 'request', requestId, by: 'ada' } });

    // One approval, one execution.
    const replay = await mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    expect(replay.isError).toBe(true);
    expect(mcp.calls()).toEqual(['publish']);
  });

  it('a rejected approval is a denial that says who said no; the call never runs', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session);
    const first = await mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    const requestId = requestIdOf(first);
    await session.resolveApproval(requestId, { approved: false, by: 'ada', reason: 'not yet' });
    const second = await mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    expect(second.isError).toBe(true);
    expect(text(second)).toMatch(/rejected by ada: not yet/);
    expect(mcp.calls()).toEqual([]);
  });

  it('with approvalWaitMs the call waits for the durable answer and then runs', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session, { approvalWaitMs: 10_000, approvalPollMs: 5 });
    const call = mcp.client.callTool({ name: 'publish', arguments: { page: 'pricing' } });
    const pending = [await firstPendingApproval(session)];
    expect(pending[0]?.action).toMatchObject({ name: 'mcp__docs__publish', input: { page: 'pricing' } });
    expect(mcp.calls()).toEqual([]);
    await session.resolveApproval(pending[0]!.id, { approved: true, by: 'ada' });
    expect(text(await call)).toBe('published pricing');
    expect(mcp.calls()).toEqual(['publish']);
  });

  it("the session's approver is asked in place; its no keeps the call from the server", async () => {
    const asked: unknown[] = [];
    let answer = true;
    const session = AgentPolicy.fromDict(POLICY).session({
      approver: (request) => {
        asked.push(request.action);
        return answer;
      },
    });
    await using mcp = await connect(kind, session);
    expect(text(await mcp.client.callTool({ name: 'publish', arguments: { page: 'a' } }))).toBe('published a');
    answer = false;
    const refused = await mcp.client.callTool({ name: 'publish', arguments: { page: 'b' } });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/requires approval .*; rejected$/);
    expect(asked).toMatchObject([{ input: { page: 'a' } }, { input: { page: 'b' } }]);
    expect(mcp.calls()).toEqual(['publish']);
  });

  it('a call cancelled while it waits for approval never runs, even if approved later', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    await using mcp = await connect(kind, session, { approvalWaitMs: 10_000, approvalPollMs: 5 });
    const controller = new AbortController();
    const call = mcp.client.callTool({ name: 'publish', arguments: { page: 'x' } }, undefined, { signal: controller.signal });
    const pending = [await firstPendingApproval(session)];
    controller.abort('user left');
    await expect(call).rejects.toThrow();
    await session.resolveApproval(pending[0]!.id, { approved: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(mcp.calls()).toEqual([]);
    expect(session.report().decisions.filter((d) => d.decision === 'allow')).toHaveLength(0);
  });

  it('costs: a tool that fails is settled by core (charged), the budget stops calls before they are sent', async () => {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 0.05 } }).session();
    await using mcp = await connect(kind, session, { costs: ({ tool }) => (tool === 'flaky' ? 0.02 : 0.01) });
    const failed = await mcp.client.callTool({ name: 'flaky', arguments: { n: 1 } });
    expect(failed.isError).toBe(true);
    expect(text(failed)).toBe('upstream 503');
    expect(session.spent).toBe(0.02);
    // Concurrent calls: exactly what the remaining $0.03 pays for reaches the server.
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => mcp.client.callTool({ name: 'search', arguments: { q: `q${i}` } })));
    expect(results.filter((result) => !result.isError)).toHaveLength(3);
    expect(mcp.calls().filter((tool) => tool === 'search')).toHaveLength(3);
    expect(session.spent).toBe(0.05);
    expect(text(results.find((result) => result.isError))).toMatch(/exceeds the remaining budget/);
  });

  it('a server that dies mid-call: the call fails and its cost is charged (it may have run), never lost', async () => {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1 } }).session();
    await using mcp = await connect(kind, session, { costs: { slow: 0.03 } });
    const call = mcp.client.callTool({ name: 'slow', arguments: { ms: 30_000 } });
    while (!mcp.calls().includes('slow')) await new Promise((resolve) => setTimeout(resolve, 5));
    await mcp.client.close();
    await expect(call).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(session.spent).toBe(0.03);
    expect(session.pendingReservations).toBe(0);
    expect(session.report().decisions[0]?.settlement).toMatchObject({ status: 'committed', actual: 0.03 });
  });

  it('malformed calls are denied, not sent: a tool name that is not a string, arguments that cannot be read, a cost function that throws', async () => {
    const session = AgentPolicy.fromDict({}).session();
    await using mcp = await connect(kind, session, {
      costs: ({ args }) => {
        if ((args as { q?: string }).q === 'boom') throw new Error('no price');
        return 0;
      },
    });
    const badName = await mcp.client.request({ method: 'tools/call', params: { name: 42 as unknown as string, arguments: {} } }, CallToolResultSchema);
    expect(badName.isError).toBe(true);
    const badCost = await mcp.client.callTool({ name: 'search', arguments: { q: 'boom' } });
    expect(badCost.isError).toBe(true);
    expect(session.report().decisions.at(-1)).toMatchObject({ decision: 'deny', action: { metadata: { costError: 'no price' } } });
    expect(mcp.calls()).toEqual([]);
  });
});

describe('wrapMcpClient', () => {
  it('wraps whatever transport the client connects to', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    const log = callLog();
    const client = wrapMcpClient(new Client({ name: 'agent', version: '1.0.0' }), session, { server: 'docs' });
    await client.connect(stdioTransport(log.path));
    try {
      expect((await client.callTool({ name: 'run_shell', arguments: { cmd: 'ls' } })).isError).toBe(true);
      expect((await client.callTool({ name: 'search', arguments: { q: 'a' } })).isError).toBeFalsy();
      expect(log.calls()).toEqual(['search']);
    } finally {
      await client.close();
    }
  });

  it('refuses bad options at once', () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    expect(() => wrapMcpClient(new Client({ name: 'a', version: '1' }), session, { server: 'a__b' })).toThrow(/server/);
    expect(() => wrapMcpClient(new Client({ name: 'a', version: '1' }), session, { server: '' })).toThrow(/server/);
    expect(() => wrapMcpTransport(http.transport(), {} as PolicySession, { server: 'docs' })).toThrow(/PolicySession/);
    const client = wrapMcpClient(new Client({ name: 'a', version: '1' }), session, { server: 'docs' });
    expect(() => wrapMcpClient(client, session, { server: 'docs' })).toThrow(/already gated/);
  });
});
