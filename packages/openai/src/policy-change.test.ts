// A policy tightened (a PolicySource update, a reloaded file) after the model's tool calls were decided, when the
// response arrived, and before the client runs them: runTools() runs the functions itself, one call after another,
// so a reload while one tool runs must stop a later call of the same turn that the new policy blocks.
import { AgentPolicy, findPolicyError, PolicyDeniedError, PolicySource } from '@agentpolicy/core';
import OpenAI from 'openai';
import OpenAIv6 from 'openai-v6';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import { wrapOpenAI } from './wrap-openai.js';

const CLIENTS: ReadonlyArray<[string, typeof OpenAI]> = [
  ['openai 7', OpenAI],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI],
];

describe.each(CLIENTS)('%s runTools(): a policy change between the decision and the run', (_name, OpenAIClient) => {
  let server: MockOpenAIServer;
  beforeAll(async () => {
    server = await startMockOpenAI({ usage: { input: 10, output: 5 } });
  });
  afterAll(() => server.close());
  beforeEach(() => server.reset());

  for (const [label, parallel, parse] of [
    ['calls run one after another, plain functions', false, undefined],
    ['calls run one after another, functions with a parse', false, (args: string) => JSON.parse(args) as unknown],
  ] as const) {
    it(`${label}: a reload while the first tool runs stops the second, which the new policy blocks`, async () => {
      const source = new PolicySource(AgentPolicy.fromDict({ budget: { max_spend: 1 } }));
      const session = source.session();
      const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL }), session, { checkToolCalls: true });
      server.reply(
        {
          toolCalls: [
            { id: 'call_0', name: 'lookup', arguments: '{"order":"A1"}' },
            { id: 'call_1', name: 'refund', arguments: '{"order":"A1"}' },
          ],
        },
        {},
      );
      const ran: string[] = [];
      const tool = (name: string, run: () => void) => ({
        type: 'function' as const,
        function: {
          name,
          parameters: { type: 'object', properties: { order: { type: 'string' } } },
          function: (args: unknown) => {
            ran.push(name);
            run();
            return `${name} done for ${JSON.stringify(args)}`;
          },
          ...(parse ? { parse } : {}),
        },
      });
      const runner = client.chat.completions.runTools({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'refund A1' }],
        parallel_tool_calls: parallel,
        tools: [tool('lookup', () => source.update({ budget: { max_spend: 1 }, tools: { block: ['refund'] } })), tool('refund', () => undefined)] as never,
      });
      await runner.finalContent().catch(() => undefined);

      expect(ran).toEqual(['lookup']);
      const decisions = session.report().decisions.filter((d) => d.action.type === 'tool');
      expect(decisions.map((d) => `${(d.action as { name: string }).name}:${d.decision}`)).toEqual(['lookup:allow', 'refund:allow', 'refund:deny']);
      expect(decisions.at(-1)).toMatchObject({ rule: { section: 'tools', list: 'block' }, policyHash: source.current.hash });
    });
  }

  it('calls run side by side: a reload after the calls of the response were decided, before the client runs it, stops the call the new policy blocks', async () => {
    const source = new PolicySource(AgentPolicy.fromDict({}));
    const session = source.session();
    const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL }), session, { checkToolCalls: true });
    server.reply({
      toolCalls: [
        { id: 'call_0', name: 'lookup', arguments: '{"order":"A1"}' },
        { id: 'call_1', name: 'refund', arguments: '{"order":"A1"}' },
      ],
    }, {});
    const ran: string[] = [];
    const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object', properties: {} }, function: () => void ran.push(name) } });
    const runner = client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'refund A1' }], tools: [tool('lookup'), tool('refund')] as never });
    // The reload lands once the response (and its calls' decisions) is in, before the client runs any function.
    runner.once('chatCompletion', () => source.update({ tools: { block: ['refund'] } }));
    const error = await runner.finalContent().catch((e: unknown) => e);

    expect(ran).toEqual(['lookup']);
    expect(findPolicyError(error)).toBeInstanceOf(PolicyDeniedError);
    expect(session.report().decisions.at(-1)).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
  });
});

