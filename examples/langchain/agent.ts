// agentpolicy + LangChain.js, offline: a langchain v1 createAgent loop driven by fakeModel() (no API key, no network).
//   1. AgentPolicyCallbackHandler on a bare tool and on an agent: a blocked tool never runs.
//   2. agentPolicyMiddleware: a blocked tool becomes an error ToolMessage, send_email pauses for approval
//      (interrupt → Command({ resume })), one e-mail is approved and one rejected.
//   3. The session report.
// Run: cd examples/langchain && node agent.ts
import { AgentPolicy, AgentPolicyError } from '@agentpolicy/core';
import { AgentPolicyCallbackHandler, agentPolicyMiddleware, type ToolApprovalAnswer, type ToolApprovalRequest } from '@agentpolicy/langchain';
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage, type StandardMessageStructure, type UsageMetadata } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool } from '@langchain/core/tools';
import { Command, MemorySaver } from '@langchain/langgraph';
import { createAgent } from 'langchain';
import { z } from 'zod';

// LangChain logs each error a raising callback handler throws ("Error in handler …") with console.error, then
// rethrows it. The denials below are on purpose, so this example shows those log lines as notes on stdout.
const logError = console.error;
console.error = (...args: unknown[]) => {
  const text = String(args[0]);
  if (text.startsWith('Error in handler AgentPolicyCallbackHandler')) console.log(`   (LangChain logs the denial: ${text})`);
  else logError(...args);
};

const policy = AgentPolicy.fromDict({
  budget: { max_spend: 0.5 },
  tools: { block: ['delete_*'] },
  approval: { require_for: [{ tool: 'send_email' }] },
  // fakeModel() has no model name: LangChain reports its class name, so that is what gets a price (USD per 1M tokens),
  // and, since no catalog lists its output limit, the most it can answer with (the worst case reserved per call).
  pricing: { FakeBuiltModel: { input: 3, output: 15, max_output_tokens: 4096 } },
});
const session = policy.session({ id: 'example-langchain' });
const toolCosts = { send_email: 0.01, search_docs: 0.002 };

const executed: string[] = [];
const searchDocs = tool(
  async ({ query }) => {
    executed.push(`search_docs(${query})`);
    return `3 pages about ${query}`;
  },
  { name: 'search_docs', description: 'Search the docs', schema: z.object({ query: z.string() }) },
);
const sendEmail = tool(
  async ({ to }) => {
    executed.push(`send_email(${to})`);
    return `sent to ${to}`;
  },
  { name: 'send_email', description: 'Send an e-mail', schema: z.object({ to: z.string(), body: z.string() }) },
);
const deleteRepo = tool(
  async ({ name }) => {
    executed.push(`delete_repo(${name})`);
    return `deleted ${name}`;
  },
  { name: 'delete_repo', description: 'Delete a repository', schema: z.object({ name: z.string() }) },
);
const tools = [searchDocs, sendEmail, deleteRepo];

const usage: UsageMetadata = { input_tokens: 1200, output_tokens: 150, total_tokens: 1350 };
const answer = (content: string) => new AIMessage<StandardMessageStructure>({ content, usage_metadata: usage });
const calls = (...list: Array<[name: string, args: Record<string, unknown>, id: string]>) =>
  new AIMessage<StandardMessageStructure>({
    content: '',
    tool_calls: list.map(([name, args, id]) => ({ name, args, id, type: 'tool_call' as const })),
    usage_metadata: usage,
  });

function show(title: string, messages: BaseMessage[]): void {
  console.log(`\n== ${title}`);
  for (const message of messages) {
    if (ToolMessage.isInstance(message)) console.log(`  tool ${message.name} [${message.status}]: ${String(message.content)}`);
    else if (AIMessage.isInstance(message) && message.tool_calls?.length) console.log(`  model calls: ${message.tool_calls.map((call) => `${call.name}(${JSON.stringify(call.args)})`).join(', ')}`);
    else console.log(`  ${message.type}: ${String(message.content)}`);
  }
}

// ---- 1. The callback handler ------------------------------------------------------------------------------------
const handler = new AgentPolicyCallbackHandler(session, { toolCosts });

console.log('== 1a. handler on a bare tool.invoke');
try {
  await deleteRepo.invoke({ name: 'prod' }, { callbacks: [handler] });
  console.log('  delete_repo ran (this must not happen)');
} catch (error) {
  console.log(`  delete_repo rejected: ${AgentPolicyError.isInstance(error) ? `${error.code}: ${error.message}` : String(error)}`);
}

const handlerAgent = createAgent({
  model: fakeModel()
    .respond(calls(['search_docs', { query: 'rotation' }, 'call_h1'], ['delete_repo', { name: 'legacy' }, 'call_h2']))
    .respond(answer('Found the docs; deleting the repo is not allowed.')),
  tools,
});
const handled = await handlerAgent.invoke({ messages: [new HumanMessage('Find the rotation docs and delete the legacy repo.')] }, { callbacks: [handler] });
show('1b. handler on a createAgent run (blocked tool → error ToolMessage, the run goes on)', handled.messages);

// ---- 2. The middleware, with an approval round trip ------------------------------------------------------------
const agent = createAgent({
  model: fakeModel()
    .respond(calls(['delete_repo', { name: 'prod' }, 'call_1']))
    .respond(calls(['send_email', { to: 'ops@example.com', body: 'Key rotated.' }, 'call_2'], ['send_email', { to: 'everyone@example.com', body: 'Key rotated.' }, 'call_3']))
    .respond(answer('Told ops; the all-hands e-mail was not approved.')),
  tools,
  middleware: [agentPolicyMiddleware(session, { toolCosts })],
  checkpointer: new MemorySaver(),
});
const config = { configurable: { thread_id: 'rotation-1' } };

let result = await agent.invoke({ messages: [new HumanMessage('Delete the prod repo, then tell ops and everyone.')] }, config);
while (result.__interrupt__?.length) {
  console.log('\n== 2. approval requested (the run is paused; the checkpointer keeps it)');
  const resume: Record<string, ToolApprovalAnswer> = {};
  for (const pending of result.__interrupt__) {
    const request = pending.value as ToolApprovalRequest;
    // A scripted reviewer: e-mails to ops are fine, mass mail is not.
    const approved = JSON.stringify(request.args).includes('ops@');
    console.log(`  ${request.tool}(${JSON.stringify(request.args)}): ${request.reason} → ${approved ? 'approve' : 'reject'}`);
    resume[request.requestId] = approved ? { approved: true, by: 'alice' } : { approved: false, by: 'alice', reason: 'no mass mail' };
  }
  result = await agent.invoke(new Command({ resume }), config);
}
show('2. middleware run after resume', result.messages);

// ---- 3. The report ------------------------------------------------------------------------------------------------
console.log(`\n== tools that really ran: ${executed.join(', ')}`);
const report = session.end();
console.log('\n== report');
console.log(
  JSON.stringify(
    {
      ...report,
      decisions: report.decisions.map((d) => ({
        decision: d.decision,
        action: d.action.type === 'tool' ? `tool ${d.action.name}` : d.action.type === 'cost' ? d.action.source : d.action.domain,
        reason: d.reason,
        ...(d.settlement ? { charged: d.settlement.actual } : { charged: d.decision === 'allow' ? d.action.cost : 0 }),
      })),
    },
    null,
    2,
  ),
);
if (executed.some((call) => call.startsWith('delete_repo') || call.includes('everyone@'))) process.exitCode = 1;
