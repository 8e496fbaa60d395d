export { AgentPolicy, canonicalJson, type AgentPolicyOptions, type ApprovalRuleOption, type PriceOption, type PreparedAction, type Verdict } from './policy.js';
export {
  PolicySession,
  type ActionInput,
  type ApprovalAnswer,
  type ApprovalRequest,
  type Approver,
  type CheckCostOptions,
  type CheckHttpOptions,
  type CheckToolOptions,
  type GuardToolOptions,
  type Reservation,
  type SessionOptions,
  type SessionReport,
  type SoftLimitEvent,
  type UsageUpdate,
} from './session.js';
export type {
  Action,
  ActionType,
  AllowDecision,
  ApprovalRecord,
  ApprovalRuleSpec,
  CostAction,
  Decision,
  DecisionValue,
  DenyDecision,
  HttpAction,
  Metadata,
  RequireApprovalDecision,
  RuleRef,
  Settlement,
  ToolAction,
} from './decision.js';
export {
  AgentPolicyError,
  ApprovalRequiredError,
  PolicyDeniedError,
  PolicyValidationError,
  decisionError,
  findPolicyError,
  type AgentPolicyErrorCode,
  type PolicyIssue,
} from './errors.js';
export { InMemoryBudgetStore, type BudgetSnapshot, type BudgetStore, type MaybePromise } from './budget-store.js';
export { validatePolicyDocument, toPolicyDocument, type PolicyDocument, type PriceDocument, type NormalizedPolicy, type NormalizedPrice } from './policy-document.js';
export { policyJsonSchema } from './json-schema.js';
export { parseYamlPolicy } from './load-yaml.js';
export { estimatePromptTokens, imagePrice, priceUsage, type Billing, type PriceResult, type TokenUsage } from './pricing.js';
export {
  DEFAULT_IMAGE_TOKENS,
  estimateModelCall,
  imageOutputTokens,
  imageTokens,
  splitPromptMedia,
  type PromptMedia,
  type AudioInput,
  type EstimateOptions,
  type ImageInput,
  type ImageOutput,
  type ModelCallEstimate,
  type ModelEstimate,
} from './model-estimate.js';
export { parseTarget, normalizeDomainEntry } from './domain.js';
export { globMatch, foldToolName, toolNameProblem } from './tool-matcher.js';
export { parseMoney, readCost, formatUsd, NANOS_PER_USD } from './money.js';
export { createPolicyFetch, type PolicyFetchOptions } from './session-fetch.js';
