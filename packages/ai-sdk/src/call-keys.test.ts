import { InMemoryBudgetStore, InMemoryCallKeyStore } from '@agentpolicy/core';
import { generateText, isStepCount, tool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { checkToolCall } from './check-tool-call.js';
import { makePolicy, textResult, toolCallResult } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

// Two processes running one session (same id), sharing the budget and the call keys: a worker retried elsewhere.
function twoProcesses() {
  const store = new InMemoryBudgetStore();
  const callKeys = new InMemoryCallKeyStore();
  const policy = makePolicy({ budget: 1, allowedTools: ['weather'] });
  const open = () => policy.session({ id: 'run-1', budgetKey: 'tenant', store, callKeys });
  const budget = () => store.snapshot({ key: 'tenant', period: 'session' });
  return { a: open(), b: open(), spent: () => budget().spent / 1e9, reserved: () => budget().reserved / 1e9 };
}

const weather = (runs: string[], who: string) => ({
  weather: tool({ inputSchema: z.object({ city: z.string() }), execute: async ({ city }) => (runs.push(who), `21C in ${city}`) }),
});

async function run(session: ReturnType<typeof twoProcesses>['a'], runs: string[], who: string) {
  const model = new MockLanguageModelV4({ doGenerate: [toolCallResult('weather', 'call-1', { city: 'Paris' }), textResult('done')] });
  return generateText({ model, tools: wrapTools(weather(runs, who), session, { costs: { weather: 0.05 } }), stopWhen: isStepCount(3), prompt: 'Weather?' });
}

describe('tool calls with call keys shared by the processes of one session', () => {
  it('a call decided in a process that died before running it runs once in the next, on the first decision and its money', async () => {
    const { a, b, spent, reserved } = twoProcesses();
    const held = await checkToolCall(a, { toolName: 'weather', toolCallId: 'call-1', input: { city: 'Paris' } }, 0.05, undefined, true);
    expect(held.decision.decision).toBe('allow');
    // A dies here. B replays the same step.
    const runs: string[] = [];
    await run(b, runs, 'b');
    expect(runs).toEqual(['b']);
    // A's lease was settled by B's run: charged once, nothing left held.
    expect(spent()).toBeCloseTo(0.05, 9);
    expect(reserved()).toBe(0);
    expect(b.report().decisions).toHaveLength(0);
  });

  it('a call id that already ran in one process is decided and charged again in another, never run free', async () => {
    const { a, b, spent } = twoProcesses();
    const runs: string[] = [];
    await run(a, runs, 'a');
    await run(b, runs, 'b');
    expect(runs).toEqual(['a', 'b']);
    expect(spent()).toBeCloseTo(0.1, 9);
  });
});
