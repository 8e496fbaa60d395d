import { calcPrice } from '@pydantic/genai-prices';
import { readCost } from './money.js';
import type { NormalizedPrice } from './policy-document.js';

/** Token usage of one model call. `inputTokens` and `outputTokens` are totals, as providers report them. */
export interface TokenUsage {
  readonly model: string;
  /** Provider id (`openai`, `anthropic`, `google`, …) or an `ai` provider string such as `openai.chat`. */
  readonly provider?: string;
  /** All input tokens, cached ones included. */
  readonly inputTokens: number;
  /** All output tokens, reasoning tokens included. */
  readonly outputTokens: number;
  /** The part of `inputTokens` read from the provider's prompt cache. */
  readonly cachedInputTokens?: number;
  /** The part of `inputTokens` written to the prompt cache. */
  readonly cacheWriteTokens?: number;
  /** The part of `outputTokens` spent on reasoning (informational; already in `outputTokens`). */
  readonly reasoningTokens?: number;
  /** The part of `inputTokens` that is images (priced at the model's image rate where it has one). */
  readonly inputImageTokens?: number;
  /** The part of `inputTokens` that is audio. */
  readonly inputAudioTokens?: number;
  /** The part of `outputTokens` that is images. */
  readonly outputImageTokens?: number;
  /** The part of `outputTokens` that is audio. */
  readonly outputAudioTokens?: number;
  /** Seconds of audio, for models billed by duration (`per_second`, or the catalog's audio hours). */
  readonly audioSeconds?: number;
  /** Characters of text, for models billed per character (`per_character`). */
  readonly characters?: number;
  /** Images generated, for models billed per image (`per_image`), at `imageSize` and `imageQuality`. */
  readonly images?: number;
  readonly imageSize?: string;
  readonly imageQuality?: string;
}

/** The units a model is billed by here, and the limits known for it. */
export interface Billing {
  /** Where its prices come from; `none` when it has none. */
  readonly source: 'policy' | 'catalog' | 'none';
  readonly tokens: boolean;
  readonly images: boolean;
  readonly seconds: boolean;
  readonly characters: boolean;
  /** The policy's entry for the model (its limits), if it has one. */
  readonly entry: NormalizedPrice | null;
  /** The catalog's context window for the model, if it lists one. */
  readonly contextWindow: number | null;
  /** Whether the price catalog lists the model (its prices by tokens or by the second), whatever prices it here. */
  readonly catalogListed: boolean;
  /** Name the model is listed under (the policy key, or the catalog id). */
  readonly listedAs: string;
}

export type PriceResult =
  | { ok: true; nanos: number; source: 'policy' | 'catalog'; model: string; provider: string | undefined }
  | { ok: false; reason: string; unpriced: boolean; tooLarge?: true };

// Usage that prices above the most the ledger holds: spend that happened, recorded as that most (see MAX_NANOS).
const TOO_LARGE: PriceResult = Object.freeze({ ok: false, reason: 'cost is too large to record', unpriced: false, tooLarge: true });

const DATE_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8})$/;

function tokenCount(value: unknown, name: string): number | string {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    return `${name} must be a non-negative integer, got ${typeof value === 'number' ? value : typeof value}`;
  }
  return value;
}

/** Splits `openai/gpt-4o` into provider and model; leaves other names alone. */
export function splitModel(model: string, provider: string | undefined): { model: string; provider: string | undefined } {
  const slash = model.indexOf('/');
  if (slash > 0 && slash < model.length - 1) return { model: model.slice(slash + 1), provider: provider ?? model.slice(0, slash) };
  return { model, provider };
}

/** The names a model may be listed under in the policy's `pricing:` section, most specific first. */
function overrideNames(model: string, provider: string | undefined): string[] {
  const split = splitModel(model, provider);
  const names = [model, split.model];
  if (split.provider) names.push(`${split.provider.split('.')[0]}/${split.model}`);
  const undated = split.model.replace(DATE_SUFFIX, '');
  if (undated !== split.model) {
    names.push(undated);
    if (split.provider) names.push(`${split.provider.split('.')[0]}/${undated}`);
  }
  return names;
}

