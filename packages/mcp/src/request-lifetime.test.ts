// How long the gate keeps a request: a call cancelled while its approver decides gets no answer (the requester gave up
// on it) and gives back what it held; a request never answered and never cancelled is ended by the gate after
// `requestTimeoutMs`, so its id and its money are not held for the life of the connection.
import { AgentPolicy, type ApprovalRequest } from '@agentpolicy/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { gateMcpServer } from './gate-mcp-server.js';
import { wrapMcpServerTransport, wrapMcpTransport } from './policy-transport.js';

const tick = (ms = 20) => new Promise((resolve) => setTimeout(resolve, ms));
type Message = Record<string, unknown> & { id?: unknown; method?: string; result?: Record<string, unknown>; error?: { code: number; message: string } };
const POLICY = {
  approval: { require_for: [{ tool: 'mcp__docs__publish' }] },
  limits: [{ tool: 'mcp__docs__publish', max_calls: 1, per: 'session' }],
  budget: { max_spend: 1 },
};

/** An approver that answers only when told to, with the answer given. */
function heldApprover(): { approver: (request: ApprovalRequest) => Promise<boolean>; asked: () => number; answer: (yes: boolean) => void } {
  const waiting: ((yes: boolean) => void)[] = [];
  return {
    approver: () => new Promise<boolean>((resolve) => waiting.push(resolve)),
    asked: () => waiting.length,
    answer: (yes) => waiting.shift()?.(yes),
  };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await tick(5);
  expect(condition()).toBe(true);
}

describe('a call cancelled while its approver decides', () => {
  it.each([
    ['refuses', false],
    ['approves', true],
  ])('client side, the approver then %s: nothing is handed up under the cancelled id, nothing sent, its money given back', async (_, yes) => {
    const approvals = heldApprover();
    const session = AgentPolicy.fromDict(POLICY).session({ approver: approvals.approver });
    const [clientSide, peer] = InMemoryTransport.createLinkedPair();
    const got: Message[] = [];
    peer.onmessage = (message) => void got.push(message as Message);
    await peer.start();
    const transport = wrapMcpTransport(clientSide, session, { server: 'docs', costs: { publish: 0.4 } });
    const up: Message[] = [];
    transport.onmessage = (message) => void up.push(message as Message);
    await transport.start();
    const sent = transport.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'publish', arguments: { page: 'home' } } });
    await until(() => approvals.asked() === 1);
    expect(session.report().reserved).toBe(0.4);
    await transport.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1, reason: 'user' } });
    approvals.answer(yes);
    await sent;
    await tick();
    expect(up).toEqual([]);
    expect(got.map((m) => m.method)).toEqual(['notifications/cancelled']);
    expect(session.report().reserved).toBe(0);
    expect(session.spent).toBe(0);
    // The id is free again: a new call under it is decided on its own, and the one limited call was not used up by
    // the cancelled one (refused, or approved and withdrawn: it never ran, so its max_calls slot came back).
    const again = transport.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'publish', arguments: { page: 'home' } } });
    await until(() => approvals.asked() === 1);
    approvals.answer(true);
    await again;
    await tick();
    expect(up).toEqual([]);
    expect(got.map((m) => m.method)).toEqual(['notifications/cancelled', 'tools/call']);
    // That call was sent: the next one is over the limit, and never sent.
    await transport.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'publish', arguments: { page: 'about' } } });
    await tick();
    expect(up).toMatchObject([{ id: 2, result: { isError: true } }]);
    expect(JSON.stringify(up[0])).toMatch(/limits\[0\]/);
    expect(got.map((m) => m.method)).toEqual(['notifications/cancelled', 'tools/call']);
    await transport.close();
    session.end();
    expect(session.pendingReservations).toBe(0);
  });

  it('server side, through an SDK Client that aborts the call: no answer under the cancelled id (the client reports none), the handler never runs, its money given back', async () => {
    const approvals = heldApprover();
    const session = AgentPolicy.fromDict(POLICY).session({ approver: approvals.approver });
    const ran: string[] = [];
    const server = new McpServer({ name: 'docs', version: '1' });
    server.registerTool('publish', { inputSchema: { page: z.string() } }, async ({ page }) => {
      ran.push(page);
      return { content: [{ type: 'text', text: `published ${page}` }] };
    });
    const errors: unknown[] = [];
    server.server.onerror = (error) => void errors.push(error);
    gateMcpServer(server, session, { server: 'docs', costs: { publish: 0.4 } });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'agent', version: '1' });
    client.onerror = (error) => void errors.push(error);
    await client.connect(clientSide);
    const abort = new AbortController();
    const call = client.callTool({ name: 'publish', arguments: { page: 'home' } }, undefined, { signal: abort.signal });
    await until(() => approvals.asked() === 1);
    abort.abort('the user gave up');
    await expect(call).rejects.toThrow();
    approvals.answer(false);
    await tick(30);
    expect(errors).toEqual([]);
    expect(ran).toEqual([]);
    expect(session.report().reserved).toBe(0);
    expect(session.spent).toBe(0);
    await client.close();
  });
});

