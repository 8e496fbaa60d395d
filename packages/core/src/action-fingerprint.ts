import { hash } from 'node:crypto';

/** Deepest nesting a tool input may have; deeper input is refused (denied), never cut. */
export const MAX_INPUT_DEPTH = 256;

/**
 * Most items one array (or Map, or Set) of a tool input may have; a longer one is refused (denied), never cut. An
 * array's length costs nothing to set (`list.length = 2 ** 32 - 1`, or a proxy that says so), but writing it out
 * item by item would take gigabytes.
 */
export const MAX_INPUT_ITEMS = 1 << 24;

/** Why an input has no canonical form (a cycle, nesting deeper than {@link MAX_INPUT_DEPTH}, an array too long). */
export class InputShapeError extends Error {}

/**
 * The canonical text of a tool's input: JSON with object keys sorted, so equal inputs give equal text whatever their
 * key order. `undefined` and functions are left out of objects (and are `null` in arrays), as in JSON; `toJSON` is
 * honoured (dates); bigints, non-finite numbers, Maps, Sets and binary data get tagged forms, so two different
 * inputs never share a text. A cycle, nesting deeper than {@link MAX_INPUT_DEPTH}, or an array, Map or Set of more than
 * {@link MAX_INPUT_ITEMS} items throws {@link InputShapeError}.
 */
export function canonicalInput(value: unknown): string {
  return write(value, 0, []);
}

// A string as JSON writes it. Most strings in tool input are short and need no escape: those are quoted as they are
// (the scan is cheaper than a call into JSON.stringify); anything with a quote, a backslash, a control character or
// a surrogate (a lone one is escaped) goes through JSON.stringify.
function quote(text: string): string {
  const n = text.length;
  if (n > 64) return JSON.stringify(text);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(text);
  }
  return `"${text}"`;
}

// Sorts keys in place by UTF-16 code units (what Array.prototype.sort does for strings): insertion sort for the few
// keys an input object usually has, the built-in sort for more.
function sortKeys(keys: string[]): void {
  const n = keys.length;
  if (n > 16) {
    keys.sort();
    return;
  }
  for (let i = 1; i < n; i++) {
    const key = keys[i] as string;
    let j = i - 1;
    while (j >= 0 && (keys[j] as string) > key) {
      keys[j + 1] = keys[j] as string;
      j--;
    }
    keys[j + 1] = key;
  }
}

function tooLong(items: number): InputShapeError {
  return new InputShapeError(`input has a list of ${items} items, more than ${MAX_INPUT_ITEMS}`);
}

// The objects on the path from the root to the current value: a cycle is an object already on it. Paths are short,
// so a scan beats a Set.
function write(value: unknown, depth: number, path: object[]): string {
  switch (typeof value) {
    case 'string':
      return quote(value);
    case 'number':
      return Number.isFinite(value) ? (value === 0 ? '0' : String(value)) : `{"$number":"${String(value)}"}`;
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return `{"$bigint":"${value.toString()}"}`;
    case 'undefined':
    case 'function':
    case 'symbol':
      return 'null';
  }
  if (value === null) return 'null';
  const object = value as object;
  if (depth >= MAX_INPUT_DEPTH) throw new InputShapeError(`input nests deeper than ${MAX_INPUT_DEPTH} levels`);
  if (path.includes(object)) throw new InputShapeError('input contains a cycle');
  path.push(object);
  try {
    if (Array.isArray(object)) {
      if (object.length === 0) return '[]';
      if (object.length > MAX_INPUT_ITEMS) throw tooLong(object.length);
      let out = `[${write(object[0], depth + 1, path)}`;
      for (let i = 1; i < object.length; i++) out += `,${write(object[i], depth + 1, path)}`;
      return `${out}]`;
    }
    if (typeof (object as { toJSON?: unknown }).toJSON === 'function') return write((object as { toJSON: (key: string) => unknown }).toJSON(''), depth + 1, path);
    if ((object instanceof Map || object instanceof Set) && object.size > MAX_INPUT_ITEMS) throw tooLong(object.size);
    if (object instanceof Map) return `{"$map":${write([...object], depth + 1, path)}}`;
    if (object instanceof Set) return `{"$set":${write([...object], depth + 1, path)}}`;
    if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) {
      const bytes = object instanceof ArrayBuffer ? new Uint8Array(object) : new Uint8Array(object.buffer, object.byteOffset, object.byteLength);
      return `{"$bytes":"${Buffer.from(bytes).toString('base64')}"}`;
    }
    const keys = Object.keys(object);
    if (keys.length > 1) sortKeys(keys);
    let out = '{';
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const item = (object as Record<string, unknown>)[key];
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
      out += `${out.length === 1 ? '' : ','}${quote(key)}:${write(item, depth + 1, path)}`;
    }
    return `${out}}`;
  } finally {
    path.pop();
  }
}

/** The parts of an action its fingerprint covers. */
export type FingerprintParts =
  | { type: 'tool'; name: string; costNanos: number; input: string | undefined }
  | { type: 'http'; url: string; method: string; costNanos: number }
  | { type: 'cost'; source: string; costNanos: number };

/**
 * The action's fingerprint: SHA-256 (hex) over its type, normalised name (tool), method and normalised URL (http)
 * or source (cost), cost in nano-dollars, and the canonical text of its input. Idempotency keys, approval requests,
 * approval tokens and the audit record bind to it: an answer or a key given for one fingerprint never covers another.
 */
