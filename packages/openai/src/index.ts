export { wrapOpenAI, type WrapOpenAIOptions, type OpenAIClientLike } from './wrap-openai.js';
export type { ToolArgumentsParser } from './tool-parsers.js';
export type { ToolCosts } from './tool-costs.js';
