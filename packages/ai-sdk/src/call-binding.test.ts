// Attacks on call identity and approval binding, through real generateText / streamText loops: a call id that a
// provider numbers per turn, a scripted model that replays a call with other input, one session shared by two runs,
// an approval in the history that is reused for a call the human never saw, and a tool that throws.
import type { LanguageModelV4StreamPart } from '@ai-sdk/provider';
import { generateText, isStepCount, streamText, tool, type ModelMessage } from 'ai';
import { convertArrayToReadableStream, MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyToolApproval } from './policy-tool-approval.js';
import { lastToolOutput, makePolicy, textResult, toolCallResult, toolCallStreamParts, toolDecisions } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

function emailTools(sent: string[]) {
  return {
    send_email: tool({
      inputSchema: z.object({ to: z.string() }),
      execute: async ({ to }) => {
        sent.push(to);
        return `sent to ${to}`;
      },
    }),
  };
}

const prompt: ModelMessage[] = [{ role: 'user', content: 'Mail the report.' }];

const approve = (approvalId: string): ModelMessage => ({ role: 'tool', content: [{ type: 'tool-approval-response', approvalId, approved: true }] });

function approvalRequestOf(content: readonly { type: string }[]) {
  const part = content.find((p) => p.type === 'tool-approval-request') as { approvalId: string; reason?: string; toolCall: { input: unknown } } | undefined;
  if (!part) throw new Error('no approval request');
  return part;
}

describe('an approval in the history counts only for the request it answers and the call the human saw', () => {
  it('generateText: a later call with the same tool call id and other input is not auto-approved', async () => {
    const sent: string[] = [];
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(emailTools(sent), session);
    const toolApproval = policyToolApproval(session);

    const first = await generateText({ model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-0', { to: 'ada' })] }), tools, toolApproval, messages: prompt });
    const asked = approvalRequestOf(first.content);
    const history: ModelMessage[] = [...prompt, ...first.response.messages, approve(asked.approvalId)];

    // The resume runs the approved call; the model's next step reuses the id `call-0` for another recipient.
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-0', { to: 'eve@evil.example' }), textResult('unreachable')] });
    const second = await generateText({ model, tools, toolApproval, stopWhen: isStepCount(3), messages: history });

    expect(sent).toEqual(['ada']);
    const again = approvalRequestOf(second.content);
    expect(again.toolCall.input).toEqual({ to: 'eve@evil.example' });
    expect(again.approvalId).not.toBe(asked.approvalId);
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => [d.decision, (d.action as { input?: unknown }).input])).toEqual([
      ['require_approval', { to: 'ada' }],
      ['allow', { to: 'ada' }],
      ['require_approval', { to: 'eve@evil.example' }],
    ]);
    // The old answer was offered for the new call and recorded as not counting.
    expect(decisions[2]!.unusedAnswer).toMatchObject({ requestId: decisions[0]!.approvalRequest!.id, problem: 'other_action' });
    expect(decisions[2]!.approvalRequest!.id).not.toBe(decisions[0]!.approvalRequest!.id);
  });

  it('generateText: the same call replayed after it ran is asked again, never run on the used approval', async () => {
    const sent: string[] = [];
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(emailTools(sent), session);
    const toolApproval = policyToolApproval(session);

    const first = await generateText({ model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-0', { to: 'ada' })] }), tools, toolApproval, messages: prompt });
    const history: ModelMessage[] = [...prompt, ...first.response.messages, approve(approvalRequestOf(first.content).approvalId)];
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-0', { to: 'ada' }), textResult('unreachable')] });
    const second = await generateText({ model, tools, toolApproval, stopWhen: isStepCount(3), messages: history });

    expect(sent).toEqual(['ada']);
    expect(approvalRequestOf(second.content).toolCall.input).toEqual({ to: 'ada' });
    const last = toolDecisions(session.report().decisions).at(-1)!;
    expect(last).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'already_used' } });

    // The whole history sent again: the SDK resumes the approved call a second time, and it does not run.
    const replayed = new MockLanguageModelV4({ doGenerate: [textResult('done')] });
    await generateText({ model: replayed, tools, toolApproval, stopWhen: isStepCount(3), messages: history });
    expect(sent).toEqual(['ada']);
    expect(lastToolOutput(replayed.doGenerateCalls[0]!.prompt)).toMatchObject({ type: 'error-text', value: expect.stringContaining('requires approval') });
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toHaveLength(1);
  });

  it('generateText: the human approves the new request, and only that call runs', async () => {
    const sent: string[] = [];
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(emailTools(sent), session);
    const toolApproval = policyToolApproval(session);

    const first = await generateText({ model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-0', { to: 'ada' })] }), tools, toolApproval, messages: prompt });
    let history: ModelMessage[] = [...prompt, ...first.response.messages, approve(approvalRequestOf(first.content).approvalId)];
    const second = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-0', { to: 'bob' })] }),
      tools,
      toolApproval,
      stopWhen: isStepCount(3),
      messages: history,
    });
    history = [...history, ...second.response.messages, approve(approvalRequestOf(second.content).approvalId)];
    const third = await generateText({ model: new MockLanguageModelV4({ doGenerate: [textResult('Both sent.')] }), tools, toolApproval, stopWhen: isStepCount(3), messages: history });

    expect(third.text).toBe('Both sent.');
    expect(sent).toEqual(['ada', 'bob']);
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow').map((d) => d.approval?.via)).toEqual(['request', 'request']);
  });

  it('streamText: a reused tool call id with other input gets a new approval request, not the old answer', async () => {
    const sent: string[] = [];
    const session = makePolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    const tools = wrapTools(emailTools(sent), session);
    const toolApproval = policyToolApproval(session);
    const stream = (parts: LanguageModelV4StreamPart[]) => ({ stream: convertArrayToReadableStream(parts) });

    const first = streamText({ model: new MockLanguageModelV4({ doStream: [stream(toolCallStreamParts('send_email', 'call-0', { to: 'ada' }))] }), tools, toolApproval, messages: prompt });
    const firstContent = await first.content;
    const history: ModelMessage[] = [...prompt, ...(await first.response).messages, approve(approvalRequestOf(firstContent).approvalId)];

    const second = streamText({
      model: new MockLanguageModelV4({ doStream: [stream(toolCallStreamParts('send_email', 'call-0', { to: 'eve@evil.example' }))] }),
      tools,
      toolApproval,
      stopWhen: isStepCount(3),
      messages: history,
    });
    const parts: { type: string; toolCall?: { input: unknown } }[] = [];
    for await (const part of second.fullStream) parts.push(part as never);

    expect(sent).toEqual(['ada']);
    const request = parts.find((p) => p.type === 'tool-approval-request');
    expect(request?.toolCall?.input).toEqual({ to: 'eve@evil.example' });
    expect(toolDecisions(session.report().decisions).at(-1)).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_action' } });
  });
});

