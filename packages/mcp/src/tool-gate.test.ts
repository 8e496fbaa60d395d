// How a call's cost is settled from what comes back, through the wrapper on a scripted transport (the response to
// each call is chosen by the test; the real servers are in the other test files).
import { AgentPolicy } from '@agentpolicy/core';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { wrapMcpTransport } from './policy-transport.js';

/** A transport whose peer answers each tools/call with `answer(id)`; records what was sent. */
function scripted(answer: (id: number | string) => Record<string, unknown> | undefined) {
  const sent: JSONRPCMessage[] = [];
  const transport: Transport = {
    start: async () => undefined,
    close: async () => transport.onclose?.(),
    send: async (message) => {
      sent.push(message);
      const id = (message as { id?: number | string }).id;
      const reply = id === undefined ? undefined : answer(id);
      if (reply) queueMicrotask(() => transport.onmessage?.({ jsonrpc: '2.0', id, ...reply } as JSONRPCMessage));
    },
  };
  return { transport, sent };
}

async function roundTrip(transport: Transport, id: number, params: unknown): Promise<Record<string, unknown>> {
  const answered = new Promise<Record<string, unknown>>((resolve) => {
    transport.onmessage = (message) => resolve(message as Record<string, unknown>);
  });
  await transport.send({ jsonrpc: '2.0', id, method: 'tools/call', params } as JSONRPCMessage);
  return answered;
}

describe('settling a call from its response (core decides how: Reservation.fail)', () => {
  const call = { name: 'lookup', arguments: { q: 'x' } };

  it.each([
    ['a result commits the cost', { result: { content: [] } }, 0.05],
    ['an error result (the tool ran and failed) is charged', { result: { content: [], isError: true } }, 0.05],
    ['a JSON-RPC internal error is charged (it may have run)', { error: { code: -32603, message: 'boom' } }, 0.05],
    ['invalid params: refused before running, released', { error: { code: -32602, message: 'bad' } }, 0],
    ['method not found: released', { error: { code: -32601, message: 'no' } }, 0],
    // A server cannot make a failed call free by adding fields of its own: no status crosses MCP.
    ['an error result with a status field added by the server is still charged', { result: { content: [], isError: true, status: 404 } }, 0.05],
    ['an error result with a statusCode field added by the server is still charged', { result: { content: [], isError: true, statusCode: 400 } }, 0.05],
    ['a JSON-RPC internal error with a status field added is still charged', { error: { code: -32603, message: 'boom', status: 404 } }, 0.05],
  ])('%s', async (_, reply, spent) => {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1 } }).session();
    const { transport } = scripted(() => reply);
    const wrapped = wrapMcpTransport(transport, session, { server: 'svc', costs: { lookup: 0.05 } });
    await wrapped.start();
    await roundTrip(wrapped, 1, call);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(session.spent).toBe(spent);
    expect(session.pendingReservations).toBe(0);
  });

  it('a call still unanswered when the connection closes is charged; nothing is left open', async () => {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1 } }).session();
    const { transport, sent } = scripted(() => undefined);
    const wrapped = wrapMcpTransport(transport, session, { server: 'svc', costs: { lookup: 0.05 } });
    await wrapped.start();
    await wrapped.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: call } as JSONRPCMessage);
    expect(sent).toHaveLength(1);
    expect(session.pendingReservations).toBe(1);
    await wrapped.close();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(session.spent).toBe(0.05);
    expect(session.pendingReservations).toBe(0);
  });

  it('a refused call is answered locally and nothing is sent; other messages pass through unchanged', async () => {
    const session = AgentPolicy.fromDict({ tools: { block: ['mcp__svc__*'] } }).session();
    const { transport, sent } = scripted(() => ({ result: {} }));
    const wrapped = wrapMcpTransport(transport, session, { server: 'svc' });
    await wrapped.start();
    const answer = await roundTrip(wrapped, 3, call);
    expect(answer).toMatchObject({ id: 3, result: { isError: true } });
    expect(sent).toEqual([]);
    const ping = { jsonrpc: '2.0', id: 4, method: 'ping' } as JSONRPCMessage;
    await wrapped.send(ping);
    expect(sent).toEqual([ping]);
  });
});
