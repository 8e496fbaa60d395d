import { createServer, type Server } from 'node:http';
import { listenLocal } from './listen-local.js';

/**
 * A local stand-in for the OpenAI HTTP API that bills every request the most the provider could bill for it: the
 * whole output limit of every choice (gpt-4o's maximum when the request sets none), every image at its documented
 * high-detail maximum, every generated image at its largest size and quality (a gpt-image-2 image at the size asked,
 * by its size formula), audio for its whole duration. It speaks chat completions, Responses, embeddings, image
 * generation and edits, transcription and speech; a chat completion asked for with `stream: true` is streamed.
 * Requests are held a little so a burst of them overlaps.
 */

/** gpt-4o's listed maximum output. */
export const GPT_4O_MAX_OUTPUT = 16384;
/** gpt-4o's high-detail image bound: 85 + 8 tiles × 170. */
export const GPT_4O_IMAGE_MAX = 85 + 8 * 170;
/** gpt-image's largest output image (high quality, 1024×1536). */
export const GPT_IMAGE_MAX = 6240;

/** gpt-image-2's largest output image (high quality, the 2880×2880 square of its most pixels). */
export const GPT_IMAGE_2_MAX = 23_719;

const IMAGE_TYPES = new Set(['image_url', 'input_image']);

/**
 * What one gpt-image-2 image bills, by OpenAI's calculator: `q × s × (2,000,000 + w × h) ÷ 4,000,000` rounded up, q
 * the quality's factor (16, 48, 96; `auto` is high) and s = q × short side ÷ long side rounded. A size left to the
 * provider (or none) is billed as its dearest, 2880×2880.
 */
function gptImage2Tokens(quality: unknown, size: unknown): number {
  const q = quality === 'low' ? 16 : quality === 'medium' ? 48 : 96;
  const match = typeof size === 'string' ? /^(\d+)x(\d+)$/.exec(size) : null;
  const [width, height] = match ? [Number(match[1]), Number(match[2])] : [2880, 2880];
  const long = Math.max(width, height);
  const s = Math.floor((2 * q * Math.min(width, height) + long) / (2 * long));
  return Math.ceil((q * s * (2_000_000 + width * height)) / 4_000_000);
}

/** The output tokens of one generated image: gpt-image-2 by its size and quality, any other gpt-image its largest. */
const imageTokens = (model: string, quality: unknown, size: unknown): number => (/^gpt-image-2(?:-\d{4}-\d{2}-\d{2})?$/.test(model) ? gptImage2Tokens(quality, size) : GPT_IMAGE_MAX);

/** Options of {@link startBillingServer}. */
export interface BillingServerOptions {
  /**
   * The tokens billed for one text of an embeddings request (each string of its `input`). Default: about 4 bytes a
   * token, as text is billed everywhere else here.
   */
  embeddingTokens?: (text: string) => number;
}

/** A running billing server. */
export interface BillingServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseURL: string;
  /** Requests received since the last reset. */
  readonly hits: number;
  /** The JSON bodies of the requests received since the last reset, in order (`{}` for any other body). */
  readonly bodies: readonly Record<string, unknown>[];
  /** The next `count` answers (1 by default) carry no `usage`. */
  omitUsage(count?: number): void;
  /** Forgets the count, the bodies and the answers left without usage. */
  reset(): void;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

const isImage = (value: unknown): boolean => IMAGE_TYPES.has((value as { type?: unknown } | null)?.type as string);

function images(value: unknown): number {
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + images(item), 0);
  if (typeof value !== 'object' || value === null) return 0;
  return (isImage(value) ? 1 : 0) + Object.values(value).reduce((sum: number, item) => sum + images(item), 0);
}

// Text at about 4 bytes a token; image parts are billed by the image formula, not as text.
const inputTokens = (value: unknown): number =>
  Math.ceil(Buffer.byteLength(JSON.stringify(value ?? '', (_key, item: unknown) => (isImage(item) ? null : item))) / 4) + images(value) * GPT_4O_IMAGE_MAX;