// Sum of tokens × nano-dollars per million, divided once and rounded up: exact, never rounds a cost to zero.
function tokenCostNanos(parts: ReadonlyArray<readonly [number, number]>): bigint {
  let total = 0n;
  for (const [tokens, nanosPerMillion] of parts) total += BigInt(tokens) * BigInt(nanosPerMillion);
  return (total + 999_999n) / 1_000_000n;
}

/**
 * Prices a model call: the policy's `pricing:` overrides first (exact integer arithmetic), then the
 * `@pydantic/genai-prices` catalog (tiers and cached tokens included). Never throws.
 */
export function priceUsage(usage: TokenUsage, overrides: ReadonlyMap<string, NormalizedPrice>): PriceResult {
  if (typeof usage !== 'object' || usage === null) return { ok: false, reason: 'usage must be an object', unpriced: false };
  const model = usage.model;
  if (typeof model !== 'string' || model.trim() === '') return { ok: false, reason: 'usage.model must be a non-empty string', unpriced: false };
  const provider = typeof usage.provider === 'string' && usage.provider !== '' ? usage.provider : undefined;
  const input = tokenCount(usage.inputTokens, 'inputTokens');
  const output = tokenCount(usage.outputTokens, 'outputTokens');
  const cached = tokenCount(usage.cachedInputTokens, 'cachedInputTokens');
  const cacheWrite = tokenCount(usage.cacheWriteTokens, 'cacheWriteTokens');
  for (const value of [input, output, cached, cacheWrite]) {
    if (typeof value === 'string') return { ok: false, reason: value, unpriced: false };
  }
  const inputTokens = input as number;
  const outputTokens = output as number;
  const cachedTokens = Math.min(cached as number, inputTokens);
  const writeTokens = Math.min(cacheWrite as number, inputTokens - cachedTokens);

  const units = readUnits(usage);
  if (typeof units === 'string') return { ok: false, reason: units, unpriced: false };

  const entry = findEntry(model, provider, overrides);
  if (entry && hasPrice(entry.price)) return priceByEntry(entry.name, entry.price, provider, inputTokens, cachedTokens, outputTokens, units, model);
  if (units.images > 0 || units.characters > 0) return unpriced(model, provider, splitModel(model, provider).model, units);
  const split = splitModel(model, provider);
  const key = `${split.model}\u0000${split.provider ?? ''}`;
  const counts: Counts = {
    input: inputTokens,
    cached: cachedTokens,
    write: writeTokens,
    output: outputTokens,
    inputImage: units.inputImage,
    inputAudio: units.inputAudio,
    outputImage: units.outputImage,
    outputAudio: units.outputAudio,
  };
  const shape = units.plain
    ? `${cachedTokens > 0 ? 'c' : ''}${writeTokens > 0 ? 'w' : ''}`
    : `${cachedTokens > 0 ? 'c' : ''}${writeTokens > 0 ? 'w' : ''}${units.inputImage > 0 ? 'i' : ''}${units.inputAudio > 0 ? 'a' : ''}${units.outputImage > 0 ? 'I' : ''}${units.outputAudio > 0 ? 'A' : ''}`;
  let memo = catalogMemo.get(key);
  if (memo !== undefined && memo.expires < Date.now()) memo = undefined;
  if (memo?.kind === 'none') return unpriced(model, provider, split.model, units);
  // Usage billed by seconds always goes through calcPrice (the memo holds token rates only).
  const plain = units.seconds === 0;
  if (plain && memo?.kind === 'flat' && memo.verified.has(shape)) {
    const nanos = flatCost(memo, counts);
    if (!Number.isSafeInteger(nanos)) return TOO_LARGE;
    return { ok: true, nanos, source: 'catalog', model: memo.model, provider: memo.provider };
  }
  const catalogUsage = {
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    ...(cachedTokens > 0 ? { cache_read_tokens: cachedTokens } : {}),
    ...(writeTokens > 0 ? { cache_write_tokens: writeTokens } : {}),
    ...(units.inputImage > 0 ? { input_image_tokens: units.inputImage } : {}),
    ...(units.inputAudio > 0 ? { input_audio_tokens: units.inputAudio } : {}),
    ...(units.outputImage > 0 ? { output_image_tokens: units.outputImage } : {}),
    ...(units.outputAudio > 0 ? { output_audio_tokens: units.outputAudio } : {}),
    ...(units.seconds > 0 ? { audio_seconds: units.seconds } : {}),
  };
  const attempts: Array<string | undefined> = split.provider ? [split.provider, split.provider.split('.')[0], undefined] : [undefined];
  for (const providerId of attempts) {
    let result;
    try {
      result = calcPrice(catalogUsage, split.model, providerId ? { providerId } : {});
    } catch {
      result = null;
    }
    // A model the catalog bills by something other than tokens (audio minutes, say) prices tokens at $0: that is
    // not a price, so it counts as unpriced rather than free.
    const tokenPriced = result !== null && (result.model_price['input_mtok'] !== undefined || result.model_price['output_mtok'] !== undefined);
    if (result && !tokenPriced && result.total_price === 0 && inputTokens + outputTokens > 0) continue;
    // Audio seconds the catalog has no duration price for would be billed at $0: not a price either.
    if (result && units.seconds > 0 && result.model_price['audio_hours'] === undefined && result.model_price['input_audio_hours'] === undefined) continue;
    if (result && Number.isFinite(result.total_price) && result.total_price >= 0) {
      const read = readCost(result.total_price);
      if (!read.ok || !Number.isSafeInteger(read.nanos)) return TOO_LARGE;
      const nanos = read.nanos;
      if (plain) remember(key, shape, memo, result.model_price, result.model.id, result.provider.id, counts, nanos);
      return { ok: true, nanos, source: 'catalog', model: result.model.id, provider: result.provider.id };
    }
  }
  if (plain) catalogMemo.set(key, { kind: 'none', expires: Date.now() + MEMO_TTL_MS });
  return unpriced(model, provider, split.model, units);
}

