import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DomainMatcher, embeddedIpv4, normalizeDomainEntry, parseTarget } from './domain.js';
import { AgentPolicy } from './policy.js';

const host = (url: string) => {
  const target = parseTarget(url);
  return target.ok ? target.host : `denied: ${target.reason}`;
};

describe('parseTarget: one parse, one normalised host', () => {
  it.each([
    ['https://Docs.Python.ORG/3/', 'docs.python.org'],
    ['https://docs.python.org./3/', 'docs.python.org'],
    ['https://docs.python.org.../3/', 'docs.python.org'],
    ['https://user:secret@docs.python.org:8443/x', 'docs.python.org'],
    ['https://bücher.de/', 'xn--bcher-kva.de'],
    ['https://BÜCHER.de/', 'xn--bcher-kva.de'],
    ['https://ｔｗｉｔｔｅｒ.com/', 'twitter.com'],
    ['http://0x7f.1/', '127.0.0.1'],
    ['http://2130706433/', '127.0.0.1'],
    ['http://0177.0.0.1/', '127.0.0.1'],
    ['http://[0:0:0:0:0:0:0:1]/', '[::1]'],
    ['http://[::FFFF:7f00:1]/', '127.0.0.1'],
  ])('%s → %s', (url, expected) => {
    expect(host(url)).toBe(expected);
  });

  it.each([
    ['ftp://docs.python.org/', /scheme ftp/],
    ['file:///etc/passwd', /scheme file/],
    ['javascript:alert(1)', /scheme javascript/],
    ['data:text/plain,hi', /scheme data/],
    ['ws://docs.python.org/', /scheme ws/],
    ['not a url', /could not be parsed/],
    ['//docs.python.org/', /could not be parsed/],
    ['http://exa mple.com/', /could not be parsed/],
  ])('denies %s', (url, reason) => {
    const target = parseTarget(url);
    expect(target.ok).toBe(false);
    if (!target.ok) expect(target.reason).toMatch(reason);
  });

  it('never records userinfo', () => {
    const target = parseTarget('https://user:secret@docs.python.org/x');
    expect(target.ok && target.url).toBe('https://docs.python.org/x');
  });
});

describe('domain entries', () => {
  it('normalises entries like hosts', () => {
    expect(normalizeDomainEntry('Docs.Python.org.')).toEqual({ ok: true, host: 'docs.python.org', wildcard: false, isIp: false });
    expect(normalizeDomainEntry('*.python.org')).toEqual({ ok: true, host: 'python.org', wildcard: true, isIp: false });
    expect(normalizeDomainEntry('bücher.de')).toMatchObject({ ok: true, host: 'xn--bcher-kva.de' });
    expect(normalizeDomainEntry('::1')).toMatchObject({ ok: true, host: '[::1]', isIp: true });
    expect(normalizeDomainEntry('[::1]')).toMatchObject({ ok: true, host: '[::1]', isIp: true });
    expect(normalizeDomainEntry('0x7f.0.0.1')).toMatchObject({ ok: true, host: '127.0.0.1', isIp: true });
  });

  it.each(['https://twitter.com', 'twitter.com/path', 'twitter.com:443', 'user@twitter.com', '*.*.com', 'a*.com', '', ' twitter.com', '*.10.0.0.1'])('refuses %j', (entry) => {
    expect(normalizeDomainEntry(entry).ok).toBe(false);
  });
});

