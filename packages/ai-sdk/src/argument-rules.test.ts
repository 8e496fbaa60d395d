// Conditional rules, limits and shadow mode decided on the tool input the AI SDK parsed, through generateText /
// streamText with the SDK's own mock model: the policy sees exactly the input the tool would run with.
import { AgentPolicy } from '@agentpolicy/core';
import { generateText, isStepCount, streamText, tool, type ModelMessage } from 'ai';
import { convertArrayToReadableStream, MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyToolApproval } from './policy-tool-approval.js';
import { lastToolOutput, textResult, toolCallResult, toolCallStreamParts, toolDecisions } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';
import { ARGUMENT_RULES, SHADOW_CALLS, SHADOW_OUTCOMES } from '@agentpolicy/test-servers';


function makeTools(ran: string[]) {
  return {
    send_email: tool({
      inputSchema: z.object({ to: z.string() }),
      execute: async ({ to }) => {
        ran.push(`send_email ${to}`);
        return `sent to ${to}`;
      },
    }),
    refund: tool({
      inputSchema: z.object({ amount: z.number() }),
      execute: async ({ amount }) => {
        ran.push(`refund ${amount}`);
        return `refunded ${amount}`;
      },
    }),
    shell: tool({
      inputSchema: z.object({ command: z.string() }),
      execute: async ({ command }) => {
        ran.push(`shell ${command}`);
        return `ran ${command}`;
      },
    }),
    search: tool({
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => {
        ran.push(`search ${query}`);
        return `results for ${query}`;
      },
    }),
  };
}

const prompt: ModelMessage[] = [{ role: 'user', content: 'Do the task.' }];

/** One generateText loop in which the model calls `calls` in turn (one per step), then answers. */
async function runCalls(policy: Record<string, unknown>, calls: ReadonlyArray<readonly [string, unknown]>, ran: string[]) {
  const session = AgentPolicy.fromDict(policy).session();
  const model = new MockLanguageModelV4({
    doGenerate: [...calls.map(([name, input], i) => toolCallResult(name, `call-${i}`, input)), textResult('done')],
  });
  const result = await generateText({
    model,
    tools: wrapTools(makeTools(ran), session),
    toolApproval: policyToolApproval(session),
    stopWhen: isStepCount(calls.length + 1),
    messages: prompt,
  });
  return { session, model, result };
}

function approvalResponse(approvalId: string, approved: boolean): ModelMessage {
  return { role: 'tool', content: [{ type: 'tool-approval-response', approvalId, approved }] };
}

