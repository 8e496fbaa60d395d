import type { Metadata } from './decision.js';
import { splitModel, type TokenUsage } from './pricing.js';

/** The cost source a model call is recorded under, e.g. `model:openai/gpt-4o`. */
export function modelSource(model: string, provider: string | undefined): string {
  const split = splitModel(model, provider);
  return `model:${split.provider ? `${split.provider.split('.')[0]}/` : ''}${split.model || 'unknown'}`;
}

/** The token counts of a usage report, as decision metadata. */
export function usageMetadata(usage: Partial<TokenUsage> | undefined): Metadata {
  if (!usage || typeof usage !== 'object') return {};
  const out: Record<string, unknown> = {};
  for (const key of ['model', 'provider', 'inputTokens', 'outputTokens', 'cachedInputTokens', 'cacheWriteTokens', 'reasoningTokens'] as const) {
    if (usage[key] !== undefined) out[key] = usage[key];
  }
  return out;
}