describe('one decision authorises one execution', () => {
  it('a provider that numbers calls per turn: the same id in the next turn is decided and charged again', async () => {
    const sent: string[] = [];
    const session = makePolicy({ budget: 1 }).session();
    const tools = wrapTools(emailTools(sent), session, { costs: { send_email: 0.3 } });
    const toolApproval = policyToolApproval(session);
    const model = new MockLanguageModelV4({
      doGenerate: [toolCallResult('send_email', 'call_0', { to: 'ada' }), toolCallResult('send_email', 'call_0', { to: 'ada' }), toolCallResult('send_email', 'call_0', { to: 'bob' }), toolCallResult('send_email', 'call_0', { to: 'cy' }), textResult('done')],
    });

    await generateText({ model, tools, toolApproval, stopWhen: isStepCount(6), messages: prompt });

    // Three runs fit the $1 budget; the fourth call (same id again) is denied and does not run.
    expect(sent).toEqual(['ada', 'ada', 'bob']);
    expect(session.spent).toBe(0.9);
    expect(toolDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['allow', 'allow', 'allow', 'deny']);
    expect(lastToolOutput(model.doGenerateCalls[4]!.prompt)).toMatchObject({ type: 'execution-denied', reason: expect.stringContaining('exceeds the remaining budget') });
  });

  it('a tool the package does not wrap, governed by policyToolApproval only: the same call id next turn is charged again', async () => {
    const sent: string[] = [];
    const session = makePolicy({ budget: 0.5 }).session();
    const model = new MockLanguageModelV4({
      doGenerate: [toolCallResult('send_email', 'call_0', { to: 'ada' }), toolCallResult('send_email', 'call_0', { to: 'ada' }), toolCallResult('send_email', 'call_0', { to: 'ada' }), textResult('done')],
    });

    await generateText({ model, tools: emailTools(sent), toolApproval: policyToolApproval(session, { costs: { send_email: 0.2 } }), stopWhen: isStepCount(5), messages: prompt });

    expect(sent).toEqual(['ada', 'ada']);
    expect(session.spent).toBe(0.4);
    expect(toolDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
  });

  it('a scripted model that replays one call id with other input, without the approval hook: each is decided on its own', async () => {
    const sent: string[] = [];
    const session = makePolicy({ budget: 1, blockedTools: [] }).session();
    const tools = wrapTools(emailTools(sent), session, { costs: { send_email: (input: { to: string }) => (input.to === 'ada' ? 0.1 : 0.95) } });
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'c1', { to: 'ada' }), toolCallResult('send_email', 'c1', { to: 'everyone' }), textResult('done')] });

    await generateText({ model, tools, stopWhen: isStepCount(4), messages: prompt });

    expect(sent).toEqual(['ada']);
    expect(session.spent).toBe(0.1);
    expect(toolDecisions(session.report().decisions).map((d) => [d.decision, d.action.cost])).toEqual([
      ['allow', 0.1],
      ['deny', 0.95],
    ]);
  });

  it('one session shared by two concurrent runs whose calls have the same ids: neither runs free', async () => {
    const sent: string[] = [];
    const session = makePolicy({ budget: 0.5 }).session();
    const tools = wrapTools(emailTools(sent), session, { costs: { send_email: 0.3 } });
    const toolApproval = policyToolApproval(session);
    const run = (to: string) =>
      generateText({ model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call_0', { to }), textResult('ok')] }), tools, toolApproval, stopWhen: isStepCount(3), messages: prompt });

    await Promise.all([run('ada'), run('bob')]);

    // Only one $0.30 call fits a $0.50 budget: the other is denied, whichever came first.
    expect(sent).toHaveLength(1);
    expect(session.spent).toBe(0.3);
    expect(toolDecisions(session.report().decisions).map((d) => d.decision).sort()).toEqual(['allow', 'deny']);
  });

  it('the same call executed twice at once runs once per allow, each charged', async () => {
    const sent: string[] = [];
    const session = makePolicy({ budget: 1 }).session();
    const tools = wrapTools(emailTools(sent), session, { costs: { send_email: 0.25 } });
    const call = { toolCallId: 'call_0', messages: [], context: {} };

    await Promise.all([tools.send_email.execute!({ to: 'ada' }, call), tools.send_email.execute!({ to: 'ada' }, call)]);

    expect(sent).toEqual(['ada', 'ada']);
    expect(session.spent).toBe(0.5);
    expect(toolDecisions(session.report().decisions)).toHaveLength(2);
  });
});

