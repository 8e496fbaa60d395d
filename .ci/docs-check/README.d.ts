// Names the root README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare function askOnSlack(request: import('@agentpolicy/core').ApprovalRequest): Promise<boolean>;
declare const to: string;
// The quick start calls it; the AI SDK snippet hands it to wrapTools as a tool.
declare const sendEmail: ((to: string) => Promise<void>) & import('ai').Tool<{ to: string }, string>;
declare const search: import('ai').Tool<{ query: string }, string>;
declare const baseModel: import('@ai-sdk/provider').LanguageModelV4;
declare const messages: import('ai').ModelMessage[];
declare const session: import('@agentpolicy/core').PolicySession;
declare const deleteRepo: import('@langchain/core/tools').StructuredToolInterface;
declare const model: import('@langchain/core/language_models/chat_models').BaseChatModel;
declare const tools: import('@langchain/core/tools').StructuredToolInterface[];
declare const client: import('@modelcontextprotocol/sdk/client/index.js').Client;
declare const StdioClientTransport: typeof import('@modelcontextprotocol/sdk/client/stdio.js').StdioClientTransport;
declare const mcpServer: import('@modelcontextprotocol/sdk/server/mcp.js').McpServer;
declare const policy: import('@agentpolicy/core').AgentPolicy;
declare const store: import('@agentpolicy/core').ApprovalStore;
declare const secret: string;
declare const handlerUrl: string;
declare function currentUser(request: Request): import('@agentpolicy/approvals').ApprovalsPrincipal | undefined;
declare function notify(links: unknown): Promise<void>;
declare const app: { use(path: string, handler: (request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse) => unknown): void };
declare function askAHuman(request: unknown): boolean;
