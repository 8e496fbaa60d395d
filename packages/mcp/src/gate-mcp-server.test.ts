// The server-side gate: an McpServer whose tool handlers run only when the policy allows, reached by a plain
// (ungoverned) SDK client over Streamable HTTP on 127.0.0.1 and in a child process over stdio.
import { AgentPolicy, AgentPolicyError, type PolicySession } from '@agentpolicy/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { gateMcpServer } from './gate-mcp-server.js';
import { wrapMcpServerTransport } from './policy-transport.js';
import { createDocsServer } from './test-support/docs-server.js';
import { callLog, firstPendingApproval, startHttpServer, SERVER_SCRIPT } from './test-support/servers.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const POLICY = {
  tools: { block: ['mcp__docs__run_shell'] },
  approval: { require_for: [{ tool: 'mcp__docs__publish' }] },
};
const text = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;

describe('gateMcpServer over Streamable HTTP', () => {
  it('refuses a blocked call without running its handler, runs an allowed one, hides the blocked tool; one session per connection', async () => {
    const log = callLog();
    const sessions: PolicySession[] = [];
    const policy = AgentPolicy.fromDict(POLICY);
    const http = await startHttpServer(log.path, (server) =>
      gateMcpServer(server, () => {
        const session = policy.session();
        sessions.push(session);
        return session;
      }, { server: 'docs' }),
    );
    const client = new Client({ name: 'plain-client', version: '1.0.0' });
    try {
      await client.connect(http.transport());
      expect((await client.listTools()).tools.map((tool) => tool.name)).not.toContain('run_shell');
      const refused = await client.callTool({ name: 'run_shell', arguments: { cmd: 'cat /etc/passwd' } });
      expect(refused.isError).toBe(true);
      expect(text(refused)).toBe('agentpolicy: tool "mcp__docs__run_shell" is blocked by tools.block entry "mcp__docs__run_shell"');
      expect(text(await client.callTool({ name: 'search', arguments: { q: 'mcp' } }))).toBe('3 pages about mcp');
      expect(log.calls()).toEqual(['search']);
      expect(sessions).toHaveLength(1);
      expect(sessions[0]!.report().decisions.map((d) => [d.action.type === 'tool' && d.action.name, d.decision, d.action.metadata?.['via']])).toEqual([
        ['mcp__docs__run_shell', 'deny', 'mcp-server'],
        ['mcp__docs__search', 'allow', 'mcp-server'],
      ]);
    } finally {
      await client.close();
      await http.close();
    }
  });

  it('a call that needs approval waits for the session approver; a no never runs the handler', async () => {
    const log = callLog();
    let answer = false;
    const session = AgentPolicy.fromDict(POLICY).session({ approver: () => answer });
    const http = await startHttpServer(log.path, (server) => gateMcpServer(server, session, { server: 'docs' }));
    const client = new Client({ name: 'plain-client', version: '1.0.0' });
    try {
      await client.connect(http.transport());
      expect((await client.callTool({ name: 'publish', arguments: { page: 'a' } })).isError).toBe(true);
      expect(log.calls()).toEqual([]);
      answer = true;
      expect(text(await client.callTool({ name: 'publish', arguments: { page: 'a' } }))).toBe('published a');
      expect(log.calls()).toEqual(['publish']);
    } finally {
      await client.close();
      await http.close();
    }
  });
});

describe('gateMcpServer approvals without an approver', () => {
  it('answers "approval needed" with the request id; the same call after the answer runs once; with approvalWaitMs it waits', async () => {
    const log = callLog();
    const session = AgentPolicy.fromDict(POLICY).session();
    const http = await startHttpServer(log.path, (server) => gateMcpServer(server, session, { server: 'docs' }));
    const client = new Client({ name: 'plain-client', version: '1.0.0' });
    try {
      await client.connect(http.transport());
      const first = await client.callTool({ name: 'publish', arguments: { page: 'a' } });
      expect(first.isError).toBe(true);
      const requestId = (first._meta?.['agentpolicy/decision'] as { approvalRequestId?: string } | undefined)?.approvalRequestId as string;
      expect(text(first)).toContain(`Approval is needed: request ${requestId}`);
      await session.resolveApproval(requestId, { approved: true, by: 'owner' });
      expect(text(await client.callTool({ name: 'publish', arguments: { page: 'a' } }))).toBe('published a');
      expect((await client.callTool({ name: 'publish', arguments: { page: 'a' } })).isError).toBe(true);
      expect(log.calls()).toEqual(['publish']);
    } finally {
      await client.close();
      await http.close();
    }

    const waiting = AgentPolicy.fromDict(POLICY).session();
    const http2 = await startHttpServer(log.path, (server) => gateMcpServer(server, waiting, { server: 'docs', approvalWaitMs: 10_000, approvalPollMs: 5 }));
    const client2 = new Client({ name: 'plain-client', version: '1.0.0' });
    try {
      await client2.connect(http2.transport());
      const call = client2.callTool({ name: 'publish', arguments: { page: 'b' } });
      const pending = [await firstPendingApproval(waiting)];
      await waiting.resolveApproval(pending[0]!.id, { approved: true });
      expect(text(await call)).toBe('published b');
      expect(log.calls()).toEqual(['publish', 'publish']);
    } finally {
      await client2.close();
      await http2.close();
    }
  });
});

