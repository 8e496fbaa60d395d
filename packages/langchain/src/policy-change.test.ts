// A policy tightened while an agent turn is under way (a PolicySource update or a reloaded file): tool calls the
// model made in the same turn, decided before the change, are judged again by the policy in force before each runs,
// and one the new policy refuses never runs — the model gets the denial as an error ToolMessage, like any deny.
import { AgentPolicy, PolicySource } from '@agentpolicy/core';
import { HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver, interrupt } from '@langchain/langgraph';
import { createAgent, createMiddleware, type AgentMiddleware } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentPolicyMiddleware } from './agent-policy-middleware.js';
import { PRICING, USAGE, aiMessage, toolCallMessage } from './test-support.js';

const thread = (id: string) => ({ configurable: { thread_id: id } });
const toolMessages = (messages: BaseMessage[]) => messages.filter((message): message is ToolMessage => ToolMessage.isInstance(message));

describe('agentPolicyMiddleware: a policy change between the decision and the run', () => {
  it('parallel calls of one turn: a reload while the first runs stops the second, which the new policy blocks', async () => {
    const source = new PolicySource(new AgentPolicy({ pricing: PRICING }));
    const session = source.session();
    const ran: string[] = [];
    const search = tool(
      async ({ query }) => {
        ran.push(`search:${query}`);
        return `results for ${query}`;
      },
      { name: 'search', description: 'Search', schema: z.object({ query: z.string() }) },
    );
    const refund = tool(
      async ({ amount }) => {
        ran.push(`refund:${amount}`);
        return 'refunded';
      },
      { name: 'refund', description: 'Refund', schema: z.object({ amount: z.number() }) },
    );
    // A middleware further in that waits before each call runs (a lock, a log): the reload lands while both calls,
    // already decided, are waiting to run.
    let waiting = 0;
    let release!: () => void;
    const bothDecided = new Promise<void>((resolve) => (release = resolve));
    const slow = createMiddleware({
      name: 'Slow',
      wrapToolCall: async (request, handler) => {
        if (++waiting === 2) {
          source.update(new AgentPolicy({ blockedTools: ['refund'], pricing: PRICING }));
          release();
        }
        await bothDecided;
        return handler(request);
      },
    });
    const model = fakeModel()
      .respond(
        aiMessage({
          content: '',
          tool_calls: [
            { name: 'search', args: { query: 'orders' }, id: 'call_s', type: 'tool_call' },
            { name: 'refund', args: { amount: 500 }, id: 'call_r', type: 'tool_call' },
          ],
          usage_metadata: USAGE,
        }),
      )
      .respond(aiMessage({ content: 'done', usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [search, refund], middleware: [agentPolicyMiddleware(session), slow] as unknown as [AgentMiddleware], checkpointer: new MemorySaver() });

    const result = await agent.invoke({ messages: [new HumanMessage('go')] }, thread('parallel'));
    expect(ran).toEqual(['search:orders']);
    const messages = toolMessages(result.messages);
    expect(messages.map((m) => [m.tool_call_id, m.status])).toEqual([
      ['call_s', 'success'],
      ['call_r', 'error'],
    ]);
    expect(String(messages[1]!.content)).toContain('the policy changed');
    expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => `${(d.action as { name: string }).name}:${d.decision}`)).toEqual(['search:allow', 'refund:allow', 'refund:deny']);
  });

  it('an allow waiting on an interrupt further in is decided again on resume: a reload that blocks it denies it, and its money goes back', async () => {
    const source = new PolicySource(new AgentPolicy({ budget: 1, pricing: PRICING }));
    const session = source.session();
    const sent: string[] = [];
    const mail = tool(
      async ({ to }) => {
        sent.push(to);
        return 'sent';
      },
      { name: 'send_email', description: 'Send an email', schema: z.object({ to: z.string() }) },
    );
    // A second look further in: the call was allowed (and its cost held) before this interrupt.
    const secondLook = createMiddleware({
      name: 'SecondLook',
      wrapToolCall: (request, handler) => (interrupt({ secondLook: request.toolCall.id }) === 'go' ? handler(request) : new ToolMessage({ content: 'stopped', tool_call_id: request.toolCall.id ?? '', status: 'error' })),
    });
    const model = fakeModel().respond(toolCallMessage('send_email', { to: 'all@ourco.com' }, 'call_1')).respond(aiMessage({ content: 'done', usage_metadata: USAGE }));
    const agent = createAgent({ model, tools: [mail], middleware: [agentPolicyMiddleware(session, { toolCosts: { send_email: 0.4 } }), secondLook] as unknown as [AgentMiddleware], checkpointer: new MemorySaver() });

    const first = await agent.invoke({ messages: [new HumanMessage('mail everyone')] }, thread('second-look'));
    expect(first.__interrupt__?.[0]?.value).toEqual({ secondLook: 'call_1' });
    expect(session.report().reserved).toBeCloseTo(0.4, 9);
    source.update(new AgentPolicy({ budget: 1, blockedTools: ['send_email'], pricing: PRICING }));

    const result = await agent.invoke(new Command({ resume: 'go' }), thread('second-look'));
    expect(sent).toEqual([]);
    expect(toolMessages(result.messages).map((m) => m.status)).toEqual(['error']);
    expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => d.decision)).toEqual(['allow', 'deny']);
    // The allow that never ran holds nothing: the 0.4 is not charged when the session ends.
    expect(session.report().reserved).toBe(0);
    await session.end();
    expect(session.report().decisions.filter((d) => d.action.type === 'tool')[0]?.settlement?.status).toBe('released');
  });
});
