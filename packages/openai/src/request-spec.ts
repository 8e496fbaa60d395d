import { estimatePromptTokens, splitPromptMedia, type AudioInput, type ImageInput, type ImageOutput } from '@agentpolicy/core';

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
    /** Output limit of one choice; absent when the request sets none. */
    readonly maxOutputTokens?: number;
    /** Choices asked for (`n`, or `best_of` for legacy completions). */
    readonly n?: number;
    /** Images in the input. */
    readonly images?: readonly ImageInput[];
    /** Audio in the input; uploaded files are read for their duration by {@link audioDurations}. */
    readonly audio?: readonly AudioInput[];
    /** Uploaded audio files whose duration is read before the estimate. */
    readonly audioFiles?: readonly Blob[];
    /** Documents in the input. */
    readonly files?: number;
    readonly outputModality?: 'text' | 'audio' | 'image';
    readonly imageOutput?: ImageOutput;
    /** Characters to speak (speech). */
    readonly characters?: number;
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

// Longest first, so `chat/completions` is found before `completions`.
const ROUTES_BY_LENGTH = [...METERED.keys()].sort((a, b) => b.length - a.length);

/**
 * A request path as a server is likely to read it: resolved against a base the way the client builds its URL (dot
 * segments removed), percent-escapes decoded, runs of slashes merged, lower-cased. `/./chat//completions`,
 * `/x/../chat/completions` and `/chat/%63ompletions` all reach the chat completions route of a lenient server.
 */
function canonicalPath(text: string): string {
  let path = text;
  for (let pass = 0; pass < 3; pass++) {
    let next: string;
    try {
      next = new URL(path.replace(/\/+/g, '/'), 'http://route.invalid/').pathname;
    } catch {
      next = path.split(/[?#]/)[0]!;
    }
    try {
      next = decodeURIComponent(next);
    } catch {
      // a malformed escape: keep the text as the URL parser left it
    }
    if (next === path) break;
    path = next;
  }
  return path.replace(/\/{2,}/g, '/').toLowerCase();
}

/**
 * The route of a request path: a token-billed route when the path ends with one (whatever base path, API version or
 * Azure deployment comes before it), else the path without its `v1` / `deployments/<name>` prefix.
 * `/deployments/x/chat/completions?y` (Azure) or `https://host/v1/chat/completions` → `chat/completions`.
 */
export function normalizePath(path: unknown): string {
  const text = typeof path === 'string' ? path : '';
  const canonical = canonicalPath(text).replace(/^\/+|\/+$/g, '');
  const metered = ROUTES_BY_LENGTH.find((route) => canonical === route || canonical.endsWith(`/${route}`));
  if (metered) return metered;
  let plain = text;
  if (/^https?:\/\//i.test(plain)) {
    try {
      plain = new URL(plain).pathname.replace(/^\/(?:openai\/)?v1(?=\/)/, '');
    } catch {
      // keep the raw text
    }
  }
  return plain.split(/[?#]/)[0]!.replace(/^\/+|\/+$/g, '').replace(/^deployments\/[^/]+\//, '');
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
      const { prompt, ...media } = splitPromptMedia([...messages, ...extras]);
      const modalities = field('modalities');
      return {
        endpoint: kind,
        metered: {
          ...base,
          prompt,
          ...media,
          ...opt('maxOutputTokens', count(field('max_completion_tokens')) ?? count(field('max_tokens'))),
          ...opt('n', count(field('n'))),
          ...(Array.isArray(modalities) && modalities.includes('audio') ? { outputModality: 'audio' as const } : {}),
        },
      };
    }
    case 'completions': {
      const prompt = field('prompt');
      const tokens = tokenArrayLength(prompt);
      const choices = Math.max(count(field('n')) ?? 1, count(field('best_of')) ?? 1);
      return {
        endpoint: kind,
        metered: { ...base, ...(tokens !== undefined ? { inputTokens: tokens } : { prompt: prompt ?? '' }), maxOutputTokens: count(field('max_tokens')) ?? 16, n: choices },
      };
    }
    case 'responses':
    case 'responses.compact': {
      const { prompt, ...media } = splitPromptMedia(present(field('instructions'), field('input'), field('tools'), field('text')));
      return { endpoint: kind, metered: { ...base, prompt, ...media, ...opt('maxOutputTokens', count(field('max_output_tokens'))) } };
    }
    case 'embeddings': {
      const input = field('input');
      const tokens = tokenArrayLength(input);
      return { endpoint: kind, metered: { ...base, inputTokens: tokens ?? estimatePromptTokens(input), maxOutputTokens: 0 } };
    }
    case 'images': {
      const uploads = blobs(body, ['image', 'image[]', 'mask']);
      const size = field('size');
      const quality = field('quality');
      const partial = count(field('partial_images'));
      return {
        endpoint: kind,
        metered: {
          ...base,
          prompt: field('prompt') ?? '',
          ...opt('n', count(field('n'))),
          ...(uploads.length > 0 ? { images: uploads.map(() => (field('input_fidelity') === 'high' ? { detail: 'high', fidelity: 'high' } : { detail: 'high' })) } : {}),
          imageOutput: {
            ...(typeof size === 'string' && size !== 'auto' ? { size } : {}),
            ...(typeof quality === 'string' && quality !== 'auto' ? { quality } : {}),
            ...(partial !== undefined ? { partialImages: partial } : {}),
            ...(typeof field('output_format') === 'string' ? { format: field('output_format') as string } : {}),
          },
        },
      };
    }
    case 'audio.transcriptions': {
      const files = blobs(body, ['file']);
      return { endpoint: kind, metered: { ...base, prompt: field('prompt') ?? '', audioFiles: files, audio: files.map(() => ({})) } };
    }
    case 'audio.speech': {
      const input = field('input');
      return {
        endpoint: kind,
        metered: { ...base, prompt: present(input, field('instructions')), characters: typeof input === 'string' ? [...input].length : 0, outputModality: 'audio' },
      };
    }
  }
}

function blobs(body: unknown, names: readonly string[]): Blob[] {
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    return names.flatMap((name) => body.getAll(name).filter((value): value is File => typeof value !== 'string'));
  }
  if (typeof body === 'object' && body !== null) {
    const record = body as Record<string, unknown>;
    return names.flatMap((name) => {
      const value = record[name];
      const list = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
      return list.filter((item): item is Blob => typeof Blob !== 'undefined' && item instanceof Blob);
    });
  }
  return [];
}

/** The duration of an uploaded audio file when its header tells it (WAV); undefined otherwise. */
export async function audioDuration(file: Blob): Promise<number | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await file.slice(0, 4096).arrayBuffer());
  } catch {
    return undefined;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset: number) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return undefined;
  let byteRate: number | undefined;
  for (let offset = 12; offset + 8 <= bytes.length; ) {
    const id = tag(offset);
    const length = view.getUint32(offset + 4, true);
    if (id === 'fmt ' && offset + 20 <= bytes.length) byteRate = view.getUint32(offset + 16, true);
    if (id === 'data') {
      if (!byteRate) return undefined;
      // Every byte after the data chunk's header counted as audio: an upper bound whatever its declared length.
      return Math.max(0, file.size - offset - 8) / byteRate;
    }
    offset += 8 + length + (length % 2);
  }
  return undefined;
}

/** Reads each uploaded audio file's duration (where its header tells it) into the estimate's audio list. */
export async function audioDurations(files: readonly Blob[]): Promise<AudioInput[]> {
  const out: AudioInput[] = [];
  for (const file of files) {
    const seconds = await audioDuration(file);
    out.push(seconds !== undefined ? { seconds } : {});
  }
  return out;
}

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
