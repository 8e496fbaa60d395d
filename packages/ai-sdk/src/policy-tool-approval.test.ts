import { PolicyDeniedError } from '@agentpolicy/core';
import { generateText, isStepCount, streamText, tool, type ModelMessage } from 'ai';
import { convertArrayToReadableStream, MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyToolApproval } from './policy-tool-approval.js';
import { lastToolOutput, makePolicy, textResult, toolCallResult, toolCallStreamParts, toolDecisions } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

function makeTools(counters: Record<string, number>) {
  const count = (name: string) => {
    counters[name] = (counters[name] ?? 0) + 1;
  };
  return {
    search: tool({
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => {
        count('search');
        return `3 results for ${query}`;
      },
    }),
    send_email: tool({
      inputSchema: z.object({ to: z.string() }),
      execute: async ({ to }) => {
        count('send_email');
        return `sent to ${to}`;
      },
    }),
    drop_table: tool({
      inputSchema: z.object({ name: z.string() }),
      execute: async () => {
        count('drop_table');
        return 'dropped';
      },
    }),
  };
}

const prompt: ModelMessage[] = [{ role: 'user', content: 'Mail the report to Ada.' }];

function approvalResponse(approvalId: string, approved: boolean, reason?: string): ModelMessage {
  return { role: 'tool', content: [{ type: 'tool-approval-response', approvalId, approved, ...(reason !== undefined ? { reason } : {}) }] };
}