export function actionFingerprint(parts: FingerprintParts): string {
  return sha256(fingerprintText(parts));
}

/** Longest fingerprint text an identity keeps as its key; a longer one is keyed by its fingerprint. */
export const MAX_KEY_TEXT = 1024;

function fingerprintText(parts: FingerprintParts): string {
  if (parts.type === 'tool') return toolText(parts.name, parts.costNanos, parts.input);
  if (parts.type === 'http') return `http\n${parts.method}\n${parts.url}\n${parts.costNanos}`;
  return `cost\n${parts.source}\n${parts.costNanos}`;
}

function toolText(name: string, costNanos: number, input: string | undefined): string {
  return `tool\n${name}\n${costNanos}\n${input === undefined ? '' : `=${input}`}`;
}

const TOOL = 0;
const HTTP = 1;
const COST = 2;
const SETTLED = 3;

/**
 * An action's identity, worked out only when something asks for it. {@link fingerprint} is the action's SHA-256
 * fingerprint ({@link actionFingerprint}); {@link key} is what equal actions share, for comparing two actions without
 * hashing: the fingerprint's text itself when it is at most {@link MAX_KEY_TEXT} characters, else the fingerprint.
 * A text always starts with the action type and a newline, so it never equals a fingerprint (64 hex digits): two
 * keys are equal exactly when the fingerprints are (barring a SHA-256 collision).
 *
 * A tool's input is given either as its canonical text or as a snapshot to write it from later: a frozen copy that
 * nothing can change, so the fingerprint worked out later is the one of the input as it was checked. Parts too long
 * to be a key are hashed at once and let go, so an identity never holds a long text (a 16 KB URL, a large input's
 * text) for as long as its decision is kept; a snapshot is the decision's frozen record itself, kept anyway.
 */
export class ActionIdentity {
  private hex: string | undefined = undefined;
  private text: string | undefined = undefined;
  // The parts, one object (this one) per action: what they mean depends on the kind.
  private kind: number;
  private subject: string; // tool name, URL or cost source
  private method: string; // http
  private costNanos: number;
  private inputText: string | undefined; // tool: the input's canonical text, when given as text
  private snapshot: unknown; // tool: the input's frozen exact copy, when given as one

  private constructor(kind: number, subject: string, method: string, costNanos: number, inputText: string | undefined, snapshot: unknown) {
    this.kind = kind;
    this.subject = subject;
    this.method = method;
    this.costNanos = costNanos;
    this.inputText = inputText;
    this.snapshot = snapshot;
    if (subject.length + method.length + (inputText?.length ?? 0) > MAX_KEY_TEXT) this.settle(true);
  }

  /** A tool call: its normalised name, cost, and input as canonical text (or none). */
  static tool(name: string, costNanos: number, inputText: string | undefined): ActionIdentity {
    return new ActionIdentity(TOOL, name, '', costNanos, inputText, undefined);
  }

  /** A tool call whose input is an exact frozen copy ({@link recordInput}); its text is written when first needed. */
  static toolSnapshot(name: string, costNanos: number, snapshot: unknown): ActionIdentity {
    return new ActionIdentity(TOOL, name, '', costNanos, undefined, snapshot);
  }

  static http(url: string, method: string, costNanos: number): ActionIdentity {
    return new ActionIdentity(HTTP, url, method, costNanos, undefined, undefined);
  }

  static cost(source: string, costNanos: number): ActionIdentity {
    return new ActionIdentity(COST, source, '', costNanos, undefined, undefined);
  }

  /** An identity whose fingerprint is already known (and whose parts are not). */
  static known(fingerprint: string): ActionIdentity {
    const identity = new ActionIdentity(SETTLED, '', '', 0, undefined, undefined);
    identity.hex = fingerprint;
    return identity;
  }

  /** Whether the fingerprint has been worked out already. */
  get hashed(): boolean {
    return this.hex !== undefined;
  }

  /** The SHA-256 fingerprint (hex), worked out on first use. */
  get fingerprint(): string {
    if (this.hex === undefined) this.settle(true);
    return this.hex as string;
  }

  /** What equal actions share: the short fingerprint text, or the fingerprint. */
  get key(): string {
    if (this.text !== undefined) return this.text;
    if (this.kind !== SETTLED) this.settle(false);
    return this.text ?? (this.hex as string);
  }

  // Writes the text once: a short one is kept (it is the key), a long one is hashed at once and dropped, and the
  // parts are let go either way.
  private settle(hash: boolean): void {
    let text = this.text;
    if (text === undefined) {
      if (this.kind === TOOL) text = toolText(this.subject, this.costNanos, this.snapshot !== undefined ? canonicalInput(this.snapshot) : this.inputText);
      else if (this.kind === HTTP) text = fingerprintText({ type: 'http', url: this.subject, method: this.method, costNanos: this.costNanos });
      else text = fingerprintText({ type: 'cost', source: this.subject, costNanos: this.costNanos });
      this.kind = SETTLED;
      this.subject = '';
      this.method = '';
      this.inputText = undefined;
      this.snapshot = undefined;
      if (text.length <= MAX_KEY_TEXT) this.text = text;
    }
    if (hash || text.length > MAX_KEY_TEXT) this.hex = sha256(text);
  }
}

function sha256(text: string): string {
  return hash('sha256', text, 'hex');
}
