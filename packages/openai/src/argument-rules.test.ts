// Conditional rules, limits and shadow mode decided on the arguments of the tool calls the model returns, through
// the wrapped client (`checkToolCalls: true`) against the local mock server: a call the policy refuses never reaches
// the caller's loop (runTools, or a hand-written one), and the arguments decided are the ones the loop would run.
import { AgentPolicy, ApprovalRequiredError, PolicyDeniedError, type PolicySession } from '@agentpolicy/core';
import OpenAI from 'openai';
import type { RunnableToolFunctionWithParse } from 'openai/lib/RunnableFunction';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { wrapOpenAI } from './wrap-openai.js';
import { ARGUMENT_RULES, SHADOW_CALLS, SHADOW_OUTCOMES, startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';

const USER = [{ role: 'user' as const, content: 'Do the task.' }];

let server: MockOpenAIServer;
beforeAll(async () => {
  server = await startMockOpenAI();
});
afterAll(() => server.close());
beforeEach(() => server.reset());

function setup(policy: Record<string, unknown> = ARGUMENT_RULES) {
  const session = AgentPolicy.fromDict(policy).session();
  const client = wrapOpenAI(new OpenAI({ apiKey: 'test-key', baseURL: server.baseURL, maxRetries: 0 }), session, { checkToolCalls: true });
  const ran: string[] = [];
  // runTools' own functions: each records its call, so a call the policy refused would show here.
  const fn = (name: string): RunnableToolFunctionWithParse<Record<string, unknown>> => ({
    type: 'function' as const,
    function: {
      name,
      description: name,
      parameters: { type: 'object', properties: {} },
      parse: (text: string) => JSON.parse(text) as Record<string, unknown>,
      function: (args: Record<string, unknown>) => {
        ran.push(`${name} ${JSON.stringify(args)}`);
        return 'done';
      },
    },
  });
  const runTools = (...names: string[]) => client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: USER, tools: names.map(fn) });
  return { session, client, ran, runTools };
}
const call = (id: string, name: string, args: unknown) => ({ toolCalls: [{ id, name, arguments: JSON.stringify(args) }] });
const toolDecisions = (session: PolicySession) => session.report().decisions.filter((d) => d.action.type === 'tool');
const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => (error instanceof Error && error.cause !== undefined ? error.cause : error));

