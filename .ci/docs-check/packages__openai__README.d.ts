// Names the OpenAI README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare const session: import('@agentpolicy/core').PolicySession;
declare const openai: import('openai').default;
declare const model: string;
declare const messages: import('openai/resources/chat/completions').ChatCompletionMessageParam[];
declare const toolSpecs: import('openai/resources/chat/completions').ChatCompletionTool[];
declare let reply: import('openai/resources/chat/completions').ChatCompletion;
declare function runLocalTool(name: string, input: unknown): Promise<unknown>;
declare function notifyReviewer(requestId: string, action: import('@agentpolicy/core').Action): Promise<void>;
declare function sendEmail(input: unknown): Promise<string>;
declare const toolCosts: Readonly<Record<string, number>>;