/** The duration of the first WAV file in a multipart body: every byte after its data header counted. */
function wavSeconds(body: Buffer): number {
  const riff = body.indexOf('RIFF');
  if (riff < 0) return 0;
  const data = body.indexOf('data', riff + 12);
  const byteRate = body.readUInt32LE(riff + 28);
  const end = body.indexOf('\r\n--', data);
  return byteRate > 0 ? (end - data - 8) / byteRate : 0;
}

/** A mono 8-bit 8 kHz WAV file of `seconds` of silence. */
export function wav(seconds: number): Buffer {
  const rate = 8000;
  const data = Buffer.alloc(Math.round(rate * seconds), 128);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate, 28);
  header.writeUInt16LE(1, 32);
  header.writeUInt16LE(8, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

function parse(body: Buffer): Json {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Json) : {};
  } catch {
    return {};
  }
}

function answer(path: string, body: Buffer, options: BillingServerOptions): Json {
  if (path.endsWith('/audio/transcriptions') || path.endsWith('/audio/translations')) {
    return { text: 'x', usage: { type: 'duration', seconds: wavSeconds(body) } };
  }
  const request = parse(body);
  const n = typeof request['n'] === 'number' ? request['n'] : 1;
  if (path.endsWith('/responses')) {
    return {
      id: 'resp_1',
      object: 'response',
      created_at: 0,
      status: 'completed',
      model: request['model'],
      output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'x', annotations: [] }] }],
      incomplete_details: null,
      usage: { input_tokens: inputTokens(request['input']), output_tokens: (request['max_output_tokens'] as number | undefined) ?? GPT_4O_MAX_OUTPUT, total_tokens: 0 },
    };
  }
  if (path.endsWith('/embeddings')) {
    // One embedding per input (a list of strings or of token arrays), one for a single input.
    const input = request['input'];
    const count = Array.isArray(input) && input.length > 0 && input.every((item) => typeof item !== 'number') ? input.length : 1;
    // Each vector is its input's index, in the encoding asked for (the openai client asks for base64 by default).
    const vector = (index: number): number[] | string =>
      request['encoding_format'] === 'base64' ? Buffer.from(new Float32Array([index]).buffer).toString('base64') : [index];
    const data = Array.from({ length: count }, (_, index) => ({ object: 'embedding', index, embedding: vector(index) }));
    const tokensOf = options.embeddingTokens;
    const texts: unknown[] = Array.isArray(input) ? input : [input];
    const prompt = tokensOf && texts.every((text) => typeof text === 'string') ? (texts as string[]).reduce((sum, text) => sum + tokensOf(text), 0) : inputTokens(input);
    return { object: 'list', model: request['model'], data, usage: { prompt_tokens: prompt, total_tokens: 0 } };
  }
  if (path.endsWith('/images/generations')) {
    const data = Array.from({ length: n }, () => ({ b64_json: 'AA==' }));
    if (typeof request['model'] !== 'string' || !request['model'].startsWith('gpt-image')) return { created: 0, data };
    const output = imageTokens(request['model'], request['quality'], request['size']) * n;
    return { created: 0, data, usage: { input_tokens: inputTokens(request['prompt']), output_tokens: output, total_tokens: 0 } };
  }
  const limit = ((request['max_completion_tokens'] ?? request['max_tokens']) as number | undefined) ?? GPT_4O_MAX_OUTPUT;
  return {
    id: 'chatcmpl_1',
    object: 'chat.completion',
    created: 0,
    model: request['model'],
    choices: Array.from({ length: n }, (_, index) => ({ index, message: { role: 'assistant', content: 'x' }, finish_reason: 'length' })),
    usage: { prompt_tokens: inputTokens(request['messages']), completion_tokens: limit * n, total_tokens: 0 },
  };
}

/**
 * An image edit (multipart): `n` images, and for gpt-image the prompt, every uploaded image (`image`, `image[]`,
 * `mask`) at gpt-4o's high-detail maximum (plus a full output image each under `input_fidelity: high`, and always for
 * gpt-image-2) and the largest output image per image asked for (gpt-image-2's at the size asked).
 */
