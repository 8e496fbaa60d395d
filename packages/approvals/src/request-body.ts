/** Why a body could not be read. */
export type BodyProblem =
  | { readonly status: 413; readonly code: 'body_too_large'; readonly message: string }
  | { readonly status: 415; readonly code: 'unsupported_media_type'; readonly message: string }
  | { readonly status: 400; readonly code: 'malformed_body'; readonly message: string };

/** A body read as form fields or JSON, or the problem that stopped it. */
export type BodyResult = { readonly ok: true; readonly fields: Readonly<Record<string, string>> } | ({ readonly ok: false } & BodyProblem);

type Kind = 'form' | 'json';

const MEDIA: Record<Kind, string> = { form: 'application/x-www-form-urlencoded', json: 'application/json' };

/**
 * Reads a request body of the expected kind, never more than `limit` bytes (a declared length over the limit is
 * refused before reading; a stream that runs past it is cancelled). Form fields and JSON members must be strings;
 * a field given twice, invalid UTF-8 or JSON that is not an object of strings is malformed.
 */
export async function readBody(request: Request, kind: Kind, limit: number): Promise<BodyResult> {
  const type = (request.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== MEDIA[kind]) return { ok: false, status: 415, code: 'unsupported_media_type', message: `the body must be ${MEDIA[kind]}` };
  const declared = request.headers.get('content-length');
  if (declared !== null && !(Number(declared) <= limit)) return tooLarge(limit);
  const bytes = await readLimited(request, limit);
  if (bytes === undefined) return tooLarge(limit);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return malformed('the body is not valid UTF-8');
  }
  return kind === 'form' ? formFields(text) : jsonFields(text);
}

async function readLimited(request: Request, limit: number): Promise<Uint8Array | undefined> {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
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
  const fields: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') return malformed(`the member ${JSON.stringify(name.slice(0, 40))} must be a string`);
    fields[name] = value;
  }
  return { ok: true, fields };
}

function tooLarge(limit: number): BodyResult {
  return { ok: false, status: 413, code: 'body_too_large', message: `the body is larger than ${limit} bytes` };
}

function malformed(message: string): BodyResult {
  return { ok: false, status: 400, code: 'malformed_body', message };
}
