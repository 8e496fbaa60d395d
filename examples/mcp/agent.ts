// An offline AI SDK agent whose tools come from an MCP server (server.ts, a child process over stdio) that offers a
// shell tool and a docs tool. The policy blocks the shell: the scripted model tries to run a command, the call is
// refused before it is sent, the model is told why, and it goes on with the docs tool.
// Run: cd examples/mcp && node agent.ts
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentPolicy, type Decision } from '@agentpolicy/core';
import { wrapMcpTransport } from '@agentpolicy/mcp';
import { createMCPClient } from '@ai-sdk/mcp';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { generateText, isStepCount } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';

const policy = AgentPolicy.fromDict({
  version: 1,
  budget: { max_spend: 0.1 },
  // Tools of an MCP server are named mcp__<server>__<tool>, the server's name being the one the app gives below.
  tools: { block: ['mcp__workspace__shell'] },
});

function describe(decision: Decision): string {
  const action = decision.action;
  const what = action.type === 'tool' ? `${action.name} ${JSON.stringify(action.input)}` : action.type;
  return `${decision.decision.padEnd(6)} ${what} ($${decision.settlement?.actual ?? action.cost}): ${decision.reason}`;
}
const session = policy.session({ id: 'example-mcp', onDecision: (decision) => console.log(`  [policy] ${describe(decision)}`) });

const server = new StdioClientTransport({
  command: process.execPath,
  args: ['--experimental-strip-types', '--no-warnings=ExperimentalWarning', fileURLToPath(new URL('./server.ts', import.meta.url))],
});
// Every tools/call is checked before it is sent. By default tools the policy never allows are also left out of
// tools/list; here the shell stays listed so that the scripted model can try it and the refusal shows.
const mcp = await createMCPClient({ transport: wrapMcpTransport(server, session, { server: 'workspace', costs: { search_docs: 0.001 }, hideDenied: false }) });

// What a prompt-injected model might do: run a command first. The command would leave a file behind.
const marker = join(mkdtempSync(join(tmpdir(), 'agentpolicy-mcp-example-')), 'pwned');
const usage = { inputTokens: { total: 50, noCache: 50, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 10, text: 10, reasoning: 0 } };
const call = (toolName: string, input: unknown) => ({
  content: [{ type: 'tool-call' as const, toolCallId: `call-${toolName}`, toolName, input: JSON.stringify(input) }],
  finishReason: { unified: 'tool-calls' as const, raw: 'tool_calls' },
  usage,
  warnings: [],
});
const model = new MockLanguageModelV4({
  doGenerate: [
    call('shell', { command: `touch ${marker}` }),
    call('search_docs', { query: 'how do budgets work?' }),
    { content: [{ type: 'text', text: 'Budgets: every paid action reserves its cost first.' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] },
  ],
});

try {
  const tools = await mcp.tools();
  console.log(`tools offered by the MCP server: ${Object.keys(tools).join(', ')}`);
  const result = await generateText({
    model,
    tools,
    stopWhen: isStepCount(5),
    prompt: 'How do budgets work?',
    onStepFinish: (step) => {
      for (const part of step.content) {
        if (part.type === 'tool-call') console.log(`model → calls ${part.toolName} ${JSON.stringify(part.input)}`);
        else if (part.type === 'tool-result') console.log(`tool  → ${part.toolName}: ${JSON.stringify(part.output)}`);
        else if (part.type === 'text') console.log(`model → "${part.text}"`);
      }
    },
  });
  const report = session.end();
  // The example checks itself, so that running it is a test.
  if (existsSync(marker)) throw new Error('the blocked shell command ran');
  if (report.policyHits.deniedTools[0] !== 'mcp__workspace__shell' || report.decisionSummary.allow !== 1) throw new Error('unexpected decisions');
  if (!result.text.startsWith('Budgets')) throw new Error('the agent did not finish');
  console.log(`\nshell blocked, docs searched; spent $${report.spent} of $${report.budget}`);
} finally {
  await mcp.close();
}
