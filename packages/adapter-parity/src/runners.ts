/**
 * One runner per way of running a tool under a policy: core's `session.runTool` (the reference) and each adapter,
 * used the way its README documents, against the framework's own mock or a real local server. A runner only starts
 * its framework and makes one call per turn; {@link runScenario} observes the session the same way for all of them.
 * Adding an adapter is one entry of {@link RUNNERS}.
 */
import { AgentPolicy, type Decision, type PolicySession } from '@agentpolicy/core';
import { wrapTools } from '@agentpolicy/ai-sdk';
import { agentPolicyMiddleware } from '@agentpolicy/langchain';
import { gateMcpServer, wrapMcpTransport } from '@agentpolicy/mcp';
import { wrapOpenAI } from '@agentpolicy/openai';
import { startMockOpenAI } from '@agentpolicy/test-servers';
import { AIMessage, HumanMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool as langchainTool } from '@langchain/core/tools';
import { MemorySaver } from '@langchain/langgraph';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { generateText, isStepCount, tool as aiTool } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { createAgent } from 'langchain';
import OpenAI from 'openai';
import { z } from 'zod';
import type { Call, Outcome, Scenario, ToolSpec } from './scenarios.js';

/** What a runner is given: the scenario, its session, and the tool body to run when a tool runs. */
export interface RunnerContext {
  readonly scenario: Scenario;
  readonly session: PolicySession;
  /** The body of tool `name`: records that it ran, then returns or throws as the scenario says. */
  readonly body: (name: string) => string;
}

/** A started framework: makes one tool call in its own turn; its errors are the framework's business. */
export interface Driver {
  call(call: Call): Promise<unknown>;
  close?(): Promise<void>;
}

export interface Runner {
  readonly name: string;
  /** The package it exercises (what a scenario's `documented` differences are keyed by). */
  readonly adapter: string;
  /** The action name the adapter gives tool `name` (MCP prefixes the server), for the policy. */
  readonly toolName?: (name: string) => string;
  start(context: RunnerContext): Promise<Driver> | Driver;
}

/** The models the frameworks' mocks call, priced so a budget does not refuse them (their spend is not compared). */
const PRICING = { FakeBuiltModel: { input: 1, output: 2, max_output_tokens: 4096 } };

/** Every tool takes the scenarios' input fields, each optional. */
const INPUT_SHAPE = { q: z.string().optional(), x: z.number().optional() };
const INPUT_SCHEMA = z.object(INPUT_SHAPE);

const costsOf = (scenario: Scenario): Record<string, number> =>
  Object.fromEntries(Object.entries(scenario.tools).flatMap(([name, spec]) => (spec.cost === undefined ? [] : [[name, spec.cost]])));

/** The error a tool of `spec` throws, or undefined when it returns. */
function failureOf(spec: ToolSpec | undefined): Error | undefined {
  switch (spec?.behaviour ?? 'returns') {
    case 'returns':
      return undefined;
    case 'throws':
      return new Error('the tool failed');
    case 'throws 404':
      return Object.assign(new Error('not found'), { status: 404 });
    case 'throws 500':
      return Object.assign(new Error('upstream failed'), { status: 500 });
  }
}

const MCP_SERVER = 'svc';
const mcpName = (name: string): string => `mcp__${MCP_SERVER}__${name}`;

/** An MCP server with the scenario's tools, each running `body`. */
function mcpServer({ scenario, body }: RunnerContext): McpServer {
  const server = new McpServer({ name: MCP_SERVER, version: '1.0.0' });
  for (const name of Object.keys(scenario.tools)) {
    server.registerTool(name, { description: name, inputSchema: INPUT_SHAPE }, async () => ({ content: [{ type: 'text' as const, text: body(name) }] }));
  }
  return server;
}

