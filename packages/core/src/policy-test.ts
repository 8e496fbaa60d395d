import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { ActionInput } from './action-input.js';
import type { DecisionValue } from './decision.js';
import { AgentPolicyError, PolicyValidationError } from './errors.js';
import { ruleId } from './format-report.js';
import { parseYamlPolicy } from './load-yaml.js';
import { AgentPolicy } from './policy.js';
import { isPlainObject } from './policy-values.js';
import { unknownKeyMessage } from './suggest.js';

/** What one step of a case expects: the decision, and optionally the rule (an id like `tools.block`) and a reason fragment. */
export interface PolicyTestExpectation {
  readonly decision: DecisionValue;
  readonly rule?: string;
  readonly reason?: string;
  /** Under `mode: shadow` (or shadowed rules and limits): what the policy would decide if it were enforced. */
  readonly shadow?: DecisionValue;
}

/** What the policy actually decided for one step. */
export interface PolicyTestActual {
  readonly decision: DecisionValue;
  readonly rule: string;
  readonly reason: string;
  /** What enforcing the shadowed parts would decide (the decision itself when nothing is shadowed). */
  readonly shadow: DecisionValue;
}

/** One step of a case: an action and what it should be decided. */
export interface PolicyTestStep {
  readonly action: ActionInput;
  readonly expected: PolicyTestExpectation;
}

/** The outcome of one step: what was expected, what happened, and each difference in words. */
export interface PolicyTestStepResult extends PolicyTestStep {
  readonly actual: PolicyTestActual;
  readonly ok: boolean;
  /** The differences, as diff lines: `- expected …` / `+ actual …`. Empty when the step passed. */
  readonly diff: readonly string[];
}

/** One case of a test file: its steps run in one fresh session, in order (for budgets and limits). */
export interface PolicyTestCase {
  readonly name: string;
  readonly steps: readonly PolicyTestStep[];
  /** Runs the case against the file's policy. */
  run(): Promise<PolicyTestCaseResult>;
}

export interface PolicyTestCaseResult {
  readonly name: string;
  readonly ok: boolean;
  readonly steps: readonly PolicyTestStepResult[];
}

/** A test file read and its policy loaded. */
export interface PolicyTestFile {
  readonly file: string;
  readonly policyFile: string;
  readonly policy: AgentPolicy;
  readonly cases: readonly PolicyTestCase[];
}

/** The results of one test file (or why it could not run: `error`, which counts as one failure). */
export interface PolicyTestFileResult {
  readonly file: string;
  readonly policyFile?: string;
  readonly policyHash?: string;
  readonly cases: readonly PolicyTestCaseResult[];
  readonly error?: string;
}

/** The results of a run over files and directories. */
export interface PolicyTestReport {
  readonly files: readonly PolicyTestFileResult[];
  readonly passed: number;
  readonly failed: number;
  readonly ok: boolean;
}

const DECISIONS: readonly DecisionValue[] = ['allow', 'deny', 'require_approval'];
const FILE_KEYS = ['policy', 'cases'] as const;
const ACTION_KEYS = ['tool', 'input', 'http', 'method', 'cost', 'source', 'approved', 'metadata'] as const;
const EXPECT_KEYS = ['expect', 'rule', 'reason', 'shadow'] as const;
const CASE_KEYS = ['name', 'steps', ...ACTION_KEYS, ...EXPECT_KEYS] as const;
const STEP_KEYS = [...ACTION_KEYS, ...EXPECT_KEYS] as const;

/** A test file is a policy test when its name ends in `.test.yaml` or `.test.yml`. */
export function isPolicyTestFile(path: string): boolean {
  return /\.test\.ya?ml$/.test(path);
}

/**
 * Reads a policy test file and loads the policy it tests: `policy:` (relative to the test file), or by default the
 * file of the same name without `.test` (`policy.test.yaml` tests `policy.yaml`). A file that is not a valid test
 * file throws {@link PolicyValidationError} listing every problem.
 *
 * @example
 * ```ts
 * // in vitest or node:test
 * for (const c of loadPolicyTests('policy.test.yaml').cases) {
 *   it(c.name, async () => {
 *     const result = await c.run();
 *     assert.ok(result.ok, formatCaseFailure(result).join('\n'));
 *   });
 * }
 * ```
 */
