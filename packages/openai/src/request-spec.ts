import { estimatePromptTokens } from '@agentpolicy/core';

/** The API families whose calls cost model tokens. */
export type MeteredEndpoint =
  | 'chat.completions'
  | 'completions'
  | 'responses'
  | 'responses.compact'
  | 'embeddings'
  | 'images'
  | 'audio.transcriptions'
  | 'audio.speech';

/** What a request asks of a model, read once from its options before it is sent. */
export interface RequestSpec {
  /** Dotted endpoint name (`chat.completions`, `responses`, …) or the path for endpoints that cost no tokens. */
  readonly endpoint: string;
  /** Set for endpoints billed by tokens; absent for files, models, vector stores and the like. */
  readonly metered?: {
    readonly kind: MeteredEndpoint;
    readonly model: string;
    readonly stream: boolean;
    /** What the worst-case input estimate is computed from. */
    readonly prompt?: unknown;
    /** A known input token count (token-array inputs). */
    readonly inputTokens?: number;
    /** Output limit of the whole call (`n` choices included); absent when the request sets none. */
    readonly maxOutputTokens?: number;
  };
}

const ROUTES: ReadonlyArray<[string, MeteredEndpoint]> = [
  ['chat/completions', 'chat.completions'],
  ['completions', 'completions'],
  ['responses', 'responses'],
  ['responses/compact', 'responses.compact'],
  ['embeddings', 'embeddings'],
  ['images/generations', 'images'],
  ['images/edits', 'images'],
  ['images/variations', 'images'],
  ['audio/transcriptions', 'audio.transcriptions'],
  ['audio/translations', 'audio.transcriptions'],
  ['audio/speech', 'audio.speech'],
];
const METERED = new Map(ROUTES);

/** `/deployments/x/chat/completions?y` (Azure) or `https://host/v1/chat/completions` → `chat/completions`. */
export function normalizePath(path: unknown): string {
  let text = typeof path === 'string' ? path : '';
  if (/^https?:\/\//i.test(text)) {
    try {
      text = new URL(text).pathname.replace(/^\/(?:openai\/)?v1(?=\/)/, '');
    } catch {
      // keep the raw text; it then matches no metered route
    }
  }
  return text.split(/[?#]/)[0]!.replace(/^\/+|\/+$/g, '').replace(/^deployments\/[^/]+\//, '');
}

type Fields = (name: string) => unknown;

function fieldsOf(body: unknown): Fields {
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    return (name) => {
      const value = body.get(name);
      return typeof value === 'string' ? value : undefined;
    };
  }
  if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
    const record = body as Record<string, unknown>;
    return (name) => record[name];
  }
  return () => undefined;
}

function count(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
  return undefined;
}

function times(max: number | undefined, choices: number | undefined): number | undefined {
  return max === undefined ? undefined : max * Math.max(1, choices ?? 1);
}

/** Token-array inputs (`[1, 2, 3]` or `[[1, 2], [3]]`) are counted exactly; anything else is estimated. */
function tokenArrayLength(input: unknown): number | undefined {
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((item) => typeof item === 'number')) return input.length;
  if (input.every((item) => Array.isArray(item) && item.every((token) => typeof token === 'number'))) {
    return (input as number[][]).reduce((sum, item) => sum + item.length, 0);
  }
  return undefined;
}

function present(...parts: unknown[]): unknown[] {
  return parts.filter((part) => part !== undefined && part !== null);
}

/**
 * Reads what a request will ask of a model: its endpoint, model, prompt and output limit. Only `POST` requests to
 * the token-billed endpoints are metered; every other request (files, models, vector stores, retrievals) is
 * governed by the network policy alone.
 */
export function describeRequest(method: unknown, path: unknown, body: unknown): RequestSpec {
  const route = normalizePath(path);
  const kind = String(method).toLowerCase() === 'post' ? METERED.get(route) : undefined;
  if (!kind) return { endpoint: route.replaceAll('/', '.') || '/' };
  const field = fieldsOf(body);
  const model = typeof field('model') === 'string' ? (field('model') as string) : kind === 'images' ? 'dall-e-2' : '';
  const stream = field('stream') === true || field('stream') === 'true';
  const base = { kind, model, stream };
  switch (kind) {
    case 'chat.completions': {
      const extras = present(field('tools'), field('functions'), field('response_format'), field('prediction'));
      const messages = Array.isArray(field('messages')) ? (field('messages') as unknown[]) : present(field('messages'));
      return {
        endpoint: kind,
        metered: { ...base, prompt: [...messages, ...extras], ...opt('maxOutputTokens', times(count(field('max_completion_tokens')) ?? count(field('max_tokens')), count(field('n')))) },
      };
    }
    case 'completions': {
      const prompt = field('prompt');
      const tokens = tokenArrayLength(prompt);
      const choices = Math.max(count(field('n')) ?? 1, count(field('best_of')) ?? 1);
      return {
        endpoint: kind,
        metered: { ...base, ...(tokens !== undefined ? { inputTokens: tokens } : { prompt: prompt ?? '' }), maxOutputTokens: (count(field('max_tokens')) ?? 16) * choices },
      };
    }
    case 'responses':
    case 'responses.compact':
      return {
        endpoint: kind,
        metered: { ...base, prompt: present(field('instructions'), field('input'), field('tools'), field('text')), ...opt('maxOutputTokens', count(field('max_output_tokens'))) },
      };
    case 'embeddings': {
      const input = field('input');
      const tokens = tokenArrayLength(input);
      return { endpoint: kind, metered: { ...base, inputTokens: tokens ?? estimatePromptTokens(input), maxOutputTokens: 0 } };
    }
    case 'images':
    case 'audio.transcriptions':
      return { endpoint: kind, metered: { ...base, prompt: field('prompt') ?? '' } };
    case 'audio.speech':
      return { endpoint: kind, metered: { ...base, prompt: present(field('input'), field('instructions')) } };
  }
}

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
