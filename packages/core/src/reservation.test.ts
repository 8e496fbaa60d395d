import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';

describe('overruns', () => {
  it('a real cost above the estimate is reported per decision and in the totals', async () => {
    const session = new AgentPolicy({ budget: 1 }).session();
    const held = await session.reserve(0.01, { source: 'job' });
    await held.commit(0.025);
    const fine = await session.reserve(0.01, { source: 'job' });
    await fine.commit(0.004);
    const report = session.report();
    expect(report.decisions[0]?.settlement).toEqual({ status: 'committed', estimated: 0.01, actual: 0.025, overrun: 0.015 });
    expect(report.decisions[1]?.settlement).not.toHaveProperty('overrun');
    expect(report).toMatchObject({ overrun: 0.015, overruns: 1, spent: 0.029 });
  });

  it('once spending passes max_spend, every later call is denied, free ones included', async () => {
    const session = new AgentPolicy({ budget: 0.05, pricing: { m: { input: 1000, output: 1000, maxOutputTokens: 10 } } }).session();
    const call = await session.reserveModelCall({ model: 'm', inputTokens: 10 });
    expect(call.allowed).toBe(true);
    // The provider billed far more than the bound (a model that ignored its limit).
    await call.commit({ inputTokens: 10, outputTokens: 100 });
    expect(session.report().overrun).toBeGreaterThan(0);
    expect(session.spent).toBeGreaterThan(0.05);
    for (const decision of [
      await session.checkTool('free_tool'),
      await session.checkHttp('https://example.com/'),
      await session.checkCost(0, { source: 'x' }),
      (await session.reserveModelCall({ model: 'm', inputTokens: 1, maxOutputTokens: 1 })).decision,
    ]) {
      expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'budget' } });
      expect(decision.reason).toContain('every further call is denied');
    }
    expect(session.exhausted()).toContain('budget is used up');
  });

  it('spending up to max_spend exactly is not an overrun of the budget', async () => {
    const session = new AgentPolicy({ budget: 0.01 }).session();
    const held = await session.reserve(0.005, { source: 'job' });
    await held.commit(0.01);
    expect((await session.checkTool('free_tool')).decision).toBe('allow');
  });
});
