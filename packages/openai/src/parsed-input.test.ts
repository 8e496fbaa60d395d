// The input a policy judges is the input the tool runs with. The client's helpers run a tool's own parse on the
// model's arguments (runTools with a `parse` or a zodFunction tool; `parse()` / `stream()` filling
// `parsed_arguments`): zod defaults, transforms and coercions apply there, after the JSON the model sent. Through the
// real client against the local mock server: rules, approval requests and call identity read the parsed value, the
// tool gets exactly that value (each call parsed once), and arguments the parse rejects are decided as they are.
import { randomUUID } from 'node:crypto';
import { AgentPolicy, ApprovalRequiredError, PolicyDeniedError, type Decision, type PolicySession, type ToolAction } from '@agentpolicy/core';
import OpenAI from 'openai';
import { zodFunction, zodResponsesFunction } from 'openai/helpers/zod';
import type { RunnableToolFunctionWithParse } from 'openai/lib/RunnableFunction';
import OpenAIv6 from 'openai-v6';
import { zodFunction as zodFunctionV6 } from 'openai-v6/helpers/zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import { wrapOpenAI } from './wrap-openai.js';

const USER = [{ role: 'user' as const, content: 'Do the task.' }];
const MODEL = 'gpt-4o-mini';

const POLICY = {
  rules: [
    { deny: 'no recursive deletes', tool: 'delete_path', if: { 'input.recursive': { eq: true } } },
    { deny: 'email only to ourco.com', tool: 'send_email', unless: { 'input.to': { glob: '*@ourco.com' } } },
    { require_approval: 'publishing needs a human', tool: 'publish', if: { 'input.visibility': { eq: 'public' } } },
  ],
  limits: [{ tool: 'count', max_calls: 5, per: '1m' }],
};

// A forwarding alias the tool's schema expands: the model writes an ourco.com address, the tool mails gmail.
const ALIASES: Record<string, string> = { 'team@ourco.com': 'ourco-team@gmail.com' };

const DeletePath = z.object({ path: z.string(), recursive: z.boolean().default(true) });
const SendEmail = z.object({ to: z.string().transform((to) => ALIASES[to.trim().toLowerCase()] ?? to.trim().toLowerCase()) });
const Publish = z.object({ page: z.string(), visibility: z.enum(['draft', 'public']).default('public'), ticket: z.string().default(() => randomUUID()) });
const Count = z.object({ count: z.number().int().positive() });

let server: MockOpenAIServer;
beforeAll(async () => {
  server = await startMockOpenAI();
});
afterAll(() => server.close());
beforeEach(() => server.reset());

const call = (id: string, name: string, args: unknown) => ({ toolCalls: [{ id, name, arguments: JSON.stringify(args) }] });
const toolDecisions = (session: PolicySession) => session.report().decisions.filter((d): d is Decision & { action: ToolAction } => d.action.type === 'tool');
/** The input of the tool call a policy error is about. */
const deniedInput = (error: unknown): unknown => {
  const { action } = (error as PolicyDeniedError).decision;
  return action.type === 'tool' ? action.input : undefined;
};
const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => (error instanceof Error && error.cause !== undefined ? error.cause : error));