describe('wrapMcpServerTransport', () => {
  it('gates a server in another process over stdio (the server wraps its own StdioServerTransport)', async () => {
    const log = callLog();
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--experimental-strip-types', '--no-warnings=ExperimentalWarning', SERVER_SCRIPT],
      env: { ...(process.env as Record<string, string>), MCP_CALL_LOG: log.path, DOCS_SERVER_GATE: JSON.stringify(POLICY) },
      stderr: 'inherit',
    });
    const client = new Client({ name: 'plain-client', version: '1.0.0' });
    await client.connect(transport);
    try {
      const refused = await client.callTool({ name: 'run_shell', arguments: { cmd: 'id' } });
      expect(refused.isError).toBe(true);
      expect(text(refused)).toMatch(/blocked by tools.block/);
      expect(text(await client.callTool({ name: 'search', arguments: { q: 'x' } }))).toBe('3 pages about x');
      expect(log.calls()).toEqual(['search']);
    } finally {
      await client.close();
    }
  });

  it('a client cannot slip a call past the gate by reusing a request id that is still being decided', async () => {
    const log = callLog();
    const session = AgentPolicy.fromDict(POLICY).session({ approver: () => new Promise((resolve) => setTimeout(() => resolve(false), 100)) });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await createDocsServer(log.path).connect(wrapMcpServerTransport(serverSide, session, { server: 'docs' }));
    const answers: unknown[] = [];
    clientSide.onmessage = (message) => void answers.push(message);
    await clientSide.start();
    await clientSide.send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    await clientSide.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    await clientSide.send({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'publish', arguments: { page: 'a' } } });
    await clientSide.send({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search', arguments: { q: 'a' } } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const results = answers.filter((message) => (message as { id?: unknown }).id === 7) as { result: CallToolResult }[];
    expect(results).toHaveLength(2);
    expect(results.every((message) => message.result.isError === true)).toBe(true);
    expect(log.calls()).toEqual([]);
    await clientSide.close();
  });

  it('refuses a transport gated twice and bad options', () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    const [, serverSide] = InMemoryTransport.createLinkedPair();
    const wrapped = wrapMcpServerTransport(serverSide, session, { server: 'docs' });
    expect(() => wrapMcpServerTransport(wrapped, session, { server: 'docs' })).toThrow(/already wrapped/);
    expect(() => gateMcpServer(new McpServer({ name: 'x', version: '1' }), session, { server: 'mcp*' })).toThrow(/server/);
  });
});

describe('gateMcpServer: a tool handler that throws is settled by core rule on what it threw', () => {
  async function gatedLookup(handler: () => unknown) {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1 } }).session();
    const server = new McpServer({ name: 'svc', version: '1.0.0' });
    server.registerTool('lookup', { inputSchema: { q: z.string() } }, async () => handler() as CallToolResult);
    gateMcpServer(server, session, { server: 'svc', costs: { lookup: 0.25 } });
    const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
    await server.connect(serverTransport);
    const client = new Client({ name: 'plain-client', version: '1.0.0' });
    await client.connect(clientTransport);
    const call = async () => {
      const result = await client.callTool({ name: 'lookup', arguments: { q: 'x' } });
      await new Promise((resolve) => setImmediate(resolve));
      return result;
    };
    return { session, call, close: () => client.close() };
  }

  it.each([
    ['a plain Error (it may have done the work): charged', () => new Error('boom'), 0.25],
    ['status 500: charged', () => Object.assign(new Error('upstream'), { status: 500 }), 0.25],
    ['status 404 (it refused the input): released', () => Object.assign(new Error('no such page'), { status: 404 }), 0],
    ['statusCode 422: released', () => Object.assign(new Error('bad query'), { statusCode: 422 }), 0],
    ['an agentpolicy error: released', () => new AgentPolicyError('INVALID_ARGUMENT', 'refused'), 0],
  ])('%s', async (_what, error, spent) => {
    const { session, call, close } = await gatedLookup(() => {
      throw error();
    });
    try {
      const result = await call();
      expect(result.isError).toBe(true);
      // Before, every error result was charged: the status stayed inside the server.
      expect(session.spent).toBe(spent);
      expect(session.pendingReservations).toBe(0);
    } finally {
      await close();
    }
  });

  it('an error result the handler returns itself is charged (only what a handler throws is read)', async () => {
    const { session, call, close } = await gatedLookup(() => ({ content: [{ type: 'text', text: 'no such page' }], isError: true }));
    try {
      expect((await call()).isError).toBe(true);
      expect(session.spent).toBe(0.25);
    } finally {
      await close();
    }
  });
});
