/**
 * A tiny local stand-in for the OpenAI API (`POST /v1/chat/completions`, JSON and SSE) so the example runs offline.
 * Every answer reports about a token per 4 bytes of the messages as input, and 250 output tokens.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MockServer {
  readonly baseURL: string;
  /** Requests received so far. */
  readonly received: () => number;
  close(): Promise<void>;
}

const WORDS = ['Policies ', 'keep ', 'agents ', 'honest.'];

export async function startMockServer(): Promise<MockServer> {
  let received = 0;
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
    req.on('end', () => {
      received++;
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return json(res, 404, { error: { message: 'not found' } });
      const body = JSON.parse(raw) as { model: string; messages: unknown; stream?: boolean; stream_options?: { include_usage?: boolean } };
      const input = Math.ceil(JSON.stringify(body.messages).length / 4);
      const USAGE = { prompt_tokens: input, completion_tokens: 250, total_tokens: input + 250 };
      const base = { id: `chatcmpl-${received}`, created: 1_700_000_000, model: `${body.model}-2024-07-18` };
      if (!body.stream) {
        return json(res, 200, {
          ...base,
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: WORDS.join(''), refusal: null }, finish_reason: 'stop', logprobs: null }],
          usage: USAGE,
        });
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (choices: unknown[], usage: unknown = null) =>
        res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices, usage })}\n\n`);
      for (const word of WORDS) chunk([{ index: 0, delta: { content: word }, finish_reason: null }]);
      chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]);
      if (body.stream_options?.include_usage) chunk([], USAGE);
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    received: () => received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