describe('DomainMatcher', () => {
  const block = new DomainMatcher(['twitter.com', '*.evil.example', '10.0.0.1', '::1'], 'subtree');
  const allow = new DomainMatcher(['docs.python.org', '*.pypi.org'], 'exact');

  it('block covers the domain and its subdomains on label boundaries', () => {
    expect(block.match('twitter.com', false)).toBe('twitter.com');
    expect(block.match('api.twitter.com', false)).toBe('twitter.com');
    expect(block.match('a.b.twitter.com', false)).toBe('twitter.com');
    expect(block.match('nottwitter.com', false)).toBeUndefined();
    expect(block.match('twitter.com.evil.net', false)).toBeUndefined();
  });

  it('a *. entry covers strict subdomains only', () => {
    expect(block.match('x.evil.example', false)).toBe('*.evil.example');
    expect(block.match('evil.example', false)).toBeUndefined();
    expect(allow.match('files.pypi.org', false)).toBe('*.pypi.org');
    expect(allow.match('pypi.org', false)).toBeUndefined();
  });

  it('allow entries are exact hosts', () => {
    expect(allow.match('docs.python.org', false)).toBe('docs.python.org');
    expect(allow.match('www.docs.python.org', false)).toBeUndefined();
    expect(allow.match('python.org', false)).toBeUndefined();
  });

  it('IP entries match only the same canonical address', () => {
    expect(block.match('10.0.0.1', true)).toBe('10.0.0.1');
    expect(block.match('[::1]', true)).toBe('::1');
    expect(block.match('110.0.0.1', true)).toBeUndefined();
  });
});