function editAnswer(form: FormData): Json {
  const field = (name: string): string | undefined => {
    const value = form.get(name);
    return typeof value === 'string' ? value : undefined;
  };
  const n = Number(field('n') ?? 1);
  const data = Array.from({ length: n }, () => ({ b64_json: 'AA==' }));
  const model = field('model') ?? '';
  if (!model.startsWith('gpt-image')) return { created: 0, data };
  const uploads = ['image', 'image[]', 'mask'].reduce((sum, name) => sum + form.getAll(name).filter((value) => typeof value !== 'string').length, 0);
  // gpt-image-2 reads every input image at high fidelity.
  const perUpload = GPT_4O_IMAGE_MAX + (field('input_fidelity') === 'high' || model.startsWith('gpt-image-2') ? GPT_IMAGE_MAX : 0);
  const output = imageTokens(model, field('quality'), field('size')) * n;
  return { created: 0, data, usage: { input_tokens: inputTokens(field('prompt') ?? '') + uploads * perUpload, output_tokens: output, total_tokens: 0 } };
}

async function reply(path: string, contentType: string, body: Buffer, options: BillingServerOptions): Promise<Json> {
  if (path.endsWith('/images/edits') && contentType.startsWith('multipart/form-data')) {
    return editAnswer(await new Response(new Uint8Array(body), { headers: { 'content-type': contentType } }).formData());
  }
  return answer(path, body, options);
}

/**
 * A chat completion as the server-sent events of a streamed one: each choice's text, its finish reason, then (when
 * the request asks for it with `stream_options.include_usage`) the usage in a last chunk of its own.
 */
function chatStream(completion: Json, request: Json): string {
  const base = { id: completion['id'], object: 'chat.completion.chunk', created: 0, model: completion['model'] };
  const choices = Array.isArray(completion['choices']) ? (completion['choices'] as Json[]) : [];
  const events: Json[] = choices.flatMap((choice) => [
    { ...base, choices: [{ index: choice['index'], delta: { role: 'assistant', content: (choice['message'] as Json | undefined)?.['content'] ?? '' }, finish_reason: null }] },
    { ...base, choices: [{ index: choice['index'], delta: {}, finish_reason: choice['finish_reason'] }] },
  ]);
  const wantsUsage = (request['stream_options'] as Json | undefined)?.['include_usage'] === true;
  if (wantsUsage && completion['usage'] !== undefined) events.push({ ...base, choices: [], usage: completion['usage'] });
  return `${events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join('')}data: [DONE]\n\n`;
}

/** Starts the server on 127.0.0.1, on a free port. */
export async function startBillingServer(options: BillingServerOptions = {}): Promise<BillingServer> {
  let hits = 0;
  let bodies: Json[] = [];
  let withoutUsage = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      hits++;
      bodies.push(parse(Buffer.concat(chunks)));
      const omit = withoutUsage > 0;
      if (omit) withoutUsage--;
      const path = (req.url ?? '').split('?')[0]!;
      setTimeout(() => {
        if (path.endsWith('/audio/speech')) {
          res.writeHead(200, { 'content-type': 'audio/mpeg' }).end(Buffer.alloc(16));
          return;
        }
        reply(path, req.headers['content-type'] ?? '', Buffer.concat(chunks), options).then(
          (json) => {
            if (omit) delete json['usage'];
            const request = parse(Buffer.concat(chunks));
            if (path.endsWith('/chat/completions') && request['stream'] === true) {
              res.writeHead(200, { 'content-type': 'text/event-stream' }).end(chatStream(json, request));
              return;
            }
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(json));
          },
          () => res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'unreadable request body' } })),
        );
      }, 15);
    });
  });
  const local = await listenLocal(server);
  return {
    baseURL: local.baseURL,
    get hits() {
      return hits;
    },
    get bodies() {
      return bodies;
    },
    omitUsage(count = 1) {
      withoutUsage += count;
    },
    reset() {
      hits = 0;
      bodies = [];
      withoutUsage = 0;
    },
    close: local.close,
  };
}
