import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DomainMatcher, normalizeDomainEntry, parseTarget } from './domain.js';
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
    ['http://[::FFFF:7f00:1]/', '[::ffff:7f00:1]'],
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
