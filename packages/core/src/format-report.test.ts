import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { formatDecision, formatDecisions, formatReport, ruleId } from './format-report.js';
import { AgentPolicy } from './policy.js';

const policy = () =>
  AgentPolicy.fromDict({
    budget: { max_spend: 1 },
    tools: { block: ['delete_*'] },
    network: { block: ['evil.example.com'] },
    approval: { require_for: [{ tool: 'send_email' }] },
  });

describe('formatting decisions and reports', () => {
  it('one decision per line: outcome, action, cost, rule, reason', async () => {
    const session = policy().session();
    const line = formatDecision(await session.checkTool('delete_prod'));
    expect(line).toBe('deny  tool delete_prod  $0.00  tools.block:delete_*  tool "delete_prod" is blocked by tools.block entry "delete_*"');
  });

  it('a table with aligned columns', async () => {
    const session = policy().session();
    const decisions = [await session.checkTool('search', { cost: 0.25 }), await session.checkHttp('https://evil.example.com/x'), await session.checkTool('send_email')];
    const lines = formatDecisions(decisions).split('\n');
    expect(lines[0]).toMatch(/^decision\s+type\s+action\s+cost\s+rule\s+reason$/);
    expect(lines).toHaveLength(5);
    expect(lines[2]).toMatch(/^allow\s+tool\s+search\s+\$0\.25\s+default\s/);
    expect(lines[3]).toMatch(/^deny\s+http\s+GET https:\/\/evil\.example\.com\/x\s+\$0\.00\s+network\.block:evil\.example\.com\s/);
    const column = (lines[0] as string).indexOf('rule');
    expect(lines.slice(2).every((l) => l.slice(column).match(/^(default|network|approval)/))).toBe(true);
  });

  it('a report reads in ten seconds; console.log(report) prints it, JSON is unchanged', async () => {
    const session = policy().session({ id: 'readable' });
    await session.checkTool('search', { cost: 0.4 });
    await session.checkTool('delete_prod');
    await session.checkTool('send_email');
    await session.checkTool('search', { cost: 0.9 });
    const report = session.report();
    const text = formatReport(report);
    expect(text).toContain('agentpolicy report: session readable');
    expect(text).toMatch(/budget \$1\.00: spent \$0\.40, remaining \$0\.60 \[#+\.+\] 40\.0%/);
    expect(text).toContain('decisions 4: allow 1, deny 2, require_approval 1');
    expect(text).toContain('budget.max_spend');
    expect(text).toContain('denied and escalated (3)');
    expect(inspect(report)).toBe(text);
    expect(inspect(report)).not.toContain('[Object]');
    expect(Object.keys(report)).not.toContain(Symbol.for('nodejs.util.inspect.custom'));
    expect(JSON.parse(JSON.stringify(report)).sessionId).toBe('readable');
    expect({ ...report }).not.toHaveProperty([Symbol.for('nodejs.util.inspect.custom') as unknown as string]);
  });

  it('names every rule section', () => {
    expect(ruleId({ section: 'tools', list: 'allow', entry: null })).toBe('tools.allow');
    expect(ruleId({ section: 'budget', maxSpend: 1, spent: 0, reserved: 0, requested: 2 })).toBe('budget.max_spend');
    expect(ruleId({ section: 'approver', outcome: 'timeout' })).toBe('approver.timeout');
    expect(ruleId({ section: 'input', check: 'url' })).toBe('input.url');
    expect(ruleId({ section: 'session', check: 'ended' })).toBe('session.ended');
    expect(ruleId({ section: 'error', message: 'x' })).toBe('error');
  });
});
