import { AgentPolicyError, ApprovalRequiredError, InMemoryBudgetStore, PolicyDeniedError } from '@agentpolicy/core';
import { generateText, isStepCount, tool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { describe, expect, expectTypeOf, it, vi } from 'vitest';
import { z } from 'zod';
import { lastToolOutput, makePolicy, textResult, toolCallResult, toolDecisions } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

function makeTools(counters: { weather: number; deleteFiles: number }) {
  return {
    weather: tool({
      description: 'Weather for a city',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        counters.weather++;
        return `21C in ${city}`;
      },
    }),
    delete_files: tool({
      inputSchema: z.object({ path: z.string() }),
      execute: async () => {
        counters.deleteFiles++;
        return 'deleted';
      },
    }),
  };
}

describe('wrapTools', () => {
  it('keeps the tool set and its types', () => {
    const tools = makeTools({ weather: 0, deleteFiles: 0 });
    const wrapped = wrapTools(tools, makePolicy().session());
    expectTypeOf(wrapped).toEqualTypeOf<typeof tools>();
    expect(Object.keys(wrapped)).toEqual(['weather', 'delete_files']);
    expect(wrapped.weather.description).toBe('Weather for a city');
    expect(wrapped.weather).not.toBe(tools.weather);
    expect(tools.weather.needsApproval).toBeUndefined();
  });

  it('under a halt, without toolApproval, a call is recorded denied once: execute throws the denial needsApproval recorded', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const policy = makePolicy({ budget: 1 });
    await policy.halt('incident 42');
    const session = policy.session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' }), textResult('Stopped')] });

    await generateText({ model, tools: wrapTools(makeTools(counters), session, { costs: { weather: 0.05 } }), stopWhen: isStepCount(3), prompt: 'Weather in Paris?' });

    expect(counters.weather).toBe(0);
    // Before, execute decided the call again (core keeps no halt decision to find by the call's key): two denials.
    expect(toolDecisions(session.report().decisions).map((d) => `${d.decision}:${d.rule.section}`)).toEqual(['deny:halt']);
    expect(session.spent).toBe(0);
  });

  it('runs an allowed tool in a multi-step loop and records its declared cost and call id', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy({ budget: 1, allowedTools: ['weather'] }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' }), textResult('It is 21C')] });

    const result = await generateText({
      model,
      tools: wrapTools(makeTools(counters), session, { costs: { weather: 0.05 } }),
      stopWhen: isStepCount(3),
      prompt: 'Weather in Paris?',
    });

    expect(counters.weather).toBe(1);
    expect(result.text).toBe('It is 21C');
    expect(model.doGenerateCalls).toHaveLength(2);
    expect(lastToolOutput(model.doGenerateCalls[1]!.prompt)).toEqual({ type: 'text', value: '21C in Paris' });
    const [decision, ...others] = toolDecisions(session.report().decisions);
    expect(others).toHaveLength(0);
    expect(decision).toMatchObject({ decision: 'allow', action: { type: 'tool', name: 'weather', cost: 0.05, metadata: { toolCallId: 'call-1' } } });
    expect(session.spent).toBe(0.05);
  });

  it('never runs a blocked tool; the model receives the denial and the loop continues', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy({ blockedTools: ['delete_*'] }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('delete_files', 'call-1', { path: '/' }), textResult('I may not delete files.')] });

    const result = await generateText({ model, tools: wrapTools(makeTools(counters), session), stopWhen: isStepCount(3), prompt: 'Clean up' });

    expect(counters.deleteFiles).toBe(0);
    expect(result.text).toBe('I may not delete files.');
    const toolError = result.steps[0]!.content.find((part) => part.type === 'tool-error');
    expect(PolicyDeniedError.isInstance(toolError?.error)).toBe(true);
    const seen = lastToolOutput(model.doGenerateCalls[1]!.prompt) as { type: string; value: string };
    expect(seen.type).toBe('error-text');
    expect(seen.value).toContain('agentpolicy: tool "delete_files" is blocked by tools.block entry "delete_*"');
    const report = session.report();
    expect(toolDecisions(report.decisions).map((d) => d.decision)).toEqual(['deny']);
    expect(report.policyHits.deniedTools).toEqual(['delete_files']);
  });

  it('prices a call from its input and denies one the budget cannot cover', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy({ budget: 0.5 }).session();
    const model = new MockLanguageModelV4({
      doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' }), toolCallResult('weather', 'call-2', { city: 'Lima' }), textResult('done')],
    });
    const cost = vi.fn(({ city }: { city: string }) => (city === 'Lima' ? 0.4 : 0.2));

    await generateText({ model, tools: wrapTools(makeTools(counters), session, { costs: { weather: cost } }), stopWhen: isStepCount(4), prompt: 'x' });

    expect(counters.weather).toBe(1);
    expect(cost).toHaveBeenCalledWith({ city: 'Lima' });
    const decisions = toolDecisions(session.report().decisions);
    expect(decisions.map((d) => [d.decision, d.action.cost, d.rule.section])).toEqual([
      ['allow', 0.2, 'default'],
      ['deny', 0.4, 'budget'],
    ]);
    expect(session.spent).toBe(0.2);
  });

  it('fails closed when a cost function throws', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy().session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' }), textResult('ok')] });
    const costs = {
      weather: () => {
        throw new Error('price list offline');
      },
    };

    await generateText({ model, tools: wrapTools(makeTools(counters), session, { costs }), stopWhen: isStepCount(3), prompt: 'x' });

    expect(counters.weather).toBe(0);
    const [decision] = toolDecisions(session.report().decisions);
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'cost' }, action: { metadata: { costError: 'price list offline' } } });
  });

  it("onDeny: 'stop' ends the run with the policy error", async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy({ blockedTools: ['delete_files'] }).session();
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('delete_files', 'call-1', { path: '/' }), textResult('unreachable')] });

    const run = generateText({ model, tools: wrapTools(makeTools(counters), session, { onDeny: 'stop' }), stopWhen: isStepCount(3), prompt: 'x' });

    const error = await run.catch((e: unknown) => e);
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision.rule).toMatchObject({ section: 'tools', list: 'block' });
    expect(counters.deleteFiles).toBe(0);
    expect(model.doGenerateCalls).toHaveLength(1);
  });

  it('turns require_approval into the SDK approval request through needsApproval, and resumes both ways', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy({ budget: 1, approvalRules: [{ tool: 'weather' }] }).session();
    const tools = wrapTools(makeTools(counters), session, { costs: { weather: 0.1 } });
    const prompt = [{ role: 'user' as const, content: 'Weather in Paris?' }];
    const first = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' })] }),
      tools,
      stopWhen: isStepCount(3),
      messages: prompt,
    });
    const request = first.content.find((part) => part.type === 'tool-approval-request');
    expect(request).toBeDefined();
    expect(counters.weather).toBe(0);
    expect(session.spent).toBe(0);

    const approved = new MockLanguageModelV4({ doGenerate: [textResult('It is 21C')] });
    await generateText({
      model: approved,
      tools,
      stopWhen: isStepCount(3),
      messages: [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request!.approvalId, approved: true }] }],
    });
    expect(counters.weather).toBe(1);
    expect(lastToolOutput(approved.doGenerateCalls[0]!.prompt)).toEqual({ type: 'text', value: '21C in Paris' });
    expect(toolDecisions(session.report().decisions).map((d) => [d.decision, d.approved])).toEqual([
      ['require_approval', false],
      ['allow', true],
    ]);
    expect(session.spent).toBe(0.1);

    const rejected = new MockLanguageModelV4({ doGenerate: [textResult('OK, I will not.')] });
    await generateText({
      model: rejected,
      tools,
      stopWhen: isStepCount(3),
      messages: [...prompt, ...first.response.messages, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request!.approvalId, approved: false, reason: 'not now' }] }],
    });
    expect(counters.weather).toBe(1);
    expect(lastToolOutput(rejected.doGenerateCalls[0]!.prompt)).toEqual({ type: 'execution-denied', reason: 'not now' });
    expect(session.spent).toBe(0.1);
  });

  it("honours a tool's own needsApproval and charges nothing until the human approved", async () => {
    let sent = 0;
    const session = makePolicy({ budget: 1 }).session();
    const tools = wrapTools(
      {
        send_email: tool({
          inputSchema: z.object({ to: z.string() }),
          needsApproval: async ({ to }) => !to.endsWith('@example.com'),
          execute: async () => {
            sent++;
            return 'sent';
          },
        }),
      },
      session,
      { costs: { send_email: 0.3 } },
    );
    const internal = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-1', { to: 'ada@example.com' }), textResult('sent')] }),
      tools,
      stopWhen: isStepCount(3),
      prompt: 'x',
    });
    expect(internal.steps[0]!.content.some((part) => part.type === 'tool-approval-request')).toBe(false);
    expect(sent).toBe(1);

    const external = await generateText({
      model: new MockLanguageModelV4({ doGenerate: [toolCallResult('send_email', 'call-2', { to: 'eve@evil.test' })] }),
      tools,
      stopWhen: isStepCount(3),
      prompt: 'x',
    });
    expect(external.content.some((part) => part.type === 'tool-approval-request')).toBe(true);
    expect(sent).toBe(1);
    expect(session.spent).toBe(0.3);
    expect(toolDecisions(session.report().decisions)).toHaveLength(1);
  });

  it('denies a require_approval tool that has no approval path (called directly) with ApprovalRequiredError', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const session = makePolicy({ approvalRules: [{ tool: 'weather' }] }).session();
    const tools = wrapTools(makeTools(counters), session);
    const error = await Promise.resolve(tools.weather.execute!({ city: 'Paris' }, { toolCallId: 'direct-1', messages: [], context: {} })).catch((e: unknown) => e);
    expect(ApprovalRequiredError.isInstance(error)).toBe(true);
    expect(counters.weather).toBe(0);
  });

  it('keeps streaming tool outputs (async generator execute) working', async () => {
    const session = makePolicy().session();
    const tools = wrapTools(
      {
        progress: tool({
          inputSchema: z.object({}),
          async *execute() {
            yield 'started';
            yield 'finished';
          },
        }),
      },
      session,
    );
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('progress', 'call-1', {}), textResult('done')] });
    await generateText({ model, tools, stopWhen: isStepCount(3), prompt: 'x' });
    expect(lastToolOutput(model.doGenerateCalls[1]!.prompt)).toEqual({ type: 'text', value: 'finished' });
    expect(toolDecisions(session.report().decisions).map((d) => d.decision)).toEqual(['allow']);
  });

  it('lets tools reach the network through session.fetch: a blocked domain is refused before any request', async () => {
    const send = vi.fn(async (_request: RequestInfo | URL) => new Response('secret'));
    const session = makePolicy({ blockedDomains: ['evil.example'] }).session();
    const sessionFetch = session.createFetch({ fetch: send as typeof fetch });
    const tools = wrapTools(
      {
        fetch_page: tool({
          inputSchema: z.object({ url: z.string() }),
          execute: async ({ url }) => (await sessionFetch(url)).text(),
        }),
      },
      session,
    );
    const model = new MockLanguageModelV4({
      doGenerate: [toolCallResult('fetch_page', 'call-1', { url: 'https://api.evil.example/data' }), toolCallResult('fetch_page', 'call-2', { url: 'https://docs.example.org/' }), textResult('ok')],
    });

    await generateText({ model, tools, stopWhen: isStepCount(4), prompt: 'x' });

    expect(send).toHaveBeenCalledTimes(1);
    expect((send.mock.calls[0]![0] as Request).url).toBe('https://docs.example.org/');
    expect((lastToolOutput(model.doGenerateCalls[1]!.prompt) as { value: string }).value).toContain('domain api.evil.example is blocked');
    expect(session.report().policyHits.deniedDomains).toEqual(['api.evil.example']);
  });

  it('fails closed when the policy check itself fails (a budget store that is down)', async () => {
    const counters = { weather: 0, deleteFiles: 0 };
    const store = new InMemoryBudgetStore();
    store.reserve = store.charge = () => {
      throw new Error('redis: connection refused');
    };
    const session = makePolicy({ budget: 1 }).session({ store });
    const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' }), textResult('sorry')] });

    const result = await generateText({ model, tools: wrapTools(makeTools(counters), session, { costs: { weather: 0.1 } }), stopWhen: isStepCount(3), prompt: 'x' });

    expect(counters.weather).toBe(0);
    const toolError = result.steps[0]!.content.find((part) => part.type === 'tool-error');
    expect(AgentPolicyError.isInstance(toolError?.error)).toBe(true);
    expect((lastToolOutput(model.doGenerateCalls[1]!.prompt) as { value: string }).value).toContain('the check failed, so the action is denied: redis: connection refused');
    // Core recorded the failed check as a denial: the audit trail has it.
    expect(session.report().decisions.find((d) => d.action.type === 'tool')).toMatchObject({ decision: 'deny', rule: { section: 'error', message: 'redis: connection refused' } });
  });

  it('rejects bad arguments', () => {
    const tools = makeTools({ weather: 0, deleteFiles: 0 });
    expect(() => wrapTools(tools, {} as never)).toThrow(AgentPolicyError);
    expect(() => wrapTools(tools, makePolicy().session(), { onDeny: 'halt' as never })).toThrow(/onDeny must be/);
  });
});
