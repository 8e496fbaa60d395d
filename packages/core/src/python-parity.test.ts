/**
 * The behaviours of the Python agentpolicy that this design keeps, one test each, named after the Python intent.
 */
import { describe, expect, it, vi } from 'vitest';
import { ApprovalRequiredError, PolicyDeniedError, PolicyValidationError } from './errors.js';
import { AgentPolicy } from './policy.js';

const policy = () =>
  new AgentPolicy({
    budget: '$5.00',
    allowedTools: ['search_docs', 'read_file', 'send_email'],
    blockedTools: ['delete_prod_db'],
    allowedDomains: ['docs.python.org'],
    blockedDomains: ['twitter.com'],
    approvalRules: [{ tool: 'send_email' }, { costGt: 1 }],
  });

describe('parity with the Python agentpolicy', () => {
  describe('money parsing', () => {
    it.each([['$5.00'], ['5.00'], ['5'], [5]])('budget %j is five dollars', (budget) => {
      expect(new AgentPolicy({ budget }).normalized.budget?.maxSpendNanos).toBe(5_000_000_000);
    });
    it.each([['abc'], ['-5'], ['$'], ['5,00']])('budget %j is rejected', (budget) => {
      expect(() => new AgentPolicy({ budget })).toThrow(PolicyValidationError);
    });
  });

  it('a tool both allowed and blocked is a conflict', () => {
    expect(() => new AgentPolicy({ allowedTools: ['x'], blockedTools: ['x'] })).toThrow(/both allowed and blocked/);
  });

  it('a domain both allowed and blocked is a conflict', () => {
    expect(() => new AgentPolicy({ allowedDomains: ['a.com'], blockedDomains: ['a.com'] })).toThrow(/both allowed and blocked/);
  });

  it('allowed tool → allow; blocked tool → deny; unlisted tool → deny', async () => {
    const session = policy().session();
    expect((await session.checkTool('search_docs')).decision).toBe('allow');
    expect((await session.checkTool('delete_prod_db')).decision).toBe('deny');
    expect((await session.checkTool('rm_rf')).decision).toBe('deny');
  });

  it('allowed domain → allow; blocked domain → deny; unlisted domain → deny', async () => {
    const session = policy().session();
    expect((await session.checkHttp('https://docs.python.org/3/library')).decision).toBe('allow');
    expect((await session.checkHttp('https://twitter.com/home')).decision).toBe('deny');
    expect((await session.checkHttp('https://example.com/')).decision).toBe('deny');
  });

  it('no tool list means every tool not blocked is allowed', async () => {
    const session = new AgentPolicy({ blockedTools: ['x'] }).session();
    expect((await session.checkTool('anything')).decision).toBe('allow');
  });

  it('budget denial once the budget is spent', async () => {
    const session = policy().session();
    expect((await session.checkTool('search_docs', { cost: 0.9 })).decision).toBe('allow');
    for (let i = 0; i < 4; i++) await session.checkTool('read_file', { cost: 1 });
    const denied = await session.checkTool('read_file', { cost: 0.2 });
    expect(denied.decision).toBe('deny');
    expect(denied.reason).toMatch(/exceeds the remaining budget \$0\.10/);
  });

  it('approval required, then retry with approved: true is allowed', async () => {
    const session = policy().session();
    const first = await session.checkTool('send_email');
    expect(first.decision).toBe('require_approval');
    const retry = await session.checkTool('send_email', { approved: true });
    expect(retry).toMatchObject({ decision: 'allow', approved: true });
  });

  it('cost over the approval threshold requires approval', async () => {
    const session = policy().session();
    expect((await session.checkTool('read_file', { cost: 1.5 })).decision).toBe('require_approval');
  });

  it('the report has the documented fields', async () => {
    const session = policy().session();
    await session.checkTool('search_docs', { cost: 0.1 });
    const report = session.report();
    for (const key of ['sessionId', 'budget', 'spent', 'remaining', 'decisionSummary', 'costSummary', 'policyHits', 'durationSeconds', 'decisions', 'policyHash']) {
      expect(report).toHaveProperty(key);
    }
    expect(report.policyHits).toEqual({ deniedTools: [], deniedDomains: [], approvalRequired: [] });
  });

  it('evaluate records nothing', async () => {
    const session = policy().session();
    session.evaluate({ type: 'tool', name: 'search_docs', cost: 1 });
    session.evaluate({ type: 'tool', name: 'delete_prod_db' });
    expect(session.report().decisions).toHaveLength(0);
    expect(session.spent).toBe(0);
  });

  it('guardTool never runs a denied function, and raises the typed errors', async () => {
    const session = policy().session();
    const fn = vi.fn(() => 'ran');
    await expect(session.guardTool(fn, { name: 'delete_prod_db' })()).rejects.toBeInstanceOf(PolicyDeniedError);
    await expect(session.guardTool(fn, { name: 'send_email' })()).rejects.toBeInstanceOf(ApprovalRequiredError);
    expect(fn).not.toHaveBeenCalled();
    await expect(session.guardTool(fn, { name: 'search_docs' })()).resolves.toBe('ran');
  });
});
