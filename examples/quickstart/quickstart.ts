/**
 * agentpolicy quickstart: load the seed policy, run a small scripted agent session against it and print what was
 * decided and why. Offline; no model is called.
 */
import { fileURLToPath } from 'node:url';
import { AgentPolicy, ApprovalRequiredError, PolicyDeniedError, formatDecisions, type Decision } from '@agentpolicy/core';

const policy = AgentPolicy.fromYaml(fileURLToPath(new URL('./policy.yaml', import.meta.url)));

const show = (label: string, d: Decision) =>
  console.log(`${d.decision.padEnd(16)} ${label.padEnd(42)} ${d.reason}`);

const { report } = await policy.run(
  async (session) => {
    // Tools: allowed, blocked (also as a look-alike), not on the allow-list.
    show('search_docs ($0.02)', await session.checkTool('search_docs', { cost: 0.02 }));
    show('delete_prod_db', await session.checkTool('delete_prod_db'));
    show('DELETE_PROD_DB (case variant)', await session.checkTool('DELETE_PROD_DB'));
    show('run_shell (not allow-listed)', await session.checkTool('run_shell'));

    // Network: the allow-listed host, a blocked subdomain, a non-http scheme.
    show('GET https://docs.python.org/3/', await session.checkHttp('https://docs.python.org/3/'));
    show('GET https://api.twitter.com/2/tweets', await session.checkHttp('https://api.twitter.com/2/tweets'));
    show('GET file:///etc/passwd', await session.checkHttp('file:///etc/passwd'));

    // Approval: send_email needs a human; the retry carries the approval.
    show('send_email', await session.checkTool('send_email'));
    show('send_email (approved: true)', await session.checkTool('send_email', { approved: true, cost: 0.01 }));

    // Anything over $1 needs approval too; over the remaining budget is denied whatever the approval.
    show('read_file ($1.50)', await session.checkTool('read_file', { cost: 1.5 }));
    show('read_file ($9.00, approved)', await session.checkTool('read_file', { cost: 9, approved: true }));

    // A guarded tool never runs when denied.
    const dropDb = session.guardTool(async () => 'dropped!', { name: 'delete_prod_db' });
    await dropDb().catch((error: unknown) => {
      if (PolicyDeniedError.isInstance(error)) console.log(`guardTool refused: ${error.message}`);
    });
    const email = session.guardTool(async (to: string) => `sent to ${to}`, { name: 'send_email' });
    await email('ops@example.com').catch((error: unknown) => {
      if (ApprovalRequiredError.isInstance(error)) console.log(`guardTool needs approval: ${error.message}`);
    });

    // A model call priced from the catalog: reserve the worst case, then commit the real usage.
    const call = await session.reserveModelCall({ model: 'gpt-4o-mini', provider: 'openai', inputTokens: 2_000, maxOutputTokens: 500 });
    show(`gpt-4o-mini (reserved $${call.estimate})`, call.decision);
    await call.commit({ inputTokens: 2_000, outputTokens: 180 });
  },
  { id: 'quickstart' },
);

// Every decision as a table, then the report as a person reads it (console.log prints formatReport's text; the
// report is still a plain object for JSON.stringify). renderHtmlReport(report) gives the same as one HTML page.
console.log(`\nDecisions:\n${formatDecisions(report.decisions)}\n`);
console.log(report);