function setup(Client: typeof OpenAI = OpenAI) {
  const session = AgentPolicy.fromDict(POLICY).session();
  const client = wrapOpenAI(new Client({ apiKey: 'test-key', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true });
  // What each tool function got, and how often each parse ran.
  const ran: Array<[string, unknown]> = [];
  const parses: Record<string, number> = {};
  const counted = <T>(name: string, schema: z.ZodType<T>) => (args: string): T => {
    parses[name] = (parses[name] ?? 0) + 1;
    return schema.parse(JSON.parse(args));
  };
  // runTools functions with their own `parse` (the RunnableToolFunctionWithParse form).
  const runnable = <T extends object>(name: string, schema: z.ZodType<T>): RunnableToolFunctionWithParse<T> => ({
    type: 'function',
    function: {
      name,
      description: name,
      parameters: { type: 'object', properties: {} },
      parse: counted(name, schema),
      function: (args: T) => {
        ran.push([name, args]);
        return 'done';
      },
    },
  });
  return { session, client, ran, parses, runnable };
}

describe('runTools: decided on what the tool function gets', () => {
  describe.each([
    ['openai 7', OpenAI, zodFunction],
    ['openai 6', OpenAIv6 as unknown as typeof OpenAI, zodFunctionV6 as unknown as typeof zodFunction],
  ])('%s, a zodFunction tool', (_name, Client, zodTool) => {
    it('a .default() a deny rule catches: the call the model left the field out of is denied, never run', async () => {
      const { session, client, ran } = setup(Client);
      const deletePath = zodTool({ name: 'delete_path', parameters: DeletePath, function: (args) => void ran.push(['delete_path', args]) });
      server.reply(call('d1', 'delete_path', { path: '/tmp/a', recursive: false }), {}, call('d2', 'delete_path', { path: '/' }));
      await client.chat.completions.runTools({ model: MODEL, messages: USER, tools: [deletePath] }).finalContent();
      const error = await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools: [deletePath] }).finalContent());

      expect(PolicyDeniedError.isInstance(error)).toBe(true);
      expect((error as PolicyDeniedError).decision).toMatchObject({ rule: { reason: 'no recursive deletes' }, action: { name: 'delete_path', input: { path: '/', recursive: true } } });
      expect(ran).toEqual([['delete_path', { path: '/tmp/a', recursive: false }]]);
      expect(toolDecisions(session).map((d) => d.decision)).toEqual(['allow', 'deny']);
    });
  });

  it('streamed runTools, a zodFunction tool: the default is denied too', async () => {
    const { client, ran } = setup();
    const deletePath = zodFunction({ name: 'delete_path', parameters: DeletePath, function: (args) => void ran.push(['delete_path', args]) });
    server.reply(call('d1', 'delete_path', { path: '/' }));
    const error = await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools: [deletePath], stream: true }).finalContent());
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(deniedInput(error)).toEqual({ path: '/', recursive: true });
    expect(ran).toEqual([]);
  });

  it('a .transform(): judged on its output, in both directions, and the tool runs with exactly that', async () => {
    const { session, client, ran, parses, runnable } = setup();
    const tools = [runnable('send_email', SendEmail)];
    // The raw address fails the glob (case, spaces) but the tool mails ada@ourco.com: allowed.
    server.reply(call('e1', 'send_email', { to: ' ADA@OurCo.com ' }), {});
    await client.chat.completions.runTools({ model: MODEL, messages: USER, tools }).finalContent();
    // The raw address passes the glob but the schema forwards it to gmail: denied.
    server.reply(call('e2', 'send_email', { to: 'team@ourco.com' }));
    const error = await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools }).finalContent());

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(deniedInput(error)).toEqual({ to: 'ourco-team@gmail.com' });
    expect(ran).toEqual([['send_email', { to: 'ada@ourco.com' }]]);
    expect(toolDecisions(session).map((d) => [d.decision, d.action.input])).toEqual([
      ['allow', { to: 'ada@ourco.com' }],
      ['deny', { to: 'ourco-team@gmail.com' }],
    ]);
    // Parsed once per call: when it was decided; the runner's own parse got that result.
    expect(parses).toEqual({ send_email: 2 });
  });

  it('a default from a random id: parsed once, and the tool gets the very value the allow was decided on', async () => {
    const { session, client, ran, parses, runnable } = setup();
    server.reply(call('p1', 'publish', { page: 'home', visibility: 'draft' }), call('p2', 'publish', { page: 'home', visibility: 'draft' }), {});
    await client.chat.completions.runTools({ model: MODEL, messages: USER, tools: [runnable('publish', Publish)] }).finalContent();

    const decided = toolDecisions(session).map((d) => d.action.input);
    expect(decided).toHaveLength(2);
    expect(ran.map(([, args]) => args)).toEqual(decided);
    expect((decided[0] as { ticket: string }).ticket).not.toBe((decided[1] as { ticket: string }).ticket);
    expect(parses).toEqual({ publish: 2 });
  });

  it('the approval request shows the parsed arguments (the default that triggered it)', async () => {
    const { session, client, ran, runnable } = setup();
    server.reply(call('a1', 'publish', { page: 'pricing' }));
    const error = await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools: [runnable('publish', Publish)] }).finalContent());

    expect(ApprovalRequiredError.isInstance(error)).toBe(true);
    const { decision } = error as ApprovalRequiredError;
    expect(decision.rule).toMatchObject({ reason: 'publishing needs a human' });
    expect(decision.action).toMatchObject({ name: 'publish', input: { page: 'pricing', visibility: 'public', ticket: expect.any(String) }, metadata: { toolCallId: 'a1' } });
    expect((await session.getApproval(decision.approvalRequest!.id))?.action).toMatchObject({ input: deniedInput(error) });
    expect(ran).toEqual([]);
  });

  it('a call replayed while it waits for its approval is decided on the input first parsed (the random default kept)', async () => {
    const { session, client, ran, runnable } = setup();
    const tools = [runnable('publish', Publish)];
    server.reply(call('a1', 'publish', { page: 'pricing' }), call('a1', 'publish', { page: 'pricing' }));
    const first = (await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools }).finalContent())) as ApprovalRequiredError;
    const again = (await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools }).finalContent())) as ApprovalRequiredError;

    expect(ApprovalRequiredError.isInstance(again)).toBe(true);
    expect(deniedInput(again)).toEqual(deniedInput(first));
    expect(again.decision.fingerprint).toBe(first.decision.fingerprint);
    expect(again.decision.approvalRequest?.id).toBe(first.decision.approvalRequest?.id);
    // The replay is the same call (same identity): the recorded decision, not a second one.
    expect(toolDecisions(session)).toHaveLength(1);

    // Answered, the call runs under its approval with the input the human saw.
    const requestId = first.decision.approvalRequest!.id;
    await session.resolveApproval(requestId, { approved: true, by: 'alice' });
    const input = deniedInput(first);
    await session.runTool('publish', { input, idempotencyKey: 'a1', approval: { requestId } }, () => ran.push(['publish', input]));
    expect(ran).toEqual([['publish', input]]);
  });

  it('arguments the parse rejects: the tool does not run, the parse ran once, the call is decided once; a deny stays a deny', async () => {
    const { session, client, ran, parses, runnable } = setup();
    const tools = [runnable('count', Count), runnable('delete_path', DeletePath)];
    // count -3 fails the schema: decided as sent (allowed, no rule), the runner's parse fails with the same error,
    // the error goes back to the model, which answers.
    server.reply(call('c1', 'count', { count: -3 }), {});
    await client.chat.completions.runTools({ model: MODEL, messages: USER, tools }).finalContent();
    const messages = (server.requests[1]?.body?.['messages'] ?? []) as Array<Record<string, unknown>>;
    const toolMessage = messages.find((m) => m['role'] === 'tool');
    expect(toolMessage).toMatchObject({ tool_call_id: 'c1', content: expect.stringContaining('too_small') });
    expect(ran).toEqual([]);
    expect(parses).toEqual({ count: 1 });
    expect(toolDecisions(session).map((d) => [d.decision, d.action.input, d.action.metadata?.['argumentsRejected']])).toEqual([['allow', { count: -3 }, true]]);

    // path 42 fails the schema, and the arguments as sent ask for a recursive delete: still denied.
    server.reply(call('d1', 'delete_path', { path: 42, recursive: true }));
    const error = await failure(client.chat.completions.runTools({ model: MODEL, messages: USER, tools }).finalContent());
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(deniedInput(error)).toEqual({ path: 42, recursive: true });
    expect(ran).toEqual([]);
    expect(toolDecisions(session)).toHaveLength(2);
  });
});

