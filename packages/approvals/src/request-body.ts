/** Why a body could not be read. */
export type BodyProblem =
  | { readonly status: 408; readonly code: 'body_timeout'; readonly message: string }
  | { readonly status: 413; readonly code: 'body_too_large'; readonly message: string }
  | { readonly status: 415; readonly code: 'unsupported_media_type'; readonly message: string }
  | { readonly status: 400; readonly code: 'malformed_body' | 'body_unreadable'; readonly message: string };

/** A body read as form fields or JSON, or the problem that stopped it. */
export type BodyResult = { readonly ok: true; readonly fields: Readonly<Record<string, string>> } | ({ readonly ok: false } & BodyProblem);

type Kind = 'form' | 'json';

const MEDIA: Record<Kind, string> = { form: 'application/x-www-form-urlencoded', json: 'application/json' };

/**
 * Reads a request body of the expected kind, never more than `limit` bytes (a declared length over the limit is
 * refused before reading; a stream that runs past it is cancelled) and for no longer than `timeoutMs` (a body still
 * arriving then is cancelled: a client sending a byte now and then holds nothing for long). A body that breaks off
 * (the client went away, the connection was reset) is unreadable: the client's problem, not a failure of the handler
 * or its store. Form fields and JSON
 * members must be strings; a field given twice (in JSON too, where parsers disagree on which copy counts), invalid
 * UTF-8 or JSON that is not an object of strings is malformed.
 */
export async function readBody(request: Request, kind: Kind, limit: number, timeoutMs: number): Promise<BodyResult> {
  const type = (request.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== MEDIA[kind]) return { ok: false, status: 415, code: 'unsupported_media_type', message: `the body must be ${MEDIA[kind]}` };
  const declared = request.headers.get('content-length');
  if (declared !== null && !(Number(declared) <= limit)) return tooLarge(limit);
  const bytes = await readLimited(request, limit, timeoutMs);
  if (bytes === 'timeout') return { ok: false, status: 408, code: 'body_timeout', message: `the body did not arrive within ${timeoutMs} ms` };
  if (bytes === 'unreadable') return { ok: false, status: 400, code: 'body_unreadable', message: 'the body broke off before its end' };
  if (bytes === undefined) return tooLarge(limit);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return malformed('the body is not valid UTF-8');
  }
  return kind === 'form' ? formFields(text) : jsonFields(text);
}

async function readLimited(request: Request, limit: number, timeoutMs: number): Promise<Uint8Array | undefined | 'timeout' | 'unreadable'> {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    for (;;) {
      const read = await Promise.race([reader.read(), late]);
      if (read === 'timeout') {
        reader.cancel().catch(() => undefined);
        return 'timeout';
      }
      if (read.done) break;
      size += read.value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => undefined);
        return undefined;
      }
      chunks.push(read.value);
    }
  } catch {
    // The stream errored: the client went away or the connection broke mid-body.
    reader.cancel().catch(() => undefined);
    return 'unreadable';
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function formFields(text: string): BodyResult {
  const fields: Record<string, string> = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    if (name in fields) return malformed(`the field ${JSON.stringify(name.slice(0, 40))} is given more than once`);
    fields[name] = value;
  }
  return { ok: true, fields };
}

function jsonFields(text: string): BodyResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return malformed('the body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return malformed('the body must be a JSON object');
  const twice = repeatedMember(text);
  if (twice !== undefined) return malformed(`the member ${JSON.stringify(twice.slice(0, 40))} is given more than once`);
  const fields: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') return malformed(`the member ${JSON.stringify(name.slice(0, 40))} must be a string`);
    fields[name] = value;
  }
  return { ok: true, fields };
}

/**
 * The first top-level member name given twice in a JSON object's text (already known to parse), as decoded: JSON.parse
 * keeps the last copy silently, while a proxy, a log or a WAF may read the first.
 */
function repeatedMember(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') depth--;
    else if (char === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (depth !== 1) continue;
      let next = i + 1;
      while (next < text.length && /\s/.test(text[next] as string)) next++;
      if (text[next] !== ':') continue;
      const name = JSON.parse(text.slice(start, i + 1)) as string;
      if (seen.has(name)) return name;
      seen.add(name);
    }
  }
  return undefined;
}

function tooLarge(limit: number): BodyResult {
  return { ok: false, status: 413, code: 'body_too_large', message: `the body is larger than ${limit} bytes` };
}

function malformed(message: string): BodyResult {
  return { ok: false, status: 400, code: 'malformed_body', message };
}
