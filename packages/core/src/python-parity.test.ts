/**
 * The behaviours of the Python agentpolicy that this design keeps, one test each, named after the Python intent.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import type { ActionType, Decision } from './decision.js';
import { ApprovalRequiredError, PolicyDeniedError, PolicyValidationError } from './errors.js';
import { parseMoney } from './money.js';
import { AgentPolicy } from './policy.js';
import type { SessionReport } from './audit-trail.js';

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

// ---------------------------------------------------------------------------------------------------------------
// Policy files in the Python package's format, loaded unchanged (fixtures/python-agentpolicy: `policy.yaml` has the
// entries of its examples/policy.yaml, `readme-policy.yaml` those of its README's quick start), and the sequences of its README,
// examples/basic.py and CLI demo run here with the control flow they have in Python: `enforce` throws where the
// Python `check_*` raises. Each `python` constant is what agentpolicy 0.1.1 (with agentbudget 0.3.0) reports for the
// same sequence, its report reduced to the fields both have.
// ---------------------------------------------------------------------------------------------------------------

type Outcome = 'allow' | 'PolicyDenied' | 'ApprovalRequired';

async function outcome(check: Promise<unknown>): Promise<Outcome> {
  try {
    await check;
    return 'allow';
  } catch (error) {
    if (PolicyDeniedError.isInstance(error)) return 'PolicyDenied';
    if (ApprovalRequiredError.isInstance(error)) return 'ApprovalRequired';
    throw error;
  }
}

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/python-agentpolicy/${name}`, import.meta.url));
const TYPES: readonly ActionType[] = ['tool', 'http', 'cost'];

/** The report in the Python shape, computed from the decisions the way the migration guide shows. */
function pythonView(report: SessionReport) {
  const total = (type: ActionType) => {
    const counts = report.decisionSummary.byActionType[type];
    return counts.allow + counts.deny + counts.require_approval;
  };
  const seen = TYPES.filter((type) => total(type) > 0);
  const allowedTypes = TYPES.filter((type) => report.decisionSummary.byActionType[type].allow > 0);
  const target = (decision: Decision) =>
    decision.action.type === 'tool' ? decision.action.name : decision.action.type === 'http' ? decision.action.domain : 'cost';
  return {
    budget: report.budget ?? 0,
    spent: report.spent,
    remaining: report.remaining ?? 0,
    decision_summary: {
      allow: report.decisionSummary.allow,
      deny: report.decisionSummary.deny,
      require_approval: report.decisionSummary.require_approval,
      by_action_type: Object.fromEntries(seen.map((type) => [type, total(type)])),
    },
    cost_summary: {
      by_action_type: Object.fromEntries(allowedTypes.map((type) => [type, report.costSummary.allowed[type]])),
      attempted_by_action_type: Object.fromEntries(seen.map((type) => [type, report.costSummary.attempted[type]])),
    },
    policy_hits: {
      denied_tools: report.decisions.filter((d) => d.decision === 'deny' && d.action.type === 'tool').map(target),
      denied_domains: report.decisions.filter((d) => d.decision === 'deny' && d.action.type === 'http').map(target),
      approval_required: report.decisions.filter((d) => d.decision === 'require_approval').map(target),
    },
  };
}

