// An offline AI SDK agent under agentpolicy: a scripted mock model calls an allowed tool, a blocked tool and a tool
// that needs a human's approval; the run pauses for the approval, resumes, and prints the session report.
// Run: cd examples/ai-sdk && node agent.ts
import { AgentPolicy, type Decision } from '@agentpolicy/core';
import { policyMiddleware, policyToolApproval, wrapTools } from '@agentpolicy/ai-sdk';
import { generateText, isStepCount, tool, wrapLanguageModel, type ModelMessage } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { z } from 'zod';

const policy = AgentPolicy.fromDict({
  version: 1,
  budget: { max_spend: 0.5 },
  tools: { block: ['delete_*'] },
  approval: { require_for: [{ tool: 'send_email' }] },
  // The mock model's price, USD per million tokens, and its output limit (real models take both from the catalogs).
  pricing: { 'mock-model-id': { input: 2.5, output: 10, max_output_tokens: 4096 } },
});

function describe(decision: Decision): string {
  const action = decision.action;
  const what = action.type === 'tool' ? `tool ${action.name}` : action.type === 'cost' ? action.source : `request to ${action.domain}`;
  const usd = decision.settlement ? `reserved $${decision.settlement.estimated}` : `$${action.cost}`;
  return `${decision.decision.padEnd(16)} ${what} (${usd}): ${decision.reason}`;
}

const session = policy.session({ id: 'example-ai-sdk', onDecision: (decision) => console.log(`  [policy] ${describe(decision)}`) });

const deleted: string[] = [];
const tools = wrapTools(
  {
    search_docs: tool({
      description: 'Search the company documents',
      inputSchema: z.object({ query: z.string() }),
      execute: async ({ query }) => `Q3 report found for "${query}": revenue up 12%.`,
    }),
    delete_records: tool({
      description: 'Delete database records',
      inputSchema: z.object({ table: z.string() }),
      execute: async ({ table }) => {
        deleted.push(table);
        return `Deleted every row of ${table}.`;
      },
    }),
    send_email: tool({
      description: 'Send an email',
      inputSchema: z.object({ to: z.string(), body: z.string() }),
      execute: async ({ to }) => `Email sent to ${to}.`,
    }),
  },
  session,
  { costs: { search_docs: 0.01, send_email: 0.02 } },
);

const usage = (input: number, output: number) => ({
  inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: undefined },
  outputTokens: { total: output, text: output, reasoning: 0 },
});
const call = (toolCallId: string, toolName: string, input: unknown) => ({
  content: [{ type: 'tool-call' as const, toolCallId, toolName, input: JSON.stringify(input) }],
  finishReason: { unified: 'tool-calls' as const, raw: 'tool_calls' },
  usage: usage(400, 40),
  warnings: [],
});

// The script the mock model follows, one answer per model call.
const mockModel = new MockLanguageModelV4({
  doGenerate: [
    call('call-1', 'search_docs', { query: 'Q3 report' }),
    call('call-2', 'delete_records', { table: 'audit_log' }),
    call('call-3', 'send_email', { to: 'ada@example.com', body: 'Q3: revenue up 12%.' }),
    { content: [{ type: 'text', text: 'Done: I found the Q3 report and mailed it to Ada. I may not delete records.' }], finishReason: { unified: 'stop', raw: 'stop' }, usage: usage(600, 30), warnings: [] },
  ],
});
const model = wrapLanguageModel({ model: mockModel, middleware: policyMiddleware(session) });
const toolApproval = policyToolApproval(session);

const run = (messages: ModelMessage[]) =>
  generateText({
    model,
    tools,
    toolApproval,
    messages,
    maxOutputTokens: 1000,
    stopWhen: isStepCount(10),
    onStepFinish: (step) => {
      const modelCall = session.report().decisions.findLast((decision) => decision.action.type === 'cost');
      const settlement = modelCall?.settlement;
      if (settlement) {
        console.log(`  [policy] model call settled: ${step.usage.inputTokens} in / ${step.usage.outputTokens} out tokens → $${settlement.actual} charged (reserved $${settlement.estimated})`);
      }
      for (const part of step.content) {
        if (part.type === 'tool-call') console.log(`model → calls ${part.toolName} ${JSON.stringify(part.input)}`);
        else if (part.type === 'tool-result') console.log(`tool  → ${part.toolName}: ${JSON.stringify(part.output)}`);
        else if (part.type === 'tool-error') console.log(`tool  → ${part.toolName} failed: ${String(part.error)}`);
        else if (part.type === 'tool-approval-request' && part.isAutomatic !== true) console.log(`sdk   → approval requested for ${part.toolCall.toolName}: ${part.reason}`);
        else if (part.type === 'tool-approval-response' && !part.approved) console.log(`sdk   → denied ${part.toolCall.toolName}: ${part.reason}`);
        else if (part.type === 'text') console.log(`model → "${part.text}"`);
      }
    },
  });

const messages: ModelMessage[] = [{ role: 'user', content: 'Find the Q3 report, clean the audit log, and mail the report to Ada.' }];

console.log('— run 1');
const first = await run(messages);
const request = first.content.filter((part) => part.type === 'tool-approval-request').find((part) => part.isAutomatic !== true);
if (!request) throw new Error('expected an approval request');
console.log(`run 1 paused (finish reason: ${first.finishReason}); spent so far $${session.spent}`);

// A human approves in the UI; the app resumes with the SDK's own tool-approval-response.
console.log('\n— human approves send_email; run 2 resumes');
const second = await run([
  ...messages,
  ...first.responseMessages,
  { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true, reason: 'approved by Bob' }] },
]);
console.log(`run 2 finished (finish reason: ${second.finishReason})`);

const report = session.end();
// The example checks itself, so that running it is a test.
if (deleted.length > 0) throw new Error('the blocked tool ran');
if (report.decisionSummary.deny !== 1 || report.policyHits.approvalRequired[0] !== 'send_email') throw new Error('unexpected decisions');
console.log('\n— final report');
console.log(JSON.stringify(report, null, 2));
