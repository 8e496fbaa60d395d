import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cac } from 'cac';
import { AgentPolicyError, PolicyValidationError } from './errors.js';
import { policyJsonSchema } from './json-schema.js';
import type { ActionInput } from './action-input.js';
import { AgentPolicy } from './policy.js';
import { runDemo } from './demo.js';
import { verifyAuditLog, type AuditVerification } from './audit-verify.js';
import { readAuditLog } from './audit-report.js';
import { formatReport } from './format-report.js';
import { renderHtmlReport } from './html-report.js';
import { FileHaltStore, haltState } from './halt.js';
import { formatPolicyTestReport, runPolicyTests } from './policy-test.js';
import { diffPolicies, formatPolicyDiff } from './policy-diff.js';
import { formatReplayReport, renderReplayHtml, replayAuditLog } from './replay.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type Exit = 0 | 1 | 2;

/** Loads a policy for a command; prints the problem and returns the exit code when it cannot. */
function load(file: string | undefined, err: (line: string) => void): AgentPolicy | Exit {
  if (!file) {
    err('agentpolicy: missing <file> argument');
    return 2;
  }
  if (!existsSync(file)) {
    err(`agentpolicy: no such file: ${file}`);
    return 2;
  }
  try {
    return AgentPolicy.fromYaml(file);
  } catch (error) {
    if (PolicyValidationError.isInstance(error)) {
      err(`${file}: invalid policy (${error.issues.length} issue${error.issues.length === 1 ? '' : 's'})`);
      for (const issue of error.issues) err(`${issue.path || '(top level)'}: ${issue.message}`);
      return 1;
    }
    if (AgentPolicyError.isInstance(error)) {
      err(`agentpolicy: ${error.message}`);
      return 2;
    }
    throw error;
  }
}

/** The action `explain --tool/--url` describes, `undefined` for none, or 2 after printing why the flags are wrong. */
function explainedAction(flags: { tool?: unknown; input?: unknown; url?: unknown; method?: unknown; cost?: unknown }, err: (line: string) => void): ActionInput | undefined | 2 {
  const { tool, url, method } = flags;
  if (tool === undefined && url === undefined) {
    if (flags.input !== undefined || method !== undefined || flags.cost !== undefined) {
      err('agentpolicy: --input, --method and --cost describe an action given with --tool or --url');
      return 2;
    }
    return undefined;
  }
  if (tool !== undefined && url !== undefined) {
    err('agentpolicy: give either --tool or --url, not both');
    return 2;
  }
  let cost: number | undefined;
  if (flags.cost !== undefined) {
    cost = Number(flags.cost);
    if (!Number.isFinite(cost)) {
      err(`agentpolicy: --cost must be a number of USD, got ${JSON.stringify(String(flags.cost))}`);
      return 2;
    }
  }
  if (tool !== undefined) {
    let input: unknown;
    if (flags.input !== undefined) {
      try {
        input = JSON.parse(String(flags.input));
      } catch (error) {
        err(`agentpolicy: --input is not JSON: ${(error as Error).message}`);
        return 2;
      }
    }
    return { type: 'tool', name: String(tool), ...(input !== undefined ? { input } : {}), ...(cost !== undefined ? { cost } : {}) };
  }
  if (flags.input !== undefined) {
    err('agentpolicy: --input belongs to --tool');
    return 2;
  }
  return { type: 'http', url: String(url), ...(method !== undefined ? { method: String(method) } : {}), ...(cost !== undefined ? { cost } : {}) };
}

