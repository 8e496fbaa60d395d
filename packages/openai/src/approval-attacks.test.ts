// Attacks on call identity through the real openai client against a local server: a model that repeats one tool
// call id (with the same arguments) across the turns of a runTools() loop, where the client runs the tool functions
// itself, and an approval that is answered for one call and offered for another.
import { AgentPolicy, ApprovalRequiredError } from '@agentpolicy/core';
import OpenAI from 'openai';
import OpenAIv6 from 'openai-v6';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import { wrapOpenAI } from './wrap-openai.js';

const USER = [{ role: 'user' as const, content: 'Weather?' }];

const CLIENTS: ReadonlyArray<[string, typeof OpenAI]> = [
  ['openai 7', OpenAI],
  ['openai 6', OpenAIv6 as unknown as typeof OpenAI],
];

describe.each(CLIENTS)('%s runTools(): each allow runs the tool function once', (_name, OpenAIClient) => {
  let server: MockOpenAIServer;
  beforeAll(async () => {
    server = await startMockOpenAI({ usage: { input: 10, output: 5 } });
  });
  afterAll(() => server.close());
  beforeEach(() => server.reset());

  const weatherTool = (ran: string[], parse?: (args: string) => unknown) => ({
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } } },
      function: (args: { city: string } | string) => {
        ran.push(typeof args === 'string' ? (JSON.parse(args) as { city: string }).city : args.city);
        return 'sunny';
      },
      ...(parse ? { parse } : {}),
    },
  });

  for (const [label, parse] of [
    ['a plain function', undefined],
    ['a function with a parse', (args: string) => JSON.parse(args) as unknown],
  ] as const) {
    it(`${label}: the same call id and arguments in the next turn is decided again and counted by a limit`, async () => {
      const session = new AgentPolicy({ limits: [{ tool: 'get_weather', max_calls: 1, per: 'session' }] } as never).session();
      const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL }), session, { checkToolCalls: true });
      const call = { toolCalls: [{ id: 'call_0', name: 'get_weather', arguments: '{"city":"Paris"}' }] };
      server.reply(call, call);
      const ran: string[] = [];
      const runner = client.chat.completions.runTools({ model: 'gpt-4o-mini', messages: USER, tools: [weatherTool(ran, parse as never)] as never });
      await runner.finalContent().catch(() => undefined);
      // max_calls 1: the second turn's call is denied, not run under the first call's allow.
      expect(ran).toEqual(['Paris']);
      expect(session.report().decisions.filter((d) => d.action.type === 'tool').map((d) => d.decision)).toEqual(['allow', 'deny']);
    });
  }

  it('an approval answered for one call does not let another call through', async () => {
    const session = new AgentPolicy({ approvalRules: [{ tool: 'get_weather' }] }).session();
    const client = wrapOpenAI(new OpenAIClient({ apiKey: 'k', baseURL: server.baseURL }), session, { checkToolCalls: true });
    server.reply({ toolCalls: [{ id: 'call_0', name: 'get_weather', arguments: '{"city":"Paris"}' }] });
    const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
    expect(ApprovalRequiredError.isInstance(error)).toBe(true);
    const requestId = (error as ApprovalRequiredError).decision.approvalRequest!.id;
    await session.resolveApproval(requestId, { approved: true, by: 'ops' });
    // The model now returns the same id with other arguments: the response is refused, the approval not used.
    server.reply({ toolCalls: [{ id: 'call_0', name: 'get_weather', arguments: '{"city":"Pyongyang"}' }] });
    const again = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).catch((e: unknown) => e);
    expect(ApprovalRequiredError.isInstance(again)).toBe(true);
    expect((await session.getApproval(requestId))?.status).toBe('approved');
  });
});