describe('argument rules on the tool calls the model returns', () => {
  it('unless: runTools never runs mail to another domain; mail to ourco.com runs', async () => {
    const { session, ran, runTools } = setup();
    server.reply(call('c1', 'send_email', { to: 'ada@ourco.com' }), {}, call('c2', 'send_email', { to: 'eve@ourco.com.evil.io' }));
    await runTools('send_email').finalContent();
    const error = await failure(runTools('send_email').finalContent());

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision).toMatchObject({ rule: { section: 'rules', index: 0 }, action: { name: 'send_email', input: { to: 'eve@ourco.com.evil.io' }, metadata: { toolCallId: 'c2' } } });
    expect(ran).toEqual(['send_email {"to":"ada@ourco.com"}']);
    expect(toolDecisions(session).map((d) => d.decision)).toEqual(['allow', 'deny']);
  });

  it('unless, streamed (chat and Responses): the denied call is never handed out', async () => {
    const { client } = setup();
    server.reply(call('c1', 'send_email', { to: 'eve@gmail.com' }), call('c2', 'send_email', { to: 'eve@gmail.com' }));
    const chat = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true });
    const finishes: unknown[] = [];
    const chatError = await failure(
      (async () => {
        for await (const chunk of chat) finishes.push(chunk.choices[0]?.finish_reason);
      })(),
    );
    expect(PolicyDeniedError.isInstance(chatError)).toBe(true);
    expect(finishes).not.toContain('tool_calls');

    const responses = await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true });
    const types: string[] = [];
    const responsesError = await failure(
      (async () => {
        for await (const event of responses) types.push(event.type);
      })(),
    );
    expect(PolicyDeniedError.isInstance(responsesError)).toBe(true);
    expect(types).not.toContain('response.function_call_arguments.done');
  });

  it('if gt: a large refund rejects with its approval request; the answer runs exactly that input, once', async () => {
    const { session, client, ran, runTools } = setup();
    server.reply(call('r1', 'refund', { amount: 40 }), {}, call('r2', 'refund', { amount: 250 }));
    await runTools('refund').finalContent();
    const error = await failure(client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }));
    expect(ran).toEqual(['refund {"amount":40}']);

    expect(ApprovalRequiredError.isInstance(error)).toBe(true);
    const { decision } = error as ApprovalRequiredError;
    expect(decision).toMatchObject({ rule: { section: 'rules', index: 1, reason: 'large refunds' }, action: { name: 'refund', input: { amount: 250 } } });
    const requestId = decision.approvalRequest!.id;
    expect(await session.resolveApproval(requestId, { approved: true, by: 'alice' })).toMatchObject({ ok: true });

    const refund = (amount: number) => () => ran.push(`refund ${amount}`);
    const approved = { idempotencyKey: 'r2', approval: { requestId } };
    await expect(session.runTool('refund', { input: { amount: 9000 }, ...approved }, refund(9000))).rejects.toThrow(/requires approval/);
    await session.runTool('refund', { input: { amount: 250 }, ...approved }, refund(250));
    await expect(session.runTool('refund', { input: { amount: 250 }, ...approved }, refund(250))).rejects.toThrow(/requires approval/);
    expect(ran).toEqual(['refund {"amount":40}', 'refund 250']);
  });

  it('command: rm -rf / and an unparseable command line never reach the shell tool; ls runs', async () => {
    const { session, ran, runTools } = setup();
    for (const command of ['rm -rf /', 'ls; rm -rf /', 'ls | xargs rm -rf']) {
      server.reply(call('s1', 'shell', { command }));
      expect(PolicyDeniedError.isInstance(await failure(runTools('shell').finalContent())), command).toBe(true);
    }
    server.reply(call('s2', 'shell', { command: 'ls -la' }), {});
    await runTools('shell').finalContent();

    expect(ran).toEqual(['shell {"command":"ls -la"}']);
    expect(toolDecisions(session).map((d) => [d.decision, d.rule?.section])).toEqual([
      ['deny', 'rules'],
      ['deny', 'rules'],
      ['deny', 'rules'],
      ['allow', 'default'],
    ]);
  });

  it('limits: the third search in one runTools loop (max 2 per minute) is refused and never runs', async () => {
    const { session, ran, runTools } = setup();
    server.reply(call('q1', 'search', { query: 'a' }), call('q2', 'search', { query: 'b' }), call('q3', 'search', { query: 'c' }), {});
    const error = await failure(runTools('search').finalContent());

    expect(PolicyDeniedError.isInstance(error)).toBe(true);
    expect((error as PolicyDeniedError).decision.rule).toMatchObject({ section: 'limits', index: 0 });
    expect(ran).toEqual(['search {"query":"a"}', 'search {"query":"b"}']);
    expect(toolDecisions(session).map((d) => d.decision)).toEqual(['allow', 'allow', 'deny']);
  });

  it('mode: shadow passes every call through and records what would have been decided', async () => {
    const { session, ran, runTools } = setup({ ...ARGUMENT_RULES, mode: 'shadow' });
    server.reply(
      ...SHADOW_CALLS.map(([name, input], i) => call(`m${i + 1}`, name, input)),
      {},
    );
    await runTools('send_email', 'refund', 'shell', 'search').finalContent();

    expect(ran).toHaveLength(6);
    const decisions = toolDecisions(session);
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'allow', 'allow', 'allow', 'allow', 'allow']);
    expect(decisions.map((d) => d.shadow && [d.shadow.decision, d.shadow.rule.section])).toEqual(SHADOW_OUTCOMES);
  });
});
