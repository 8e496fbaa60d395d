import { beforeEach, describe, expect, it, vi } from 'vitest';
import { AgentPolicy, findPolicyError, PolicyDeniedError } from './index.js';

// What names resolve to in these tests: the resolver session.lookup asks (dns.lookup), answering from this table.
const dns = vi.hoisted(() => ({ table: {} as Record<string, { address: string; family: number }[]>, asked: [] as string[] }));
vi.mock('node:dns', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:dns')>();
  return {
    ...actual,
    lookup: (hostname: string, _options: unknown, callback: (error: Error | null, addresses: { address: string; family: number }[]) => void) => {
      dns.asked.push(hostname);
      const answer = dns.table[hostname];
      queueMicrotask(() => (answer ? callback(null, answer) : callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), [])));
    },
  };
});

beforeEach(() => {
  dns.asked = [];
  dns.table = {
    'api.example.com': [{ address: '93.184.216.34', family: 4 }],
    'metadata.attacker.test': [{ address: '169.254.169.254', family: 4 }],
    'intranet.attacker.test': [
      { address: '93.184.216.34', family: 4 },
      { address: 'fd00::7', family: 6 },
    ],
  };
});

/** A session.fetch over a stand-in for the network: counts what is sent, answers 200 or a redirect. */
function setup(options: ConstructorParameters<typeof AgentPolicy>[0], redirects: Record<string, string> = {}) {
  const session = new AgentPolicy(options).session();
  const sent: string[] = [];
  const fetch = session.createFetch({
    fetch: async (input) => {
      const url = (input as Request).url;
      sent.push(url);
      const location = redirects[url];
      return location ? new Response(null, { status: 302, headers: { location } }) : new Response('ok');
    },
  });
  return { session, fetch, sent };
}

const SSRF = { blockedDomains: ['169.254.0.0/16', '10.0.0.0/8', 'fc00::/7', 'localhost'] };

describe('session.fetch checks the addresses a name resolves to before it sends the request', () => {
  it('a name resolving to a blocked address is refused, recorded with the address, and nothing is sent', async () => {
    const { session, fetch, sent } = setup(SSRF);
    const error = await fetch('http://metadata.attacker.test/latest/meta-data/').catch((caught: unknown) => caught);
    expect(findPolicyError(error)).toBeInstanceOf(PolicyDeniedError);
    expect(sent).toEqual([]);
    expect(session.report().decisions.map((decision) => [decision.decision, decision.rule])).toEqual([
      ['allow', { section: 'default' }],
      ['deny', { section: 'network', list: 'block', entry: '169.254.0.0/16', address: '169.254.169.254' }],
    ]);
  });

  it('any one blocked address among several refuses the name', async () => {
    const { fetch, sent } = setup(SSRF);
    expect(findPolicyError(await fetch('http://intranet.attacker.test/').catch((caught: unknown) => caught))).toBeInstanceOf(PolicyDeniedError);
    expect(sent).toEqual([]);
  });

  it('a name resolving to allowed addresses is sent, once, and nothing more is recorded', async () => {
    const { session, fetch, sent } = setup(SSRF);
    expect(await (await fetch('https://api.example.com/v1')).text()).toBe('ok');
    expect(sent).toEqual(['https://api.example.com/v1']);
    expect(dns.asked).toEqual(['api.example.com']);
    expect(session.report().decisions).toHaveLength(1);
  });

  it('each redirect hop is resolved and checked before it is requested', async () => {
    const { fetch, sent } = setup(SSRF, { 'https://api.example.com/go': 'http://metadata.attacker.test/' });
    expect(findPolicyError(await fetch('https://api.example.com/go').catch((caught: unknown) => caught))).toBeInstanceOf(PolicyDeniedError);
    expect(sent).toEqual(['https://api.example.com/go']);
    expect(dns.asked).toEqual(['api.example.com', 'metadata.attacker.test']);
  });

  it('with redirect: manual the one request is checked too', async () => {
    const { fetch, sent } = setup(SSRF);
    expect(findPolicyError(await fetch('http://metadata.attacker.test/', { redirect: 'manual' }).catch((caught: unknown) => caught))).toBeInstanceOf(PolicyDeniedError);
    expect(sent).toEqual([]);
  });

  it('nothing is resolved when no address could be blocked, for an IP address, or with a dispatcher of the caller', async () => {
    const plain = setup({ blockedDomains: ['twitter.com'] });
    await plain.fetch('http://metadata.attacker.test/');
    expect(plain.sent).toHaveLength(1);

    const guarded = setup(SSRF);
    await guarded.fetch('http://93.184.216.34/');
    expect(findPolicyError(await guarded.fetch('http://169.254.169.254/').catch((caught: unknown) => caught))).toBeInstanceOf(PolicyDeniedError);
    // The caller's dispatcher opens the connection: it is the place to check addresses (session.lookup).
    await guarded.fetch('http://metadata.attacker.test/', { dispatcher: {} } as RequestInit);
    expect(guarded.sent).toEqual(['http://93.184.216.34/', 'http://metadata.attacker.test/']);
    expect(dns.asked).toEqual([]);
  });

  it('a name that does not resolve is left to the request', async () => {
    const { fetch, sent } = setup(SSRF);
    await fetch('http://nowhere.test/');
    expect(sent).toEqual(['http://nowhere.test/']);
  });

  it('under mode: shadow the blocked address is recorded and the request is sent', async () => {
    const { session, fetch, sent } = setup({ ...SSRF, mode: 'shadow' });
    await fetch('http://metadata.attacker.test/');
    expect(sent).toEqual(['http://metadata.attacker.test/']);
    expect(session.report().decisions.map((decision) => decision.shadow?.decision)).toEqual([undefined, 'deny']);
  });

  it('checkResolvedAddresses on its own', async () => {
    const session = new AgentPolicy(SSRF).session();
    await expect(session.checkResolvedAddresses('https://api.example.com/')).resolves.toBeUndefined();
    await expect(session.checkResolvedAddresses(new URL('http://metadata.attacker.test/'))).rejects.toBeInstanceOf(PolicyDeniedError);
    await expect(session.checkResolvedAddresses('not a url')).resolves.toBeUndefined();
  });
});
