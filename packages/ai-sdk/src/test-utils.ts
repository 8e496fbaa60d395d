// Shared fixtures for the tests (not part of the package's API).
import { AgentPolicy, PolicyDeniedError, findPolicyError, type AgentPolicyOptions, type Decision } from '@agentpolicy/core';
import { RetryError } from 'ai';
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

/** The policy denial a call failed with (after a retry, the AI SDK wraps it in a RetryError as its `lastError`). */
export function denialOf(error: unknown): PolicyDeniedError | undefined {
  const found = findPolicyError(RetryError.isInstance(error) ? error.lastError : error);
  return found instanceof PolicyDeniedError ? found : undefined;
}
