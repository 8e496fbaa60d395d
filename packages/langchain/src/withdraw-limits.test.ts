// A tool call the middleware allowed but that never ran (a middleware further in answered on its own) gives back its
// `limits:` slot: the next call is allowed, and no more calls run than max_calls.
import { AgentPolicy } from '@agentpolicy/core';
import { HumanMessage, ToolMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { createAgent, createMiddleware, type AgentMiddleware } from 'langchain';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentPolicyMiddleware } from './agent-policy-middleware.js';
import { PRICING, USAGE, aiMessage, toolCallMessage } from './test-support.js';

describe('a tool call that is never attempted does not count against max_calls', () => {
  it.each([
    ['free', undefined],
    ['paid', 0.1],
  ])('%s: the skipped call gives its slot back; the calls that run stop at max_calls', async (_, cost) => {
    const session = new AgentPolicy({ budget: 1, pricing: PRICING, limits: [{ tool: 'search', max_calls: 1, per: 'session' }] }).session();
    const ran: string[] = [];
    const search = tool(
      async ({ q }) => {
        ran.push(q);
        return 'found';
      },
      { name: 'search', description: 'Search', schema: z.object({ q: z.string() }) },
    );
    // Further in: the first search is answered from a cache, so the tool never runs.
    const cache = createMiddleware({
      name: 'Cache',
      wrapToolCall: (request, handler) =>
        request.toolCall.args['q'] === 'cached' ? new ToolMessage({ content: 'from cache', tool_call_id: request.toolCall.id ?? '' }) : handler(request),
    });
    const model = fakeModel()
      .respond(toolCallMessage('search', { q: 'cached' }, 'call_1'))
      .respond(toolCallMessage('search', { q: 'live' }, 'call_2'))
      .respond(toolCallMessage('search', { q: 'over' }, 'call_3'))
      .respond(aiMessage({ content: 'done', usage_metadata: USAGE }));
    const policy = agentPolicyMiddleware(session, cost === undefined ? {} : { toolCosts: { search: cost } });
    const agent = createAgent({ model, tools: [search], middleware: [policy, cache] as unknown as [AgentMiddleware] });
    await agent.invoke({ messages: [new HumanMessage('search')] });

    expect(ran).toEqual(['live']);
    const searches = session.report().decisions.filter((d) => d.action.type === 'tool');
    expect(searches.map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
    expect(searches[2]?.rule).toMatchObject({ section: 'limits' });
    expect(searches[0]?.settlement?.status ?? 'released').toBe('released');
    await session.end();
    expect(session.report().decisions.filter((d) => d.action.type === 'tool').reduce((sum, d) => sum + (d.settlement?.actual ?? 0), 0)).toBeCloseTo(cost ?? 0, 9);
  });
});