interface Units {
  readonly inputImage: number;
  readonly inputAudio: number;
  readonly outputImage: number;
  readonly outputAudio: number;
  readonly seconds: number;
  readonly characters: number;
  readonly images: number;
  readonly imageSize: string | undefined;
  readonly imageQuality: string | undefined;
  /** Tokens only, no modality parts or other units. */
  readonly plain: boolean;
}

const PLAIN_UNITS: Units = Object.freeze({ inputImage: 0, inputAudio: 0, outputImage: 0, outputAudio: 0, seconds: 0, characters: 0, images: 0, imageSize: undefined, imageQuality: undefined, plain: true });

function unitCount(value: unknown, name: string): number | string {
  return value === undefined || value === 0 ? 0 : tokenCount(value, name);
}

// Allocation-free for plain token usage (every unit absent or zero): this runs on every priced call.
function readUnits(usage: TokenUsage): Units | string {
  const inputImage = unitCount(usage.inputImageTokens, 'inputImageTokens');
  const inputAudio = unitCount(usage.inputAudioTokens, 'inputAudioTokens');
  const outputImage = unitCount(usage.outputImageTokens, 'outputImageTokens');
  const outputAudio = unitCount(usage.outputAudioTokens, 'outputAudioTokens');
  const characters = unitCount(usage.characters, 'characters');
  const images = unitCount(usage.images, 'images');
  const seconds = usage.audioSeconds ?? 0;
  if (inputImage === 0 && inputAudio === 0 && outputImage === 0 && outputAudio === 0 && characters === 0 && images === 0 && seconds === 0) return PLAIN_UNITS;
  for (const value of [inputImage, inputAudio, outputImage, outputAudio, characters, images]) if (typeof value === 'string') return value;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return `audioSeconds must be a non-negative number, got ${String(seconds)}`;
  const input = usage.inputTokens ?? 0;
  const output = usage.outputTokens ?? 0;
  const image = inputImage as number;
  const outImage = outputImage as number;
  // The modality parts are parts of the totals; more than the total is clamped to it.
  return {
    inputImage: Math.min(image, input),
    inputAudio: Math.min(inputAudio as number, Math.max(0, input - image)),
    outputImage: Math.min(outImage, output),
    outputAudio: Math.min(outputAudio as number, Math.max(0, output - outImage)),
    seconds,
    characters: characters as number,
    images: images as number,
    imageSize: typeof usage.imageSize === 'string' ? usage.imageSize : undefined,
    imageQuality: typeof usage.imageQuality === 'string' ? usage.imageQuality : undefined,
    plain: false,
  };
}

