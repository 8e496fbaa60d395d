// Names the AI SDK README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare const baseModel: import('@ai-sdk/provider').LanguageModelV4;
declare const search: import('ai').Tool<{ query: string }, string>;
declare const sendEmail: import('ai').Tool<{ to: string }, string>;
declare const messages: import('ai').ModelMessage[];
declare const session: import('@agentpolicy/core').PolicySession;
declare const result: Awaited<ReturnType<typeof import('ai').generateText>>;
declare function askAHuman(toolCall: unknown): Promise<boolean>;
