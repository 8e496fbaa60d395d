import { describe, expect, it } from 'vitest';
import { describeRequest, normalizePath } from './request-spec.js';
import { readTokenUsage } from './token-usage.js';

describe('normalizePath', () => {
  it('reduces OpenAI, Azure deployment and absolute paths to the route', () => {
    expect(normalizePath('/chat/completions')).toBe('chat/completions');
    expect(normalizePath('/deployments/my-gpt/chat/completions?api-version=2025-01-01')).toBe('chat/completions');
    expect(normalizePath('https://api.openai.com/v1/embeddings')).toBe('embeddings');
  });
});

describe('describeRequest', () => {
  it('meters only POSTs to token-billed endpoints', () => {
    expect(describeRequest('get', '/models', undefined)).toEqual({ endpoint: 'models' });
    expect(describeRequest('post', '/files', {})).toEqual({ endpoint: 'files' });
    expect(describeRequest('get', '/responses/resp_1', undefined).metered).toBeUndefined();
    expect(describeRequest('post', '/responses/resp_1/cancel', undefined).metered).toBeUndefined();
  });

  it('reserves the output of every chat choice and counts tools as input', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    const spec = describeRequest('post', '/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'x' }], tools, max_tokens: 100, n: 3, stream: true });
    expect(spec.metered).toEqual({ kind: 'chat.completions', model: 'm', stream: true, prompt: [{ role: 'user', content: 'x' }, tools], maxOutputTokens: 100, n: 3 });
    const newer = describeRequest('post', '/chat/completions', { model: 'm', messages: [], max_tokens: 5, max_completion_tokens: 50 });
    expect(newer.metered?.maxOutputTokens).toBe(50);
  });

  it('leaves the output limit to core when the request sets none', () => {
    expect(describeRequest('post', '/responses', { model: 'm', input: 'x' }).metered).not.toHaveProperty('maxOutputTokens');
    expect(describeRequest('post', '/responses', { model: 'm', input: 'x', instructions: 'be brief', max_output_tokens: 64 }).metered).toMatchObject({
      prompt: ['be brief', 'x'],
      maxOutputTokens: 64,
    });
  });

  it('counts token-array inputs exactly and reserves no output for embeddings', () => {
    expect(describeRequest('post', '/embeddings', { model: 'e', input: [[1, 2, 3], [4]] }).metered).toMatchObject({ inputTokens: 4, maxOutputTokens: 0 });
    expect(describeRequest('post', '/completions', { model: 'c', prompt: [1, 2], n: 2 }).metered).toMatchObject({ inputTokens: 2, maxOutputTokens: 16, n: 2 });
  });

  it('reads multipart bodies and the images default model', () => {
    const form = new FormData();
    form.set('model', 'gpt-4o-transcribe');
    form.set('prompt', 'names: Zoë');
    expect(describeRequest('post', '/audio/transcriptions', form).metered).toMatchObject({ kind: 'audio.transcriptions', model: 'gpt-4o-transcribe', prompt: 'names: Zoë' });
    expect(describeRequest('post', '/images/generations', { prompt: 'a cat' }).metered?.model).toBe('dall-e-2');
  });
});

describe('readTokenUsage', () => {
  it('reads the chat and the Responses shapes', () => {
    expect(readTokenUsage({ prompt_tokens: 10, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 6 }, completion_tokens_details: { reasoning_tokens: 2 } })).toEqual({
      inputTokens: 10,
      outputTokens: 4,
      cachedInputTokens: 6,
      reasoningTokens: 2,
    });
    expect(readTokenUsage({ input_tokens: 10, output_tokens: 4, input_tokens_details: { cached_tokens: 0, cache_write_tokens: 3 } })).toEqual({
      inputTokens: 10,
      outputTokens: 4,
      cacheWriteTokens: 3,
    });
    expect(readTokenUsage({ prompt_tokens: 7, total_tokens: 7 })).toEqual({ inputTokens: 7, outputTokens: 0 });
  });

  it('reads the image part of the input and of the output', () => {
    expect(readTokenUsage({ input_tokens: 50, output_tokens: 1100, input_tokens_details: { text_tokens: 20, image_tokens: 30 }, output_tokens_details: { text_tokens: 100, image_tokens: 1000 } })).toEqual({
      inputTokens: 50,
      outputTokens: 1100,
      inputImageTokens: 30,
      outputImageTokens: 1000,
    });
    // A breakdown larger than the total never counts more image tokens than there were tokens.
    expect(readTokenUsage({ input_tokens: 5, output_tokens: 10, output_tokens_details: { image_tokens: 99 } })).toMatchObject({ outputTokens: 10, outputImageTokens: 10 });
  });

  it('reads duration-billed audio as seconds and returns null for anything else', () => {
    expect(readTokenUsage({ type: 'duration', seconds: 12 })).toEqual({ inputTokens: 0, outputTokens: 0, audioSeconds: 12 });
    expect(readTokenUsage(null)).toBeNull();
    expect(readTokenUsage({ prompt_tokens: -1 })).toBeNull();
  });
});
