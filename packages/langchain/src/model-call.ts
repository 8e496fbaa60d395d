import type { UsageUpdate } from '@agentpolicy/core';

/** The model a call goes to, as far as LangChain tells. */
export interface ModelInfo {
  readonly model: string;
  readonly provider?: string;
  readonly maxOutputTokens?: number;
  /** Choices asked for (`n`). */
  readonly n?: number;
}

type Bag = Readonly<Record<string, unknown>>;

const asBag = (value: unknown): Bag => (typeof value === 'object' && value !== null ? (value as Bag) : {});
const firstString = (...values: unknown[]): string | undefined =>
  values.find((value): value is string => typeof value === 'string' && value.trim() !== '');
const firstCount = (...values: unknown[]): number | undefined =>
  values.find((value): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0);

function modelInfo(lsParams: Bag, invocationParams: Bag, instance: Bag, fallbackName: string | undefined): ModelInfo {
  const named = firstString(
    lsParams['ls_model_name'],
    invocationParams['model'],
    invocationParams['model_name'],
    invocationParams['modelName'],
    invocationParams['model_id'],
    invocationParams['modelId'],
    instance['model'],
    instance['modelName'],
  );
  const maxOutputTokens = firstCount(
    lsParams['ls_max_tokens'],
    invocationParams['max_tokens'],
    invocationParams['max_completion_tokens'],
    invocationParams['max_output_tokens'],
    invocationParams['maxTokens'],
    invocationParams['maxOutputTokens'],
  );
  const n = firstCount(invocationParams['n'], invocationParams['candidateCount'], invocationParams['candidate_count'], instance['n']);
  // Without a real model name, ls_provider is only the class name again: leave it out so the class name alone is
  // the key to price under `pricing:`.
  const provider = named !== undefined ? firstString(lsParams['ls_provider']) : undefined;
  return {
    model: named ?? fallbackName ?? 'unknown',
    ...(provider !== undefined ? { provider } : {}),
    ...(maxOutputTokens !== undefined ? { maxOutputTokens } : {}),
    ...(n !== undefined && n > 1 ? { n } : {}),
  };
}

/** Model info from the arguments of `handleChatModelStart` / `handleLLMStart`. */
export function modelInfoFromCallback(serialized: unknown, extraParams: unknown, metadata: unknown): ModelInfo {
  const id = asBag(serialized)['id'];
  const className = Array.isArray(id) ? firstString(id.at(-1)) : undefined;
  const kwargs = asBag(asBag(serialized)['kwargs']);
  return modelInfo(asBag(metadata), asBag(asBag(extraParams)['invocation_params']), kwargs, className);
}

/** Model info from the model object (or `provider:model` string) of a langchain `ModelRequest`. */
export function modelInfoFromModel(model: unknown): ModelInfo {
  if (typeof model === 'string') {
    const colon = model.indexOf(':');
    return colon > 0 ? { model: model.slice(colon + 1), provider: model.slice(0, colon) } : { model };
  }
  const instance = asBag(model);
  const call = (method: string): Bag => {
    const fn = instance[method];
    if (typeof fn !== 'function') return {};
    try {
      return asBag(fn.call(model, {}));
    } catch {
      return {};
    }
  };
  const getName = instance['getName'];
  let className: string | undefined;
  try {
    className = typeof getName === 'function' ? firstString(getName.call(model)) : undefined;
  } catch {
    className = undefined;
  }
  return modelInfo(call('getLsParams'), call('invocationParams'), instance, className ?? firstString((model as { constructor?: { name?: unknown } } | null)?.constructor?.name));
}

