export { AgentPolicy, canonicalJson, type AgentPolicyOptions, type ApprovalRuleOption, type PriceOption } from './policy.js';
export type { PolicyEvaluator, PreparedAction, Verdict } from './policy-evaluator.js';
export {
  PolicySession,
  type ApprovalDecisionInput,
  type ApprovalTokenOptions,
  type ClaimOptions,
  type GuardToolOptions,
  type RunToolOptions,
} from './session.js';
export type { SessionOptions } from './session-options.js';
export type { ActionInput, CheckCostOptions, CheckHttpOptions, CheckToolOptions } from './action-input.js';
export type { ApprovalAnswer, Approver, ApproverRequest, BoundApprovalAnswer } from './approvals.js';
export {
  InMemoryApprovalStore,
  type ApprovalRequest,
  type ApprovalResolution,
  type ApprovalState,
  type ApprovalStatus,
  type ApprovalStore,
  type ResolveResult,
} from './approval-store.js';
export { signApprovalToken, verifyApprovalToken, type ApprovalTokenClaims, type TokenCheck } from './approval-token.js';
export { actionFingerprint, canonicalInput, type FingerprintParts } from './action-fingerprint.js';
export { waitingInputs, type ReturnedCall } from './waiting-inputs.js';
export { boundString, boundValue, MAX_RECORDED_STRING } from './bounded-record.js';
export type { SessionReport } from './audit-trail.js';
export type { SoftLimitEvent } from './budget-ledger.js';
export type { Reservation, UsageUpdate } from './reservation.js';
export { withdrawAllow } from './reservation.js';
export type {
  Action,
  ActionType,
  AllowDecision,
  ApprovalRecord,
  ApprovalRequestRef,
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
  UnusedAnswer,
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
export { InMemoryRateLimitStore, type InMemoryRateLimitStoreOptions, type RateLimitStore, type RateLimitTake } from './rate-limit-store.js';
export { InMemoryCallKeyStore, parseDecision, type CallKeyBegin, type CallKeyBeginOptions, type CallKeyRef, type CallKeyStore, type InMemoryCallKeyStoreOptions } from './call-key-store.js';
export {
  InMemoryBudgetStore,
  windowEnd,
  windowId,
  windowStart,
  type BudgetGrant,
  type BudgetPeriod,
  type BudgetRef,
  type BudgetSnapshot,
  type BudgetStore,
  type InMemoryBudgetStoreOptions,
  type LeaseOutcome,
  type MaybePromise,
  type WindowSpend,
} from './budget-store.js';
export { validatePolicyDocument, toPolicyDocument, type PolicyDocument, type PriceDocument, type NormalizedPolicy, type NormalizedPrice } from './policy-document.js';
export { policyWarnings, type PolicyWarning, type PolicyWarningCode } from './policy-warnings.js';
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
export { parseMoney, readCost, declaredCost, declaredCostIn, formatUsd, NANOS_PER_USD, type CostTable, type DeclaredCost } from './money.js';
export { createPolicyFetch, type HttpChecker, type PolicyFetchOptions } from './session-fetch.js';
export { type LookupFunction, type PolicyLookupOptions } from './address-lookup.js';
export type { DecisionSink } from './decision-sink.js';
export {
  AuditLog,
  createAuditLog,
  AUDIT_LOG_VERSION,
  GENESIS_HASH,
  type AuditLogOptions,
  type AuditRecord,
  type AuditDecisionRecord,
  type AuditSettlementRecord,
  type AuditOpenRecord,
} from './audit-log.js';
export { verifyAuditLog, type AuditVerification, type AuditBreak, type AuditBreakKind } from './audit-verify.js';
export { readAuditLog, type AuditLogReport, type SpendPoint } from './audit-report.js';
export { formatDecision, formatDecisions, formatReport, printable, ruleId, type FormatReportOptions } from './format-report.js';
export { renderHtmlReport, type HtmlReportOptions } from './html-report.js';
export { PolicySource, type PolicyFileOptions, type PolicySourceOptions, type PolicyUpdate } from './policy-source.js';
export { FileHaltStore, InMemoryHaltStore, haltState, type HaltOptions, type HaltState, type HaltStore } from './halt.js';
export type { PolicyProvider } from './policy-evaluator.js';
export {
  assertPolicyTests,
  findPolicyTests,
  formatCaseFailure,
  formatPolicyTestReport,
  isPolicyTestFile,
  loadPolicyTests,
  runPolicyTests,
  type PolicyTestActual,
  type PolicyTestCase,
  type PolicyTestCaseResult,
  type PolicyTestExpectation,
  type PolicyTestFile,
  type PolicyTestFileResult,
  type PolicyTestReport,
  type PolicyTestStep,
  type PolicyTestStepResult,
} from './policy-test.js';
export {
  Replayer,
  formatReplayReport,
  renderReplayHtml,
  replayAuditLog,
  type ReplayChange,
  type ReplayOptions,
  type ReplayReport,
  type ReplayRuleGroup,
} from './replay.js';
export { diffPolicies, formatPolicyDiff, type PolicyChange, type PolicyDiff } from './policy-diff.js';