describe('parse() and stream(): parsed_arguments is what was decided', () => {
  it.each([
    ['openai 7', OpenAI, zodFunction],
    ['openai 6', OpenAIv6 as unknown as typeof OpenAI, zodFunctionV6 as unknown as typeof zodFunction],
  ])('%s chat.completions.parse(): a default a rule denies rejects; an allowed call’s parsed_arguments is the decided input', async (_name, Client, zodTool) => {
    const { session, client } = setup(Client);
    const tools = [zodTool({ name: 'delete_path', parameters: DeletePath }), zodTool({ name: 'publish', parameters: Publish })];
    server.reply(call('d1', 'delete_path', { path: '/' }));
    const error = await failure(client.chat.completions.parse({ model: MODEL, messages: USER, tools }));
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(deniedInput(error)).toEqual({ path: '/', recursive: true });

    server.reply(call('p1', 'publish', { page: 'home', visibility: 'draft' }));
    const completion = await client.chat.completions.parse({ model: MODEL, messages: USER, tools });
    const parsed = completion.choices[0]?.message.tool_calls?.[0];
    expect(parsed?.type === 'function' && parsed.function.parsed_arguments).toEqual(toolDecisions(session)[1]?.action.input);
  });

  it('chat.completions.stream(): the same', async () => {
    const { session, client } = setup();
    const tools = [zodFunction({ name: 'publish', parameters: Publish })];
    server.reply(call('p1', 'publish', { page: 'home', visibility: 'draft' }));
    const completion = await client.chat.completions.stream({ model: MODEL, messages: USER, tools }).finalChatCompletion();
    const parsed = completion.choices[0]?.message.tool_calls?.[0];
    expect(parsed?.type === 'function' && parsed.function.parsed_arguments).toEqual(toolDecisions(session)[0]?.action.input);
  });

  it('responses.parse(): a zodResponsesFunction default a rule denies rejects', async () => {
    const { session, client } = setup();
    const tools = [zodResponsesFunction({ name: 'delete_path', parameters: DeletePath }), zodResponsesFunction({ name: 'publish', parameters: Publish })];
    server.reply(call('d1', 'delete_path', { path: '/' }));
    const error = await failure(client.responses.parse({ model: MODEL, input: 'x', tools }));
    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect(deniedInput(error)).toEqual({ path: '/', recursive: true });

    server.reply(call('p1', 'publish', { page: 'home', visibility: 'draft' }));
    const response = await client.responses.parse({ model: MODEL, input: 'x', tools });
    const item = response.output.find((o) => o.type === 'function_call');
    expect(item?.type === 'function_call' && item.parsed_arguments).toEqual(toolDecisions(session)[1]?.action.input);
  });

  it('responses.stream(): the same', async () => {
    const { session, client } = setup();
    const tools = [zodResponsesFunction({ name: 'delete_path', parameters: DeletePath }), zodResponsesFunction({ name: 'publish', parameters: Publish })];
    server.reply(call('d1', 'delete_path', { path: '/' }));
    const error = await failure(client.responses.stream({ model: MODEL, input: 'x', tools }).finalResponse());
    expect(deniedInput(error)).toEqual({ path: '/', recursive: true });

    server.reply(call('p1', 'publish', { page: 'home', visibility: 'draft' }));
    const response = await client.responses.stream({ model: MODEL, input: 'x', tools }).finalResponse();
    const item = response.output.find((o) => o.type === 'function_call');
    expect(item?.type === 'function_call' && item.parsed_arguments).toEqual(toolDecisions(session)[1]?.action.input);
  });

  it('a request made with create() (the caller’s own loop, no parse the client runs) is decided on its JSON arguments', async () => {
    const { session, client } = setup();
    server.reply(call('d1', 'delete_path', { path: '/' }));
    await client.chat.completions.create({ model: MODEL, messages: USER, tools: [zodFunction({ name: 'delete_path', parameters: DeletePath })] });
    expect(toolDecisions(session).map((d) => [d.decision, d.action.input])).toEqual([['allow', { path: '/' }]]);
  });

  it('the toolParsers option: the caller’s own loop’s parse decides its calls (create(), streamed too); rejected arguments as sent', async () => {
    const session = AgentPolicy.fromDict(POLICY).session();
    const parse = (args: string) => DeletePath.parse(JSON.parse(args));
    const client = wrapOpenAI(new OpenAI({ apiKey: 'test-key', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolParsers: { delete_path: parse } });
    server.reply(call('d1', 'delete_path', { path: '/' }), call('d2', 'delete_path', { path: '/' }), call('d3', 'delete_path', { path: 7, recursive: false }));
    const error = await failure(client.chat.completions.create({ model: MODEL, messages: USER }));
    expect(deniedInput(error)).toEqual({ path: '/', recursive: true });
    const stream = await client.chat.completions.create({ model: MODEL, messages: USER, stream: true });
    const streamError = await failure((async () => {
      for await (const _chunk of stream) void _chunk;
    })());
    expect(deniedInput(streamError)).toEqual({ path: '/', recursive: true });
    await client.chat.completions.create({ model: MODEL, messages: USER });
    expect(toolDecisions(session).map((d) => [d.decision, d.action.input])).toEqual([
      ['deny', { path: '/', recursive: true }],
      ['deny', { path: '/', recursive: true }],
      ['allow', { path: 7, recursive: false }],
    ]);
    // @ts-expect-error not a function
    expect(() => wrapOpenAI(new OpenAI({ apiKey: 'k' }), session, { checkToolCalls: true, toolParsers: { x: 'zod' } })).toThrow(TypeError);
  });
});

describe('the same arguments twice in one response, and arguments the client’s parse then throws on', () => {
  const costed = (Client: typeof OpenAI = OpenAI) => {
    const session = AgentPolicy.fromDict(POLICY).session();
    const client = wrapOpenAI(new Client({ apiKey: 'test-key', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true, toolCosts: { count: 0.01, publish: 0.02 } });
    return { session, client };
  };
  const twice = (first: string, second: string, name: string, args: unknown) => ({ toolCalls: [first, second].map((id) => ({ id, name, arguments: JSON.stringify(args) })) });

  describe.each([
    ['openai 7', OpenAI, zodFunction],
    ['openai 6', OpenAIv6 as unknown as typeof OpenAI, zodFunctionV6 as unknown as typeof zodFunction],
  ])('%s', (_name, Client, zodTool) => {
    it.each([
      ['two call ids', 'c2'],
      ['one call id', 'c1'],
    ])('runTools(), a zodFunction tool called twice with the same arguments (%s): both run, each on an allow of its own', async (_what, second) => {
      const { session, client } = costed(Client);
      const ran: unknown[] = [];
      const count = zodTool({ name: 'count', parameters: Count, function: (args) => void ran.push(args) });
      server.reply(twice('c1', second, 'count', { count: 1 }), {});
      // Before, each call was parsed on its own and the client handed both runs the second parse's value: the first run
      // took the second call's allow and the second found none, so the run failed with DECISION_USED.
      await client.chat.completions.runTools({ model: MODEL, messages: USER, tools: [count] }).finalContent();
      expect(ran).toEqual([{ count: 1 }, { count: 1 }]);
      expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([
        ['allow', 'committed'],
        ['allow', 'committed'],
      ]);
      expect(session.report().reserved).toBe(0);
    });

    it('chat.completions.parse(), a random default called twice with the same arguments: each parsed_arguments is the value its call was decided on', async () => {
      const { session, client } = costed(Client);
      server.reply(twice('p1', 'p2', 'publish', { page: 'home', visibility: 'draft' }));
      const completion = await client.chat.completions.parse({ model: MODEL, messages: USER, tools: [zodTool({ name: 'publish', parameters: Publish })] });
      const calls = (completion.choices[0]?.message.tool_calls ?? []).flatMap((c) => (c.type === 'function' ? [c] : []));
      // The loop runs each call on its parsed_arguments: each takes the allow its response got, no second decision.
      // Before, the first call was decided on one ticket and handed another, so its run was another call, decided again.
      for (const c of calls) await session.runTool('publish', { input: c.function.parsed_arguments, cost: 0.02, idempotencyKey: c.id }, () => 'published');
      expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([
        ['allow', 'committed'],
        ['allow', 'committed'],
      ]);
    });

    it('chat.completions.parse() throws on arguments the parse rejects: the costs the allowed calls of that response hold are given back', async () => {
      const { session, client } = costed(Client);
      server.reply({ toolCalls: [{ id: 'c1', name: 'count', arguments: '{"count":1}' }, { id: 'c2', name: 'count', arguments: '{"count":"many"}' }] });
      const error = await failure(client.chat.completions.parse({ model: MODEL, messages: USER, tools: [zodTool({ name: 'count', parameters: Count })] }));
      expect(error).toBeInstanceOf(z.ZodError);
      await new Promise((resolve) => setImmediate(resolve));
      // The caller never gets these calls. Before, their costs stayed held until session.end() charged them.
      expect(toolDecisions(session).map((d) => [d.decision, d.settlement?.status])).toEqual([
        ['allow', 'released'],
        ['allow', 'released'],
      ]);
      expect(session.report().reserved).toBe(0);
    });
  });

  it('responses.parse() the same', async () => {
    const { session, client } = costed();
    server.reply({ toolCalls: [{ id: 'c1', name: 'count', arguments: '{"count":1}' }, { id: 'c2', name: 'count', arguments: '{' }] });
    const error = await failure(client.responses.parse({ model: MODEL, input: 'x', tools: [zodResponsesFunction({ name: 'count', parameters: Count })] }));
    expect(error).toBeInstanceOf(SyntaxError);
    await new Promise((resolve) => setImmediate(resolve));
    expect(toolDecisions(session).map((d) => d.settlement?.status)).toEqual(['released', 'released']);
    expect(session.report().reserved).toBe(0);
  });
});
