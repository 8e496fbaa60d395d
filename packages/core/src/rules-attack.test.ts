/**
 * Attacks on argument rules, limits and shadow mode: a model choosing tool arguments (or a careless caller) trying to
 * get a call the policy denies, or sends to a human, to run without that. Each test fails if the bypass works.
 */
import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';

const shell = AgentPolicy.fromDict({
  rules: [
    { deny: 'no rm', tool: 'shell', if: { 'input.command': { command: 'rm *' } } },
    { deny: 'only allow-listed commands', tool: 'safe_shell', unless: { 'input.command': { command: ['ls*', 'git status', 'cat *'] } } },
    { deny: 'no rm in a batch', tool: 'batch', if: { 'input.commands': { command: 'rm *' } } },
  ],
});

async function decisionOf(policy: AgentPolicy, tool: string, input: unknown): Promise<string> {
  return (await policy.session().checkTool(tool, { input })).decision;
}

describe('command: every way of running rm is denied by a rule on rm', () => {
  it.each([
    'rm -rf /',
    '/bin/rm -rf /',
    '\\rm -rf /',
    "'r''m' -rf /",
    '"rm" -rf /',
    'r\\m -rf /',
    'FOO=1 rm -rf /',
    'sudo rm -rf /',
    'sudo -u root rm -rf /',
    'doas rm -rf /',
    'command rm -rf /',
    'builtin rm -rf /',
    'env rm -rf /',
    'env -i rm -rf /',
    '/usr/bin/env rm -rf /',
    'xargs rm -rf',
    'xargs -0 rm -rf',
    'nice rm -rf /',
    'nice -n 10 rm -rf /',
    'nohup rm -rf /',
    'exec rm -rf /',
    'exec -a x rm -rf /',
    'time rm -rf /',
    'timeout 5 rm -rf /',
    'busybox rm -rf /',
    'stdbuf -o0 rm -rf /',
    'setsid rm -rf /',
    'ionice -c 3 rm -rf /',
    'strace -f rm -rf /',
    'chroot / rm -rf /',
    'coproc rm -rf /',
    '! rm -rf /',
    'sh -c "rm -rf /"',
    "bash -c 'rm -rf /'",
    "/bin/bash -lc 'rm -rf /'",
    "su -c 'rm -rf /'",
    'eval rm -rf /',
    "find / -exec rm -rf '{}' \\;",
    'rm\n-rf /',
    'ls\nrm -rf /',
    'ls\rrm -rf /',
    'rm\t-rf\t/',
    'ls\u0000; rm -rf /',
    'rm\u00a0-rf\u00a0/',
    'ls\u2028rm -rf /',
    'ls\u2029rm -rf /',
    'ls\u0085rm -rf /',
    'rm\u3000-rf /',
    'rm\u200b -rf /',
    'true && rm -rf /',
    'false || rm -rf /',
    'rm -rf / &',
    'ls; rm -rf /',
    'ls | rm -rf /',
    '( rm -rf / )',
    '{ rm -rf /; }',
    'rm -rf / > /dev/null',
    'rm -rf / <<EOF',
    '`rm -rf /`',
    '$(rm -rf /)',
    'rm${IFS}-rf${IFS}/',
    '{rm,-rf,/}',
    '/bin/r? -rf /',
    '/bin/r* -rf /',
    '/bin/[r]m -rf /',
    'r[m] -rf /',
    '~/../../bin/rm -rf /',
    'RM -rf /',
    'Rm -rf /',
    '/BIN/RM -rf /',
    'ｒｍ -rf /',
  ])('%j', async (command) => {
    expect(await decisionOf(shell, 'shell', { command })).toBe('deny');
  });

  it('a very long line is refused or read in one pass, not scanned past its limit', async () => {
    expect(await decisionOf(shell, 'shell', { command: `rm ${'x '.repeat(8000)}` })).toBe('deny');
    expect(await decisionOf(shell, 'shell', { command: `${'a'.repeat(20_000)} rm -rf /` })).toBe('deny');
    expect(await decisionOf(shell, 'shell', { command: `sudo ${'-n 1 '.repeat(3000)}rm -rf /` })).toBe('deny');
  });

  it.each([
    ['an argv array', ['rm', '-rf', '/']],
    ['an argv array with the program by path', ['/bin/rm', '-rf', '/']],
    ['an argv array behind sudo', ['sudo', 'rm', '-rf', '/']],
    ['an argv with a null in it', ['rm', '-rf', '/', null]],
    ['an argv with a number in it', ['rm', '-rf', 7]],
    ['a nested argv', [['rm', '-rf', '/']]],
    ['an object', { program: 'rm', args: ['-rf', '/'] }],
    ['a number', 7],
  ])('command given as %s', async (_what, command) => {
    expect(await decisionOf(shell, 'shell', { command })).toBe('deny');
  });

  it.each([
    ['a list of lines', ['ls', 'rm -rf /']],
    ['a list of argvs', [['ls'], ['rm', '-rf', '/']]],
    ['objects holding lines', [{ line: 'rm -rf /' }]],
  ])('commands given as %s', async (_what, commands) => {
    expect(await decisionOf(shell, 'batch', { commands })).toBe('deny');
  });

  it('still allows what does not run rm', async () => {
    for (const command of ['ls -la', 'echo rm', 'git rm --cached x', 'grep -r rm .', 'ls *.txt', 'cat "a b"', 'rmdir x', 'sudo ls']) {
      expect(await decisionOf(shell, 'shell', { command }), command).toBe('allow');
    }
  });

  it('an allow-list exception is not satisfied by a line that runs something else', async () => {
    for (const command of ['ls; rm -rf /', 'ls\u00a0-la', 'LS -la', '/tmp/x/ls', 'l? -la', 'sudo ls', 'ls\u2028rm -rf /', ['ls', ['rm', '-rf']], ['ls', '-la']]) {
      expect(await decisionOf(shell, 'safe_shell', { command }), JSON.stringify(command)).toBe('deny');
    }
    for (const command of ['ls -la', 'git status', 'cat README.md', ['ls', 'ls -la']]) {
      expect(await decisionOf(shell, 'safe_shell', { command }), JSON.stringify(command)).toBe('allow');
    }
  });
});
