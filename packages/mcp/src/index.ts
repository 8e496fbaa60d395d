export { wrapMcpTransport, wrapMcpServerTransport, type McpPolicyTransport } from './policy-transport.js';
export { gateMcpServer, wrapMcpClient, type Connectable, type SessionSource } from './gate-mcp-server.js';
export { governedToolName } from './governed-tool-name.js';
export type { McpPolicyOptions, RefusalResult } from './tool-gate.js';
export type { McpToolCosts } from './tool-costs.js';
