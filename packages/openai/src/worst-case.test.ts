import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runBurst, startBillingServer, wav, type BillingServer } from '@agentpolicy/test-servers';
import { AgentPolicy, PolicyDeniedError, findPolicyError, type AgentPolicyOptions } from '@agentpolicy/core';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { wrapOpenAI } from './wrap-openai.js';

const PRICING: AgentPolicyOptions['pricing'] = {
  'dall-e-3': { perImage: { '1024x1024': 0.04, 'hd/1024x1024': 0.08, '1024x1792': 0.08, 'hd/1024x1792': 0.12 } },
  'tts-1': { perCharacter: '0.000015' },
};
const IMAGE = 'https://images.example/cat.png';
/** The 8-byte PNG signature: enough for an upload the server counts as an image. */
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

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
  // gpt-image-2 bills by the size asked, up to 4K: more than gpt-image-1's largest image.
  ['images: gpt-image-2 at 3840x2160, high quality', (c) => c.images.generate({ model: 'gpt-image-2', prompt: 'a cat', size: '3840x2160', quality: 'high' })],
  ['images: gpt-image-2 n: 2, size auto (the dearest size)', (c) => c.images.generate({ model: 'gpt-image-2', prompt: 'a cat', n: 2, size: 'auto' })],
  [
    'images: gpt-image-2 edit of two images (read at high fidelity)',
    async (c) => c.images.edit({ model: 'gpt-image-2', prompt: 'add a hat', size: '1024x1024', image: [await toFile(PNG, 'a.png', { type: 'image/png' }), await toFile(PNG, 'b.png', { type: 'image/png' })] }),
  ],
  ['audio: whisper-1, billed by the second', async (c) => c.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(30), 'a.wav', { type: 'audio/wav' }) })],
  ['audio: tts-1, billed per character', (c) => c.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hello there, this is a test.' })],
];

const isDenial = (reason: unknown): boolean => findPolicyError(reason) instanceof PolicyDeniedError;

describe('worst-case estimates under a concurrent burst (openai)', () => {
  let billing: BillingServer;
  beforeAll(async () => {
    billing = await startBillingServer();
  });
  afterAll(() => billing.close());
  beforeEach(() => billing.reset());

  const client = (budget: number) => {
    const session = new AgentPolicy({ budget, pricing: PRICING }).session();
    return { session, client: wrapOpenAI(new OpenAI({ apiKey: 'k', baseURL: billing.baseURL, maxRetries: 0 }), session) };
  };

  it.each(FAMILIES)('%s: a budget for 3 worst cases lets at most 3 calls reach the server and never overspends', async (_name, call) => {
    const burst = await runBurst(billing, (budget) => {
      const { session, client: governed } = client(budget);
      return { session, call: () => call(governed) };
    }, { isDenial });
    expect(burst.problems).toEqual([]);
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