/** A compact, JSON-able form of chat messages for the worst-case input token estimate. */
export function promptOf(messages: unknown): unknown {
  if (!Array.isArray(messages)) return messages;
  return messages.map((message) => {
    const bag = asBag(message);
    const toolCalls = bag['tool_calls'];
    return {
      role: typeof bag['type'] === 'string' ? bag['type'] : 'message',
      content: bag['content'] ?? message,
      ...(Array.isArray(toolCalls) && toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    };
  });
}

/** Whether both sides of a usage report are there (a count core then checks); a side left out is not a zero. */
const bothSides = (input: unknown, output: unknown): boolean => typeof input === 'number' && typeof output === 'number';

/**
 * Token usage of an AI message (`usage_metadata`), or undefined when it has none, or lacks its input or output
 * count (the caller then charges the estimate, never a missing side as zero).
 */
export function usageFromMessage(message: unknown): UsageUpdate | undefined {
  const usage = asBag(message)['usage_metadata'];
  if (typeof usage !== 'object' || usage === null) return undefined;
  const bag = asBag(usage);
  if (!bothSides(bag['input_tokens'], bag['output_tokens'])) return undefined;
  const input = asBag(bag['input_token_details']);
  const output = asBag(bag['output_token_details']);
  const model = responseModel(message);
  return {
    inputTokens: bag['input_tokens'] as number,
    outputTokens: bag['output_tokens'] as number,
    ...(input['cache_read'] !== undefined ? { cachedInputTokens: input['cache_read'] as number } : {}),
    ...(input['cache_creation'] !== undefined ? { cacheWriteTokens: input['cache_creation'] as number } : {}),
    ...(output['reasoning'] !== undefined ? { reasoningTokens: output['reasoning'] as number } : {}),
    ...(model !== undefined ? { model } : {}),
  };
}

/** Which counts a usage report has: each side a number (a side left out is not a zero). */
export interface UsageSides {
  input: boolean;
  output: boolean;
}

/**
 * Adds the counts one streamed chunk reports (its message's `usage_metadata`) to `sides`, as the provider sent them.
 * LangChain merges the chunks of a stream into one message and turns a count no chunk reported into 0, so only the
 * chunks tell a side left out from a zero. Returns `sides` unchanged for a chunk without usage.
 */
export function addStreamedUsage(sides: UsageSides | undefined, chunk: unknown): UsageSides | undefined {
  const usage = asBag(asBag(chunk)['message'])['usage_metadata'];
  if (typeof usage !== 'object' || usage === null) return sides;
  const bag = asBag(usage);
  return {
    input: (sides?.input ?? false) || typeof bag['input_tokens'] === 'number',
    output: (sides?.output ?? false) || typeof bag['output_tokens'] === 'number',
  };
}

/** The model name a provider answered with (`response_metadata.model_name`), if any. */
export function responseModel(message: unknown): string | undefined {
  const metadata = asBag(asBag(message)['response_metadata']);
  return firstString(metadata['model_name'], metadata['model'], metadata['model_id']);
}

/**
 * Token usage of an `LLMResult`: the first generation's message that carries `usage_metadata` with both counts
 * (providers that return several candidates copy the same usage onto each), else `llmOutput` (legacy completion
 * models). Undefined when no report has both an input and an output count.
 */
export function usageFromResult(output: unknown): UsageUpdate | undefined {
  const generations = asBag(output)['generations'];
  let model: string | undefined;
  if (Array.isArray(generations)) {
    for (const group of generations) {
      if (!Array.isArray(group)) continue;
      for (const generation of group) {
        const message = asBag(generation)['message'];
        model ??= responseModel(message);
        const usage = usageFromMessage(message);
        if (usage) return usage;
      }
    }
  }
  const llmOutput = asBag(asBag(output)['llmOutput']);
  const legacy = asBag(llmOutput['tokenUsage'] ?? llmOutput['estimatedTokenUsage'] ?? llmOutput['usage']);
  const inputTokens = legacy['promptTokens'] ?? legacy['prompt_tokens'] ?? legacy['input_tokens'];
  const outputTokens = legacy['completionTokens'] ?? legacy['completion_tokens'] ?? legacy['output_tokens'];
  if (!bothSides(inputTokens, outputTokens)) return undefined;
  model ??= firstString(llmOutput['model_name'], llmOutput['model']);
  return { inputTokens: inputTokens as number, outputTokens: outputTokens as number, ...(model !== undefined ? { model } : {}) };
}

/**
 * The HTTP status a LangChain model error carries (`status`, `statusCode` or `response.status`), on the error or on
 * the provider error it wraps (`cause`: LangChain rewraps some, a context overflow among them), for core's
 * `Reservation.fail` rule.
 */
export function failureOf(error: unknown): { status?: number; error: unknown } {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const bag = asBag(current);
    const status = bag['status'] ?? bag['statusCode'] ?? asBag(bag['response'])['status'];
    if (typeof status === 'number') return { status, error };
    current = bag['cause'];
  }
  return { error };
}

/**
 * The provider id core's price catalog knows each LangChain embeddings class by (LangChain reports no provider for
 * embeddings, as it does for chat models with `ls_provider`). A subclass is known by the class it extends.
 */
const EMBEDDINGS_PROVIDERS: ReadonlyMap<string, string> = new Map([
  ['OpenAIEmbeddings', 'openai'],
  ['AzureOpenAIEmbeddings', 'azure'],
  ['MistralAIEmbeddings', 'mistral'],
  ['CohereEmbeddings', 'cohere'],
  ['GoogleGenerativeAIEmbeddings', 'google'],
  ['VertexAIEmbeddings', 'google-vertex'],
  ['BedrockEmbeddings', 'bedrock'],
  ['VoyageEmbeddings', 'voyage'],
]);

/**
 * The model an embeddings instance calls: its `model` (or the older `modelName` / `modelId`), else its class name;
 * the provider from its class (the nearest known one up its prototype chain), only with a real model name.
 */
export function modelInfoFromEmbeddings(embeddings: unknown): { model: string; provider?: string } {
  const instance = asBag(embeddings);
  const named = firstString(instance['model'], instance['modelName'], instance['modelId']);
  const names: string[] = [];
  for (let proto: unknown = Object.getPrototypeOf(embeddings); proto !== null && proto !== Object.prototype && names.length < 32; proto = Object.getPrototypeOf(proto)) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof name === 'string' && name !== '') names.push(name);
  }
  const provider = named !== undefined ? names.map((name) => EMBEDDINGS_PROVIDERS.get(name)).find((id) => id !== undefined) : undefined;
  return { model: named ?? names[0] ?? 'unknown', ...(provider !== undefined ? { provider } : {}) };
}

/**
 * The usage of one embeddings request, from what the request returned: OpenAI's `usage.prompt_tokens` (the
 * response `OpenAIEmbeddings` receives, before it keeps the vectors only), with the model the provider names.
 * Undefined when there is no readable count; the caller then charges the estimate.
 */
export function embeddingUsage(result: unknown): UsageUpdate | undefined {
  const bag = asBag(result);
  const inputTokens = firstCount(asBag(bag['usage'])['prompt_tokens']);
  if (inputTokens === undefined) return undefined;
  const model = firstString(bag['model']);
  return { inputTokens, outputTokens: 0, ...(model !== undefined ? { model } : {}) };
}
