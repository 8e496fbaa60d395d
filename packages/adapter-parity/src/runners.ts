/**
 * One runner per way of running a tool under a policy: core's `session.runTool` (the reference) and each adapter,
 * used the way its README documents, against the framework's own mock or a real local server. A runner only starts
 * its framework and makes each turn's calls; {@link runScenario} observes the session the same way for all of them.
 * Adding an adapter is one entry of {@link RUNNERS}.
 */
import { AgentPolicy, AgentPolicyError, declaredCost, type Decision, type PolicySession } from '@agentpolicy/core';
import { policyToolApproval, wrapTools } from '@agentpolicy/ai-sdk';
import { AgentPolicyCallbackHandler, agentPolicyMiddleware } from '@agentpolicy/langchain';
import { gateMcpServer, wrapMcpTransport } from '@agentpolicy/mcp';
import { toolCallInput, wrapOpenAI } from '@agentpolicy/openai';
import { startMockOpenAI } from '@agentpolicy/test-servers';
import { AIMessage, HumanMessage } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';
import { tool as langchainTool } from '@langchain/core/tools';
import { MemorySaver } from '@langchain/langgraph';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { generateText, isStepCount, streamText, tool as aiTool } from 'ai';
import { convertArrayToReadableStream, MockLanguageModelV4 } from 'ai/test';
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

/** A started framework: makes one turn of tool calls; its errors are the framework's business. */
export interface Driver {
  turn(calls: readonly Call[]): Promise<unknown>;
  close?(): Promise<void>;
}

export interface Runner {
  readonly name: string;
  /**
   * What it exercises, which a scenario's `documented` differences are keyed by: the package, or the package and the
   * path its README gives its own rule for.
   */
  readonly family: string;
  /** The action name the adapter gives tool `name` (MCP prefixes the server), for the policy. */
  readonly toolName?: (name: string) => string;
  start(context: RunnerContext): Promise<Driver> | Driver;
}

/** The models the frameworks' mocks call, priced so a budget does not refuse them (their spend is not compared). */
const PRICING = { FakeBuiltModel: { input: 1, output: 2, max_output_tokens: 4096 } };

/** Every tool takes the scenarios' input fields, each optional. */
const INPUT_SHAPE = { q: z.string().optional(), x: z.number().optional() };
const INPUT_SCHEMA = z.object(INPUT_SHAPE);

/** The cost function of a tool whose cost is `'throws'`. */
const costThrows = (): never => {
  throw new Error('no price for this call');
};

/** A tool's declared cost as an option gives it: USD, a function of the call, or none. */
const costOf = (spec: ToolSpec | undefined): number | (() => never) | undefined => (spec?.cost === 'throws' ? costThrows : spec?.cost);

/** The tools' costs by name, each USD or a function of the call's input (the AI SDK's `costs`). */
const toolCostsOf = (scenario: Scenario): Record<string, number | (() => never)> =>
  Object.fromEntries(Object.entries(scenario.tools).flatMap(([name, spec]) => (spec.cost === undefined ? [] : [[name, costOf(spec) as number | (() => never)]])));

/**
 * The tools' costs as a cost table (LangChain, OpenAI and MCP `toolCosts` / `costs`): a map of USD, or one function of
 * the call, which each adapter passes its own call shape; a scenario with a cost that throws has that tool only.
 */
function costsOf(scenario: Scenario): Record<string, number> | (() => never) {
  const specs = Object.values(scenario.tools);
  if (!specs.some((spec) => spec.cost === 'throws')) return toolCostsOf(scenario) as Record<string, number>;
  if (specs.length !== 1) throw new Error(`scenario "${scenario.name}": a cost that throws must be its only tool`);
  return costThrows;
}

