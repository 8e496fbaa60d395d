import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentPolicy, PolicyDeniedError, findPolicyError, type AgentPolicyOptions } from '@agentpolicy/core';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { wrapOpenAI } from './wrap-openai.js';

// A local OpenAI stand-in that bills every request the most the provider could bill for it: the whole output
// limit for every choice (the model's maximum when the request sets none), images at their documented maximum,
// audio for its whole duration. Requests are held a little so a burst overlaps.

const GPT_4O_MAX_OUTPUT = 16384;
const GPT_4O_IMAGE_MAX = 85 + 8 * 170;
const GPT_IMAGE_MAX = 6240;

interface Billing {
  server: Server;
  baseURL: string;
  hits: number;
  reset(): void;
}

// Text at about 4 bytes a token; image parts are billed by the image formula, not as text.
const textTokens = (value: unknown): number =>
  Math.ceil(Buffer.byteLength(JSON.stringify(value ?? '', (_key, item: unknown) => (IMAGE_TYPES.has((item as { type?: string } | null)?.type ?? '') ? null : item))) / 4);
const IMAGE_TYPES = new Set(['image_url', 'input_image']);

function countParts(value: unknown, types: readonly string[]): number {
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + countParts(item, types), 0);
  if (typeof value !== 'object' || value === null) return 0;
  const record = value as Record<string, unknown>;
  const own = typeof record['type'] === 'string' && types.includes(record['type']) ? 1 : 0;
  return own + Object.values(record).reduce((sum: number, item) => sum + countParts(item, types), 0);
}

function wavDuration(body: Buffer): number {
  const at = body.indexOf('RIFF');
  const data = body.indexOf('data', at);
  const byteRate = body.readUInt32LE(at + 28);
  const end = body.indexOf('\r\n--', data);
  return (end - data - 8) / byteRate;
}

function wav(seconds: number): Buffer {
  const rate = 8000;
  const data = Buffer.alloc(rate * seconds);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate, 28);
  header.writeUInt16LE(1, 32);
  header.writeUInt16LE(8, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

function bill(path: string, body: Buffer): Record<string, unknown> {
  const json = (): Record<string, unknown> => JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  if (path.endsWith('/chat/completions')) {
    const request = json();
    const n = typeof request['n'] === 'number' ? request['n'] : 1;
    const limit = (request['max_completion_tokens'] ?? request['max_tokens'] ?? GPT_4O_MAX_OUTPUT) as number;
    const images = countParts(request['messages'], ['image_url']);
    return {
      id: 'c',
      object: 'chat.completion',
      created: 0,
      model: request['model'],
      choices: Array.from({ length: n }, (_, index) => ({ index, message: { role: 'assistant', content: 'x' }, finish_reason: 'length' })),
      usage: { prompt_tokens: textTokens(request['messages']) + images * GPT_4O_IMAGE_MAX, completion_tokens: limit * n, total_tokens: 0 },
    };
  }
  if (path.endsWith('/responses')) {
    const request = json();
    const images = countParts(request['input'], ['input_image']);
    return {
      id: 'r',
      object: 'response',
      created_at: 0,
      status: 'incomplete',
      model: request['model'],
      output: [],
      usage: { input_tokens: textTokens(request['input']) + images * GPT_4O_IMAGE_MAX, output_tokens: (request['max_output_tokens'] as number | undefined) ?? GPT_4O_MAX_OUTPUT, total_tokens: 0 },
    };
  }
  if (path.endsWith('/embeddings')) {
    const request = json();
    return { object: 'list', model: request['model'], data: [{ object: 'embedding', index: 0, embedding: [0] }], usage: { prompt_tokens: textTokens(request['input']), total_tokens: 0 } };
  }
  if (path.endsWith('/images/generations')) {
    const request = json();
    const n = typeof request['n'] === 'number' ? request['n'] : 1;
    const data = Array.from({ length: n }, () => ({ b64_json: 'AA==' }));
    if (request['model'] !== 'gpt-image-1') return { created: 0, data };
    return { created: 0, data, usage: { input_tokens: textTokens(request['prompt']), output_tokens: GPT_IMAGE_MAX * n, total_tokens: 0 } };
  }
  if (path.endsWith('/audio/transcriptions')) {
    return { text: 'x', usage: { type: 'duration', seconds: wavDuration(body) } };
  }
  return {};
}

async function startBillingServer(): Promise<Billing> {
  const state = { hits: 0 };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      state.hits++;
      const path = (req.url ?? '').split('?')[0]!;
      setTimeout(() => {
        if (path.endsWith('/audio/speech')) {
          res.writeHead(200, { 'content-type': 'audio/mpeg' }).end(Buffer.alloc(16));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(bill(path, Buffer.concat(chunks))));
      }, 15);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    baseURL: `http://127.0.0.1:${port}/v1`,
    get hits() {
      return state.hits;
    },
    reset() {
      state.hits = 0;
    },
  };
}

const PRICING: AgentPolicyOptions['pricing'] = {
  'dall-e-3': { perImage: { '1024x1024': 0.04, 'hd/1024x1024': 0.08, '1024x1792': 0.08, 'hd/1024x1792': 0.12 } },
  'tts-1': { perCharacter: '0.000015' },
};
const IMAGE = 'https://images.example/cat.png';
const K = 3;