function hasPrice(price: NormalizedPrice): boolean {
  return price.tokens !== null || price.perImage !== null || price.perSecond !== null || price.perCharacter !== null;
}

function findEntry(model: string, provider: string | undefined, overrides: ReadonlyMap<string, NormalizedPrice>): { name: string; price: NormalizedPrice } | undefined {
  if (overrides.size === 0) return undefined;
  for (const name of overrideNames(model, provider)) {
    const price = overrides.get(name);
    if (price) return { name, price };
  }
  return undefined;
}

/**
 * The price of one image at a size and quality: the exact entry, else an upper bound. Keys are a size (`1024x1024`),
 * a quality (`hd`), both (`hd/1024x1024`) or `default`. A size's own price is what it costs at any quality not listed
 * with it; a size listed only with qualities costs, at a quality not listed or none, the dearest of them; anything
 * else unmatched, the dearest listed.
 */
export function imagePrice(prices: ReadonlyMap<string, number>, size: string | undefined, quality: string | undefined): number {
  const s = size?.toLowerCase();
  const q = quality?.toLowerCase();
  if (q !== undefined && s !== undefined) {
    const exact = prices.get(`${q}/${s}`);
    if (exact !== undefined) return exact;
  }
  if (s !== undefined) {
    // The prices of this size by quality: without a price of its own, an unnamed quality may be any of them.
    let dearest: number | undefined;
    const suffix = `/${s}`;
    for (const [key, value] of prices) if (key.endsWith(suffix)) dearest = Math.max(dearest ?? 0, value);
    const plain = prices.get(s);
    if (plain !== undefined) return plain;
    if (dearest !== undefined) return dearest;
  }
  if (q !== undefined) {
    const byQuality = prices.get(q);
    if (byQuality !== undefined) return byQuality;
  }
  if (s === undefined && q === undefined) {
    const fallback = prices.get('default');
    if (fallback !== undefined) return fallback;
  }
  let highest = 0;
  for (const value of prices.values()) highest = Math.max(highest, value);
  return highest;
}

function priceByEntry(name: string, price: NormalizedPrice, provider: string | undefined, input: number, cached: number, output: number, units: Units, model: string): PriceResult {
  let total = 0n;
  let priced = false;
  let missing: string | undefined;
  if (input + output > 0) {
    if (price.tokens) {
      total += tokenCostNanos([
        [input - cached, price.tokens.input],
        [cached, price.tokens.cachedInput],
        [output, price.tokens.output],
      ]);
      priced = true;
    } else missing ??= 'tokens';
  }
  if (units.images > 0) {
    if (price.perImage) {
      total += BigInt(units.images) * BigInt(imagePrice(price.perImage, units.imageSize, units.imageQuality));
      priced = true;
    } else missing ??= 'images';
  }
  if (units.seconds > 0) {
    if (price.perSecond !== null) {
      total += (BigInt(Math.ceil(units.seconds * 1000)) * BigInt(price.perSecond) + 999n) / 1000n;
      priced = true;
    } else missing ??= 'seconds';
  }
  if (units.characters > 0) {
    if (price.perCharacter !== null) {
      total += BigInt(units.characters) * BigInt(price.perCharacter);
      priced = true;
    } else missing ??= 'characters';
  }
  // Units this entry does not price are not what the model bills by, as long as one it does price is present.
  if (!priced && missing !== undefined) return unpriced(model, provider, name, units);
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) return TOO_LARGE;
  return { ok: true, nanos: Number(total), source: 'policy', model: name, provider };
}

