// Names the LangChain README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare const deleteRepo: import('@langchain/core/tools').StructuredToolInterface;
declare const agent: import('@langchain/core/runnables').Runnable;
declare const model: import('@langchain/core/language_models/chat_models').BaseChatModel;
declare const tools: import('@langchain/core/tools').StructuredToolInterface[];
declare function askAHuman(request: import('@agentpolicy/langchain').ToolApprovalRequest): Promise<boolean>;
declare const MemoryVectorStore: new (embeddings: import('@langchain/core/embeddings').EmbeddingsInterface) => import('@langchain/core/vectorstores').VectorStore;
declare const docs: import('@langchain/core/documents').Document[];