export function loadPolicyTests(file: string): PolicyTestFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new AgentPolicyError('POLICY_LOAD_FAILED', `cannot read policy test file ${file}: ${(error as Error).message}`, { cause: error });
  }
  const parsed = parseYamlPolicy(text);
  if (!parsed.ok) throw new PolicyValidationError(parsed.issues, { source: file });
  const issues: Array<{ path: string; message: string }> = [];
  const doc = parsed.value;
  if (!isPlainObject(doc)) throw new PolicyValidationError([{ path: '', message: 'a policy test file is a mapping with policy: and cases:' }], { source: file });
  for (const key of Object.keys(doc)) if (!(FILE_KEYS as readonly string[]).includes(key)) issues.push({ path: key, message: unknownKeyMessage(key, FILE_KEYS) });
  const policyRef = doc.policy;
  if (policyRef !== undefined && (typeof policyRef !== 'string' || policyRef === '')) issues.push({ path: 'policy', message: 'policy must be the path of the policy file, relative to this file' });
  const policyFile = resolve(dirname(file), typeof policyRef === 'string' && policyRef !== '' ? policyRef : basename(file).replace(/\.test\.(ya?ml)$/, '.$1'));
  const rawCases = doc.cases;
  if (!Array.isArray(rawCases) || rawCases.length === 0) issues.push({ path: 'cases', message: 'cases must be a non-empty list' });
  const specs: Array<{ name: string; steps: PolicyTestStep[] }> = [];
  const names = new Set<string>();
  (Array.isArray(rawCases) ? rawCases : []).forEach((raw: unknown, index) => {
    const path = `cases[${index}]`;
    if (!isPlainObject(raw)) {
      issues.push({ path, message: 'each case is a mapping: name, an action (tool/http/cost) or steps, and expect' });
      return;
    }
    for (const key of Object.keys(raw)) if (!(CASE_KEYS as readonly string[]).includes(key)) issues.push({ path: `${path}.${key}`, message: unknownKeyMessage(key, CASE_KEYS) });
    const name = typeof raw.name === 'string' && raw.name.trim() !== '' ? raw.name : undefined;
    if (name === undefined) issues.push({ path: `${path}.name`, message: 'each case needs a name' });
    else if (names.has(name)) issues.push({ path: `${path}.name`, message: `another case is already named ${JSON.stringify(name)}` });
    else names.add(name);
    let steps: PolicyTestStep[] = [];
    if (raw.steps !== undefined) {
      const own = Object.keys(raw).filter((key) => key !== 'name' && key !== 'steps');
      if (own.length > 0) issues.push({ path, message: `a case with steps puts the action and expectation in each step, not beside them (${own.join(', ')})` });
      if (!Array.isArray(raw.steps) || raw.steps.length === 0) issues.push({ path: `${path}.steps`, message: 'steps must be a non-empty list' });
      else {
        raw.steps.forEach((step: unknown, i) => {
          const stepPath = `${path}.steps[${i}]`;
          if (!isPlainObject(step)) issues.push({ path: stepPath, message: 'each step is a mapping: an action and expect' });
          else {
            for (const key of Object.keys(step)) if (!(STEP_KEYS as readonly string[]).includes(key)) issues.push({ path: `${stepPath}.${key}`, message: unknownKeyMessage(key, STEP_KEYS) });
            const read = readStep(step, stepPath, issues);
            if (read) steps.push(read);
          }
        });
      }
    } else {
      const read = readStep(raw, path, issues);
      steps = read ? [read] : [];
    }
    if (name !== undefined) specs.push({ name, steps });
  });
  if (issues.length > 0) throw new PolicyValidationError(issues, { source: file });
  if (!existsSync(policyFile)) throw new AgentPolicyError('POLICY_LOAD_FAILED', `${file}: the policy it tests, ${policyFile}, does not exist (set policy: in the test file)`);
  const policy = AgentPolicy.fromYaml(policyFile);
  const cases = specs.map((spec): PolicyTestCase => ({ name: spec.name, steps: spec.steps, run: () => runCase(policy, spec.name, spec.steps) }));
  return { file, policyFile, policy, cases };
}