function unpriced(model: string, provider: string | undefined, bare: string, units: Units = PLAIN_UNITS): PriceResult {
  const hint =
    units.images > 0
      ? 'per_image: <USD per image, or a mapping by size / quality>'
      : units.characters > 0
        ? 'per_character: <USD per character>'
        : units.seconds > 0
          ? 'per_second: <USD per second of audio>'
          : 'input: <USD per 1M input tokens>, output: <USD per 1M output tokens>';
  return {
    ok: false,
    unpriced: true,
    reason: `no price known for model ${JSON.stringify(model)}${provider ? ` (provider ${provider})` : ''}; add it to the policy: pricing: { ${JSON.stringify(bare)}: { ${hint} } }`,
  };
}

// ---- billing ---------------------------------------------------------------------------------------------------
// What a model is billed by, read once per model from the policy entry or the catalog, for the worst-case estimate.

const billingMemos = new WeakMap<ReadonlyMap<string, NormalizedPrice>, Map<string, Billing>>();
const catalogBillingMemo = new Map<string, { tokens: boolean; seconds: boolean; contextWindow: number | null; id: string } | null>();

/** The units `model` is billed by (policy entry first, then the catalog) and its known limits. Never throws. */
export function billingOf(model: string, provider: string | undefined, overrides: ReadonlyMap<string, NormalizedPrice>): Billing {
  const memoKey = `${model}\u0000${provider ?? ''}`;
  let billingMemo = billingMemos.get(overrides);
  if (billingMemo === undefined) {
    billingMemo = new Map();
    billingMemos.set(overrides, billingMemo);
  }
  const cached = billingMemo.get(memoKey);
  if (cached !== undefined) return cached;
  const entry = findEntry(model, provider, overrides);
  const catalog = catalogBilling(model, provider);
  let billing: Billing;
  if (entry && hasPrice(entry.price)) {
    const price = entry.price;
    billing = {
      source: 'policy',
      tokens: price.tokens !== null,
      images: price.perImage !== null,
      seconds: price.perSecond !== null,
      characters: price.perCharacter !== null,
      entry: price,
      contextWindow: catalog?.contextWindow ?? null,
      catalogListed: catalog !== null,
      listedAs: entry.name,
    };
  } else if (catalog) {
    billing = { source: 'catalog', tokens: catalog.tokens, images: false, seconds: catalog.seconds, characters: false, entry: entry?.price ?? null, contextWindow: catalog.contextWindow, catalogListed: true, listedAs: catalog.id };
  } else {
    billing = { source: 'none', tokens: false, images: false, seconds: false, characters: false, entry: entry?.price ?? null, contextWindow: null, catalogListed: false, listedAs: splitModel(model, provider).model };
  }
  if (billingMemo.size >= MEMO_LIMIT) billingMemo.clear();
  billingMemo.set(memoKey, billing);
  return billing;
}

