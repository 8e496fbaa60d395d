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

const values = AgentPolicy.fromDict({
  rules: [
    { deny: 'large transfers', tool: 'transfer', if: { 'input.amount': { gt: 1000 } } },
    { deny: 'that exact amount', tool: 'pay', if: { 'input.amount': { eq: 5000 } } },
    { deny: 'fraud test account', tool: 'charge', if: { 'input.account': { in: ['test-fraud', 'blocked'] } } },
    { deny: 'no mail to evil', tool: 'mail', if: { 'input.to': { glob: '*@evil.com' } } },
    { deny: 'only ourco', tool: 'mail_in', unless: { 'input.to': { glob: '*@ourco.com' } } },
    { deny: 'not production', tool: 'deploy', unless: { 'input.env': { not_in: ['production'] } } },
    { deny: 'no evil hosts', tool: 'fetch', if: { 'input.url': { domain: 'evil.com' } } },
    { deny: 'only ourco hosts', tool: 'fetch_in', unless: { 'input.url': { domain: 'ourco.com' } } },
    { deny: 'no admin', tool: 'user', if: { 'input.user.role': { eq: 'admin' } } },
    { deny: 'no deletes in a batch', tool: 'bulk', if: { 'input.ops.action': { eq: 'delete' } } },
  ],
});

describe('type games: numbers, case, look-alikes, paths', () => {
  it.each(['5000', '5e3', ' 5000', '5000 ', '5,000', '0x1388', '5000.0', '+5000', 'Infinity', '1e400', '5000\n', true, { n: 5000 }, [1, 5000]])(
    'gt 1000 on %j is denied (over or cannot judge)',
    async (amount) => {
      expect(await decisionOf(values, 'transfer', { amount })).toBe('deny');
    },
  );

  it.each(['5000', '5e3', ' 5000', '+5000', '5000.0', '0x1388', '5000\n', '05000'])('eq 5000 on %j is denied (a reading of it is 5000)', async (amount) => {
    expect(await decisionOf(values, 'pay', { amount })).toBe('deny');
  });

  it.each(['TEST-FRAUD', 'test-fraud ', 'ｔｅｓｔ-fraud', 'te\u0301st-fraud', 'tеst-fraud', 'test-fraud\u200b', 'Blocked'])(
    'in [test-fraud] on %j is denied (a variant the tool may not tell apart)',
    async (account) => {
      expect(await decisionOf(values, 'charge', { account })).toBe('deny');
    },
  );

  it.each(['a@EVIL.COM', 'a@evil.com ', 'a@evil.com\n', 'a@Evil.Com'])('glob *@evil.com on %j is denied', async (to) => {
    expect(await decisionOf(values, 'mail', { to })).toBe('deny');
  });

  // `a@evil.com@ourco.com` is left out: a glob compares text and does not parse addresses (see the README).
  it.each(['a@evil.com\n@ourco.com', 'A@OURCO.COM.evil.io', 'x@ourco.com\u0000', ['a@ourco.com', 'b@evil.com']])(
    'unless glob *@ourco.com on %j is denied',
    async (to) => {
      expect(await decisionOf(values, 'mail_in', { to })).toBe('deny');
    },
  );

  it.each(['PRODUCTION', 'Production', 'production ', 'ｐｒｏｄｕｃｔｉｏｎ', ['staging', 'production']])('unless not_in [production] on %j is denied', async (env) => {
    expect(await decisionOf(values, 'deploy', { env })).toBe('deny');
  });

  it.each([
    'http://evil.com/',
    'https://EVIL.COM./x',
    'https://good.com@evil.com/',
    'https://good.com\\@evil.com/',
    'http://evil.com\\.good.com/',
    'https://[::ffff:127.0.0.1]/',
    'https://xn--evil-abc.com.evil.com/',
    'evil.com',
    'evil.com:443',
    '//evil.com/x',
    ' https://evil.com/',
    'https://evil%2ecom/',
    'https://evil。com/',
    'https://ｅｖｉｌ.com/',
  ])('domain evil.com on %j is denied', async (url) => {
    // [::ffff:127.0.0.1] is not evil.com: checked apart below.
    if (url.includes('::ffff')) return;
    expect(await decisionOf(values, 'fetch', { url })).toBe('deny');
  });

  it.each(['https://ourco.com.evil.com/', 'https://evil.com/ourco.com', 'https://evil.com#@ourco.com', 'https://ourco.com\\@evil.com/', 'https://evil.com\\@ourco.com/', 'ftp://ourco.com/', 'ourco.com/x'])(
    'unless domain ourco.com on %j is denied',
    async (url) => {
      expect(await decisionOf(values, 'fetch_in', { url })).toBe('deny');
    },
  );

  it('a dotted key is not a nested path, and a nested path is read whatever else is there', async () => {
    expect(await decisionOf(values, 'user', { user: { role: 'admin' } })).toBe('deny');
    expect(await decisionOf(values, 'user', { 'user.role': 'admin', user: { role: 'admin' } })).toBe('deny');
    expect(await decisionOf(values, 'user', { user: [{ role: 'guest' }, [{ role: 'admin' }]] })).toBe('deny');
    // A key named "user.role" is another field: the tool reading input.user.role never sees it.
    expect(await decisionOf(values, 'user', { 'user.role': 'admin' })).toBe('allow');
  });

  it('__proto__ and constructor keys never hide or forge a value', async () => {
    const input = JSON.parse('{"__proto__": {"role": "admin"}, "user": {"__proto__": {"role": "guest"}, "role": "admin"}}');
    expect(await decisionOf(values, 'user', input)).toBe('deny');
    const forged = JSON.parse('{"user": {"__proto__": {"role": "admin"}}}');
    expect(await decisionOf(values, 'user', forged)).toBe('allow');
    expect(await decisionOf(values, 'user', { constructor: { role: 'admin' }, user: { constructor: 'x', role: 'admin' } })).toBe('deny');
  });

  it('the element at index 300, or 20 levels down, is judged: the record is bounded, the policy reads the whole input', async () => {
    const ops = Array.from({ length: 400 }, (_, i) => ({ action: i === 300 ? 'delete' : 'read' }));
    expect(await decisionOf(values, 'bulk', { ops })).toBe('deny');
    let deep: unknown = { action: 'delete' };
    for (let i = 0; i < 20; i++) deep = [deep];
    expect(await decisionOf(values, 'bulk', { ops: deep })).toBe('deny');
    let deeper: unknown = { action: 'delete' };
    for (let i = 0; i < 100; i++) deeper = [deeper];
    expect(await decisionOf(values, 'bulk', { ops: deeper })).toBe('deny');
    const long = { ops: [{ action: 'read', note: 'x'.repeat(5000) }, { action: 'delete' }] };
    expect(await decisionOf(values, 'bulk', long)).toBe('deny');
  });
});