/** session.runTool for one call as the README loops write it: the declared cost read by core's rule, the call id. */
function runToolCall(session: PolicySession, scenario: Scenario, name: string, input: unknown, id: string, body: RunnerContext['body']): Promise<unknown> {
  const { cost, error } = declaredCost(costOf(scenario.tools[name]), input);
  return session.runTool(name, { input, ...(cost !== undefined ? { cost } : {}), ...(error !== undefined ? { metadata: { costError: error } } : {}), idempotencyKey: id }, () => body(name));
}

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
    case 'throws statusCode 422':
      return Object.assign(new Error('invalid input'), { statusCode: 422 });
    case 'throws an agentpolicy error':
      return new AgentPolicyError('INVALID_ARGUMENT', 'the tool refused its input');
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
    // Calls of one turn are sent side by side, as a framework runs parallel tool calls.
    turn: (calls) => Promise.all(calls.map((call) => client.callTool({ name: call.tool, arguments: { ...call.input } }))),
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

/** The calls of one turn as the mock OpenAI server returns them. */
const openaiToolCalls = (calls: readonly Call[]) => calls.map((call) => ({ id: call.id, name: call.tool, arguments: JSON.stringify(call.input) }));

/** A wrapped OpenAI client on a local mock server, with the tools' costs: `checkToolCalls` decides what the model returns. */
async function openaiClient({ scenario, session }: RunnerContext) {
  const server = await startMockOpenAI();
  return { server, client: wrapOpenAI(new OpenAI({ apiKey: 'test', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: costsOf(scenario) }) };
}

/** The README's own loop: each returned call run with session.runTool, its input, its cost and its call id. */
async function openaiLoop(context: RunnerContext, complete: (client: OpenAI) => Promise<OpenAI.Chat.Completions.ChatCompletion>): Promise<Driver> {
  const { scenario, session, body } = context;
  const { server, client } = await openaiClient(context);
  return {
    turn: async (calls) => {
      // A turn refused before its follow-up request leaves that reply queued: each turn starts from none.
      server.reset();
      server.reply({ toolCalls: openaiToolCalls(calls) });
      const completion = await complete(client);
      for (const returned of completion.choices[0]?.message.tool_calls ?? []) {
        if (returned.type !== 'function') continue;
        const name = returned.function.name;
        await runToolCall(session, scenario, name, toolCallInput(returned.function.arguments), returned.id, body);
      }
    },
    close: () => server.close(),
  };
}

/** The scenario's tools as AI SDK tools. */
const aiTools = (scenario: Scenario, body: RunnerContext['body']) =>
  Object.fromEntries(Object.keys(scenario.tools).map((name) => [name, aiTool({ description: name, inputSchema: INPUT_SCHEMA, execute: async () => body(name) })]));

const AI_USAGE = { inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 5, text: 5, reasoning: 0 } };

/** One AI SDK turn: the mock model calls the tools, then answers. */
function aiTurn(calls: readonly Call[], tools: ReturnType<typeof aiTools>, toolApproval: ReturnType<typeof policyToolApproval> | undefined) {
  return generateText({
    model: new MockLanguageModelV4({
      doGenerate: [
        {
          content: calls.map((call) => ({ type: 'tool-call' as const, toolCallId: call.id, toolName: call.tool, input: JSON.stringify(call.input) })),
          finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
          usage: AI_USAGE,
          warnings: [],
        },
        { content: [{ type: 'text', text: 'done' }], finishReason: { unified: 'stop', raw: 'stop' }, usage: AI_USAGE, warnings: [] },
      ],
    }),
    tools,
    ...(toolApproval ? { toolApproval } : {}),
    stopWhen: isStepCount(2),
    prompt: 'go',
  });
}

/** One streamed AI SDK turn, read to its end: the mock model streams the tool calls, then an answer. */
async function aiStreamTurn(calls: readonly Call[], tools: ReturnType<typeof aiTools>, toolApproval: ReturnType<typeof policyToolApproval>) {
  const finish = (unified: 'tool-calls' | 'stop') => ({ type: 'finish' as const, finishReason: { unified, raw: unified }, usage: AI_USAGE });
  const result = streamText({
    model: new MockLanguageModelV4({
      doStream: [
        {
          stream: convertArrayToReadableStream([
            { type: 'stream-start' as const, warnings: [] },
            ...calls.map((call) => ({ type: 'tool-call' as const, toolCallId: call.id, toolName: call.tool, input: JSON.stringify(call.input) })),
            finish('tool-calls'),
          ]),
        },
        {
          stream: convertArrayToReadableStream([
            { type: 'stream-start' as const, warnings: [] },
            { type: 'text-start' as const, id: 't' },
            { type: 'text-delta' as const, id: 't', delta: 'done' },
            { type: 'text-end' as const, id: 't' },
            finish('stop'),
          ]),
        },
      ],
    }),
    tools,
    toolApproval,
    stopWhen: isStepCount(2),
    prompt: 'go',
  });
  await result.consumeStream();
  return result.steps;
}

