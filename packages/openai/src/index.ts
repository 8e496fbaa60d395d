export { wrapOpenAI, type WrapOpenAIOptions, type OpenAIClientLike } from './wrap-openai.js';