describe('URL forms always decide like their normalised form (property)', () => {
  const policy = new AgentPolicy({ allowedDomains: ['docs.python.org', '*.example.com', '127.0.0.1'], blockedDomains: ['twitter.com'] });
  const session = policy.session();
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
  const baseHost = fc.oneof(
    fc.constantFrom('docs.python.org', 'twitter.com', 'api.twitter.com', 'nottwitter.com', 'a.example.com', 'example.com', '127.0.0.1'),
    fc.tuple(label, fc.constantFrom('example.com', 'twitter.com', 'python.org')).map(([l, d]) => `${l}.${d}`),
  );

  it('case, trailing dot, userinfo, port and path never change the decision', () => {
    fc.assert(
      fc.property(
        baseHost,
        fc.boolean(),
        fc.boolean(),
        fc.option(fc.constantFrom('user', 'user:pw', 'a%40b:c'), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
        fc.constantFrom('', '/', '/a/b?q=1#f'),
        fc.constantFrom('http', 'https', 'HTTPS'),
        (hostName, upper, dot, userinfo, port, path, scheme) => {
          const decorated = `${scheme}://${userinfo ? `${userinfo}@` : ''}${upper ? hostName.toUpperCase() : hostName}${dot ? '.' : ''}${port ? `:${port}` : ''}${path}`;
          const plain = `https://${host(`https://${hostName}/`)}/`;
          const a = session.evaluate({ type: 'http', url: decorated });
          const b = session.evaluate({ type: 'http', url: plain });
          return a.decision === b.decision && a.action.type === 'http' && b.action.type === 'http' && a.action.domain === b.action.domain;
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('every URL that parses decides like its normalised host', () => {
    fc.assert(
      fc.property(fc.webUrl({ validSchemes: ['http', 'https'] }), (url) => {
        const target = parseTarget(url);
        if (!target.ok) return session.evaluate({ type: 'http', url }).decision === 'deny';
        return session.evaluate({ type: 'http', url }).decision === session.evaluate({ type: 'http', url: `http://${target.host}/` }).decision;
      }),
      { numRuns: 1000 },
    );
  });
});

describe('IPv6 forms of an IPv4 address', () => {
  const policy = new AgentPolicy({ blockedDomains: ['169.254.169.254', '10.0.0.1'] });
  const session = policy.session();

  it.each([
    'http://169.254.169.254/latest/meta-data/',
    'http://2852039166/',
    'http://0xa9.0xfe.0xa9.0xfe/',
    'http://[::ffff:a9fe:a9fe]/latest/meta-data/',
    'http://[::ffff:169.254.169.254]/',
    'http://[0:0:0:0:0:ffff:a9fe:a9fe]/',
    'http://[::FFFF:A9FE:A9FE]:80/',
    'http://[::a9fe:a9fe]/',
    'http://[::169.254.169.254]/',
    'http://[::ffff:0:a9fe:a9fe]/',
    'http://[64:ff9b::a9fe:a9fe]/',
    'http://[64:ff9b::169.254.169.254]/',
    'http://[64:ff9b:1::a9fe:a9fe]/',
    'http://[2002:a9fe:a9fe::1]/',
    'http://[::ffff:a00:1]/',
  ])('%s is blocked by the IPv4 entry', async (url) => {
    const decision = await session.checkHttp(url);
    expect(decision.decision).toBe('deny');
    expect(decision.rule).toMatchObject({ section: 'network', list: 'block' });
  });

  it('an IPv4-mapped address is recorded as the IPv4 address it is', () => {
    expect(host('http://[::ffff:a9fe:a9fe]/')).toBe('169.254.169.254');
    expect(host('http://[::ffff:169.254.169.254]/')).toBe('169.254.169.254');
    expect(host('http://[::ffff:0:a9fe:a9fe]/')).toBe('[::ffff:0:a9fe:a9fe]');
  });

  it('a block entry written in mapped form blocks the IPv4 address', async () => {
    const mapped = new AgentPolicy({ blockedDomains: ['::ffff:169.254.169.254'] }).session();
    expect((await mapped.checkHttp('http://169.254.169.254/')).decision).toBe('deny');
    expect(normalizeDomainEntry('[::ffff:a9fe:a9fe]')).toMatchObject({ ok: true, host: '169.254.169.254', isIp: true });
  });

  it('an allow-list entry covers only the same destination: the mapped form, not NAT64 or 6to4', async () => {
    const allow = new AgentPolicy({ allowedDomains: ['10.0.0.5'] }).session();
    expect((await allow.checkHttp('http://[::ffff:10.0.0.5]/')).decision).toBe('allow');
    expect((await allow.checkHttp('http://[64:ff9b::a00:5]/')).decision).toBe('deny');
    expect((await allow.checkHttp('http://[2002:a00:5::1]/')).decision).toBe('deny');
  });

  it('approval rules on an IPv4 address see its IPv6 forms', async () => {
    const rules = new AgentPolicy({ approvalRules: [{ domain: '169.254.169.254' }] }).session();
    expect((await rules.checkHttp('http://[64:ff9b::a9fe:a9fe]/')).decision).toBe('require_approval');
  });

  it('plain IPv6 addresses are not read as IPv4', () => {
    expect(embeddedIpv4('[::1]')).toEqual([]);
    expect(embeddedIpv4('[::]')).toEqual([]);
    expect(embeddedIpv4('[2001:db8::1]')).toEqual([]);
    expect(embeddedIpv4('[fe80::a9fe:a9fe]')).toEqual([]);
  });

  it('unrelated addresses stay allowed', async () => {
    expect((await session.checkHttp('http://[2001:db8::a9fe:a9fe]/')).decision).toBe('allow');
    expect((await session.checkHttp('http://169.254.169.253/')).decision).toBe('allow');
  });
});

describe('domain matching is linear in the host length', () => {
  // The matcher before the label trie: every parent suffix looked up in a Map (a copy and a hash per dot).
  function reference(entries: string[], mode: 'subtree' | 'exact', hostName: string): string | undefined {
    const hosts = new Map<string, string>();
    const wildcards = new Map<string, string>();
    for (const entry of entries) {
      const normalized = normalizeDomainEntry(entry);
      if (!normalized.ok) continue;
      const target = normalized.wildcard ? wildcards : hosts;
      if (!target.has(normalized.host)) target.set(normalized.host, entry);
    }
    const direct = hosts.get(hostName);
    if (direct !== undefined) return direct;
    let dot = hostName.indexOf('.');
    while (dot >= 0) {
      const parent = hostName.slice(dot + 1);
      const wildcard = wildcards.get(parent);
      if (wildcard !== undefined) return wildcard;
      if (mode === 'subtree' && hosts.get(parent) !== undefined) return hosts.get(parent);
      dot = hostName.indexOf('.', dot + 1);
    }
    return undefined;
  }

  it('agrees with the suffix-by-suffix matcher on random hosts and lists (property)', () => {
    const label = fc.constantFrom('a', 'b', 'com', 'x-y', 'xn--bcher-kva');
    const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join('.'));
    const entry = fc.tuple(fc.boolean(), name).map(([wild, n]) => (wild ? `*.${n}` : n));
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 8 }), name, (entries, hostName) => new DomainMatcher(entries, 'subtree').match(hostName, false) === reference(entries, 'subtree', hostName)),
      { numRuns: 3000 },
    );
  });

  it('agrees in exact mode too (property)', () => {
    const label = fc.constantFrom('a', 'b', 'com');
    const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join('.'));
    const entry = fc.tuple(fc.boolean(), name).map(([wild, n]) => (wild ? `*.${n}` : n));
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 8 }), name, (entries, hostName) => new DomainMatcher(entries, 'exact').match(hostName, false) === reference(entries, 'exact', hostName)),
      { numRuns: 3000 },
    );
  });

  it('decides a 16 KB host correctly (timing is in the benchmark)', async () => {
    const session = new AgentPolicy({ blockedDomains: ['evil.example'], allowedDomains: ['*.good.example'] }).session();
    const deep = 'a.'.repeat(8_000);
    expect((await session.checkHttp(`https://${deep}evil.example/`)).decision).toBe('deny');
    expect((await session.checkHttp(`https://${deep}good.example/`)).decision).toBe('allow');
    expect((await session.checkHttp(`https://${deep}other.example/`)).decision).toBe('deny');
    expect((await session.checkHttp(`https://${'a'.repeat(16_000)}.good.example/`)).decision).toBe('allow');
  });
});

