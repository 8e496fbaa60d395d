// ESM entry of the smoke test (run as TypeScript by Node, or as JavaScript after its types are stripped).
import * as core from '@agentpolicy/core';
import * as aiSdk from '@agentpolicy/ai-sdk';
import * as langchain from '@agentpolicy/langchain';
import * as langchainHandler from '@agentpolicy/langchain/handler';
import * as openaiAdapter from '@agentpolicy/openai';
import * as ai from 'ai';
import * as aiTest from 'ai/test';
import * as langchainTools from '@langchain/core/tools';
import * as openai from 'openai';
import * as otel from '@opentelemetry/api';
import * as mcp from '@agentpolicy/mcp';
import * as approvals from '@agentpolicy/approvals';
import { runSmoke } from './run-smoke.ts';

await runSmoke({ core, aiSdk, ai, aiTest, langchain, langchainHandler, langchainTools, openaiAdapter, openai, otel, mcp, approvals }, process.argv[2] ?? 'esm');
