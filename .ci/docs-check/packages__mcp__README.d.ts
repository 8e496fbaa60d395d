// Names the MCP README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare const policy: import('@agentpolicy/core').AgentPolicy;
declare const session: import('@agentpolicy/core').PolicySession;