async function mcpPair(server: McpServer, clientSide: (transport: InMemoryTransport) => InMemoryTransport | ReturnType<typeof wrapMcpTransport>): Promise<Driver> {
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await server.connect(serverTransport);
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(clientSide(clientTransport));
  return {
    call: (call) => client.callTool({ name: call.tool, arguments: { ...call.input } }),
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

export const CORE: Runner = {
  name: 'core runTool',
  adapter: 'core',
  start: ({ scenario, session, body }) => ({
    call: (call) => {
      const cost = scenario.tools[call.tool]?.cost;
      return session.runTool(call.tool, { input: call.input, ...(cost !== undefined ? { cost } : {}), idempotencyKey: call.id }, () => body(call.tool));
    },
  }),
};

export const RUNNERS: readonly Runner[] = [
  {
    // wrapTools on the tool set, generateText with the SDK's own mock model: one tool call, then an answer.
    name: 'ai-sdk wrapTools + generateText',
    adapter: 'ai-sdk',
    start: ({ scenario, session, body }) => {
      const tools = wrapTools(
        Object.fromEntries(Object.keys(scenario.tools).map((name) => [name, aiTool({ description: name, inputSchema: INPUT_SCHEMA, execute: async () => body(name) })])),
        session,
        { costs: costsOf(scenario) },
      );
      const usage = { inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 5, text: 5, reasoning: 0 } };
      return {
        call: (call) =>
          generateText({
            model: new MockLanguageModelV4({
              doGenerate: [
                { content: [{ type: 'tool-call', toolCallId: call.id, toolName: call.tool, input: JSON.stringify(call.input) }], finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage, warnings: [] },
                { content: [{ type: 'text', text: 'done' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] },
              ],
            }),
            tools,
            stopWhen: isStepCount(2),
            prompt: 'go',
          }),
      };
    },
  },
  {
    // createAgent with LangChain's fakeModel() and the adapter's middleware (a checkpointer, for its interrupts).
    name: 'langchain createAgent + middleware',
    adapter: 'langchain',
    start: ({ scenario, session, body }) => {
      const tools = Object.keys(scenario.tools).map((name) => langchainTool(async () => body(name), { name, description: name, schema: INPUT_SCHEMA }));
      const middleware = agentPolicyMiddleware(session, { toolCosts: costsOf(scenario) });
      let turn = 0;
      return {
        call: (call) => {
          const model = fakeModel()
            .respond(new AIMessage({ content: '', tool_calls: [{ name: call.tool, args: { ...call.input }, id: call.id, type: 'tool_call' }] }))
            .respond(new AIMessage('done'));
          const agent = createAgent({ model, tools, middleware: [middleware], checkpointer: new MemorySaver() });
          return agent.invoke({ messages: [new HumanMessage('go')] }, { configurable: { thread_id: `turn-${turn++}` } });
        },
      };
    },
  },
  {
    // The official client against a local server that returns the scripted tool call; the wrapper checks returned
    // calls (checkToolCalls, with the tools' costs) and the app's loop runs each with session.runTool and the same
    // cost, as the adapter's README shows.
    name: 'openai wrapOpenAI + runTool loop',
    adapter: 'openai',
    start: async ({ scenario, session, body }) => {
      const server = await startMockOpenAI();
      const client = wrapOpenAI(new OpenAI({ apiKey: 'test', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: costsOf(scenario) });
      return {
        call: async (call) => {
          server.reply({ toolCalls: [{ id: call.id, name: call.tool, arguments: JSON.stringify(call.input) }] });
          const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], max_tokens: 100 });
          for (const returned of completion.choices[0]?.message.tool_calls ?? []) {
            if (returned.type !== 'function') continue;
            const name = returned.function.name;
            const cost = scenario.tools[name]?.cost;
            const input: unknown = JSON.parse(returned.function.arguments);
            await session.runTool(name, { input, ...(cost !== undefined ? { cost } : {}), idempotencyKey: returned.id }, () => body(name));
          }
        },
        close: () => server.close(),
      };
    },
  },
  {
    // The same client's runTools(): the client runs the functions, the wrapper hands it each one wrapped.
    name: 'openai wrapOpenAI + runTools()',
    adapter: 'openai',
    start: async ({ scenario, session, body }) => {
      const server = await startMockOpenAI();
      const client = wrapOpenAI(new OpenAI({ apiKey: 'test', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: costsOf(scenario) });
      const tools = Object.keys(scenario.tools).map((name) => ({
        type: 'function' as const,
        function: { name, description: name, parameters: { type: 'object', properties: { q: { type: 'string' }, x: { type: 'number' } } }, function: () => body(name) },
      }));
      return {
        call: (call) => {
          server.reply({ toolCalls: [{ id: call.id, name: call.tool, arguments: JSON.stringify(call.input) }] }, {});
          return client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], max_tokens: 100, tools }).finalChatCompletion();
        },
        close: () => server.close(),
      };
    },
  },
  {
    // The client-side gate: the SDK's Client over the wrapped transport to a real McpServer (in memory).
    name: 'mcp wrapMcpTransport (client)',
    adapter: 'mcp',
    toolName: mcpName,
    start: (context) => mcpPair(mcpServer(context), (transport) => wrapMcpTransport(transport, context.session, { server: MCP_SERVER, costs: costsOf(context.scenario) })),
  },
  {
    // The server-side gate on the McpServer; the client is a plain SDK Client.
    name: 'mcp gateMcpServer (server)',
    adapter: 'mcp',
    toolName: mcpName,
    start: (context) => {
      const server = mcpServer(context);
      gateMcpServer(server, context.session, { server: MCP_SERVER, costs: costsOf(context.scenario) });
      return mcpPair(server, (transport) => transport);
    },
  },
];

const round = (usd: number): number => Math.round(usd * 1e9) / 1e9;

/** What the tool decisions of a session came to: each settled one's charge, or what a pending one holds. */
function toolSpend(decisions: readonly Decision[]): number {
  return round(decisions.reduce((sum, d) => sum + (d.settlement ? d.settlement.actual : d.decision === 'allow' ? d.action.cost : 0), 0));
}

const toolDecisions = (session: PolicySession): readonly Decision[] => session.report().decisions.filter((d) => d.action.type === 'tool');

/** Runs a scenario's calls through `runner`, one per turn, and observes each. */
export async function runScenario(runner: Runner, scenario: Scenario): Promise<Outcome[]> {
  const session = AgentPolicy.fromDict({ pricing: PRICING, ...scenario.policy(runner.toolName ?? ((name) => name)) }).session();
  let runs = 0;
  const body = (name: string): string => {
    runs++;
    const failure = failureOf(scenario.tools[name]);
    if (failure) throw failure;
    return `${name} done`;
  };
  const driver = await runner.start({ scenario, session, body });
  const outcomes: Outcome[] = [];
  try {
    for (const call of scenario.calls) {
      const before = runs;
      const seen = toolDecisions(session).length;
      // A denial, an approval request or the tool's own error ends the turn in each framework's own way; what it
      // did to the session is what is compared.
      await driver.call(call).catch(() => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      const decisions = toolDecisions(session);
      outcomes.push({ decisions: decisions.slice(seen).map((d) => `${d.decision}:${d.rule.section}`), ran: runs > before, spent: toolSpend(decisions) });
    }
  } finally {
    await driver.close?.();
  }
  return outcomes;
}
