import type { AgentPolicy } from './policy.js';
import type { SessionReport } from './audit-trail.js';

/**
 * A sample session: every tool the policy names, a tool it does not, each listed domain, a request to an unlisted
 * host, a small and a large cost and a priced model call. Approvals are answered "no" by a scripted approver.
 */
export async function runDemo(policy: AgentPolicy): Promise<SessionReport> {
  const { report } = await policy.run(
    async (session) => {
      const document = policy.toDocument();
      const tools = new Set([...(document.tools?.allow ?? []), ...(document.tools?.block ?? []), 'unlisted_tool']);
      for (const tool of tools) {
        if (tool.includes('*')) continue;
        await session.checkTool(tool, { cost: 0.01, metadata: { demo: true } });
      }
      const domains = new Set([...(document.network?.allow ?? []), ...(document.network?.block ?? []), 'example.org']);
      for (const domain of domains) {
        const host = domain.startsWith('*.') ? `www.${domain.slice(2)}` : domain.includes(':') ? `[${domain.replace(/^\[|\]$/g, '')}]` : domain;
        await session.checkHttp(`https://${host}/`, { metadata: { demo: true } });
      }
      await session.checkCost(0.5, { source: 'demo:small-cost' });
      await session.checkCost(2, { source: 'demo:large-cost' });
      const call = await session.reserveModelCall({ model: 'gpt-4o-mini', provider: 'openai', inputTokens: 1200, maxOutputTokens: 400 });
      if (call.allowed) await call.commit({ inputTokens: 1200, outputTokens: 250 });
    },
    { id: 'demo', approver: () => ({ approved: false, by: 'demo', reason: 'scripted demo approver says no' }) },
  );
  return report;
}