describe('a tool that throws is settled by the one rule', () => {
  function flakyTools(error: unknown, runs: { count: number }) {
    return {
      charge_card: tool({
        inputSchema: z.object({ amount: z.number() }),
        execute: async ({ amount }): Promise<string> => {
          runs.count++;
          if (amount > 0) throw error;
          return 'nothing to charge';
        },
      }),
    };
  }

  it('keeps the cost of a tool that failed after it may have done the work, and hands the model the error', async () => {
    const runs = { count: 0 };
    const session = makePolicy({ budget: 1 }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('charge_card', 'c1', { amount: 5 }), textResult('It failed.')] });

    const result = await generateText({
      model,
      tools: wrapTools(flakyTools(new Error('gateway timeout'), runs), session, { costs: { charge_card: 0.2 } }),
      toolApproval: policyToolApproval(session),
      stopWhen: isStepCount(3),
      messages: prompt,
    });

    expect(result.text).toBe('It failed.');
    expect(runs.count).toBe(1);
    expect(lastToolOutput(model.doGenerateCalls[1]!.prompt)).toMatchObject({ type: 'error-text', value: expect.stringContaining('gateway timeout') });
    expect(session.spent).toBe(0.2);
    expect(toolDecisions(session.report().decisions)[0]).toMatchObject({ decision: 'allow', settlement: { status: 'committed', actual: 0.2 } });
  });

  it('releases the cost of a tool that refused its input (a 4xx status)', async () => {
    const runs = { count: 0 };
    const session = makePolicy({ budget: 1 }).session();
    const refused = Object.assign(new Error('invalid card number'), { status: 422 });
    await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('charge_card', 'c1', { amount: 5 }), textResult('Refused.')] }),
      tools: wrapTools(flakyTools(refused, runs), session, { costs: { charge_card: 0.2 } }),
      toolApproval: policyToolApproval(session),
      stopWhen: isStepCount(3),
      messages: prompt,
    });

    expect(runs.count).toBe(1);
    expect(session.spent).toBe(0);
    expect(session.pendingReservations).toBe(0);
    expect(toolDecisions(session.report().decisions)[0]).toMatchObject({ decision: 'allow', settlement: { status: 'released', actual: 0 } });
  });
});

