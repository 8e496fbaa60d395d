import { existsSync, readFileSync } from 'node:fs';
import { cac } from 'cac';
import { AgentPolicyError, PolicyValidationError } from './errors.js';
import { policyJsonSchema } from './json-schema.js';
import { AgentPolicy } from './policy.js';
import { runDemo } from './demo.js';

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

  cli.command('explain <file>', 'Print a JSON summary of what a policy enforces').action(
    withPolicy((policy, file) => out(JSON.stringify({ file, ...policy.explain() }, null, 2))),
  );

  cli.command('demo <file>', 'Run a sample session against a policy and print its report as JSON').action(
    withPolicy(async (policy) => out(JSON.stringify(await runDemo(policy), null, 2))),
  );

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
      err(name ? `agentpolicy: unknown command ${JSON.stringify(name)} (commands: validate, explain, demo, schema; see --help)` : 'agentpolicy: no command given (commands: validate, explain, demo, schema; see --help)');
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