describe('the Python README, examples and CLI demo, on the Python example files unchanged', () => {
  it('both example files load as they are, and mean the same policy as the quick start here', () => {
    const example = AgentPolicy.fromYaml(fixture('policy.yaml'));
    const readme = AgentPolicy.fromYaml(fixture('readme-policy.yaml'));
    expect(readme.toDocument()).toEqual(AgentPolicy.fromYaml(fileURLToPath(new URL('../../../examples/quickstart/policy.yaml', import.meta.url))).toDocument());
    expect(example.toDocument().network).toEqual({ allow: ['docs.python.org', 'api.openai.com'], block: ['twitter.com'] });
    expect([example.warnings, readme.warnings]).toEqual([[], []]);
  });

  it('README quick start: search, docs request, e-mail needing approval, approved retry', async () => {
    const policy = AgentPolicy.fromYaml(fixture('readme-policy.yaml'));
    const { result, report } = await policy.run(async (session) => [
      await outcome(session.enforce({ type: 'tool', name: 'search_docs', cost: 0.02 })),
      await outcome(session.enforce({ type: 'http', url: 'https://docs.python.org/3/', cost: 0.01 })),
      await outcome(session.enforce({ type: 'tool', name: 'send_email' })),
      await outcome(session.enforce({ type: 'tool', name: 'send_email', approved: true })),
    ]);
    expect(result).toEqual(['allow', 'allow', 'ApprovalRequired', 'allow']);
    expect(pythonView(report)).toEqual({
      budget: 5, spent: 0.03, remaining: 4.97,
      decision_summary: { allow: 3, deny: 0, require_approval: 1, by_action_type: { tool: 3, http: 1 } },
      cost_summary: { by_action_type: { tool: 0.02, http: 0.01 }, attempted_by_action_type: { tool: 0.02, http: 0.01 } },
      policy_hits: { denied_tools: [], denied_domains: [], approval_required: ['send_email'] },
    });
    expect(report.policyHits).toEqual({ deniedTools: [], deniedDomains: [], approvalRequired: ['send_email'] });
  });

  it('examples/basic.py: adds a guarded read_file and a blocked request', async () => {
    const policy = AgentPolicy.fromYaml(fixture('policy.yaml'));
    const { result, report } = await policy.run(async (session) => {
      const readFile = session.guardTool((path: string) => `reading ${path}`, { name: 'read_file' });
      return [
        await outcome(session.enforce({ type: 'tool', name: 'search_docs', cost: 0.02 })),
        await outcome(session.enforce({ type: 'http', url: 'https://docs.python.org/3/', cost: 0.01 })),
        await readFile('README.md'),
        await outcome(session.enforce({ type: 'http', url: 'https://twitter.com' })),
        await outcome(session.enforce({ type: 'tool', name: 'send_email' })),
        await outcome(session.enforce({ type: 'tool', name: 'send_email', approved: true })),
      ];
    });
    expect(result).toEqual(['allow', 'allow', 'reading README.md', 'PolicyDenied', 'ApprovalRequired', 'allow']);
    expect(pythonView(report)).toEqual({
      budget: 5, spent: 0.03, remaining: 4.97,
      decision_summary: { allow: 4, deny: 1, require_approval: 1, by_action_type: { tool: 4, http: 2 } },
      cost_summary: { by_action_type: { tool: 0.02, http: 0.01 }, attempted_by_action_type: { tool: 0.02, http: 0.01 } },
      policy_hits: { denied_tools: [], denied_domains: ['twitter.com'], approval_required: ['send_email'] },
    });
  });

  it('README "Python API": the policy built in code; a tool outside the allow-list and a large cost', async () => {
    const policy = new AgentPolicy({
      budget: '$5.00',
      allowedTools: ['search_docs', 'read_file'],
      blockedDomains: ['twitter.com'],
      approvalRules: [{ tool: 'send_email' }, { costGt: 1.0 }],
    });
    const { result, report } = await policy.run(async (session) => [
      await outcome(session.enforce({ type: 'tool', name: 'search_docs', cost: 0.02 })),
      await outcome(session.enforce({ type: 'http', url: 'https://docs.python.org/3/', cost: 0.01 })),
      await outcome(session.enforce({ type: 'tool', name: 'send_email' })),
      await outcome(session.enforce({ type: 'cost', cost: 1.5, source: 'llm' })),
    ]);
    expect(result).toEqual(['allow', 'allow', 'PolicyDenied', 'ApprovalRequired']);
    expect(pythonView(report)).toEqual({
      budget: 5, spent: 0.03, remaining: 4.97,
      decision_summary: { allow: 2, deny: 1, require_approval: 1, by_action_type: { tool: 2, http: 1, cost: 1 } },
      cost_summary: { by_action_type: { tool: 0.02, http: 0.01 }, attempted_by_action_type: { tool: 0.02, http: 0.01, cost: 1.5 } },
      policy_hits: { denied_tools: ['send_email'], denied_domains: [], approval_required: ['cost'] },
    });
    // Here the lists name the cost's source, not the word "cost".
    expect(report.policyHits).toEqual({ deniedTools: ['send_email'], deniedDomains: [], approvalRequired: ['llm'] });
  });

  it('README policy types: budget, tools, network, approval', async () => {
    const budget = await new AgentPolicy({ budget: '$3.00' }).run(async (session) => [
      await outcome(session.enforce({ type: 'cost', cost: 1.25, source: 'llm' })),
      await outcome(session.enforce({ type: 'cost', cost: 1.25, source: 'llm' })),
      await outcome(session.enforce({ type: 'cost', cost: 1.25, source: 'llm' })),
    ]);
    expect(budget.result).toEqual(['allow', 'allow', 'PolicyDenied']);
    expect(pythonView(budget.report)).toMatchObject({ budget: 3, spent: 2.5, remaining: 0.5, cost_summary: { by_action_type: { cost: 2.5 }, attempted_by_action_type: { cost: 3.75 } } });

    const tools = await new AgentPolicy({ allowedTools: ['search_docs', 'read_file'], blockedTools: ['delete_prod_db'] }).run(async (session) => {
      const out: Outcome[] = [];
      for (const name of ['search_docs', 'read_file', 'delete_prod_db', 'send_email']) out.push(await outcome(session.enforce({ type: 'tool', name })));
      return out;
    });
    expect(tools.result).toEqual(['allow', 'allow', 'PolicyDenied', 'PolicyDenied']);

    const network = await new AgentPolicy({ allowedDomains: ['docs.python.org', 'api.openai.com'], blockedDomains: ['twitter.com', 'facebook.com'] }).run(async (session) => {
      const out: Outcome[] = [];
      for (const url of ['https://docs.python.org/3/', 'https://api.openai.com/v1/models', 'https://twitter.com/home', 'https://facebook.com/', 'https://example.com/']) {
        out.push(await outcome(session.enforce({ type: 'http', url })));
      }
      return out;
    });
    expect(network.result).toEqual(['allow', 'allow', 'PolicyDenied', 'PolicyDenied', 'PolicyDenied']);

    const approval = await new AgentPolicy({ approvalRules: [{ tool: 'send_email' }, { domain: 'api.stripe.com' }, { costGt: 1.0 }] }).run(async (session) => [
      await outcome(session.enforce({ type: 'tool', name: 'send_email' })),
      await outcome(session.enforce({ type: 'http', url: 'https://api.stripe.com/v1/charges' })),
      await outcome(session.enforce({ type: 'cost', cost: 1.01, source: 'llm' })),
      await outcome(session.enforce({ type: 'cost', cost: 1.0, source: 'llm' })),
      await outcome(session.enforce({ type: 'tool', name: 'search_docs' })),
      await outcome(session.enforce({ type: 'http', url: 'https://api.stripe.com/v1/charges', approved: true })),
    ]);
    expect(approval.result).toEqual(['ApprovalRequired', 'ApprovalRequired', 'ApprovalRequired', 'allow', 'allow', 'allow']);
    expect(pythonView(approval.report)).toEqual({
      budget: 0, spent: 1, remaining: 0,
      decision_summary: { allow: 3, deny: 0, require_approval: 3, by_action_type: { tool: 2, http: 2, cost: 2 } },
      cost_summary: { by_action_type: { cost: 1, tool: 0, http: 0 }, attempted_by_action_type: { tool: 0, http: 0, cost: 2.01 } },
      policy_hits: { denied_tools: [], denied_domains: [], approval_required: ['send_email', 'api.stripe.com', 'cost'] },
    });
  });

  it('the Python CLI demo\'s three actions, in a session named pol_demo', async () => {
    const policy = AgentPolicy.fromYaml(fixture('policy.yaml'));
    const { report } = await policy.run(
      async (session) => {
        for (const action of [
          { type: 'tool', name: 'search_docs', cost: 0.02 },
          { type: 'http', url: 'https://docs.python.org/3/', cost: 0.01 },
          { type: 'tool', name: 'send_email' },
        ] as const) {
          await outcome(session.enforce(action));
        }
      },
      { id: 'pol_demo' },
    );
    expect(report.sessionId).toBe('pol_demo');
    expect(pythonView(report)).toEqual({
      budget: 5, spent: 0.03, remaining: 4.97,
      decision_summary: { allow: 2, deny: 0, require_approval: 1, by_action_type: { tool: 2, http: 1 } },
      cost_summary: { by_action_type: { tool: 0.02, http: 0.01 }, attempted_by_action_type: { tool: 0.02, http: 0.01 } },
      policy_hits: { denied_tools: [], denied_domains: [], approval_required: ['send_email'] },
    });
  });
});

