// A policy tightened (a PolicySource update, a reloaded file) between a tools/call's decision and its run: the call
// is not sent, and the client gets the new policy's recorded deny as the call's error result.
import { AgentPolicy, PolicySource, type Decision } from '@agentpolicy/core';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { wrapMcpTransport } from './policy-transport.js';

describe('wrapMcpTransport: a policy change between the decision and the run', () => {
  it('the call is not sent; the result is the recorded deny of the new policy, and the money goes back', async () => {
    const source = new PolicySource(AgentPolicy.fromDict({ budget: { max_spend: 1 } }));
    // The update lands right after the call was allowed, before it is sent.
    const session = source.session({
      onDecision: (decision: Decision) => {
        if (decision.decision === 'allow' && decision.action.type === 'tool') source.update({ budget: { max_spend: 1 }, tools: { block: ['mcp__svc__wipe'] } });
      },
    });
    const sent: JSONRPCMessage[] = [];
    const transport: Transport = { start: async () => undefined, close: async () => undefined, send: async (message) => void sent.push(message) };
    const wrapped = wrapMcpTransport(transport, session, { server: 'svc', costs: { wipe: 0.3 } });
    await wrapped.start();
    const answered = new Promise<Record<string, unknown>>((resolve) => {
      wrapped.onmessage = (message) => resolve(message as Record<string, unknown>);
    });
    await wrapped.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'wipe', arguments: { disk: 'all' } } } as JSONRPCMessage);
    const reply = (await answered) as { result: { isError: boolean; _meta: Record<string, { id: string; decision: string; rule: string }> } };

    expect(sent).toEqual([]);
    expect(reply.result.isError).toBe(true);
    const denied = session.report().decisions.at(-1)!;
    expect(denied).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
    expect(reply.result._meta['agentpolicy/decision']).toEqual({ id: denied.id, decision: 'deny', rule: 'tools' });
    expect(session.report().reserved).toBe(0);
  });

  it('a call waiting for approval when the policy blocks its tool: the approval is given, the call is still not sent', async () => {
    const source = new PolicySource(AgentPolicy.fromDict({ approval: { require_for: [{ tool: 'mcp__svc__wipe' }] } }));
    const session = source.session();
    const sent: JSONRPCMessage[] = [];
    const transport: Transport = { start: async () => undefined, close: async () => undefined, send: async (message) => void sent.push(message) };
    const wrapped = wrapMcpTransport(transport, session, { server: 'svc', approvalWaitMs: 5000, approvalPollMs: 5 });
    await wrapped.start();
    const answered = new Promise<Record<string, unknown>>((resolve) => {
      wrapped.onmessage = (message) => resolve(message as Record<string, unknown>);
    });
    const sending = wrapped.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'wipe', arguments: { disk: 'all' } } } as JSONRPCMessage);
    let pending = await session.pendingApprovals();
    while (pending.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      pending = await session.pendingApprovals();
    }
    // Reloaded while the human looks at it; the human then approves what they were shown.
    source.update({ tools: { block: ['mcp__svc__*'] } });
    await session.resolveApproval(pending[0]!.id, { approved: true, by: 'ops' });
    await sending;
    const reply = (await answered) as { result: { isError: boolean; _meta: Record<string, { decision: string; rule: string }> } };

    expect(sent).toEqual([]);
    expect(reply.result._meta['agentpolicy/decision']).toMatchObject({ decision: 'deny', rule: 'tools' });
    expect(session.report().decisions.map((d) => d.decision)).toEqual(['require_approval', 'deny']);
  });
});