describe('a request never answered and never cancelled', () => {
  it('client side: after requestTimeoutMs the client gets a timeout error, the server a cancellation, the call is charged; a late answer is dropped and frees the id', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    const [clientSide, peer] = InMemoryTransport.createLinkedPair();
    const got: Message[] = [];
    peer.onmessage = (message) => void got.push(message as Message); // a server that never answers
    await peer.start();
    const transport = wrapMcpTransport(clientSide, session, { server: 'docs', costs: { search: 0.3 }, requestTimeoutMs: 60 });
    const up: Message[] = [];
    const errors: unknown[] = [];
    transport.onmessage = (message) => void up.push(message as Message);
    transport.onerror = (error) => void errors.push(error);
    await transport.start();
    await transport.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search', arguments: { q: 'x' } } });
    await transport.send({ jsonrpc: '2.0', id: 2, method: 'ping' });
    expect(session.report().reserved).toBe(0.3);
    await until(() => up.length === 2);
    expect(up.map((m) => [m.id, m.error?.code])).toEqual([
      [1, -32001],
      [2, -32001],
    ]);
    expect(up[0]?.error?.message).toBe('agentpolicy: MCP request 1 was not answered within 60 ms, so it is cancelled');
    expect(got.map((m) => [m.method, (m['params'] as { requestId?: unknown } | undefined)?.requestId])).toEqual([
      ['tools/call', undefined],
      ['ping', undefined],
      ['notifications/cancelled', 1],
      ['notifications/cancelled', 2],
    ]);
    // Charged as a cancelled call (it may have run); nothing held.
    expect(session.spent).toBe(0.3);
    expect(session.report().reserved).toBe(0);
    // Until its late answer comes the id stays taken: a "method not found" meant for the ping cannot settle a call.
    await transport.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'search', arguments: { q: 'y' } } });
    expect(up.at(-1)).toMatchObject({ id: 2, result: { isError: true, content: [{ text: 'agentpolicy: MCP request id 2 is already in use by another request; refused' }] } });
    // Late answers are dropped (the client was answered already) and settle nothing; the ids are free again.
    await peer.send({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'late' } });
    await peer.send({ jsonrpc: '2.0', id: 2, error: { code: -32601, message: 'late' } });
    await tick();
    expect(up).toHaveLength(3);
    expect(session.spent).toBe(0.3);
    await transport.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'search', arguments: { q: 'y' } } });
    expect(got.at(-1)).toMatchObject({ id: 2, method: 'tools/call' });
    await peer.send({ jsonrpc: '2.0', id: 2, result: { content: [] } });
    await tick();
    expect(up.at(-1)).toEqual({ jsonrpc: '2.0', id: 2, result: { content: [] } });
    expect(session.spent).toBe(0.6);
    expect(errors).toEqual([]);
    await transport.close();
  });

  it('server side, an SDK Client waiting longer than the gate: the client gets the timeout, the handler is stopped, the call is charged, nothing else is answered', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    const server = new McpServer({ name: 'docs', version: '1' });
    let stopped = false;
    server.registerTool('search', { inputSchema: { q: z.string() } }, async (_args, extra) => {
      await new Promise((resolve) => extra.signal.addEventListener('abort', resolve));
      stopped = true;
      return { content: [{ type: 'text', text: 'too late' }] };
    });
    const errors: unknown[] = [];
    server.server.onerror = (error) => void errors.push(error);
    gateMcpServer(server, session, { server: 'docs', costs: { search: 0.3 }, requestTimeoutMs: 60 });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'agent', version: '1' });
    client.onerror = (error) => void errors.push(error);
    await client.connect(clientSide);
    await expect(client.callTool({ name: 'search', arguments: { q: 'x' } }, undefined, { timeout: 5_000 })).rejects.toMatchObject({
      code: -32001,
      message: expect.stringContaining('agentpolicy: MCP request 1 was not answered within 60 ms'),
    });
    await tick(30);
    expect(stopped).toBe(true);
    expect(session.spent).toBe(0.3);
    expect(session.report().reserved).toBe(0);
    expect(errors).toEqual([]);
    // The connection goes on.
    expect(await client.ping()).toEqual({});
    await client.close();
  });

  it('requestTimeoutMs must be a positive number of milliseconds', () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    for (const bad of [0, -1, Number.NaN, '60']) {
      const [clientSide] = InMemoryTransport.createLinkedPair();
      expect(() => wrapMcpTransport(clientSide, session, { server: 'docs', requestTimeoutMs: bad as number })).toThrow(/requestTimeoutMs/);
      expect(() => wrapMcpServerTransport(clientSide, session, { server: 'docs', requestTimeoutMs: bad as number })).toThrow(/requestTimeoutMs/);
    }
  });
});