/** The scenario's tools as LangChain tools. */
const langchainTools = (scenario: Scenario, body: RunnerContext['body']) =>
  Object.keys(scenario.tools).map((name) => langchainTool(async () => body(name), { name, description: name, schema: INPUT_SCHEMA }));

/** LangChain's fake model for one turn: it calls the tools, then answers. */
const langchainModel = (calls: readonly Call[]) =>
  fakeModel()
    .respond(new AIMessage({ content: '', tool_calls: calls.map((call) => ({ name: call.tool, args: { ...call.input }, id: call.id, type: 'tool_call' as const })) }))
    .respond(new AIMessage('done'));

export const CORE: Runner = {
  name: 'core runTool',
  family: 'core',
  start: ({ scenario, session, body }) => ({
    // Calls of one turn side by side, each settled on its own.
    turn: (calls) =>
      Promise.allSettled(
        calls.map((call) => runToolCall(session, scenario, call.tool, call.input, call.id, body)),
      ),
  }),
};

export const RUNNERS: readonly Runner[] = [
  {
    // The README's quick start: wrapTools on the tool set and policyToolApproval as the SDK's toolApproval (ai 7),
    // generateText with the SDK's own mock model: one tool call, then an answer.
    name: 'ai-sdk wrapTools + policyToolApproval',
    family: 'ai-sdk',
    start: ({ scenario, session, body }) => {
      const tools = wrapTools(aiTools(scenario, body), session, { costs: toolCostsOf(scenario) });
      return { turn: (calls) => aiTurn(calls, tools, policyToolApproval(session)) };
    },
  },
  {
    // The same with streamText, read to its end.
    name: 'ai-sdk wrapTools + policyToolApproval, streamText',
    family: 'ai-sdk',
    start: ({ scenario, session, body }) => {
      const tools = wrapTools(aiTools(scenario, body), session, { costs: toolCostsOf(scenario) });
      return { turn: (calls) => aiStreamTurn(calls, tools, policyToolApproval(session)) };
    },
  },
  {
    // wrapTools alone: its needsApproval asks the policy (the ai 6 way).
    name: 'ai-sdk wrapTools',
    family: 'ai-sdk',
    start: ({ scenario, session, body }) => {
      const tools = wrapTools(aiTools(scenario, body), session, { costs: toolCostsOf(scenario) });
      return { turn: (calls) => aiTurn(calls, tools, undefined) };
    },
  },
  {
    // policyToolApproval alone, on tools wrapTools did not wrap: the hook is the only check.
    name: 'ai-sdk policyToolApproval on unwrapped tools',
    family: 'ai-sdk approval hook',
    start: ({ scenario, session, body }) => ({ turn: (calls) => aiTurn(calls, aiTools(scenario, body), policyToolApproval(session, { costs: toolCostsOf(scenario) })) }),
  },
  {
    // createAgent with LangChain's fakeModel() and the adapter's middleware (a checkpointer, for its interrupts).
    name: 'langchain createAgent + middleware',
    family: 'langchain',
    start: ({ scenario, session, body }) => {
      const tools = langchainTools(scenario, body);
      const middleware = agentPolicyMiddleware(session, { toolCosts: costsOf(scenario) });
      let turn = 0;
      return {
        turn: (calls) => {
          const agent = createAgent({ model: langchainModel(calls), tools, middleware: [middleware], checkpointer: new MemorySaver() });
          return agent.invoke({ messages: [new HumanMessage('go')] }, { configurable: { thread_id: `turn-${turn++}` } });
        },
      };
    },
  },
  {
    // The callback handler on the run (createAgent without the middleware, the handler in `callbacks`).
    name: 'langchain createAgent + callback handler',
    family: 'langchain',
    start: ({ scenario, session, body }) => {
      const tools = langchainTools(scenario, body);
      const handler = new AgentPolicyCallbackHandler(session, { toolCosts: costsOf(scenario) });
      let turn = 0;
      return {
        turn: (calls) => {
          const agent = createAgent({ model: langchainModel(calls), tools, checkpointer: new MemorySaver() });
          return agent.invoke({ messages: [new HumanMessage('go')] }, { configurable: { thread_id: `turn-${turn++}` }, callbacks: [handler] });
        },
      };
    },
  },
  {
    // The official client against a local server that returns the scripted tool call; the wrapper checks returned
    // calls (checkToolCalls, with the tools' costs) and the app's loop runs each with session.runTool and the same
    // cost, as the adapter's README shows.
    name: 'openai wrapOpenAI + runTool loop',
    family: 'openai',
    start: (context) => openaiLoop(context, (client) => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], max_tokens: 100 })),
  },
  {
    // The client's stream() helper: the calls are checked as the stream completes each; the loop runs them.
    name: 'openai wrapOpenAI stream() + runTool loop',
    family: 'openai',
    start: (context) =>
      openaiLoop(context, (client) => client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], max_tokens: 100 }).finalChatCompletion()),
  },
  {
    // The same client's runTools(): the client runs the functions, the wrapper hands it each one wrapped.
    name: 'openai wrapOpenAI + runTools()',
    family: 'openai',
    start: async (context) => {
      const { scenario, body } = context;
      const { server, client } = await openaiClient(context);
      const tools = Object.keys(scenario.tools).map((name) => ({
        type: 'function' as const,
        function: { name, description: name, parameters: { type: 'object', properties: { q: { type: 'string' }, x: { type: 'number' } } }, function: () => body(name) },
      }));
      return {
        turn: (calls) => {
          server.reset();
          server.reply({ toolCalls: openaiToolCalls(calls) }, {});
          return client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'go' }], max_tokens: 100, tools }).finalChatCompletion();
        },
        close: () => server.close(),
      };
    },
  },
  {
    // The client-side gate: the SDK's Client over the wrapped transport to a real McpServer (in memory).
    name: 'mcp wrapMcpTransport (client)',
    family: 'mcp client',
    toolName: mcpName,
    start: (context) => mcpPair(mcpServer(context), (transport) => wrapMcpTransport(transport, context.session, { server: MCP_SERVER, costs: costsOf(context.scenario) })),
  },
  {
    // The server-side gate on the McpServer; the client is a plain SDK Client.
    name: 'mcp gateMcpServer (server)',
    family: 'mcp server',
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

/** Runs a scenario's turns through `runner` and observes each. */
export async function runScenario(runner: Runner, scenario: Scenario): Promise<Outcome[]> {
  const policy = AgentPolicy.fromDict({ pricing: PRICING, ...scenario.policy(runner.toolName ?? ((name) => name)) });
  const answer = scenario.approver;
  const session = policy.session(answer === undefined ? {} : { approver: () => ({ approved: answer === 'yes', by: 'reviewer' }) });
  let runs = 0;
  const body = (name: string): string => {
    runs++;
    const failure = failureOf(scenario.tools[name]);
    if (failure) throw failure;
    return `${name} done`;
  };
  await scenario.before?.(policy, session);
  const driver = await runner.start({ scenario, session, body });
  const outcomes: Outcome[] = [];
  try {
    for (const turn of scenario.calls) {
      const before = runs;
      const seen = toolDecisions(session).length;
      // A denial, an approval request or the tool's own error ends the turn in each framework's own way; what it
      // did to the session is what is compared.
      await driver.turn(Array.isArray(turn) ? turn : [turn]).catch(() => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      const decisions = toolDecisions(session);
      outcomes.push({ decisions: decisions.slice(seen).map((d) => `${d.decision}:${d.rule.section}`).sort(), runs: runs - before, spent: toolSpend(decisions) });
    }
  } finally {
    await driver.close?.();
  }
  return outcomes;
}
