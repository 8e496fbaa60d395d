import type { Metadata, UsageUpdate } from '@agentpolicy/core';

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
}

function sum(...values: Array<number | undefined>): number | undefined {
  const known = values.filter((value): value is number => value !== undefined);
  return known.length === 0 ? undefined : known.reduce((a, b) => a + b, 0);
}

/**
 * Maps the usage a language model reports (spec V3/V4: `inputTokens { total, noCache, cacheRead, cacheWrite }`,
 * `outputTokens { total, text, reasoning }`; or the flat V2 shape) onto core's token usage. A missing total is
 * rebuilt from its parts when its main part (`noCache`, `text`) is there; a side the provider did not report (only
 * cache or reasoning counts are details of it, not all of it) is taken from the reservation's worst-case estimate
 * (`estimatedInputTokens` / `maxOutputTokens` in its metadata), so unreported usage is never charged as zero.
 * Returns undefined when nothing usable was reported (the caller then charges the estimate).
 */
export function toUsageUpdate(usage: unknown, estimate: Metadata | undefined): UsageUpdate | undefined {
  const raw = record(usage);
  if (!raw) return undefined;
  let input: number | undefined;
  let output: number | undefined;
  let cacheRead: number | undefined;
  let cacheWrite: number | undefined;
  let reasoning: number | undefined;
  const nestedIn = record(raw.inputTokens);
  const nestedOut = record(raw.outputTokens);
  if (nestedIn || nestedOut) {
    cacheRead = count(nestedIn?.cacheRead);
    cacheWrite = count(nestedIn?.cacheWrite);
    reasoning = count(nestedOut?.reasoning);
    // A total is rebuilt only around its main part (uncached input, text output): cache and reasoning counts alone
    // are details of a side, not all of it, and a side that has only them counts as unreported.
    const noCache = count(nestedIn?.noCache);
    const text = count(nestedOut?.text);
    input = count(nestedIn?.total) ?? (noCache === undefined ? undefined : sum(noCache, cacheRead, cacheWrite));
    output = count(nestedOut?.total) ?? (text === undefined ? undefined : sum(text, reasoning));
  } else {
    input = count(raw.inputTokens);
    output = count(raw.outputTokens);
    cacheRead = count(raw.cachedInputTokens);
    reasoning = count(raw.reasoningTokens);
  }
  if (input === undefined && output === undefined) return undefined;
  const inputTokens = input ?? count(estimate?.estimatedInputTokens);
  const outputTokens = output ?? count(estimate?.maxOutputTokens);
  if (inputTokens === undefined || outputTokens === undefined) return undefined;
  return {
    inputTokens,
    outputTokens,
    ...(cacheRead !== undefined ? { cachedInputTokens: cacheRead } : {}),
    ...(cacheWrite !== undefined ? { cacheWriteTokens: cacheWrite } : {}),
    ...(reasoning !== undefined ? { reasoningTokens: reasoning } : {}),
  };
}
