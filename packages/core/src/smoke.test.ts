import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './index.js';

describe('smoke', () => {
  it('decides the seed policy', async () => {
    const policy = AgentPolicy.fromDict({
      budget: { max_spend: 5 },
      tools: { allow: ['search_docs', 'read_file', 'send_email'], block: ['delete_prod_db'] },
      network: { allow: ['docs.python.org'], block: ['twitter.com'] },
      approval: { require_for: [{ tool: 'send_email' }, { cost_gt: 1 }] },
    });
    const session = policy.session();
    expect((await session.checkTool('search_docs')).decision).toBe('allow');
    expect((await session.checkTool('delete_prod_db')).decision).toBe('deny');
    expect((await session.checkTool('send_email')).decision).toBe('require_approval');
    expect((await session.checkHttp('https://api.twitter.com/x')).decision).toBe('deny');
    const results = await Promise.all(Array.from({ length: 1000 }, () => session.checkTool('read_file', { cost: 0.01 })));
    expect(results.filter((d) => d.decision === 'allow')).toHaveLength(500);
    expect(session.report().spent).toBe(5);
  });
});
