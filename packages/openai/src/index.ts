export { wrapOpenAI, type WrapOpenAIOptions, type OpenAIClientLike } from './wrap-openai.js';
export { toolCallInput } from './tool-calls.js';
export type { ToolArgumentsParser } from './tool-parsers.js';
export type { ToolCosts } from './tool-costs.js';
