// Shared fixtures for the tests (not part of the package's API).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentPolicy, type AgentPolicyOptions, type Decision } from '@agentpolicy/core';
import type { LanguageModelV4GenerateResult, LanguageModelV4StreamPart } from '@ai-sdk/provider';

/** USD per million tokens for the mock model: 1,000 input tokens cost $0.01, 1,000 output tokens $0.02. */
export const MOCK_PRICE = { input: 10, output: 20, maxOutputTokens: 4096 };

export function makePolicy(options: AgentPolicyOptions = {}): AgentPolicy {
  return new AgentPolicy({ pricing: { 'mock-model-id': MOCK_PRICE }, ...options });
}

export function usage(input: number, output: number) {
  return {
    inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: undefined },
    outputTokens: { total: output, text: output, reasoning: 0 },
  };
}

/** USD the mock model costs for a usage, computed by hand from MOCK_PRICE. */
export function priceOf(input: number, output: number): number {
  return (input * MOCK_PRICE.input + output * MOCK_PRICE.output) / 1_000_000;
}

export function toolCallResult(toolName: string, toolCallId: string, input: unknown, tokens = usage(10, 5)): LanguageModelV4GenerateResult {
  return {
    content: [{ type: 'tool-call', toolCallId, toolName, input: JSON.stringify(input) }],
    finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
    usage: tokens,
    warnings: [],
  };
}

export function textResult(text: string, tokens = usage(20, 7)): LanguageModelV4GenerateResult {
  return { content: [{ type: 'text', text }], finishReason: { unified: 'stop', raw: 'stop' }, usage: tokens, warnings: [] };
}

export function textStreamParts(text: string[], tokens = usage(20, 7)): LanguageModelV4StreamPart[] {
  return [
    { type: 'stream-start', warnings: [] },
    { type: 'text-start', id: 't1' },
    ...text.map((delta): LanguageModelV4StreamPart => ({ type: 'text-delta', id: 't1', delta })),
    { type: 'text-end', id: 't1' },
    { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage: tokens },
  ];
}

export function toolCallStreamParts(toolName: string, toolCallId: string, input: unknown, tokens = usage(10, 5)): LanguageModelV4StreamPart[] {
  return [
    { type: 'stream-start', warnings: [] },
    { type: 'tool-call', toolCallId, toolName, input: JSON.stringify(input) },
    { type: 'finish', finishReason: { unified: 'tool-calls', raw: 'tool_calls' }, usage: tokens },
  ];
}

/** A stream that hands out one part per read, like a network stream (nothing is pushed ahead of the reader). */
export function pulledStream<T>(parts: readonly T[]): ReadableStream<T> {
  let index = 0;
  return new ReadableStream<T>(
    {
      pull(controller) {
        if (index < parts.length) controller.enqueue(parts[index++] as T);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** The text a tool result carried to the model (the last tool message of a prompt). */
export function lastToolOutput(prompt: readonly unknown[]): unknown {
  const message = [...prompt].reverse().find((m) => (m as { role?: string }).role === 'tool') as { content: Array<{ output?: unknown }> } | undefined;
  return message?.content.at(-1)?.output;
}

export function toolDecisions(decisions: readonly Decision[]): Decision[] {
  return decisions.filter((d) => d.action.type === 'tool');
}

export function modelDecisions(decisions: readonly Decision[]): Decision[] {
  return decisions.filter((d) => d.action.type === 'cost');
}

/** A local server that fails its first requests (with `statuses`, in order) and forwards the rest to `target`. */
export interface FlakyServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseURL: string;
  /** Requests received, failed ones included. */
  readonly hits: number;
  close(): Promise<void>;
}

/**
 * Starts a {@link FlakyServer} on 127.0.0.1 (a free port) in front of `target` (a billing server's base URL). A
 * failure carries `retry-after-ms: 0`, so the AI SDK retries at once.
 */
export async function startFlakyServer(target: string, statuses: number[]): Promise<FlakyServer> {
  const queue = [...statuses];
  const origin = new URL(target).origin;
  let hits = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      hits++;
      const status = queue.shift();
      if (status !== undefined) {
        res.writeHead(status, { 'content-type': 'application/json', 'retry-after-ms': '0' }).end(JSON.stringify({ error: { message: `status ${status}`, type: 'server_error' } }));
        return;
      }
      const headers = req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : undefined;
      fetch(`${origin}${req.url ?? '/'}`, { method: req.method ?? 'POST', ...(headers ? { headers } : {}), body: new Uint8Array(Buffer.concat(chunks)) })
        .then(async (answer) => res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await answer.arrayBuffer())))
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    get hits() {
      return hits;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