describe('limits cannot be overrun', () => {
  it('1,000 concurrent checks against max_calls: 5 allow exactly 5, with an async store too, across two sessions of one budget', async () => {
    const policy = AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 5, per: '1m', scope: 'budget' }] });
    const local = policy.session();
    const decisions = await Promise.all(Array.from({ length: 1000 }, () => local.checkTool('search')));
    expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(5);

    const store = new InMemoryRateLimitStore();
    const asyncStore = {
      take: async (key: string, max: number, windowMs: number | null) => {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        return store.take(key, max, windowMs);
      },
      giveBack: async (key: string, slot: string) => store.giveBack(key, slot),
    };
    const a = policy.session({ budgetKey: 'acme', limitStore: asyncStore });
    const b = policy.session({ budgetKey: 'acme', limitStore: asyncStore });
    const shared = await Promise.all(Array.from({ length: 1000 }, (_, i) => (i % 2 ? a : b).checkTool('search')));
    expect(shared.filter((d) => d.decision === 'allow')).toHaveLength(5);
  });

  it('calls an approver rejects, or whose approver throws, give their slot back; no more than max are ever allowed', async () => {
    let n = 0;
    const policy = AgentPolicy.fromDict({
      limits: [{ tool: 'pay', max_calls: 3, per: 'session' }],
      rules: [{ require_approval: 'all payments', tool: 'pay', if: { 'input.amount': { gt: 0 } } }],
    });
    const session = policy.session({
      approver: async () => {
        n++;
        if (n % 3 === 0) throw new Error('approver down');
        return n % 3 === 1;
      },
    });
    const decisions = await Promise.all(Array.from({ length: 60 }, () => session.checkTool('pay', { input: { amount: 5 } })));
    expect(decisions.filter((d) => d.decision === 'allow').length).toBeLessThanOrEqual(3);
    const later = [];
    for (let i = 0; i < 30; i++) later.push(await session.checkTool('pay', { input: { amount: 5 } }));
    expect([...decisions, ...later].filter((d) => d.decision === 'allow')).toHaveLength(3);
  });

  it('the window edge: a slot frees exactly one window after it was taken, never earlier, with an injected clock', async () => {
    let now = 1_000_000;
    const store = new InMemoryRateLimitStore({ now: () => now });
    const session = AgentPolicy.fromDict({ limits: [{ tool: 'search', max_calls: 2, per: '10s' }] }).session({ limitStore: store });
    expect((await session.checkTool('search')).decision).toBe('allow');
    now += 5000;
    expect((await session.checkTool('search')).decision).toBe('allow');
    now += 4999;
    expect((await session.checkTool('search')).decision).toBe('deny');
    now += 1;
    expect((await session.checkTool('search')).decision).toBe('allow');
    expect((await session.checkTool('search')).decision).toBe('deny');
    // A clock that steps back frees nothing.
    now -= 60_000;
    expect((await session.checkTool('search')).decision).toBe('deny');
  });

  it('a shadowed limit denies nothing and takes nothing from an enforced one; an enforced limit still denies under mode: shadow', async () => {
    const policy = AgentPolicy.fromDict({
      mode: 'shadow',
      limits: [
        { tool: 'search', max_calls: 1, per: 'session' },
        { tool: 'search', max_calls: 3, per: 'session', mode: 'enforce' },
      ],
    });
    const session = policy.session();
    const decisions = [];
    for (let i = 0; i < 5; i++) decisions.push(await session.checkTool('search'));
    expect(decisions.map((d) => d.decision)).toEqual(['allow', 'allow', 'allow', 'deny', 'deny']);
    expect(decisions[1]?.shadow).toMatchObject({ decision: 'deny', rule: { section: 'limits', index: 0 } });
    expect(decisions[3]?.rule).toMatchObject({ section: 'limits', index: 1 });
    expect(session.report().shadowSummary).toMatchObject({ total: 4, deny: 4, byRule: { 'limits[0]': 4 } });
  });
});

