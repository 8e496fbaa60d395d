import { AgentPolicy, type AgentPolicyOptions, type Decision, type PolicySession } from '@agentpolicy/core';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockOpenAI, type MockOpenAIServer } from '@agentpolicy/test-servers';
import { wrapOpenAI } from './wrap-openai.js';

const GPT_4O_MINI_COST = 0.00045; // 1000 input, 500 output tokens
const USER = [{ role: 'user' as const, content: 'Say hello' }];
const costDecisions = (session: PolicySession): Decision[] => session.report().decisions.filter((d) => d.action.type === 'cost');
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('spend attacks on the openai client', () => {
  let server: MockOpenAIServer;
  beforeAll(async () => {
    server = await startMockOpenAI({ usage: { input: 1000, output: 500 } });
  });
  afterAll(() => server.close());
  beforeEach(() => server.reset());

  const setup = (policy: AgentPolicyOptions = { budget: 1 }, clientOptions: ConstructorParameters<typeof OpenAI>[0] = {}) => {
    const session = new AgentPolicy(policy).session();
    const client = wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL: server.baseURL, maxRetries: 0, ...clientOptions }), session);
    return { session, client };
  };

  describe('raw paths', () => {
    // The client resolves dot segments; a lenient server (or a gateway in front of it) merges slashes and decodes
    // escapes. Each of these reaches a paid route somewhere, so each is reserved and settled like create().
    for (const path of ['chat/completions', '/./chat/completions', '/x/../chat/completions', '/chat//completions', '//chat/completions', '/chat/completions/', '/chat/completions?a=1', '/chat/%63ompletions', '/CHAT/Completions', '/../v1/chat/completions']) {
      it(`client.post(${JSON.stringify(path)}) is reserved and settled`, async () => {
        const { session, client } = setup();
        await client.post(path, { body: { model: 'gpt-4o-mini', messages: USER, max_tokens: 100 } }).catch(() => undefined);
        expect(server.count()).toBe(1);
        const [decision, ...rest] = costDecisions(session);
        expect(rest).toHaveLength(0);
        expect(decision?.action.metadata).toMatchObject({ endpoint: 'chat.completions' });
        expect(session.pendingReservations).toBe(0);
        // Served: the usage; refused by the server (404): nothing.
        expect(session.spent).toBe(server.requests[0]!.path === '/v1/chat/completions' ? GPT_4O_MINI_COST : 0);
      });
    }

    it('asResponse(): the raw Response read by the caller is charged its usage', async () => {
      const { session, client } = setup();
      const response = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).asResponse();
      const body = (await response.json()) as { usage: unknown };
      expect(body.usage).toBeTruthy();
      await settle();
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });

    it('asResponse(): a raw stream cancelled unread is charged its estimate', async () => {
      const { session, client } = setup();
      const response = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 100 }).asResponse();
      await response.body?.cancel();
      await settle();
      expect(session.pendingReservations).toBe(0);
      expect(session.spent).toBe(costDecisions(session)[0]?.settlement?.estimated);
    });

    it('withResponse() charges once', async () => {
      const { session, client } = setup();
      const { data } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER }).withResponse();
      expect(data.usage?.prompt_tokens).toBe(1000);
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });
  });

  describe('streams', () => {
    it('a tee()d stream read on both branches charges once', async () => {
      const { session, client } = setup();
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true });
      const [a, b] = stream.tee();
      for await (const _ of a) void _;
      for await (const _ of b) void _;
      expect(costDecisions(session)).toHaveLength(1);
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });

    it('toReadableStream() read to its end charges the usage', async () => {
      const { session, client } = setup();
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true });
      const reader = stream.toReadableStream().getReader();
      while (!(await reader.read()).done);
      expect(session.spent).toBe(GPT_4O_MINI_COST);
    });

    it('toReadableStream() cancelled early charges the estimate', async () => {
      const { session, client } = setup();
      server.reply({ holdAfterEvents: 2 });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 100 });
      const reader = stream.toReadableStream().getReader();
      await reader.read();
      await reader.cancel();
      await settle();
      expect(session.pendingReservations).toBe(0);
      expect(session.spent).toBe(costDecisions(session)[0]?.settlement?.estimated);
    });

    it('a stream the server cuts before its usage charges the estimate, once', async () => {
      const cut = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: null }] })}\n\n`);
        setTimeout(() => res.socket?.destroy(), 20);
      });
      await new Promise<void>((resolve) => cut.listen(0, '127.0.0.1', resolve));
      try {
        const { session, client } = setup({ budget: 1 }, { baseURL: `http://127.0.0.1:${(cut.address() as AddressInfo).port}/v1` });
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, stream: true, max_tokens: 100 });
        const error = await (async () => {
          for await (const _ of stream) void _;
        })().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(Error);
        await settle();
        const [decision, ...rest] = costDecisions(session);
        expect(rest).toHaveLength(0);
        expect(session.pendingReservations).toBe(0);
        expect(session.spent).toBe(decision?.settlement?.estimated);
        expect(session.spent).toBeGreaterThan(0);
      } finally {
        cut.closeAllConnections();
        await new Promise((resolve) => cut.close(resolve));
      }
    });
  });

  describe('concurrency', () => {
    it('50 parallel calls against a budget that fits 10 never reserve or commit more than it', async () => {
      const probe = setup();
      await probe.client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 500 });
      const estimate = costDecisions(probe.session)[0]!.settlement!.estimated;
      server.reset();
      const budget = estimate * 10 + estimate / 2;
      const { session, client } = setup({ budget });
      // Every answer reports less than its estimate, so each call fits the budget it was let through on.
      server.reply(...Array.from({ length: 50 }, () => ({ usage: { input: 10, output: 100 } })));
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 500 })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
      expect(server.count()).toBe(10);
      expect(session.spent).toBeLessThanOrEqual(budget);
    });
  });

  describe('usage lies', () => {
    it('usage naming a cheaper model than the one asked for does not price it cheaper', async () => {
      const { session, client } = setup();
      server.reply({ model: 'gpt-4o-mini' });
      await client.chat.completions.create({ model: 'gpt-4o', messages: USER, max_tokens: 600 });
      // gpt-4o: $2.50 / 1M input, $10 / 1M output
      expect(session.spent).toBeCloseTo(1000 * 2.5e-6 + 500 * 10e-6, 9);
    });
    it('negative, fractional, NaN and huge token counts are charged sensibly', async () => {
      for (const usage of [{ input: -1000, output: -500 }, { input: 1.5, output: 2.5 }, { input: 1e300, output: 1 }]) {
        const { session, client } = setup();
        server.reply({ usage });
        await client.chat.completions.create({ model: 'gpt-4o-mini', messages: USER, max_tokens: 100 });
        const [decision] = costDecisions(session);
        expect(session.spent).toBeGreaterThanOrEqual(decision!.settlement!.estimated);
      }
    });
  });

  describe('SVG image output: a second model writes the SVG, billed apart from the image', () => {
    let hits = 0;
    let baseURL = '';
    const svgServer = createServer((req, res) => {
      hits++;
      req.resume();
      req.on('end', () => {
        const body = {
          created: 0,
          data: [{ b64_json: 'PHN2Zy8+' }],
          usage: { input_tokens: 20, output_tokens: 272, total_tokens: 292, input_tokens_details: { image_tokens: 0, text_tokens: 20 } },
          svg_usage: { model: 'gpt-4o-mini', input_tokens: 1000, output_tokens: 2000, reasoning_tokens: 500, total_tokens: 3000 },
        };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
    });
    beforeAll(async () => {
      await new Promise<void>((resolve) => svgServer.listen(0, '127.0.0.1', resolve));
      baseURL = `http://127.0.0.1:${(svgServer.address() as AddressInfo).port}/v1`;
    });
    afterAll(() => svgServer.close());
    beforeEach(() => {
      hits = 0;
    });
    const generate = (client: OpenAI) =>
      client.images.generate({ model: 'gpt-image-1', prompt: 'a cat', size: '1024x1024', quality: 'low', output_format: 'svg', svg: { model: 'gpt-4o-mini' } } as never);

    it('under a budget it is refused before it is sent: the authoring cost has no upper bound', async () => {
      const session = new AgentPolicy({ budget: 10 }).session();
      const error = await generate(wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL, maxRetries: 0 }), session)).catch((caught: unknown) => caught);
      expect((error as Error).message).toMatch(/SVG output .* no upper bound/);
      expect(hits).toBe(0);
      expect(session.spent).toBe(0);
    });

    it('without a budget it is sent, and the authoring usage is recorded under its own model on top of the image', async () => {
      const session = new AgentPolicy().session();
      await generate(wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL, maxRetries: 0 }), session));
      await settle();
      expect(hits).toBe(1);
      const author = session.priceUsage({ model: 'gpt-4o-mini', provider: 'openai', inputTokens: 1000, outputTokens: 2000 });
      const image = session.priceUsage({ model: 'gpt-image-1', provider: 'openai', inputTokens: 20, outputTokens: 272 });
      expect(author.ok && image.ok).toBe(true);
      const recorded = costDecisions(session).map((decision) => decision.action.metadata?.['part']);
      expect(recorded).toContain('svg author');
      // Output 2000 already holds the 500 reasoning tokens (total 3000 = 1000 + 2000): not counted twice.
      const [imageCall] = costDecisions(session).filter((decision) => decision.action.metadata?.['part'] === undefined);
      expect(imageCall!.settlement?.status).toBe('committed');
      expect(session.spent).toBeCloseTo(imageCall!.settlement!.actual + (author.ok ? author.nanos : 0) / 1e9, 9);
      expect(session.spent).toBeGreaterThan(imageCall!.settlement!.actual);
    });
  });

  describe('media usage lies', () => {
    // A server that answers embeddings and Images API calls with the usage it is given.
    let usage: unknown;
    let baseURL = '';
    const lying = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const data = req.url?.endsWith('/embeddings')
          ? [{ object: 'embedding', index: 0, embedding: Buffer.from(new Float32Array([0]).buffer).toString('base64') }]
          : [{ b64_json: 'AA==' }];
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', created: 0, model: 'm', data, usage }));
      });
    });
    beforeAll(async () => {
      await new Promise<void>((resolve) => lying.listen(0, '127.0.0.1', resolve));
      baseURL = `http://127.0.0.1:${(lying.address() as AddressInfo).port}/v1`;
    });
    afterAll(() => lying.close());
    const client = (policy: AgentPolicyOptions = { budget: 10 }) => {
      const session = new AgentPolicy(policy).session();
      return { session, client: wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL, maxRetries: 0 }), session) };
    };

    it.each([
      ['0 input and 0 output tokens', { input_tokens: 0, output_tokens: 0, total_tokens: 0 }],
      ['no output_tokens', { input_tokens: 20, total_tokens: 20 }],
      ['0 output tokens', { input_tokens: 20, output_tokens: 0, total_tokens: 20 }],
    ])('an image made and %s: the side counted 0 is charged at its estimate, never free', async (_name, reported) => {
      usage = reported;
      const { session, client: governed } = client();
      await governed.images.generate({ model: 'gpt-image-1', prompt: 'a cat', size: '1024x1024', quality: 'low' });
      const [decision] = costDecisions(session);
      expect(decision!.action.metadata).toMatchObject({ outputTokens: 272 });
      expect(decision!.action.metadata!['inputTokens']).toBeGreaterThan(0);
      expect(session.spent).toBeGreaterThan(0);
    });

    it('an image priced per image, answered with a zero token usage: charged its images', async () => {
      usage = { input_tokens: 0, output_tokens: 0, total_tokens: 0 };
      const { session, client: governed } = client({ budget: 10, pricing: { 'dall-e-3': { perImage: { '1024x1024': 0.04 } } } });
      await governed.images.generate({ model: 'dall-e-3', prompt: 'a cat', size: '1024x1024' });
      expect(session.spent).toBe(0.04);
    });

    it('embeddings answered with prompt_tokens: 0: charged the estimate, never $0', async () => {
      usage = { prompt_tokens: 0, total_tokens: 0 };
      const { session, client: governed } = client();
      await governed.embeddings.create({ model: 'text-embedding-3-small', input: 'one sentence' });
      const [decision] = costDecisions(session);
      expect(session.spent).toBe(decision!.settlement!.estimated);
      expect(session.spent).toBeGreaterThan(0);
    });
  });
});
