/**
 * @agentpolicy/openai example: a governed OpenAI client. It makes a chat call, streams a reply, is refused a call
 * that would break the budget, and prints the session report. Offline: it talks to a local mock of the API.
 */
import OpenAI from 'openai';
import { AgentPolicy, PolicyDeniedError, type Decision } from '@agentpolicy/core';
import { wrapOpenAI } from '@agentpolicy/openai';
import { startMockServer } from './mock-server.ts';

const server = await startMockServer();

// $0.002 for the whole session; requests may only go to the (local) API host.
const policy = new AgentPolicy({ budget: 0.002, allowedDomains: ['127.0.0.1'] });
const session = policy.session({
  id: 'openai-example',
  onDecision: (d: Decision) => {
    const what = d.action.type === 'cost' ? `${d.action.source} (worst case $${d.action.cost})` : d.action.type === 'http' ? `${d.action.method} ${d.action.domain}` : d.action.name;
    console.log(`  [policy] ${d.decision.padEnd(5)} ${d.action.type.padEnd(4)} ${what}: ${d.reason}`);
  },
});

const openai = wrapOpenAI(new OpenAI({ apiKey: 'sk-offline-example', baseURL: server.baseURL }), session);
const messages = [{ role: 'user' as const, content: 'Why do agents need policies?' }];
const spent = () => `spent $${session.spent} of $0.002`;

console.log('1. A governed chat call');
const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 400 });
console.log(`  reply: ${completion.choices[0]?.message.content} (${completion.usage?.prompt_tokens} in / ${completion.usage?.completion_tokens} out, ${spent()})`);

console.log('\n2. A streamed reply (usage is requested and charged when it arrives)');
const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 400, stream: true });
let text = '';
for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
console.log(`  streamed: ${text} (${spent()})`);

console.log('\n3. A call whose worst case would break the budget');
const before = server.received();
try {
  await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 16_000 });
  console.log('  unexpected: the call was allowed');
} catch (error) {
  if (!PolicyDeniedError.isInstance(error)) throw error;
  console.log(`  refused with ${error.code}: ${error.message}`);
  console.log(`  requests sent for it: ${server.received() - before}`);
}

const report = session.end();
await server.close();

console.log('\nModel calls:');
for (const d of report.decisions) {
  if (d.action.type !== 'cost') continue;
  const cost = d.settlement ? `$${d.settlement.actual} (estimate $${d.settlement.estimated}, ${d.settlement.status})` : 'not charged';
  console.log(`  ${d.decision.padEnd(5)} ${String(d.action.metadata?.['model']).padEnd(24)} ${cost}`);
}

console.log('\nReport:');
console.log(
  JSON.stringify(
    {
      ...report,
      decisions: report.decisions.map((d) => ({
        decision: d.decision,
        type: d.action.type,
        target: d.action.type === 'cost' ? d.action.source : d.action.type === 'http' ? d.action.domain : d.action.name,
        reason: d.reason,
        ...(d.settlement ? { settlement: d.settlement } : {}),
      })),
    },
    null,
    2,
  ),
);