describe('an entry naming this machine blocks every way of reaching it', () => {
  const thisMachine = [
    'http://localhost/',
    'http://LOCALHOST./',
    'http://api.localhost/',
    'http://127.0.0.1/',
    'http://127.1/',
    'http://127.0.0.2:8080/',
    'http://2130706434/',
    'http://0x7f000001/',
    'http://0177.0.0.1/',
    'http://0.0.0.0/',
    'http://0/',
    'http://[::1]/',
    'http://[0:0:0:0:0:0:0:1]/',
    'http://[::]/',
    'http://[::ffff:127.0.0.2]/',
    'http://[::ffff:0.0.0.0]/',
    'http://[::127.0.0.1]/',
    'http://[64:ff9b::7f00:1]/',
    'http://[2002:7f00:1::]/',
  ];

  it.each(['localhost', '127.0.0.1', '::1', '0.0.0.0', '[::]', '127.0.0.53'])('block: [%s] denies every form of this machine', async (entry) => {
    const session = new AgentPolicy({ blockedDomains: [entry] }).session();
    for (const url of thisMachine) {
      const decision = await session.checkHttp(url);
      expect([url, decision.decision, decision.rule]).toEqual([url, 'deny', { section: 'network', list: 'block', entry }]);
    }
    expect((await session.checkHttp('http://localhost.example.com/')).decision).toBe('allow');
    expect((await session.checkHttp('http://128.0.0.1/')).decision).toBe('allow');
    expect((await session.checkHttp('http://[2001:db8::1]/')).decision).toBe('allow');
  });

  it('the most specific entry is still the one named', () => {
    const block = new DomainMatcher(['localhost', '127.0.0.1'], 'subtree');
    expect(block.match('127.0.0.1', true)).toBe('127.0.0.1');
    expect(block.match('127.0.0.2', true)).toBe('localhost');
    expect(block.match('localhost', false)).toBe('localhost');
  });

  it('an approval rule on localhost covers the loopback addresses; a *.localhost wildcard does not widen', async () => {
    const rules = new AgentPolicy({ approvalRules: [{ domain: 'localhost' }] }).session();
    expect((await rules.checkHttp('http://0.0.0.0:3000/')).decision).toBe('require_approval');
    const wildcard = new DomainMatcher(['*.localhost'], 'subtree');
    expect(wildcard.match('127.0.0.1', true)).toBeUndefined();
    expect(wildcard.match('a.localhost', false)).toBe('*.localhost');
  });

  it('an allow list stays exact: allowing 127.0.0.1 allows neither localhost nor 127.0.0.2', async () => {
    const session = new AgentPolicy({ allowedDomains: ['127.0.0.1'] }).session();
    expect((await session.checkHttp('http://127.0.0.1/')).decision).toBe('allow');
    expect((await session.checkHttp('http://localhost/')).decision).toBe('deny');
    expect((await session.checkHttp('http://127.0.0.2/')).decision).toBe('deny');
    expect((await session.checkHttp('http://0.0.0.0/')).decision).toBe('deny');
  });

  it('an allow entry naming one form exactly still allows it beside a block of localhost; the other forms stay blocked', async () => {
    const session = new AgentPolicy({ allowedDomains: ['127.0.0.1', 'api.localhost', '0.0.0.0'], blockedDomains: ['localhost'] }).session();
    expect((await session.checkHttp('http://127.0.0.1/')).decision).toBe('allow');
    expect((await session.checkHttp('http://[::ffff:7f00:1]/')).decision).toBe('allow');
    expect((await session.checkHttp('http://0.0.0.0/')).decision).toBe('allow');
    expect((await session.checkHttp('http://localhost/')).rule).toMatchObject({ list: 'block', entry: 'localhost' });
    expect((await session.checkHttp('http://api.localhost/')).rule).toMatchObject({ list: 'block', entry: 'localhost' });
    expect((await session.checkHttp('http://127.0.0.2/')).decision).toBe('deny');
    expect((await session.checkHttp('http://[::1]/')).decision).toBe('deny');
  });
});

