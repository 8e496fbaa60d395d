export { GPT_4O_IMAGE_MAX, GPT_4O_MAX_OUTPUT, GPT_IMAGE_2_MAX, GPT_IMAGE_MAX, startBillingServer, wav, type BillingServer, type BillingServerOptions } from './billing-server.js';
export { startFlakyServer, type FlakyFailure, type FlakyServer, type FlakyServerOptions } from './flaky-server.js';
export { runBurst, type BurstOptions, type BurstResult, type BurstSession, type BurstSetup } from './burst.js';
export { ARGUMENT_RULES, SHADOW_CALLS, SHADOW_OUTCOMES } from './argument-rules.js';
export { startMockOpenAI, type MockOpenAIServer, type MockOpenAIServerOptions, type MockReply, type MockUsage, type RecordedRequest } from './mock-openai.js';