type Call = (client: OpenAI) => Promise<unknown>;

const FAMILIES: ReadonlyArray<[string, Call]> = [
  ['chat with n: 5 and no output limit', (c) => c.chat.completions.create({ model: 'gpt-4o', n: 5, messages: [{ role: 'user', content: 'Write a poem' }] })],
  [
    'chat with a high-detail image',
    (c) =>
      c.chat.completions.create({
        model: 'gpt-4o',
        max_completion_tokens: 50,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: IMAGE, detail: 'high' } }] }],
      }),
  ],
  [
    'Responses with an input_image and no output limit',
    (c) => c.responses.create({ model: 'gpt-4o', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Describe' }, { type: 'input_image', image_url: IMAGE, detail: 'high' }] }] }),
  ],
  ['embeddings', (c) => c.embeddings.create({ model: 'text-embedding-3-small', input: ['one sentence', 'another sentence'] })],
  ['images: dall-e-3 hd, priced per image', (c) => c.images.generate({ model: 'dall-e-3', prompt: 'a cat', size: '1024x1792', quality: 'hd' })],
  ['images: gpt-image-1 n: 2, token-billed', (c) => c.images.generate({ model: 'gpt-image-1', prompt: 'a cat', n: 2 })],
  ['audio: whisper-1, billed by the second', async (c) => c.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(30), 'a.wav', { type: 'audio/wav' }) })],
  ['audio: tts-1, billed per character', (c) => c.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hello there, this is a test.' })],
];

describe('worst-case estimates under a concurrent burst (openai)', () => {
  let billing: Billing;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.server.close());
  beforeEach(() => billing.reset());

  const client = (budget: number) => {
    const session = new AgentPolicy({ budget, pricing: PRICING }).session();
    return { session, client: wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL: billing.baseURL, maxRetries: 0 }), session) };
  };

  it.each(FAMILIES)('%s: a budget for 3 worst cases lets at most that many calls reach the server and never overspends', async (_name, call) => {
    // The worst case of one call, as reserved.
    const probe = client(1000);
    await call(probe.client);
    const estimate = probe.session.report().decisions.find((d) => d.action.type === 'cost')!.settlement!.estimated;
    expect(probe.session.spent).toBeLessThanOrEqual(estimate);
    billing.reset();

    const budget = Math.round((K * estimate + estimate / 2) * 1e9) / 1e9;
    const { session, client: governed } = client(budget);
    const results = await Promise.allSettled(Array.from({ length: 3 * K }, () => call(governed)));
    expect(billing.hits).toBeLessThanOrEqual(K);
    expect(billing.hits).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(billing.hits);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(PolicyDeniedError);
    expect(session.spent).toBeLessThanOrEqual(budget);
    expect(session.report().overrun).toBe(0);
  });

  it('refuses, with what to set, a call whose cost has no known bound', async () => {
    const { client: governed } = client(10);
    const file = await toFile(Buffer.from('not a wav header at all'), 'a.mp3', { type: 'audio/mpeg' });
    await expect(governed.audio.transcriptions.create({ model: 'whisper-1', file })).rejects.toThrow(/max_audio_seconds/);
    await expect(governed.images.generate({ model: 'dall-e-2', prompt: 'x' })).rejects.toThrow(/per_image/);
    expect(billing.hits).toBe(0);
  });
});

describe('redirects followed by a wrapped client', () => {
  let target: Server;
  let origin: Server;
  let targetHits = 0;
  let targetPort = 0;
  let originURL = '';

  beforeAll(async () => {
    target = createServer((req, res) => {
      targetHits++;
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }),
      );
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as AddressInfo).port;
    origin = createServer((req, res) => {
      req.resume();
      const host = req.url?.includes('allowed') ? '127.0.0.1' : 'localhost';
      res.writeHead(307, { location: `http://${host}:${targetPort}/v1/chat/completions` }).end();
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    originURL = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    target.close();
    origin.close();
  });

  it('a 307 to a host off the allow-list is refused with no request to it; an allowed hop goes through', async () => {
    const session = new AgentPolicy({ budget: 1, allowedDomains: ['127.0.0.1'] }).session();
    const messages = [{ role: 'user' as const, content: 'hi' }];
    // No retries: the client reports the refused hop as a connection error caused by the policy error.
    const once = wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL: `${originURL}/v1`, maxRetries: 0 }), session);
    const wrapped = await once.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 5 }).catch((caught: unknown) => caught);
    expect(findPolicyError(wrapped)).toBeInstanceOf(PolicyDeniedError);
    expect((findPolicyError(wrapped) as PolicyDeniedError).decision.action).toMatchObject({ type: 'http', domain: 'localhost' });
    // With retries: the retry is refused before it is sent, with the policy error itself.
    const retried = wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL: `${originURL}/v1`, maxRetries: 2 }), session);
    const error = await retried.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 5 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PolicyDeniedError);
    expect(targetHits).toBe(0);
    expect(session.pendingReservations).toBe(0);
    expect(session.spent).toBe(0);

    const allowed = wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL: `${originURL}/allowed/v1`, maxRetries: 0 }), session);
    await allowed.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 5 });
    expect(targetHits).toBe(1);
  });
});
