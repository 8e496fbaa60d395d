// The three pieces together, in a ToolLoopAgent: every tool and model decision lands in one session report.
import { PolicyDeniedError } from '@agentpolicy/core';
import { isStepCount, tool, ToolLoopAgent, wrapLanguageModel, type ModelMessage } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyMiddleware } from './policy-middleware.js';
import { policyToolApproval } from './policy-tool-approval.js';
import { makePolicy, priceOf, textResult, toolCallResult, usage } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

describe('ToolLoopAgent with wrapTools, policyToolApproval and policyMiddleware', () => {
  it('governs tools, approvals and model calls in one session and reports each decision with its cost', async () => {
    const ran: string[] = [];
    const session = makePolicy({ budget: 1, blockedTools: ['delete_*'], approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(
      {
        search: tool({ inputSchema: z.object({ query: z.string() }), execute: async ({ query }) => (ran.push('search'), `report for ${query}`) }),
        delete_records: tool({ inputSchema: z.object({ table: z.string() }), execute: async () => (ran.push('delete_records'), 'deleted') }),
        send_email: tool({ inputSchema: z.object({ to: z.string() }), execute: async ({ to }) => (ran.push('send_email'), `sent to ${to}`) }),
      },
      session,
      { costs: { search: 0.01, send_email: 0.05 } },
    );
    const base = new MockLanguageModelV4({
      doGenerate: [
        toolCallResult('search', 'call-1', { query: 'Q3' }, usage(100, 20)),
        toolCallResult('delete_records', 'call-2', { table: 'audit' }, usage(150, 20)),
        toolCallResult('send_email', 'call-3', { to: 'ada@example.com' }, usage(200, 20)),
        textResult('Report sent to Ada.', usage(250, 10)),
      ],
    });
    const agent = new ToolLoopAgent({
      model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }),
      tools,
      toolApproval: policyToolApproval(session),
      stopWhen: isStepCount(10),
      maxOutputTokens: 500,
    });
    const messages: ModelMessage[] = [{ role: 'user', content: 'Send the Q3 report to Ada.' }];

    const first = await agent.generate({ messages });
    // In ai 7 `content` spans all steps; the policy's automatic denial of delete_records is an approval part too.
    const request = first.content.filter((part) => part.type === 'tool-approval-request').find((part) => part.isAutomatic !== true);
    expect(request?.toolCall.toolName).toBe('send_email');
    expect(ran).toEqual(['search']);

    const second = await agent.generate({
      messages: [...messages, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request!.approvalId, approved: true }] }],
    });
    expect(second.text).toBe('Report sent to Ada.');
    expect(ran).toEqual(['search', 'send_email']);
    expect(base.doGenerateCalls).toHaveLength(4);

    const report = session.end();
    const rows = report.decisions.map((d) => [
      d.action.type === 'tool' ? d.action.name : d.action.type === 'cost' ? d.action.source : d.action.domain,
      d.decision,
      d.settlement ? d.settlement.actual : d.action.cost,
    ]);
    expect(rows).toEqual([
      ['model:mock-provider/mock-model-id', 'allow', priceOf(100, 20)],
      ['search', 'allow', 0.01],
      ['model:mock-provider/mock-model-id', 'allow', priceOf(150, 20)],
      ['delete_records', 'deny', 0],
      ['model:mock-provider/mock-model-id', 'allow', priceOf(200, 20)],
      ['send_email', 'require_approval', 0.05],
      ['send_email', 'allow', 0.05],
      ['model:mock-provider/mock-model-id', 'allow', priceOf(250, 10)],
    ]);
    const modelCost = priceOf(100, 20) + priceOf(150, 20) + priceOf(200, 20) + priceOf(250, 10);
    expect(report.spent).toBeCloseTo(0.06 + modelCost, 9);
    expect(report.costSummary.allowed.tool).toBe(0.06);
    expect(report.costSummary.allowed.cost).toBeCloseTo(modelCost, 9);
    expect(report.reserved).toBe(0);
    expect(report.policyHits).toEqual({ deniedTools: ['delete_records'], deniedDomains: [], approvalRequired: ['send_email'] });
  });

  it("onDeny: 'stop' makes ToolLoopAgent.generate reject with the policy error", async () => {
    let ran = 0;
    const session = makePolicy({ blockedTools: ['delete_*'] }).session();
    const base = new MockLanguageModelV4({ doGenerate: [toolCallResult('delete_records', 'call-1', { table: 'audit' }), textResult('unreachable')] });
    const agent = new ToolLoopAgent({
      model: wrapLanguageModel({ model: base, middleware: policyMiddleware(session) }),
      tools: wrapTools({ delete_records: tool({ inputSchema: z.object({ table: z.string() }), execute: async () => ++ran }) }, session),
      toolApproval: policyToolApproval(session, { onDeny: 'stop' }),
    });

    const error = await agent.generate({ prompt: 'clean up' }).catch((e: unknown) => e);

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(ran).toBe(0);
    expect(base.doGenerateCalls).toHaveLength(1);
  });
});
