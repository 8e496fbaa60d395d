// A policy tightened (updated, or its file reloaded) between the approval hook's decision and `execute`: the tool
// does not run, through a real generateText loop.
import { AgentPolicy, PolicySource, type Decision } from '@agentpolicy/core';
import { generateText, isStepCount, tool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyToolApproval } from './policy-tool-approval.js';
import { lastToolOutput, textResult, toolCallResult, toolDecisions } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

describe('a policy change between the decision and the run', () => {
  it('generateText: a tool the new policy blocks does not run; execute decides it again under the new policy', async () => {
    const source = new PolicySource(AgentPolicy.fromDict({ tools: { allow: ['wire_money'] } }));
    // The update lands right after the call was allowed, before the SDK runs it.
    const session = source.session({
      onDecision: (decision: Decision) => {
        if (decision.decision === 'allow' && decision.action.type === 'tool') source.update({ tools: { block: ['wire_money'] } });
      },
    });
    const wired: string[] = [];
    const tools = wrapTools(
      {
        wire_money: tool({
          inputSchema: z.object({ to: z.string() }),
          execute: async ({ to }) => {
            wired.push(to);
            return 'wired';
          },
        }),
      },
      session,
    );
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('wire_money', 'call-0', { to: 'acct-9' }), textResult('done')] });
    await generateText({ model, tools, toolApproval: policyToolApproval(session), stopWhen: isStepCount(2), prompt: 'Pay the invoice.' });

    expect(wired).toEqual([]);
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'deny']);
    expect(decisions[1]).toMatchObject({ rule: { section: 'tools', list: 'block', entry: 'wire_money' }, policyHash: source.current.hash });
    expect(JSON.stringify(lastToolOutput(model.doGenerateCalls[1]?.prompt ?? []))).toContain('blocked');
  });
});
