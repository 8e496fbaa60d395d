/** Token usage as core prices it (`UsageUpdate` without the model). */
export interface ReadUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
  /** Seconds of audio, for duration-billed transcription (`{ type: 'duration', seconds }`). */
  audioSeconds?: number;
  inputAudioTokens?: number;
  inputImageTokens?: number;
  /** The part of `outputTokens` that is images (`output_tokens_details.image_tokens`; all of it for the Images API). */
  outputImageTokens?: number;
}

function tokens(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

function detail(record: unknown, key: string): number | undefined {
  return typeof record === 'object' && record !== null ? tokens((record as Record<string, unknown>)[key]) : undefined;
}

/**
 * Reads an OpenAI `usage` object into token counts: the Chat Completions / Completions / Embeddings shape
 * (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details`, `completion_tokens_details`) or the Responses /
 * Images / Audio shape (`input_tokens`, `output_tokens`, `input_tokens_details`, `output_tokens_details`).
 * Duration-billed audio usage (`{ type: 'duration', seconds }`) reads as `audioSeconds`. Returns null for anything else.
 */
export function readTokenUsage(usage: unknown): ReadUsage | null {
  if (typeof usage !== 'object' || usage === null) return null;
  const u = usage as Record<string, unknown>;
  let read: ReadUsage;
  let cached: number | undefined;
  let cacheWrite: number | undefined;
  let reasoning: number | undefined;
  if (tokens(u['prompt_tokens']) !== undefined) {
    read = { inputTokens: tokens(u['prompt_tokens'])!, outputTokens: tokens(u['completion_tokens']) ?? 0 };
    cached = detail(u['prompt_tokens_details'], 'cached_tokens');
    cacheWrite = detail(u['prompt_tokens_details'], 'cache_write_tokens');
    reasoning = detail(u['completion_tokens_details'], 'reasoning_tokens');
  } else if (tokens(u['input_tokens']) !== undefined) {
    read = { inputTokens: tokens(u['input_tokens'])!, outputTokens: tokens(u['output_tokens']) ?? 0 };
    cached = detail(u['input_tokens_details'], 'cached_tokens');
    cacheWrite = detail(u['input_tokens_details'], 'cache_write_tokens');
    reasoning = detail(u['output_tokens_details'], 'reasoning_tokens');
  } else if (u['type'] === 'duration' && typeof u['seconds'] === 'number' && Number.isFinite(u['seconds']) && u['seconds'] >= 0) {
    return { inputTokens: 0, outputTokens: 0, audioSeconds: u['seconds'] };
  } else {
    return null;
  }
  const inputDetails = u['input_tokens_details'] ?? u['prompt_tokens_details'];
  const audio = detail(inputDetails, 'audio_tokens');
  const image = detail(inputDetails, 'image_tokens');
  if (audio) read.inputAudioTokens = audio;
  if (image) read.inputImageTokens = image;
  const outputImage = detail(u['output_tokens_details'] ?? u['completion_tokens_details'], 'image_tokens');
  if (outputImage) read.outputImageTokens = Math.min(outputImage, read.outputTokens);
  if (cached) read.cachedInputTokens = cached;
  if (cacheWrite) read.cacheWriteTokens = cacheWrite;
  if (reasoning) read.reasoningTokens = reasoning;
  return read;
}