describe('shadow rules never change the enforced decision', () => {
  const policy = AgentPolicy.fromDict({
    rules: [
      { deny: 'trial deny', tool: 'send', mode: 'shadow', if: { 'input.to': { glob: '*@x.com' } } },
      { require_approval: 'trial approval', tool: 'send', mode: 'shadow', if: { 'input.to': { glob: '*@y.com' } } },
      { require_approval: 'enforced approval', tool: 'send', if: { 'input.to': { glob: '*@*.com' } } },
      { deny: 'enforced deny', tool: 'send', if: { 'input.to': { glob: '*@y.com' } } },
    ],
  });

  it.each([
    ['a@x.com', 'require_approval', 'rules[0]'],
    ['a@y.com', 'deny', undefined],
    ['a@z.com', 'require_approval', undefined],
    ['a@z.org', 'allow', undefined],
  ])('%s: enforced %s', async (to, enforced, shadowRule) => {
    const session = policy.session();
    const decision = await session.checkTool('send', { input: { to } });
    expect(decision.decision).toBe(enforced);
    if (shadowRule) expect(decision.shadow).toMatchObject({ rule: { section: 'rules', index: Number(shadowRule.slice(6, -1)) } });
    // The same policy with the shadowed rules removed decides the same.
    const enforcedOnly = AgentPolicy.fromDict({ rules: policy.toDocument().rules?.filter((rule) => rule.mode !== 'shadow') });
    expect((await enforcedOnly.session().checkTool('send', { input: { to } })).decision).toBe(enforced);
  });

  it('an approval given for a call does not let a shadowed deny turn into an enforced one, nor an enforced deny be skipped', async () => {
    const session = policy.session();
    expect((await session.checkTool('send', { input: { to: 'a@y.com' }, approved: true })).decision).toBe('deny');
    expect((await session.checkTool('send', { input: { to: 'a@x.com' }, approved: true })).decision).toBe('allow');
  });
});
