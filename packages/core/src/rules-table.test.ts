import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { ActionInput } from './action-input.js';
import { AgentPolicy } from './policy.js';
import type { PolicySession } from './session.js';

interface Case {
  name: string;
  policy: string;
  before?: ActionInput[];
  action: ActionInput;
  expect: { decision: string; rule?: Record<string, unknown>; shadow?: Record<string, unknown> };
}

const table = parse(readFileSync(new URL('../test-data/rules-cases.yaml', import.meta.url), 'utf8')) as {
  policies: Record<string, unknown>;
  cases: Case[];
};
const policies = new Map(Object.entries(table.policies).map(([name, document]) => [name, AgentPolicy.fromDict(document)]));

// Every action goes through the session's own check methods (checkTool, checkHttp, checkCost), as a caller would.
function check(session: PolicySession, action: ActionInput) {
  const { type, ...options } = action as ActionInput & Record<string, unknown>;
  if (type === 'tool') {
    const { name, ...rest } = options as { name: string };
    return session.checkTool(name, rest);
  }
  if (type === 'http') {
    const { url, ...rest } = options as { url: string };
    return session.checkHttp(url, rest);
  }
  const { cost, ...rest } = options as { cost: number; source: string };
  return session.checkCost(cost, rest);
}

describe('rules, limits and shadow mode: the table in test-data/rules-cases.yaml', () => {
  it('has at least 100 cases, each with a known policy and a unique name', () => {
    expect(table.cases.length).toBeGreaterThanOrEqual(100);
    expect(new Set(table.cases.map((c) => c.name)).size).toBe(table.cases.length);
    for (const c of table.cases) expect(policies.has(c.policy), c.name).toBe(true);
  });

  it.each(table.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const session = (policies.get(c.policy) as AgentPolicy).session();
    for (const action of c.before ?? []) await check(session, action);
    const decision = await check(session, c.action);
    expect(decision.decision).toBe(c.expect.decision);
    if (c.expect.rule) expect(decision.rule).toMatchObject(c.expect.rule);
    if (c.expect.shadow) expect(decision.shadow).toMatchObject(c.expect.shadow);
    else expect(decision.shadow).toBeUndefined();
  });
});
