/**
 * agentpolicy rules: conditions on tool inputs and requests, call limits, and shadow mode. The same scripted agent
 * traffic runs twice, offline: first under the policy as deployed (`mode: shadow`: decided and recorded, nothing
 * enforced), then with the policy switched to `mode: enforce`. Exits non-zero if any decision is not the expected one.
 */
import { fileURLToPath } from 'node:url';
import { AgentPolicy, type Decision, type PolicySession, type SessionReport } from '@agentpolicy/core';

const shadowPolicy = AgentPolicy.fromYaml(fileURLToPath(new URL('./policy.yaml', import.meta.url)));
const enforcedPolicy = AgentPolicy.fromDict({ ...shadowPolicy.toDocument(), mode: 'enforce' });

interface Step {
  label: string;
  run: (session: PolicySession) => Promise<Decision>;
  /** What enforcing decides, and the rule or limit that decides it. */
  enforced: Decision['decision'];
  by?: string;
}

const steps: Step[] = [
  { label: 'send_email to cfo@ourco.com', run: (s) => s.checkTool('send_email', { input: { to: 'cfo@ourco.com' } }), enforced: 'allow' },
  { label: 'send_email to a@ourco.com.evil.io', run: (s) => s.checkTool('send_email', { input: { to: 'a@ourco.com.evil.io' } }), enforced: 'deny', by: 'rules[0]' },
  { label: 'send_email to [ours, gmail]', run: (s) => s.checkTool('send_email', { input: { to: ['a@ourco.com', 'x@gmail.com'] } }), enforced: 'deny', by: 'rules[0]' },
  { label: 'send_email with no recipient', run: (s) => s.checkTool('send_email', { input: { subject: 'hi' } }), enforced: 'deny', by: 'rules[0]' },
  { label: 'refund $40', run: (s) => s.checkTool('refund', { input: { order: 'A-1', amount: 40 } }), enforced: 'allow' },
  { label: 'refund $250', run: (s) => s.checkTool('refund', { input: { order: 'A-2', amount: 250 } }), enforced: 'require_approval', by: 'rules[1]' },
  { label: 'refund "250" (a string)', run: (s) => s.checkTool('refund', { input: { order: 'A-3', amount: '250' } }), enforced: 'require_approval', by: 'rules[1]' },
  { label: 'refund $250, approved by a human', run: (s) => s.checkTool('refund', { input: { order: 'A-2', amount: 250 }, approval: { approved: true, by: 'ops@ourco.com' } }), enforced: 'allow' },
  { label: 'shell: ls -la', run: (s) => s.checkTool('shell', { input: { command: 'ls -la' } }), enforced: 'allow' },
  { label: 'shell: rm -rf /tmp/build', run: (s) => s.checkTool('shell', { input: { command: 'rm -rf /tmp/build' } }), enforced: 'deny', by: 'rules[2]' },
  { label: "shell: '/bin/rm' -r x", run: (s) => s.checkTool('shell', { input: { command: "'/bin/rm' -r x" } }), enforced: 'deny', by: 'rules[2]' },
  { label: 'shell: echo ok; rm -rf / (not one command)', run: (s) => s.checkTool('shell', { input: { command: 'echo ok; rm -rf /' } }), enforced: 'deny', by: 'rules[2]' },
  { label: 'GET https://api.github.com/repos/o/r', run: (s) => s.checkHttp('https://api.github.com/repos/o/r', { method: 'GET' }), enforced: 'allow' },
  { label: 'POST https://api.github.com/repos/o/r/issues', run: (s) => s.checkHttp('https://api.github.com/repos/o/r/issues', { method: 'POST' }), enforced: 'deny', by: 'rules[3]' },
  ...Array.from({ length: 6 }, (_, i): Step => ({
    label: `search #${i + 1}`,
    run: (s) => s.checkTool('search', { input: { q: `query ${i + 1}` } }),
    enforced: i < 5 ? 'allow' : 'deny',
    ...(i < 5 ? {} : { by: 'limits[0]' }),
  })),
];

const ruleName = (decision: Decision['rule']): string =>
  decision.section === 'rules' || decision.section === 'limits' ? `${decision.section}[${decision.index}]` : decision.section;

let failures = 0;
async function run(policy: AgentPolicy, title: string, shadow: boolean): Promise<SessionReport> {
  console.log(`\n== ${title}`);
  const { report } = await policy.run(async (session) => {
    for (const step of steps) {
      const decision = await step.run(session);
      const would = decision.shadow ? `  (shadow: ${decision.shadow.decision} by ${ruleName(decision.shadow.rule)})` : '';
      console.log(`${decision.decision.padEnd(16)} ${step.label.padEnd(46)} ${decision.reason}${would}`);
      // In shadow everything runs, and the record says what enforcing would have decided; enforced, it is decided.
      const actual = shadow ? (decision.shadow?.decision ?? decision.decision) : decision.decision;
      const by = shadow ? (decision.shadow ? ruleName(decision.shadow.rule) : undefined) : decision.decision === 'allow' ? undefined : ruleName(decision.rule);
      const wrong = actual !== step.enforced || (step.by !== undefined && by !== step.by) || (shadow && decision.decision !== 'allow');
      if (wrong) {
        failures++;
        console.error(`   ✗ expected ${step.enforced}${step.by ? ` by ${step.by}` : ''}${shadow ? ' (recorded as shadow, allowed)' : ''}`);
      }
    }
  });
  return report;
}

const shadowReport = await run(shadowPolicy, 'mode: shadow — decided and recorded, nothing enforced', true);
console.log('\nWhat enforcing would have changed:', JSON.stringify(shadowReport.shadowSummary));
const enforcedReport = await run(enforcedPolicy, 'mode: enforce', false);
console.log('\nEnforced:', JSON.stringify(enforcedReport.decisionSummary));

const expectedChanges = steps.filter((step) => step.enforced !== 'allow').length;
if (shadowReport.shadowSummary.total !== expectedChanges) {
  failures++;
  console.error(`✗ the shadow report counts ${shadowReport.shadowSummary.total} changes, expected ${expectedChanges}`);
}
if (enforcedReport.decisionSummary.allow + expectedChanges !== steps.length) {
  failures++;
  console.error('✗ the enforced run allowed something it should not have');
}
if (failures > 0) {
  console.error(`\n${failures} unexpected decision(s)`);
  process.exit(1);
}
console.log('\nEvery decision as expected: the shadow run predicted exactly what enforcing changed.');