describe('argument rules through the AI SDK loop', () => {
  it('unless: mail to another domain is denied before the tool runs; mail to ourco.com runs', async () => {
    const ran: string[] = [];
    const { session, model } = await runCalls(
      ARGUMENT_RULES,
      [
        ['send_email', { to: 'eve@gmail.com' }],
        ['send_email', { to: 'eve@ourco.com.evil.io' }],
        ['send_email', { to: 'ada@ourco.com' }],
      ],
      ran,
    );

    expect(ran).toEqual(['send_email ada@ourco.com']);
    expect(lastToolOutput(model.doGenerateCalls[1]!.prompt)).toMatchObject({ type: 'execution-denied', reason: expect.stringContaining('email only to ourco.com') });
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => [d.decision, 'input' in d.action ? d.action.input : undefined])).toEqual([
      ['deny', { to: 'eve@gmail.com' }],
      ['deny', { to: 'eve@ourco.com.evil.io' }],
      ['allow', { to: 'ada@ourco.com' }],
    ]);
    expect(decisions[0]!.rule).toMatchObject({ section: 'rules', index: 0, reason: 'email only to ourco.com' });
  });

  it('unless, without the approval hook (wrapTools alone): execute refuses the call to another domain', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'c1', { to: 'eve@gmail.com' }), textResult('ok')] });
    await generateText({ model, tools: wrapTools(makeTools(ran), session), stopWhen: isStepCount(2), messages: prompt });

    expect(ran).toEqual([]);
    expect(JSON.stringify(lastToolOutput(model.doGenerateCalls[1]!.prompt))).toContain('email only to ourco.com');
  });

  it('if gt: a small refund runs, a large one becomes a tool-approval-request, and the approval runs exactly that input', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const tools = wrapTools(makeTools(ran), session);
    const toolApproval = policyToolApproval(session);

    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('refund', 'r1', { amount: 40 }), toolCallResult('refund', 'r2', { amount: 250 })] }),
      tools,
      toolApproval,
      stopWhen: isStepCount(3),
      messages: prompt,
    });
    expect(ran).toEqual(['refund 40']);
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;
    expect(request.reason).toContain('large refunds');
    expect(request.toolCall).toMatchObject({ toolName: 'refund', input: { amount: 250 } });

    const model = new MockLanguageModelV4({ doGenerate: [textResult('Refunded.')] });
    await generateText({
      model,
      tools,
      toolApproval,
      messages: [...prompt, ...first.response.messages, approvalResponse(request.approvalId, true)],
    });
    expect(ran).toEqual(['refund 40', 'refund 250']);
    expect(lastToolOutput(model.doGenerateCalls[0]!.prompt)).toEqual({ type: 'text', value: 'refunded 250' });
    const last = toolDecisions(session.report().decisions).at(-1)!;
    expect(last).toMatchObject({ decision: 'allow', approved: true, action: { name: 'refund', input: { amount: 250 } } });
  });

  it('if gt: an approval for a refund of 250 does not run a refund of 9,000 edited into the history', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const tools = wrapTools(makeTools(ran), session);
    const toolApproval = policyToolApproval(session);
    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('refund', 'r1', { amount: 250 })] }),
      tools,
      toolApproval,
      messages: prompt,
    });
    const request = first.content.find((part) => part.type === 'tool-approval-request')!;

    // The history handed back with the human's "yes" now says 9,000 in the same tool call.
    const tampered = JSON.parse(JSON.stringify(first.response.messages).replace('"amount":250', '"amount":9000')) as ModelMessage[];
    expect(JSON.stringify(tampered)).toContain('9000');
    const model = new MockLanguageModelV4({ doGenerate: [textResult('?'), textResult('?')] });
    const second = await generateText({
      model,
      tools,
      toolApproval,
      messages: [...prompt, ...tampered, approvalResponse(request.approvalId, true)],
    });

    expect(ran).toEqual([]);
    expect(toolDecisions(session.report().decisions).filter((d) => d.decision === 'allow')).toEqual([]);
    expect(second.content.some((part) => part.type === 'tool-result')).toBe(false);
  });

  it('command: rm -rf / and an unparseable command line are refused through a shell tool; ls runs', async () => {
    const ran: string[] = [];
    const { session } = await runCalls(
      ARGUMENT_RULES,
      [
        ['shell', { command: 'rm -rf /' }],
        ['shell', { command: 'ls; rm -rf /' }],
        ['shell', { command: 'echo $(rm -rf /)' }],
        ['shell', { command: 'ls -la' }],
      ],
      ran,
    );

    expect(ran).toEqual(['shell ls -la']);
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => d.decision)).toEqual(['deny', 'deny', 'deny', 'allow']);
    for (const d of decisions.slice(0, 3)) expect(d.rule).toMatchObject({ section: 'rules', index: 2 });
  });

  it('limits: the third search in one loop (max 2 per minute) is denied and never runs', async () => {
    const ran: string[] = [];
    const { session, model } = await runCalls(
      ARGUMENT_RULES,
      [
        ['search', { query: 'a' }],
        ['search', { query: 'b' }],
        ['search', { query: 'c' }],
      ],
      ran,
    );

    expect(ran).toEqual(['search a', 'search b']);
    expect(lastToolOutput(model.doGenerateCalls[3]!.prompt)).toMatchObject({ type: 'execution-denied' });
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
    expect(decisions[2]!.rule).toMatchObject({ section: 'limits', index: 0 });
  });

  it('limits, streamText: the same count holds when the calls are streamed', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(ARGUMENT_RULES).session();
    const tools = wrapTools(makeTools(ran), session);
    const model = new MockLanguageModelV4({
      doStream: [
        ...['a', 'b', 'c'].map((q, i) => ({ stream: convertArrayToReadableStream(toolCallStreamParts('search', `s${i}`, { query: q })) })),
        { stream: convertArrayToReadableStream(toolCallStreamParts('search', 's9', { query: 'd' })) },
      ],
    });
    const result = streamText({ model, tools, toolApproval: policyToolApproval(session), stopWhen: isStepCount(3), messages: prompt });
    await result.consumeStream();

    expect(ran).toEqual(['search a', 'search b']);
    expect(toolDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
  });

  it('mode: shadow lets every call run and records what would have been decided', async () => {
    const ran: string[] = [];
    const { session } = await runCalls(
      { ...ARGUMENT_RULES, mode: 'shadow' },
      SHADOW_CALLS,
      ran,
    );

    expect(ran).toEqual(['send_email eve@gmail.com', 'refund 250', 'shell rm -rf /', 'search a', 'search b', 'search c']);
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'allow', 'allow', 'allow', 'allow', 'allow']);
    expect(decisions.map((d) => d.shadow && [d.shadow.decision, d.shadow.rule.section])).toEqual(SHADOW_OUTCOMES);
  });
});
