import { domainToASCII } from 'node:url';

/** A URL after the one parse agentpolicy makes of it. */
export type ParsedTarget =
  | { ok: true; url: string; host: string; isIp: boolean; path: string }
  | { ok: false; reason: string; url: string };

/**
 * Parses a request target once with WHATWG `URL`: only `http:` and `https:` are in scope; the host comes out
 * lowercased, IDNA-mapped to ASCII (punycode), with IPv4/IPv6 literals in canonical form and any trailing dot
 * removed. Userinfo and port are not part of the host.
 */
export function parseTarget(input: unknown): ParsedTarget {
  if (typeof input === 'string') {
    const cached = targetCache.get(input);
    if (cached !== undefined) return cached;
    const parsed = Object.freeze(parseTargetUncached(input));
    if (targetCache.size >= CACHE_LIMIT) targetCache.clear();
    targetCache.set(input, parsed);
    return parsed;
  }
  return parseTargetUncached(input);
}

// Parsing is a pure function of the string: memoise recent ones (bounded).
const targetCache = new Map<string, ParsedTarget>();

function parseTargetUncached(input: unknown): ParsedTarget {
  let text: string;
  if (typeof input === 'string') text = input;
  else if (input instanceof URL) text = input.href;
  else if (typeof Request !== 'undefined' && input instanceof Request) text = input.url;
  else return { ok: false, reason: `URL must be a string or URL, got ${input === null ? 'null' : typeof input}`, url: String(input) };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, reason: `URL could not be parsed: ${JSON.stringify(text.slice(0, 200))}`, url: text };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, reason: `scheme ${url.protocol.slice(0, -1)} is not allowed (only http and https)`, url: redact(url) };
  }
  let host = url.hostname;
  const isIp = host.startsWith('[') || IPV4.test(host);
  if (host.endsWith('.')) host = host.replace(/\.+$/, '');
  if (host === '') return { ok: false, reason: 'URL has no host', url: redact(url) };
  return { ok: true, url: redact(url), host, isIp, path: url.pathname };
}

const IPV4 = /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/;

// Userinfo never reaches the audit trail.
function redact(url: URL): string {
  if (url.username === '' && url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/** A domain entry of a policy after normalisation. */
export type DomainEntry =
  | { ok: true; host: string; wildcard: boolean; isIp: boolean }
  | { ok: false; message: string };

/**
 * Normalises a policy domain entry the same way request hosts are normalised. `*.example.com` is a wildcard for
 * subdomains; IP literals (`10.0.0.1`, `::1`, `[::1]`) are canonicalised. URLs, ports and paths are refused.
 */
export function normalizeDomainEntry(entry: unknown): DomainEntry {
  if (typeof entry !== 'string') return { ok: false, message: `must be a domain string, got ${entry === null ? 'null' : typeof entry}` };
  const text = entry.trim();
  if (text !== entry || text === '') return { ok: false, message: `must be a domain like example.com, got ${JSON.stringify(entry)}` };
  if (text.includes('://') || /[/?#@\s]/.test(text)) {
    return { ok: false, message: `must be a bare domain (no scheme, path or userinfo), got ${JSON.stringify(entry)}` };
  }
  let wildcard = false;
  let rest = text;
  if (rest.startsWith('*.')) {
    wildcard = true;
    rest = rest.slice(2);
  }
  if (rest.includes('*')) return { ok: false, message: `"*" is only allowed as a leading "*." label, got ${JSON.stringify(entry)}` };
  const bareIpv6 = rest.includes(':') && !rest.startsWith('[');
  if (!bareIpv6 && /:[0-9]*$/.test(rest.replace(/^\[.*\]/, ''))) {
    return { ok: false, message: `must not include a port (ports never decide a match), got ${JSON.stringify(entry)}` };
  }
  let host: string;
  try {
    host = new URL(`http://${bareIpv6 ? `[${rest}]` : rest}/`).hostname;
  } catch {
    return { ok: false, message: `is not a valid domain: ${JSON.stringify(entry)}` };
  }
  if (!bareIpv6 && !rest.startsWith('[') && domainToASCII(rest.replace(/\.+$/, '')) === '' && !IPV4.test(host)) {
    return { ok: false, message: `is not a valid domain: ${JSON.stringify(entry)}` };
  }
  host = host.replace(/\.+$/, '');
  const isIp = host.startsWith('[') || IPV4.test(host);
  if (isIp && wildcard) return { ok: false, message: `an IP address cannot have a "*." wildcard: ${JSON.stringify(entry)}` };
  if (host === '') return { ok: false, message: `is not a valid domain: ${JSON.stringify(entry)}` };
  return { ok: true, host, wildcard, isIp };
}

/** How a domain list matches: `subtree` (block lists, approval rules) or `exact` (allow lists). */
export type DomainMode = 'subtree' | 'exact';

const CACHE_LIMIT = 4096;

/**
 * A compiled domain list. In `exact` mode `example.com` matches only that host; in `subtree` mode it matches the
 * host and every subdomain, on a label boundary. In both modes `*.example.com` matches strict subdomains only.
 * IP entries match only the same canonical address.
 */
export class DomainMatcher {
  private readonly hosts = new Map<string, string>();
  private readonly wildcards = new Map<string, string>();

  constructor(
    entries: readonly string[],
    private readonly mode: DomainMode,
  ) {
    for (const entry of entries) {
      const normalized = normalizeDomainEntry(entry);
      if (!normalized.ok) continue;
      const target = normalized.wildcard ? this.wildcards : this.hosts;
      if (!target.has(normalized.host)) target.set(normalized.host, entry);
    }
  }

  get size(): number {
    return this.hosts.size + this.wildcards.size;
  }

  /** The entry that matches `host` (already normalised by {@link parseTarget}), or `undefined`. */
  match(host: string, isIp: boolean): string | undefined {
    const direct = this.hosts.get(host);
    if (direct !== undefined || isIp) return direct;
    let dot = host.indexOf('.');
    while (dot >= 0) {
      const parent = host.slice(dot + 1);
      const wildcard = this.wildcards.get(parent);
      if (wildcard !== undefined) return wildcard;
      if (this.mode === 'subtree') {
        const entry = this.hosts.get(parent);
        if (entry !== undefined) return entry;
      }
      dot = host.indexOf('.', dot + 1);
    }
    return undefined;
  }
}