describe('policyToolApproval', () => {
  it('lets an allowed call run without approval parts, decided and charged once', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1 }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('search', 'call-1', { query: 'report' }), textResult('found it')] });

    const result = await generateText({
      model,
      tools: wrapTools(makeTools(counters), session, { costs: { search: 0.02 } }),
      toolApproval: policyToolApproval(session),
      stopWhen: isStepCount(3),
      messages: prompt,
    });

    expect(counters.search).toBe(1);
    expect(result.steps[0]!.content.map((part) => part.type)).toEqual(['tool-call', 'tool-result']);
    expect(toolDecisions(session.report().decisions)).toHaveLength(1);
    expect(session.spent).toBe(0.02);
  });

  it('denies a blocked call with the SDK status: the model receives execution-denied with the reason', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ blockedTools: ['drop_*'] }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('drop_table', 'call-1', { name: 'users' }), textResult('I cannot drop tables.')] });

    const result = await generateText({
      model,
      tools: wrapTools(makeTools(counters), session),
      toolApproval: policyToolApproval(session),
      stopWhen: isStepCount(3),
      messages: prompt,
    });

    expect(counters.drop_table).toBeUndefined();
    expect(result.text).toBe('I cannot drop tables.');
    const response = result.steps[0]!.content.find((part) => part.type === 'tool-approval-response');
    expect(response).toMatchObject({ approved: false, reason: 'agentpolicy: tool "drop_table" is blocked by tools.block entry "drop_*"' });
    expect(lastToolOutput(model.doGenerateCalls[1]!.prompt)).toEqual({
      type: 'execution-denied',
      reason: 'agentpolicy: tool "drop_table" is blocked by tools.block entry "drop_*"',
    });
    expect(toolDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['deny']);
  });

  it('asks a human with tool-approval-request and runs the tool after an approving response', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { send_email: 0.25 } });
    const toolApproval = policyToolApproval(session);

    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })] }),
      tools,
      toolApproval,
      stopWhen: isStepCount(3),
      messages: prompt,
    });
    expect(first.finishReason).toBe('tool-calls');
    const request = first.content.find((part) => part.type === 'tool-approval-request');
    expect(request?.reason).toMatch(/^agentpolicy: tool "send_email" requires approval/);
    expect(request?.toolCall).toMatchObject({ toolName: 'send_email', input: { to: 'ada@example.com' } });
    expect(counters.send_email).toBeUndefined();
    expect(session.spent).toBe(0);

    const model = new MockLanguageModelV4({ doGenerate: [textResult('Sent.')] });
    const second = await generateText({
      model,
      tools,
      toolApproval,
      stopWhen: isStepCount(3),
      messages: [...prompt, ...first.response.messages, approvalResponse(request!.approvalId, true, 'ok by Bob')],
    });

    expect(second.text).toBe('Sent.');
    expect(counters.send_email).toBe(1);
    expect(lastToolOutput(model.doGenerateCalls[0]!.prompt)).toEqual({ type: 'text', value: 'sent to ada@example.com' });
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => [d.decision, d.approved, d.action.cost])).toEqual([
      ['require_approval', false, 0.25],
      ['allow', true, 0.25],
    ]);
    expect(decisions[1]).toMatchObject({
      approval: { via: 'request', requestId: decisions[0]!.approvalRequest!.id, reason: 'ok by Bob' },
      action: { input: { to: 'ada@example.com' }, metadata: { toolCallId: 'call-1', approvalId: request!.approvalId } },
    });
    expect(request?.reason).toContain(`(approval request ${decisions[0]!.approvalRequest!.id})`);
    expect(session.spent).toBe(0.25);
    expect(session.report().policyHits.approvalRequired).toEqual(['send_email']);
  });

  it('does not run the tool after a rejecting response and charges nothing', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { send_email: 0.25 } });
    const toolApproval = policyToolApproval(session);
    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })] }),
      tools,
      toolApproval,
      messages: prompt,
    });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;

    const model = new MockLanguageModelV4({ doGenerate: [textResult('Understood, not sent.')] });
    const second = await generateText({
      model,
      tools,
      toolApproval,
      messages: [...prompt, ...first.response.messages, approvalResponse(request.approvalId, false, 'wrong recipient')],
    });

    expect(second.text).toBe('Understood, not sent.');
    expect(counters.send_email).toBeUndefined();
    expect(lastToolOutput(model.doGenerateCalls[0]!.prompt)).toEqual({ type: 'execution-denied', reason: 'wrong recipient' });
    expect(session.spent).toBe(0);
    expect(toolDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['require_approval']);
  });

  it('decides again on resume: a call approved by a human is denied when the budget ran out in between', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { send_email: 0.25, search: 0.9 } });
    const toolApproval = policyToolApproval(session);
    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })] }),
      tools,
      toolApproval,
      messages: prompt,
    });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;

    // Meanwhile, another run of the same session spends most of the budget.
    await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('search', 'call-9', { query: 'big' })] }),
      tools,
      toolApproval,
      prompt: 'search',
    });
    expect(session.spent).toBe(0.9);

    const model = new MockLanguageModelV4({ doGenerate: [textResult('The budget is exhausted.')] });
    const second = await generateText({
      model,
      tools,
      toolApproval,
      messages: [...prompt, ...first.response.messages, approvalResponse(request.approvalId, true)],
    });

    expect(second.text).toBe('The budget is exhausted.');
    expect(counters.send_email).toBeUndefined();
    const seen = lastToolOutput(model.doGenerateCalls[0]!.prompt) as { type: string; reason: string };
    expect(seen.type).toBe('execution-denied');
    expect(seen.reason).toMatch(/^agentpolicy: cost \$0\.25 exceeds the remaining budget \$0\.10/);
    const last = toolDecisions(session.report().decisions).at(-1)!;
    expect(last).toMatchObject({ decision: 'deny', rule: { section: 'budget' }, action: { name: 'send_email', metadata: { approvalId: request.approvalId } } });
    expect(session.spent).toBe(0.9);
  });

  it('decides again on resume: a tool blocked by the policy in force when the run resumes stays denied', async () => {
    const counters: Record<string, number> = {};
    const before = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-1', { to: 'ada@example.com' })] }),
      tools: wrapTools(makeTools(counters), before),
      toolApproval: policyToolApproval(before),
      messages: prompt,
    });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;

    // The approval arrives after a deploy that blocks the tool (a new process, a new session).
    const after = makePolicy({ blockedTools: ['send_email'], approvalRules: [{ tool: 'send_email' }] }).session();
    const model = new MockLanguageModelV4({ doGenerate: [textResult('Blocked.')] });
    await generateText({
      model,
      tools: wrapTools(makeTools(counters), after),
      toolApproval: policyToolApproval(after),
      messages: [...prompt, ...first.response.messages, approvalResponse(request.approvalId, true)],
    });

    expect(counters.send_email).toBeUndefined();
    expect(lastToolOutput(model.doGenerateCalls[0]!.prompt)).toMatchObject({ type: 'execution-denied', reason: expect.stringContaining('is blocked by tools.block') });
    expect(toolDecisions(after.report().decisions).map((d) => d.decision)).toEqual(['deny']);
  });

  it("onDeny: 'stop' makes generateText reject with the policy error", async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ blockedTools: ['drop_table'] }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('drop_table', 'call-1', { name: 'users' }), textResult('unreachable')] });

    const error = await generateText({
      model,
      tools: wrapTools(makeTools(counters), session),
      toolApproval: policyToolApproval(session, { onDeny: 'stop' }),
      stopWhen: isStepCount(3),
      messages: prompt,
    }).catch((e: unknown) => e);

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(counters.drop_table).toBeUndefined();
    expect(model.doGenerateCalls).toHaveLength(1);
  });

  it('works with streamText: the approval request is a stream part, and a stop errors the stream', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }], blockedTools: ['drop_table'] }).session();
    const tools = wrapTools(makeTools(counters), session);

    const asked = streamText({
      model: new MockLanguageModelV4({ doStream: [{ stream: convertArrayToReadableStream(toolCallStreamParts('send_email', 'call-1', { to: 'ada@example.com' })) }] }),
      tools,
      toolApproval: policyToolApproval(session),
      messages: prompt,
    });
    const types: string[] = [];
    for await (const part of asked.fullStream) types.push(part.type);
    expect(types).toContain('tool-approval-request');
    expect(counters.send_email).toBeUndefined();

    const stopped = streamText({
      model: new MockLanguageModelV4({ doStream: [{ stream: convertArrayToReadableStream(toolCallStreamParts('drop_table', 'call-2', { name: 'users' })) }] }),
      tools,
      toolApproval: policyToolApproval(session, { onDeny: 'stop' }),
      messages: prompt,
    });
    const streamError = await (async () => {
      for await (const part of stopped.fullStream) void part;
    })().catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(streamError)).toBe(true);
    expect(counters.drop_table).toBeUndefined();
  });

  it('governs tools it did not wrap, with costs from its own options', async () => {
    const counters: Record<string, number> = {};
    const session = makePolicy({ budget: 1 }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('search', 'call-1', { query: 'q' }), textResult('ok')] });

    await generateText({ model, tools: makeTools(counters), toolApproval: policyToolApproval(session, { costs: { search: 0.125 } }), stopWhen: isStepCount(3), prompt: 'x' });

    expect(counters.search).toBe(1);
    expect(toolDecisions(session.report().decisions)).toMatchObject([{ decision: 'allow', action: { name: 'search', cost: 0.125, metadata: { toolCallId: 'call-1' } } }]);
    expect(session.spent).toBe(0.125);
  });

  describe('an unwrapped tool resumed by the SDK from an answer in the last message that does not count', () => {
    // The SDK resumes a call from any yes in the last message to a request for its id (it does not look for an earlier
    // answer to the same request), and then runs it unless the hook answers `denied`: the hook is the only check.
    async function asked(counters: Record<string, number>) {
      const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
      const tools = makeTools(counters);
      const toolApproval = policyToolApproval(session);
      const first = await generateText({ model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-1', { to: 'ada' })] }), tools, toolApproval, messages: prompt });
      const request = first.content.find((part) => part.type === 'tool-approval-request')!;
      const history: ModelMessage[] = [...prompt, ...first.responseMessages];
      return { session, tools, toolApproval, request, history };
    }
    const answer = (approvalId: string, approved: boolean): ModelMessage => ({ role: 'tool', content: [{ type: 'tool-approval-response', approvalId, approved }] });

    it("a human's no, then the same request answered yes in a later message: the call does not run", async () => {
      const counters: Record<string, number> = {};
      const { session, tools, toolApproval, request, history } = await asked(counters);
      const model = new MockLanguageModelV4({ doGenerate: [textResult('ok'), textResult('ok')] });
      await generateText({ model, tools, toolApproval, messages: [...history, answer(request.approvalId, false)] });
      const result = await generateText({ model, tools, toolApproval, messages: [...history, answer(request.approvalId, false), answer(request.approvalId, true)] });

      expect(counters.send_email).toBeUndefined();
      expect(result.content.some((part) => part.type === 'tool-result')).toBe(false);
      expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(0);
    });

    it('the same call asked twice in one step under two ids, answered yes and no: the no stands, neither runs', async () => {
      const counters: Record<string, number> = {};
      const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
      const tools = makeTools(counters);
      const toolApproval = policyToolApproval(session);
      const twice = {
        ...toolCallResult('send_email', 'call-1', { to: 'ada' }),
        content: ['call-1', 'call-2'].map((toolCallId) => ({ type: 'tool-call' as const, toolCallId, toolName: 'send_email', input: JSON.stringify({ to: 'ada' }) })),
      };
      const first = await generateText({ model: new MockLanguageModelV4({ doGenerate: [twice] }), tools, toolApproval, messages: prompt });
      // Both SDK requests name the one agentpolicy request raised for that action.
      const requests = first.content.filter((part) => part.type === 'tool-approval-request');
      expect(requests).toHaveLength(2);
      const answers: ModelMessage = { role: 'tool', content: requests.map((part, index) => ({ type: 'tool-approval-response' as const, approvalId: part.approvalId, approved: index === 0 })) };
      const result = await generateText({ model: new MockLanguageModelV4({ doGenerate: [textResult('ok')] }), tools, toolApproval, messages: [...prompt, ...first.responseMessages, answers] });

      expect(counters.send_email).toBeUndefined();
      expect(result.content.filter((part) => part.type === 'tool-result')).toHaveLength(0);
      expect(session.spent).toBe(0);
    });

    it('a used yes replayed in a later message: the call runs once', async () => {
      const counters: Record<string, number> = {};
      const { session, tools, toolApproval, request, history } = await asked(counters);
      const model = new MockLanguageModelV4({ doGenerate: [textResult('ok'), textResult('ok')] });
      const resumed = await generateText({ model, tools, toolApproval, messages: [...history, answer(request.approvalId, true)] });
      expect(counters.send_email).toBe(1);
      await generateText({ model, tools, toolApproval, messages: [...history, answer(request.approvalId, true), ...resumed.responseMessages.slice(0, 1), answer(request.approvalId, true)] });

      expect(counters.send_email).toBe(1);
      expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(1);
    });
  });

  it('rejects bad arguments', () => {
    expect(() => policyToolApproval(undefined as never)).toThrow(/needs a PolicySession/);
    expect(() => policyToolApproval(makePolicy().session(), { onDeny: 'explode' as never })).toThrow(/onDeny must be/);
  });
});