describe('the rest of the Python test suite, translated', () => {
  it('parse_money', () => {
    expect([parseMoney('$5.00'), parseMoney('5'), parseMoney(0)]).toEqual([{ ok: true, nanos: 5e9 }, { ok: true, nanos: 5e9 }, { ok: true, nanos: 0 }]);
    expect(parseMoney(-1).ok).toBe(false);
  });

  it('report shape', async () => {
    const policy = new AgentPolicy({ budget: '$1.00', blockedTools: ['delete_prod_db'] });
    const { report } = await policy.run(async (session) => {
      await session.enforce({ type: 'tool', name: 'search_docs', cost: 0.1 });
      await expect(session.enforce({ type: 'tool', name: 'delete_prod_db' })).rejects.toBeInstanceOf(PolicyDeniedError);
    }, { id: 'pol_test' });
    expect(report).toMatchObject({ sessionId: 'pol_test', spent: 0.1, decisionSummary: { allow: 1, deny: 1, byActionType: { tool: { allow: 1, deny: 1 } } } });
    expect(report.costSummary.allowed.tool).toBe(0.1);
    expect(report.policyHits.deniedTools).toEqual(['delete_prod_db']);
  });

  it('budget tracks several allowed actions; denial once spent', async () => {
    const { report } = await new AgentPolicy({ budget: '$1.00' }).run(async (session) => {
      await session.enforce({ type: 'tool', name: 'search_docs', cost: 0.2 });
      await session.enforce({ type: 'http', url: 'https://docs.python.org/3/', cost: 0.3 });
    });
    expect([report.spent, report.remaining]).toEqual([0.5, 0.5]);
    const session = new AgentPolicy({ budget: '$0.05' }).session();
    await session.enforce({ type: 'cost', cost: 0.03, source: 'llm' });
    await expect(session.enforce({ type: 'cost', cost: 0.03, source: 'llm' })).rejects.toBeInstanceOf(PolicyDeniedError);
  });

  it('allowed and attempted cost are summarised apart', async () => {
    const { report } = await new AgentPolicy({ blockedDomains: ['twitter.com'], approvalRules: [{ costGt: 1 }] }).run(async (session) => {
      await session.enforce({ type: 'tool', name: 'search_docs', cost: 0.2 });
      await expect(session.enforce({ type: 'http', url: 'https://twitter.com', cost: 0.4 })).rejects.toBeInstanceOf(PolicyDeniedError);
      await expect(session.enforce({ type: 'cost', cost: 2, source: 'llm' })).rejects.toBeInstanceOf(ApprovalRequiredError);
    });
    expect(report.spent).toBe(0.2);
    expect(report.costSummary.allowed).toMatchObject({ tool: 0.2, http: 0, cost: 0 });
    expect(report.costSummary.attempted).toMatchObject({ tool: 0.2, http: 0.4, cost: 2 });
  });

  it('from_dict, and the shapes it rejects', () => {
    const policy = AgentPolicy.fromDict({
      budget: { max_spend: 2.0 },
      tools: { allow: ['search_docs'] },
      network: { block: ['twitter.com'] },
      approval: { require_for: [{ tool: 'search_docs', cost_gt: 1.0 }] },
    });
    expect(policy.toDocument().budget?.max_spend).toBe(2);
    for (const bad of [
      { tools: ['search_docs'] },
      { approval: { require_for: 'send_email' } },
      { approval: { require_for: ['send_email'] } },
      { tools: { allow: 'search_docs' } },
      { tools: { allow: ['search_docs', 123] } },
      { network: { block: 'twitter.com' } },
    ]) {
      expect(() => AgentPolicy.fromDict(bad)).toThrow(PolicyValidationError);
    }
    expect(() => AgentPolicy.fromYamlString('- just\n- a\n- list\n')).toThrow(PolicyValidationError);
  });

  it('a blocked domain names network.block; an approval names its rule (0-based here, "rule #1" in Python)', async () => {
    const session = new AgentPolicy({ blockedDomains: ['twitter.com'], approvalRules: [{ tool: 'send_email' }] }).session();
    await expect(session.enforce({ type: 'http', url: 'https://twitter.com/agentbudget' })).rejects.toThrow(/network\.block/);
    const error = await session.enforce({ type: 'tool', name: 'send_email' }).catch((caught: unknown) => caught);
    expect(ApprovalRequiredError.isInstance(error)).toBe(true);
    expect((error as ApprovalRequiredError).message).toContain('approval.require_for[0]');
    expect((error as ApprovalRequiredError).decision.rule).toMatchObject({ section: 'approval', index: 0 });
    expect((await session.enforce({ type: 'tool', name: 'send_email', approved: true })).decision).toBe('allow');
  });
});