function readStep(raw: Record<string, unknown>, path: string, issues: Array<{ path: string; message: string }>): PolicyTestStep | undefined {
  const kinds = (['tool', 'http'] as const).filter((key) => raw[key] !== undefined);
  const expected = raw.expect;
  let ok = true;
  if (typeof expected !== 'string' || !(DECISIONS as readonly string[]).includes(expected)) {
    issues.push({ path: `${path}.expect`, message: `expect must be one of ${DECISIONS.join(', ')}` });
    ok = false;
  }
  for (const key of ['rule', 'reason'] as const) {
    if (raw[key] !== undefined && (typeof raw[key] !== 'string' || raw[key] === '')) {
      issues.push({ path: `${path}.${key}`, message: `${key} must be a non-empty string` });
      ok = false;
    }
  }
  if (raw.shadow !== undefined && (typeof raw.shadow !== 'string' || !(DECISIONS as readonly string[]).includes(raw.shadow))) {
    issues.push({ path: `${path}.shadow`, message: `shadow must be one of ${DECISIONS.join(', ')}` });
    ok = false;
  }
  if (kinds.length > 1) {
    issues.push({ path, message: 'a step is one action: tool, http, or a cost alone' });
    return undefined;
  }
  if (raw.approved !== undefined && typeof raw.approved !== 'boolean') {
    issues.push({ path: `${path}.approved`, message: 'approved must be true or false' });
    ok = false;
  }
  const common = {
    ...(raw.cost !== undefined ? { cost: raw.cost as number } : {}),
    ...(raw.approved === true ? { approved: true } : {}),
    ...(raw.metadata !== undefined ? { metadata: raw.metadata as Record<string, unknown> } : {}),
  };
  let action: ActionInput;
  if (kinds[0] === 'tool') {
    if (typeof raw.tool !== 'string') {
      issues.push({ path: `${path}.tool`, message: 'tool must be the tool name' });
      return undefined;
    }
    action = { type: 'tool', name: raw.tool, ...common, ...(raw.input !== undefined ? { input: raw.input } : {}) };
  } else if (kinds[0] === 'http') {
    if (typeof raw.http !== 'string') {
      issues.push({ path: `${path}.http`, message: 'http must be the request URL' });
      return undefined;
    }
    action = { type: 'http', url: raw.http, ...common, ...(typeof raw.method === 'string' ? { method: raw.method } : {}) };
  } else if (raw.cost !== undefined) {
    action = { type: 'cost', cost: raw.cost as number, source: typeof raw.source === 'string' ? raw.source : 'test', ...(raw.approved === true ? { approved: true } : {}) };
  } else {
    issues.push({ path, message: 'each step needs an action: tool, http, or cost' });
    return undefined;
  }
  if (!ok) return undefined;
  return {
    action,
    expected: {
      decision: expected as DecisionValue,
      ...(raw.rule !== undefined ? { rule: raw.rule as string } : {}),
      ...(raw.reason !== undefined ? { reason: raw.reason as string } : {}),
      ...(raw.shadow !== undefined ? { shadow: raw.shadow as DecisionValue } : {}),
    },
  };
}

/** A rule id matches an expected one when equal, or when the expectation names its list (`tools.block` for `tools.block:rm*`). */
function ruleMatches(actual: string, expected: string): boolean {
  return actual === expected || actual.startsWith(`${expected}:`) || actual.startsWith(`${expected}[`);
}

async function runCase(policy: AgentPolicy, name: string, steps: readonly PolicyTestStep[]): Promise<PolicyTestCaseResult> {
  // A fresh session per case; no approver, so an approval rule shows as require_approval, never a guess.
  const session = policy.session({ telemetry: false, id: `policy-test:${name}` });
  const results: PolicyTestStepResult[] = [];
  for (const step of steps) {
    const action = step.action;
    const decision =
      action.type === 'tool'
        ? await session.checkTool(action.name, action)
        : action.type === 'http'
          ? await session.checkHttp(action.url, action)
          : await session.checkCost(action.cost, action);
    const actual: PolicyTestActual = { decision: decision.decision, rule: ruleId(decision.rule), reason: decision.reason, shadow: decision.shadow?.decision ?? decision.decision };
    const diff: string[] = [];
    const { expected } = step;
    if (actual.decision !== expected.decision) diff.push(`- decision: ${expected.decision}`, `+ decision: ${actual.decision}`);
    if (expected.rule !== undefined && !ruleMatches(actual.rule, expected.rule)) diff.push(`- rule: ${expected.rule}`, `+ rule: ${actual.rule}`);
    if (expected.reason !== undefined && !actual.reason.toLowerCase().includes(expected.reason.toLowerCase())) {
      diff.push(`- reason containing: ${JSON.stringify(expected.reason)}`, `+ reason: ${JSON.stringify(actual.reason)}`);
    }
    if (expected.shadow !== undefined && actual.shadow !== expected.shadow) {
      diff.push(`- shadow: ${expected.shadow}`, `+ shadow: ${actual.shadow}${decision.shadow ? ` (${decision.shadow.reason})` : ''}`);
    }
    if (diff.length > 0 && !diff.some((line) => line.startsWith('+ reason'))) diff.push(`  reason: ${JSON.stringify(actual.reason)}`);
    results.push({ ...step, actual, ok: diff.length === 0, diff });
  }
  return { name, ok: results.every((step) => step.ok), steps: results };
}