function catalogBilling(model: string, provider: string | undefined): { tokens: boolean; seconds: boolean; contextWindow: number | null; id: string } | null {
  const split = splitModel(model, provider);
  const key = `${split.model}\u0000${split.provider ?? ''}`;
  if (catalogBillingMemo.has(key)) return catalogBillingMemo.get(key) ?? null;
  let found: { tokens: boolean; seconds: boolean; contextWindow: number | null; id: string } | null = null;
  const attempts: Array<string | undefined> = split.provider ? [split.provider, split.provider.split('.')[0], undefined] : [undefined];
  for (const providerId of attempts) {
    let result;
    try {
      result = calcPrice({ input_tokens: 0, output_tokens: 0 }, split.model, providerId ? { providerId } : {});
    } catch {
      result = null;
    }
    if (!result) continue;
    const prices = result.model_price;
    const tokens = prices['input_mtok'] !== undefined || prices['output_mtok'] !== undefined;
    const seconds = prices['audio_hours'] !== undefined || prices['input_audio_hours'] !== undefined;
    if (!tokens && !seconds) continue;
    const window = result.model.context_window;
    found = { tokens, seconds, contextWindow: typeof window === 'number' && Number.isSafeInteger(window) && window > 0 ? window : null, id: result.model.id };
    break;
  }
  if (catalogBillingMemo.size >= MEMO_LIMIT) catalogBillingMemo.clear();
  catalogBillingMemo.set(key, found);
  return found;
}

// ---- catalog memo ----------------------------------------------------------------------------------------------
// calcPrice walks the whole catalog (tens of µs). For models with flat per-token prices the rates are memoised and
// applied with exact integer arithmetic; each usage shape (plain, cached, cache-write) is first checked once against
// calcPrice itself, and a model whose prices are tiered or do not agree keeps going through calcPrice.

interface Counts {
  readonly input: number;
  readonly cached: number;
  readonly write: number;
  readonly output: number;
  readonly inputImage: number;
  readonly inputAudio: number;
  readonly outputImage: number;
  readonly outputAudio: number;
}

type Memo =
  | { kind: 'none'; expires: number }
  | { kind: 'complex'; expires: number }
  | {
      kind: 'flat';
      expires: number;
      model: string;
      provider: string;
      input: number;
      cacheRead: number;
      cacheWrite: number;
      output: number;
      inputImage: number;
      inputAudio: number;
      outputImage: number;
      outputAudio: number;
      verified: Set<string>;
    };

const MEMO_TTL_MS = 60 * 60 * 1000;
const MEMO_LIMIT = 1024;
const catalogMemo = new Map<string, Memo>();

function rate(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number') return Number.NaN;
  const read = readCost(value);
  return read.ok ? read.nanos : Number.NaN;
}

// Sum of tokens × nano-dollars per million, in plain numbers while every product and the sum stay exact integers
// (below 2^53); null otherwise.
function exactSum(pairs: readonly number[]): number | null {
  let total = 0;
  for (let i = 0; i < pairs.length; i += 2) {
    const tokens = pairs[i]!;
    if (tokens === 0) continue;
    const product = tokens * pairs[i + 1]!;
    total += product;
    if (product > Number.MAX_SAFE_INTEGER || total > Number.MAX_SAFE_INTEGER) return null;
  }
  return total;
}

/** `total ÷ 1,000,000`, rounded up, for an exact integer `total`. */
function perMillionCeil(total: number): number {
  let quotient = Math.floor(total / 1_000_000);
  let remainder = total - quotient * 1_000_000;
  if (remainder < 0) {
    quotient--;
    remainder += 1_000_000;
  } else if (remainder >= 1_000_000) {
    quotient++;
    remainder -= 1_000_000;
  }
  return remainder > 0 ? quotient + 1 : quotient;
}