describe('where this port decides or reports differently, on purpose (each in docs/migrating-from-python.md)', () => {
  it('checkTool returns a deny instead of raising; enforce raises like check_tool', async () => {
    const session = policy().session();
    expect((await session.checkTool('delete_prod_db')).decision).toBe('deny');
    await expect(session.enforce({ type: 'tool', name: 'delete_prod_db' })).rejects.toBeInstanceOf(PolicyDeniedError);
  });

  it('max_spend 0 is a zero budget (Python: no budget)', async () => {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 0 } }).session();
    expect((await session.checkCost(100, { source: 'llm' })).decision).toBe('deny');
  });

  it('money is exact: 0.10 + 0.20 fits $0.30 (Python denies the second: "$0.3000 would exceed $0.30")', async () => {
    const session = new AgentPolicy({ budget: '0.30' }).session();
    expect((await session.checkCost(0.1, { source: 'llm' })).decision).toBe('allow');
    expect((await session.checkCost(0.2, { source: 'llm' })).decision).toBe('allow');
  });

  it('policyHits lists each name once, and only denials by the tools or network section', async () => {
    const session = new AgentPolicy({ budget: '$1.00', blockedTools: ['delete_prod_db'], approvalRules: [{ tool: 'send_email' }] }).session();
    await session.checkTool('delete_prod_db');
    await session.checkTool('delete_prod_db');
    await session.checkTool('search', { cost: 5 });
    await session.checkTool('send_email', { approved: true });
    expect(session.report().policyHits).toEqual({ deniedTools: ['delete_prod_db'], deniedDomains: [], approvalRequired: ['send_email'] });
  });

  it('blocks cover subdomains, ports, userinfo and trailing dots; allow entries ignore ports', async () => {
    const session = new AgentPolicy({ allowedDomains: ['docs.python.org'], blockedDomains: ['twitter.com'] }).session();
    for (const url of ['https://mobile.twitter.com/', 'https://twitter.com:443/', 'https://u@twitter.com/', 'https://twitter.com./']) {
      expect((await session.checkHttp(url)).rule).toMatchObject({ section: 'network', list: 'block' });
    }
    expect((await session.checkHttp('https://docs.python.org:443/3/')).decision).toBe('allow');
    expect((await session.checkHttp('ftp://docs.python.org/')).rule).toEqual({ section: 'input', check: 'url' });
  });

  it('tool blocks catch case variants; * is a pattern in tool lists', async () => {
    const session = new AgentPolicy({ allowedTools: ['search_*'], blockedTools: ['delete_prod_db'] }).session();
    expect((await session.checkTool('DELETE_PROD_DB')).decision).toBe('deny');
    expect((await session.checkTool('search_docs')).decision).toBe('allow');
  });

  it('guardTool keeps the charge when the function throws, as Python does, unless the error says nothing was done (4xx)', async () => {
    const session = new AgentPolicy({ budget: '$1.00' }).session();
    const flaky = session.guardTool(() => {
      throw new Error('boom');
    }, { name: 'flaky', cost: 0.4 });
    await expect(flaky()).rejects.toThrow('boom');
    expect(session.spent).toBe(0.4);
    const refusing = session.guardTool(() => {
      throw Object.assign(new Error('bad input'), { status: 400 });
    }, { name: 'flaky', cost: 0.4 });
    await expect(refusing()).rejects.toThrow('bad input');
    expect(session.spent).toBe(0.4);
  });

  it('ids: a UUID session id by default, decisions numbered within it', async () => {
    const session = policy().session();
    expect(session.id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await session.checkTool('search_docs')).id).toBe(`${session.id}:1`);
    expect(policy().session({ id: 'pol_0123456789ab' }).id).toBe('pol_0123456789ab');
  });
});