/** Every policy test file under the given files and directories (`*.test.yaml`, `*.test.yml`; node_modules skipped), sorted. */
export function findPolicyTests(paths: readonly string[]): string[] {
  const found: string[] = [];
  const walk = (path: string, given: boolean): void => {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat === undefined) {
      if (given) throw new AgentPolicyError('POLICY_LOAD_FAILED', `no such file or directory: ${path}`);
      return;
    }
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path).sort()) {
        if (entry === 'node_modules' || entry.startsWith('.')) continue;
        walk(join(path, entry), false);
      }
    } else if (given || isPolicyTestFile(path)) found.push(path);
  };
  for (const path of paths) walk(path, true);
  return found;
}

/** Runs every policy test file under `paths` (default: the current directory). A file that cannot run is one failure. */
export async function runPolicyTests(paths: string | readonly string[] = ['.']): Promise<PolicyTestReport> {
  const files: PolicyTestFileResult[] = [];
  for (const file of findPolicyTests(typeof paths === 'string' ? [paths] : paths)) {
    let loaded: PolicyTestFile;
    try {
      loaded = loadPolicyTests(file);
    } catch (error) {
      const detail = PolicyValidationError.isInstance(error) ? error.issues.map((issue) => `${issue.path || '(top level)'}: ${issue.message}`).join('; ') : (error as Error).message;
      files.push({ file, cases: [], error: detail });
      continue;
    }
    const cases: PolicyTestCaseResult[] = [];
    for (const testCase of loaded.cases) cases.push(await testCase.run());
    files.push({ file, policyFile: loaded.policyFile, policyHash: loaded.policy.hash, cases });
  }
  let passed = 0;
  let failed = 0;
  for (const file of files) {
    if (file.error !== undefined) failed++;
    for (const result of file.cases) {
      if (result.ok) passed++;
      else failed++;
    }
  }
  return { files, passed, failed, ok: failed === 0 && files.length > 0 };
}

/** A failed case as lines: each failing step with its diff of expected (`-`) and actual (`+`). */
export function formatCaseFailure(result: PolicyTestCaseResult): string[] {
  const lines: string[] = [];
  result.steps.forEach((step, index) => {
    if (step.ok) return;
    const action = step.action;
    const what = action.type === 'tool' ? `tool ${action.name}` : action.type === 'http' ? `http ${String(action.url)}` : `cost ${action.cost}`;
    lines.push(`${result.steps.length > 1 ? `step ${index + 1}: ` : ''}${what}`);
    for (const line of step.diff) lines.push(`  ${line}`);
  });
  return lines;
}

/** The report as a test runner prints it: ✓/✗ per case, the diff under each failure, and the totals line. */
export function formatPolicyTestReport(report: PolicyTestReport): string[] {
  const lines: string[] = [];
  for (const file of report.files) {
    lines.push(`${file.file}${file.policyFile ? ` (${relative(process.cwd(), file.policyFile) || file.policyFile}, sha256 ${file.policyHash?.slice(0, 12)})` : ''}`);
    if (file.error !== undefined) lines.push(`  ✗ cannot run: ${file.error}`);
    for (const result of file.cases) {
      lines.push(`  ${result.ok ? '✓' : '✗'} ${result.name}`);
      if (!result.ok) for (const line of formatCaseFailure(result)) lines.push(`      ${line}`);
    }
  }
  if (report.files.length === 0) lines.push('no policy test files found (*.test.yaml)');
  lines.push(`${report.passed} passed, ${report.failed} failed`);
  return lines;
}

/** Runs the policy tests under `paths` and throws, with every failure's diff, unless all pass (for a test runner). */
export async function assertPolicyTests(paths: string | readonly string[] = ['.']): Promise<PolicyTestReport> {
  const report = await runPolicyTests(paths);
  if (!report.ok) throw new AgentPolicyError('POLICY_TEST_FAILED', formatPolicyTestReport(report).join('\n'));
  return report;
}