function flatCost(memo: Extract<Memo, { kind: 'flat' }>, counts: Counts): number {
  const exact = exactSum([
    counts.input - counts.cached - counts.write - counts.inputImage - counts.inputAudio,
    memo.input,
    counts.cached,
    memo.cacheRead,
    counts.write,
    memo.cacheWrite,
    counts.inputImage,
    memo.inputImage,
    counts.inputAudio,
    memo.inputAudio,
    counts.output - counts.outputImage - counts.outputAudio,
    memo.output,
    counts.outputImage,
    memo.outputImage,
    counts.outputAudio,
    memo.outputAudio,
  ]);
  if (exact !== null) return perMillionCeil(exact);
  return Number(
    tokenCostNanos([
      [counts.input - counts.cached - counts.write - counts.inputImage - counts.inputAudio, memo.input],
      [counts.cached, memo.cacheRead],
      [counts.write, memo.cacheWrite],
      [counts.inputImage, memo.inputImage],
      [counts.inputAudio, memo.inputAudio],
      [counts.output - counts.outputImage - counts.outputAudio, memo.output],
      [counts.outputImage, memo.outputImage],
      [counts.outputAudio, memo.outputAudio],
    ]),
  );
}

function remember(key: string, shape: string, previous: Memo | undefined, prices: Record<string, unknown>, model: string, provider: string, counts: Counts, nanos: number): void {
  if (previous?.kind === 'complex') return;
  let memo = previous?.kind === 'flat' ? previous : undefined;
  if (!memo) {
    const input = rate(prices['input_mtok']);
    const output = rate(prices['output_mtok']);
    const cacheRead = rate(prices['cache_read_mtok']) ?? input;
    const cacheWrite = rate(prices['cache_write_mtok']) ?? input;
    const inputImage = rate(prices['input_image_mtok']) ?? input;
    const inputAudio = rate(prices['input_audio_mtok']) ?? input;
    const outputImage = rate(prices['output_image_mtok']) ?? output;
    const outputAudio = rate(prices['output_audio_mtok']) ?? output;
    const flat = [input, output, cacheRead, cacheWrite, inputImage, inputAudio, outputImage, outputAudio].every((value) => value !== undefined && Number.isSafeInteger(value));
    if (catalogMemo.size >= MEMO_LIMIT) catalogMemo.clear();
    if (!flat) {
      catalogMemo.set(key, { kind: 'complex', expires: Date.now() + MEMO_TTL_MS });
      return;
    }
    memo = {
      kind: 'flat',
      expires: Date.now() + MEMO_TTL_MS,
      model,
      provider,
      input: input as number,
      output: output as number,
      cacheRead: cacheRead as number,
      cacheWrite: cacheWrite as number,
      inputImage: inputImage as number,
      inputAudio: inputAudio as number,
      outputImage: outputImage as number,
      outputAudio: outputAudio as number,
      verified: new Set(),
    };
    catalogMemo.set(key, memo);
  }
  // Agreement within a nano-dollar (the catalog's float result is rounded up) verifies this usage shape.
  if (Math.abs(flatCost(memo, counts) - nanos) <= 1) memo.verified.add(shape);
  // A modality shape that does not agree keeps going through calcPrice; a plain one makes the whole model complex.
  else if (/^c?w?$/.test(shape)) catalogMemo.set(key, { kind: 'complex', expires: Date.now() + MEMO_TTL_MS });
}

/**
 * A worst-case token count for a prompt: one token per UTF-8 byte of its text (its JSON form when it is not a
 * string), plus 4 per message. A byte-level tokeniser (OpenAI's, Anthropic's, and SentencePiece with byte fallback)
 * never makes more than one token of a byte, so this bounds every script: English averages about 4 bytes a token,
 * but Korean, rare CJK characters, emoji or spaced digits come close to one token a byte.
 */
export function estimatePromptTokens(prompt: unknown): number {
  if (prompt === undefined || prompt === null) return 0;
  let text: string;
  try {
    text = typeof prompt === 'string' ? prompt : (JSON.stringify(prompt) ?? '');
  } catch {
    text = String(prompt);
  }
  const messages = Array.isArray(prompt) ? prompt.length : 1;
  return Buffer.byteLength(text, 'utf8') + 4 * messages;
}