describe('URL tricks decide on the host the request goes to', () => {
  const session = new AgentPolicy({ allowedDomains: ['allowed.example', '*.ourco.example'], blockedDomains: ['evil.example'] }).session();
  it.each([
    ['https://allowed.example@evil.example/', 'evil.example'],
    ['https://allowed.example:443@evil.example/', 'evil.example'],
    ['https://evil.example#@allowed.example', 'evil.example'],
    ['https://evil.example?@allowed.example/', 'evil.example'],
    ['https://evil.example\\@allowed.example', 'evil.example'],
    ['https://evil.example\\.allowed.example/', 'evil.example'],
    ['https:\\\\evil.example', 'evil.example'],
    ['https:evil.example', 'evil.example'],
    ['https:/evil.example', 'evil.example'],
    ['https://ev\til.example/', 'evil.example'],
    ['https://evil.ex\nample/', 'evil.example'],
    [' \u0000https://evil.example/ ', 'evil.example'],
    ['https://%65vil.example/', 'evil.example'],
    ['https://evil.example%2e/', 'evil.example'],
    ['HTTPS://EVIL.EXAMPLE/', 'evil.example'],
    ['https://evil.example./', 'evil.example'],
    ['https://evil。example/', 'evil.example'],
    ['https://evil．example/', 'evil.example'],
    ['https://ｅｖｉｌ.example/', 'evil.example'],
    ['https://ourco.example.evil.example/', 'ourco.example.evil.example'],
  ])('%j is decided as %s and denied', async (url, expected) => {
    const decision = await session.checkHttp(url);
    expect(decision.decision).toBe('deny');
    expect(decision.action.type === 'http' && decision.action.domain).toBe(expected);
  });

  it.each(['https://evilourco.example/', 'https://ourco.example/', 'https://x.ourco.example.evil/'])('%s is not under *.ourco.example', async (url) => {
    expect((await session.checkHttp(url)).decision).toBe('deny');
  });

  it.each(['http://[fe80::1%25eth0]/', 'http://allowed.example%00.evil.example/', 'http://allowed.example%40evil.example/', 'blob:https://allowed.example/x', 'wss://allowed.example/'])('%j is refused as input', async (url) => {
    const decision = await session.checkHttp(url);
    expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'url' } });
  });
});