describe('two calls of one step with the same tool call id, one of them held back by the SDK', () => {
  function payTools(paid: unknown[]) {
    return {
      pay: tool({
        inputSchema: z.object({ amount: z.number() }),
        execute: async (input) => {
          paid.push(input);
          return 'paid';
        },
      }),
      wipe: tool({ inputSchema: z.object({ path: z.string() }), execute: async () => 'wiped' }),
    };
  }
  const twoCalls = (calls: Array<[string, string, unknown]>) => ({
    content: calls.map(([toolName, toolCallId, input]) => ({ type: 'tool-call' as const, toolCallId, toolName, input: JSON.stringify(input) })),
    finishReason: { unified: 'tool-calls' as const, raw: 'tool_calls' },
    usage: { inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 1, text: 1, reasoning: 0 } },
    warnings: [],
  });
  const largeNeedsApproval = { rules: [{ require_approval: 'large payments', tool: 'pay', if: { 'input.amount': { gt: 100 } } }] };

  it('the allowed call, which the SDK does not run because the other call with its id waits for approval, is not charged', async () => {
    for (const order of [
      [['pay', 'c3', { amount: 500 }], ['pay', 'c3', { amount: 5 }]],
      [['pay', 'c3', { amount: 5 }], ['pay', 'c3', { amount: 500 }]],
    ] as Array<Array<[string, string, unknown]>>) {
      const paid: unknown[] = [];
      const session = makePolicy({ budget: 1, ...largeNeedsApproval }).session();
      const tools = wrapTools(payTools(paid), session, { costs: { pay: 0.05 } });
      const result = await generateText({ model: new MockLanguageModelV4({ doGenerate: [twoCalls(order)] }), tools, toolApproval: policyToolApproval(session), messages: prompt });

      expect(paid).toEqual([]);
      expect(approvalRequestOf(result.content).toolCall.input).toEqual({ amount: 500 });
      // The SDK ran neither call: nothing is held or spent, now or when the session ends.
      expect(session.report()).toMatchObject({ spent: 0, reserved: 0 });
      expect(session.end().spent).toBe(0);
      const allow = toolDecisions(session.report().decisions).find((d) => d.decision === 'allow')!;
      expect(allow.settlement?.status).toBe('released');
    }
  });

  it('a tool wrapTools did not wrap keeps its charge: generateText holds the call back, streamText runs it, and the hook cannot tell which', async () => {
    for (const streamed of [false, true]) {
      for (const order of [
        [['pay', 'c3', { amount: 500 }], ['pay', 'c3', { amount: 5 }]],
        [['pay', 'c3', { amount: 5 }], ['pay', 'c3', { amount: 500 }]],
      ] as Array<Array<[string, string, unknown]>>) {
        const paid: unknown[] = [];
        const session = makePolicy({ budget: 1, ...largeNeedsApproval }).session();
        const result = twoCalls(order);
        const model = new MockLanguageModelV4({
          doGenerate: [result],
          doStream: [{ stream: convertArrayToReadableStream([{ type: 'stream-start', warnings: [] }, ...result.content, { type: 'finish', finishReason: result.finishReason, usage: result.usage }] as LanguageModelV4StreamPart[]) }],
        });
        const settings = { model, tools: payTools(paid), toolApproval: policyToolApproval(session, { costs: { pay: 0.05 } }), messages: prompt };
        if (streamed) await streamText(settings).consumeStream();
        else await generateText(settings);

        // The same hook calls either way; only streamText runs the small payment. Its charge is kept in both, so the
        // streamed one never runs uncharged.
        expect(paid).toEqual(streamed ? [{ amount: 5 }] : []);
        expect(session.report()).toMatchObject({ spent: 0.05, reserved: 0 });
        expect(toolDecisions(session.report().decisions).map((d) => d.decision).sort()).toEqual(['allow', 'require_approval']);
      }
    }
  });

  it('the same small payment in a later turn is decided and charged once, and runs', async () => {
    const paid: unknown[] = [];
    const session = makePolicy({ budget: 1, ...largeNeedsApproval }).session();
    const tools = wrapTools(payTools(paid), session, { costs: { pay: 0.05 } });
    const toolApproval = policyToolApproval(session);
    const first = await generateText({ model: new MockLanguageModelV4({ doGenerate: [twoCalls([['pay', 'c3', { amount: 500 }], ['pay', 'c3', { amount: 5 }]])] }), tools, toolApproval, messages: prompt });
    const history: ModelMessage[] = [...prompt, ...first.responseMessages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: approvalRequestOf(first.content).approvalId, approved: false }] }];
    await generateText({ model: new MockLanguageModelV4({ doGenerate: [twoCalls([['pay', 'c3', { amount: 5 }]]), textResult('done')] }), tools, toolApproval, stopWhen: isStepCount(2), messages: history });

    expect(paid).toEqual([{ amount: 5 }]);
    expect(session.end().spent).toBeCloseTo(0.05, 9);
  });

  it('the call the SDK holds back gives back its max_calls slot: the next call is allowed, and no more calls run than max_calls', async () => {
    for (const cost of [undefined, 0.05]) {
      const paid: unknown[] = [];
      const limits = [{ tool: 'pay', max_calls: 1, per: '1m' }];
      const session = makePolicy({ budget: 1, ...largeNeedsApproval, limits }).session();
      const tools = wrapTools(payTools(paid), session, cost === undefined ? {} : { costs: { pay: cost } });
      const toolApproval = policyToolApproval(session);
      // Step 1: the small payment is allowed (it takes the one slot) and the large one with its id waits for approval,
      // so the SDK runs neither.
      await generateText({ model: new MockLanguageModelV4({ doGenerate: [twoCalls([['pay', 'c3', { amount: 5 }], ['pay', 'c3', { amount: 500 }]])] }), tools, toolApproval, messages: prompt });
      expect(paid).toEqual([]);
      // The held-back call used no slot: the next payment is allowed and runs; the one after it is over the limit.
      await generateText({
        model: new MockLanguageModelV4({ doGenerate: [twoCalls([['pay', 'c7', { amount: 6 }]]), twoCalls([['pay', 'c8', { amount: 7 }]]), textResult('done')] }),
        tools,
        toolApproval,
        stopWhen: isStepCount(3),
        messages: prompt,
      });
      expect(paid).toEqual([{ amount: 6 }]);
      const last = toolDecisions(session.report().decisions).at(-1)!;
      expect(last).toMatchObject({ decision: 'deny', rule: { section: 'limits' } });
      expect(session.end().spent).toBeCloseTo(cost ?? 0, 9);
    }
  });

  it("onDeny: 'stop': an allowed call of the step the run stopped in is not charged", async () => {
    const paid: unknown[] = [];
    const session = makePolicy({ budget: 1, blockedTools: ['wipe'] }).session();
    const tools = wrapTools(payTools(paid), session, { costs: { pay: 0.15 }, onDeny: 'stop' });
    const model = new MockLanguageModelV4({ doGenerate: [twoCalls([['pay', 'c1', { amount: 1 }], ['wipe', 'c2', { path: '/' }]])] });
    await expect(generateText({ model, tools, toolApproval: policyToolApproval(session, { onDeny: 'stop' }), messages: prompt })).rejects.toThrow(/blocked/);

    expect(paid).toEqual([]);
    expect(session.end().spent).toBe(0);
  });

  it('a used approval found for an allowed call with the same id is no approval: the repeated payment is asked about, not auto-approved', async () => {
    const paid: unknown[] = [];
    const session = makePolicy(largeNeedsApproval).session();
    const tools = { ...wrapTools(payTools(paid), session), search: wrapTools({ search: tool({ inputSchema: z.object({ q: z.string() }), execute: async () => 'found' }) }, session).search };
    const toolApproval = policyToolApproval(session);
    const model = (result: ReturnType<typeof twoCalls>) => new MockLanguageModelV4({ doGenerate: [result, textResult('done')] });
    const first = await generateText({ model: model(twoCalls([['pay', 'c2', { amount: 500 }]])), tools, toolApproval, messages: prompt });
    let history: ModelMessage[] = [...prompt, ...first.responseMessages, approve(approvalRequestOf(first.content).approvalId)];
    // The approved payment runs; the model pays again and searches, both under the id c2.
    const second = await generateText({ model: model(twoCalls([['pay', 'c2', { amount: 500 }], ['search', 'c2', { q: 'x' }]])), tools, toolApproval, stopWhen: isStepCount(2), messages: history });
    expect(paid).toEqual([{ amount: 500 }]);
    const asked = second.content.filter((p) => p.type === 'tool-approval-request');
    expect(asked).toEqual([expect.objectContaining({ toolCall: expect.objectContaining({ toolName: 'pay' }) })]);
    expect(asked[0]).not.toHaveProperty('isAutomatic', true);

    // The human says no: the repeated payment never runs.
    history = [...history, ...second.responseMessages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: (asked[0] as { approvalId: string }).approvalId, approved: false }] }];
    await generateText({ model: model(twoCalls([['search', 'c1', { q: 'y' }]])), tools, toolApproval, stopWhen: isStepCount(2), messages: history });
    expect(paid).toEqual([{ amount: 500 }]);
  });
});
