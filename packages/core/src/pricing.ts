import { calcPrice } from '@pydantic/genai-prices';
import { readCost, usdToNanosCeil } from './money.js';
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
}

export type PriceResult =
  | { ok: true; nanos: number; source: 'policy' | 'catalog'; model: string; provider: string | undefined }
  | { ok: false; reason: string; unpriced: boolean };

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

  for (const name of overrideNames(model, provider)) {
    const price = overrides.get(name);
    if (!price) continue;
    const nanos = tokenCostNanos([
      [inputTokens - cachedTokens, price.input],
      [cachedTokens, price.cachedInput],
      [outputTokens, price.output],
    ]);
    if (nanos > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: 'cost is too large to record', unpriced: false };
    return { ok: true, nanos: Number(nanos), source: 'policy', model: name, provider };
  }

  const split = splitModel(model, provider);
  const key = `${split.model}\u0000${split.provider ?? ''}`;
  const shape = `${cachedTokens > 0 ? 'c' : ''}${writeTokens > 0 ? 'w' : ''}`;
  const counts: Counts = { input: inputTokens, cached: cachedTokens, write: writeTokens, output: outputTokens };
  let memo = catalogMemo.get(key);
  if (memo !== undefined && memo.expires < Date.now()) memo = undefined;
  if (memo?.kind === 'none') return unpriced(model, provider, split.model);
  if (memo?.kind === 'flat' && memo.verified.has(shape)) {
    return { ok: true, nanos: flatCost(memo, counts), source: 'catalog', model: memo.model, provider: memo.provider };
  }
  const catalogUsage = {
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    ...(cachedTokens > 0 ? { cache_read_tokens: cachedTokens } : {}),
    ...(writeTokens > 0 ? { cache_write_tokens: writeTokens } : {}),
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
    if (result && Number.isFinite(result.total_price) && result.total_price >= 0) {
      const nanos = usdToNanosCeil(result.total_price);
      remember(key, shape, memo, result.model_price, result.model.id, result.provider.id, counts, nanos);
      return { ok: true, nanos, source: 'catalog', model: result.model.id, provider: result.provider.id };
    }
  }
  catalogMemo.set(key, { kind: 'none', expires: Date.now() + MEMO_TTL_MS });
  return unpriced(model, provider, split.model);
}

function unpriced(model: string, provider: string | undefined, bare: string): PriceResult {
  return {
    ok: false,
    unpriced: true,
    reason:
      `no price known for model ${JSON.stringify(model)}${provider ? ` (provider ${provider})` : ''}; ` +
      `add it to the policy: pricing: { ${JSON.stringify(bare)}: { input: <USD per 1M input tokens>, output: <USD per 1M output tokens> } }`,
  };
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

function flatCost(memo: Extract<Memo, { kind: 'flat' }>, counts: Counts): number {
  return Number(
    tokenCostNanos([
      [counts.input - counts.cached - counts.write, memo.input],
      [counts.cached, memo.cacheRead],
      [counts.write, memo.cacheWrite],
      [counts.output, memo.output],
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
    const flat = [input, output, cacheRead, cacheWrite].every((value) => value !== undefined && Number.isSafeInteger(value));
    if (catalogMemo.size >= MEMO_LIMIT) catalogMemo.clear();
    if (!flat) {
      catalogMemo.set(key, { kind: 'complex', expires: Date.now() + MEMO_TTL_MS });
      return;
    }
    memo = { kind: 'flat', expires: Date.now() + MEMO_TTL_MS, model, provider, input: input as number, output: output as number, cacheRead: cacheRead as number, cacheWrite: cacheWrite as number, verified: new Set() };
    catalogMemo.set(key, memo);
  }
  // Agreement within a nano-dollar (the catalog's float result is rounded up) verifies this usage shape.
  if (Math.abs(flatCost(memo, counts) - nanos) <= 1) memo.verified.add(shape);
  else catalogMemo.set(key, { kind: 'complex', expires: Date.now() + MEMO_TTL_MS });
}

/**
 * A worst-case token count for a prompt: UTF-8 bytes of its JSON form divided by 3, plus a little per message.
 * Real tokenisers average about 4 bytes a token in English, so this overestimates on purpose.
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
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 3) + 4 * messages;
}