/** Prints what `audit verify` found; returns 0 when the chain is intact, 1 when it breaks. */
function printVerification(result: AuditVerification, out: (line: string) => void): Exit {
  const name = result.files.join(' ');
  const range = result.firstSeq === null ? 'no records' : `${result.records} records (seq ${result.firstSeq}–${result.lastSeq})`;
  if (result.ok) {
    out(`${name}: intact, ${range}, head ${result.head ?? '-'}${result.keyed ? ' (hmac-sha256)' : ''}`);
  } else {
    out(`${name}: chain broken, ${result.breaks.length} problem${result.breaks.length === 1 ? '' : 's'} in ${range}`);
    for (const problem of result.breaks) out(`${problem.file}:${problem.line}: ${problem.kind}: ${problem.message}`);
  }
  if (result.partial) {
    out(`${result.partial.file}:${result.partial.line}: partial: the last line is incomplete (${result.partial.bytes} bytes, no newline): a write was cut off; every whole line before it was checked`);
  }
  if (result.continuesFrom) out(`note: the first record continues a file not given (prev ${result.continuesFrom}); give rotated files oldest first to check the links between them`);
  if (!result.keyed && result.ok) out('note: unkeyed chain: it shows any edit, deletion, insertion or reordering unless every later hash was recomputed too; keep the head elsewhere, or key the log');
  return result.ok ? 0 : 1;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(
  argv: string[],
  out: (line: string) => void = (line) => void process.stdout.write(`${line}\n`),
  err: (line: string) => void = (line) => void process.stderr.write(`${line}\n`),
): Promise<Exit> {
  const cli = cac('agentpolicy');
  let exit: Exit = 0;
  let ran = false;

  // Each file command loads the policy first; a file that does not load sets the exit code (1 invalid, 2 missing).
  // A policy that loads with warnings runs as usual (exit code unchanged); the warnings go to stderr.
  const withPolicy = (run: (policy: AgentPolicy, file: string) => void | Promise<void>) => async (file: string) => {
    ran = true;
    const policy = load(file, err);
    if (typeof policy === 'number') exit = policy;
    else {
      for (const warning of policy.warnings) err(`warning: ${warning.path}: ${warning.message}. Fix: ${warning.fix}.`);
      await run(policy, file);
    }
  };

  cli.command('validate <file>', 'Check a policy file; exit 1 listing every issue, warnings on stderr').action(
    withPolicy((policy, file) => {
      const count = policy.warnings.length;
      out(`${file}: valid policy (sha256 ${policy.hash.slice(0, 12)})${count > 0 ? `, ${count} warning${count === 1 ? '' : 's'}` : ''}`);
    }),
  );

  cli
    .command('explain <file>', 'Print a JSON summary of what a policy enforces, or which rules and limits an action meets')
    .option('--tool <name>', 'Explain a tool call')
    .option('--input <json>', 'The tool call input, as JSON')
    .option('--url <url>', 'Explain an HTTP request')
    .option('--method <method>', 'The request method')
    .option('--cost <usd>', 'What the action costs, in USD')
    .action(async (file: string, flags: { tool?: unknown; input?: unknown; url?: unknown; method?: unknown; cost?: unknown }) => {
      const action = explainedAction(flags, err);
      if (action === 2) {
        ran = true;
        exit = 2;
        return;
      }
      await withPolicy((policy, path) => out(JSON.stringify(action ? { file: path, ...policy.explainAction(action) } : { file: path, ...policy.explain() }, null, 2)))(file);
    });

  cli.command('demo <file>', 'Run a sample session against a policy and print its report as JSON').action(
    withPolicy(async (policy) => out(JSON.stringify(await runDemo(policy), null, 2))),
  );

  // File commands on audit logs: a missing file is exit 2, like a missing policy.
  const missing = (files: readonly string[]): boolean => {
    const absent = files.find((file) => !existsSync(file));
    if (absent === undefined) return false;
    err(`agentpolicy: no such file: ${absent}`);
    exit = 2;
    return true;
  };

  cli
    .command('audit <command> [...files]', 'audit verify FILE...: check an audit log\'s hash chain (rotated files oldest first); exit 1 where it breaks')
    .option('--key-env <name>', 'Environment variable holding the HMAC key of a keyed log', { default: 'AGENTPOLICY_AUDIT_KEY' })
    .action((command: string, files: string[], options: { keyEnv: string }) => {
      ran = true;
      if (command !== 'verify') {
        err(`agentpolicy: unknown audit command ${JSON.stringify(command)} (commands: verify)`);
        exit = 2;
        return;
      }
      if (files.length === 0) {
        err('agentpolicy: missing <file> argument');
        exit = 2;
        return;
      }
      if (missing(files)) return;
      const key = process.env[options.keyEnv];
      exit = printVerification(verifyAuditLog(files, key ? { key } : {}), out);
    });

  cli
    .command('report <...files>', 'Print the report of an audit log (rotated files oldest first)')
    .option('--html <out>', 'Also write the report as one self-contained HTML page')
    .option('--decisions <n>', 'List the last N decisions of each session too', { default: 0 })
    .action((files: string[], options: { html?: string; decisions: number }) => {
      ran = true;
      if (missing(files)) return;
      const report = readAuditLog(files);
      if (report.sessions.length === 0) out(`${files.join(' ')}: no decisions recorded`);
      const listed = Number(options.decisions);
      report.sessions.forEach((session, i) => {
        if (i > 0) out('');
        out(formatReport(session, { decisions: Number.isSafeInteger(listed) && listed > 0 ? listed : 0 }));
      });
      if (report.unreadableLines > 0) err(`agentpolicy: ${report.unreadableLines} unreadable lines skipped; run agentpolicy audit verify`);
      if (options.html) {
        writeFileSync(options.html, renderHtmlReport(report));
        out(`wrote ${options.html}`);
      }
    });

  cli
    .command('test [...paths]', 'Run policy test files (*.test.yaml) under the paths (default .): pass/fail per case, diff on failure; exit 1 on any failure')
    .option('--json', 'Print the results as JSON')
    .action(async (paths: string[], options: { json?: boolean }) => {
      ran = true;
      let report;
      try {
        report = await runPolicyTests(paths.length > 0 ? paths : ['.']);
      } catch (error) {
        if (!AgentPolicyError.isInstance(error)) throw error;
        err(`agentpolicy: ${error.message}`);
        exit = 2;
        return;
      }
      if (options.json) out(JSON.stringify(report, null, 2));
      else for (const line of formatPolicyTestReport(report)) out(line);
      exit = report.ok ? 0 : 1;
    });

  cli
    .command('replay <...files>', 'Re-decide every action of an audit log (rotated files oldest first) under --policy and report what would change')
    .option('--policy <file>', 'The policy to replay under (required)')
    .option('--html <out>', 'Also write the replay as one self-contained HTML page')
    .option('--json', 'Print the replay report as JSON')
    .option('--examples <n>', 'Changes listed per rule', { default: 5 })
    .action((files: string[], options: { policy?: string; html?: string; json?: boolean; examples: number }) => {
      ran = true;
      if (!options.policy) {
        err('agentpolicy: replay needs --policy <file>');
        exit = 2;
        return;
      }
      const policy = load(String(options.policy), err);
      if (typeof policy === 'number') {
        exit = policy;
        return;
      }
      if (missing(files)) return;
      const examples = Number(options.examples);
      const report = replayAuditLog(files, policy, { examples: Number.isSafeInteger(examples) && examples >= 0 ? examples : 5 });
      const names = { source: files.join(' '), policyFile: String(options.policy) };
      if (options.json) out(JSON.stringify(report, null, 2));
      else for (const line of formatReplayReport(report, names)) out(line);
      if (report.unreadableLines > 0) err(`agentpolicy: ${report.unreadableLines} unreadable lines skipped; run agentpolicy audit verify`);
      if (options.html) {
        writeFileSync(options.html, renderReplayHtml(report, names));
        out(`wrote ${options.html}`);
      }
    });

  cli
    .command('diff <old> <new>', 'The semantic difference of two policies, in words; exit 0 when they decide alike, 1 when they differ')
    .option('--json', 'Print the differences as JSON')
    .action((oldFile: string, newFile: string, options: { json?: boolean }) => {
      ran = true;
      const before = load(oldFile, err);
      if (typeof before === 'number') {
        exit = before;
        return;
      }
      const after = load(newFile, err);
      if (typeof after === 'number') {
        exit = after;
        return;
      }
      const diff = diffPolicies(before, after);
      if (options.json) out(JSON.stringify(diff, null, 2));
      else for (const line of formatPolicyDiff(diff, { old: oldFile, new: newFile })) out(line);
      exit = diff.same ? 0 : 1;
    });

  // Emergency stop through a halt file every process shares (sessions opened with `halts: new FileHaltStore(file)`).
  cli
    .command('halt [...reason]', 'Halt every session sharing a halt file (or one budget key) until resumed; "halt --list" shows halts in force')
    .option('--file <path>', 'The halt file the processes share (FileHaltStore)')
    .option('--key <budgetKey>', 'Halt only the sessions of this budget key')
    .option('--by <name>', 'Who halts (recorded in every denial)')
    .option('--list', 'List the halts in force instead')
    .action((words: string[], options: { file?: string; key?: string; by?: string; list?: boolean }) => {
      ran = true;
      if (!options.file) {
        err('agentpolicy: halt needs --file <path> (the halt file the agents share)');
        exit = 2;
        return;
      }
      const store = new FileHaltStore(options.file);
      if (options.list) {
        const halts = store.list();
        if (halts.length === 0) out(`${options.file}: no halt in force`);
        for (const halt of halts) out(`halted${halt.budgetKey !== undefined ? ` budget key ${halt.budgetKey}` : ' (every session)'} since ${halt.at}${halt.by ? ` by ${halt.by}` : ''}: ${halt.reason}`);
        return;
      }
      const reason = words.join(' ');
      if (reason.trim() === '') {
        err('agentpolicy: halt needs a reason: agentpolicy halt --file <path> <reason…>');
        exit = 2;
        return;
      }
      const state = haltState(reason, { ...(options.key !== undefined ? { budgetKey: String(options.key) } : {}), ...(options.by !== undefined ? { by: String(options.by) } : {}) });
      store.halt(state);
      out(`halted ${state.budgetKey !== undefined ? `budget key ${state.budgetKey}` : 'every session'} (${options.file}): ${state.reason}`);
    });

  cli
    .command('resume', 'Lift a halt set with agentpolicy halt')
    .option('--file <path>', 'The halt file the processes share')
    .option('--key <budgetKey>', 'Lift only the halt of this budget key')
    .action((options: { file?: string; key?: string }) => {
      ran = true;
      if (!options.file) {
        err('agentpolicy: resume needs --file <path>');
        exit = 2;
        return;
      }
      const key = options.key !== undefined ? String(options.key) : undefined;
      const was = new FileHaltStore(options.file).resume(key);
      out(was ? `resumed ${key !== undefined ? `budget key ${key}` : 'every session'} (${options.file})` : `${options.file}: no halt of ${key !== undefined ? `budget key ${key}` : 'every session'} was in force`);
    });

  cli.command('schema', 'Print the JSON Schema of the policy format').action(() => {
    ran = true;
    out(JSON.stringify(policyJsonSchema, null, 2));
  });

  cli.help();
  cli.version(VERSION);

  try {
    cli.parse(['node', 'agentpolicy', ...argv], { run: false });
    if (cli.options.help || cli.options.version) return 0;
    if (!cli.matchedCommand) {
      const name = cli.args[0];
      err(name ? `agentpolicy: unknown command ${JSON.stringify(name)} (commands: validate, explain, demo, schema, audit verify, report, test, replay, diff, halt, resume; see --help)` : 'agentpolicy: no command given (commands: validate, explain, demo, schema, audit verify, report, test, replay, diff, halt, resume; see --help)');
      return 2;
    }
    await cli.runMatchedCommand();
  } catch (error) {
    err(`agentpolicy: ${(error as Error).message}`);
    return 2;
  }
  if (!ran) return 2;
  return exit;
}

