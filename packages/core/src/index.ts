export { AgentPolicy, canonicalJson, type AgentPolicyOptions, type ApprovalRuleOption, type PreparedAction, type Verdict } from './policy.js';
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
  type ModelCallEstimate,
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
export { validatePolicyDocument, toPolicyDocument, type PolicyDocument, type NormalizedPolicy } from './policy-document.js';
export { policyWarnings, type PolicyWarning, type PolicyWarningCode } from './policy-warnings.js';
export { policyJsonSchema } from './json-schema.js';
export { parseYamlPolicy } from './load-yaml.js';
export { estimatePromptTokens, priceUsage, type PriceResult, type TokenUsage } from './pricing.js';
export { parseTarget, normalizeDomainEntry } from './domain.js';
export { globMatch, foldToolName, toolNameProblem } from './tool-matcher.js';
export { parseMoney, readCost, formatUsd, NANOS_PER_USD } from './money.js';
export { createPolicyFetch, type PolicyFetchOptions } from './session-fetch.js';
