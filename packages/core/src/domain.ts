import { networkInterfaces } from 'node:os';
import { domainToASCII } from 'node:url';
import { BoundedCache } from './bounded-cache.js';

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
    return targetCache.set(input, Object.freeze(parseTargetUncached(input)));
  }
  return parseTargetUncached(input);
}

// Parsing is a pure function of the string: memoise recent ones, bounded in entries and bytes; a URL longer than
// 2,048 characters is parsed every time rather than kept.
const targetCache = new BoundedCache<ParsedTarget>(4096, 4 * 1024 * 1024, 2048, (target) => 2 * (target.url.length + (target.ok ? target.host.length : target.reason.length)));

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
  let host = canonicalIp(url.hostname);
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

/**
 * A domain entry of a policy after normalisation. An address range (`10.0.0.0/8`, `fc00::/7`) has `isIp` true, its
 * canonical form as `host` (`10.0.0.0/8`, `fc00::/7`) and its prefix length as `prefix`; a `/32` (IPv4) or `/128`
 * (IPv6) is the address itself.
 */
export type DomainEntry =
  | { ok: true; host: string; wildcard: boolean; isIp: boolean; prefix?: number }
  | { ok: false; message: string };

/**
 * Normalises a policy domain entry the same way request hosts are normalised. `*.example.com` is a wildcard for
 * subdomains; IP literals (`10.0.0.1`, `::1`, `[::1]`) are canonicalised. URLs, ports and paths are refused.
 */
export function normalizeDomainEntry(entry: unknown): DomainEntry {
  if (typeof entry !== 'string') return { ok: false, message: `must be a domain string, got ${entry === null ? 'null' : typeof entry}` };
  const text = entry.trim();
  if (text !== entry || text === '') return { ok: false, message: `must be a domain like example.com, got ${JSON.stringify(entry)}` };
  const range = RANGE.exec(text);
  if (range !== null) return normalizeRange(entry, range[1] as string, range[2] as string);
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
  host = canonicalIp(host.replace(/\.+$/, ''));
  const isIp = host.startsWith('[') || IPV4.test(host);
  if (isIp && wildcard) return { ok: false, message: `an IP address cannot have a "*." wildcard: ${JSON.stringify(entry)}` };
  if (host === '') return { ok: false, message: `is not a valid domain: ${JSON.stringify(entry)}` };
  return { ok: true, host, wildcard, isIp };
}

// An address range: an IP address, a slash and a prefix length (the address part is checked by normalizeRange).
const RANGE = /^([0-9A-Fa-fXx.:[\]]+)\/([0-9]{1,3})$/;

// `10.0.0.0/8`, `fc00::/7`, `[fc00::]/7`: the address read as a URL host reads it, canonicalised, with no bit set past
// the prefix. An IPv4-mapped IPv6 range of /96 or more is the IPv4 range it maps.
function normalizeRange(entry: string, address: string, bits: string): DomainEntry {
  const fail = (why: string): DomainEntry => ({ ok: false, message: `${why}, got ${JSON.stringify(entry)}` });
  const shape = 'an address range is an IP address (dotted decimal IPv4, or IPv6), "/" and a prefix length: 10.0.0.0/8, fc00::/7';
  const v6 = address.includes(':');
  let host: string;
  try {
    host = new URL(`http://${v6 && !address.startsWith('[') ? `[${address}]` : address}/`).hostname;
  } catch {
    return fail(shape);
  }
  // IPv4 exactly as written (no hex, octal or short forms, which read as other addresses than they seem to).
  if (!v6 && host !== address) return fail(shape);
  let prefix = Number(bits);
  const words = addressWords(host);
  if (words === undefined) return fail(shape);
  let ipv4 = !host.startsWith('[');
  if (!ipv4 && prefix >= 96 && isMapped(words)) {
    ipv4 = true;
    prefix -= 96;
    host = dotted(words[6] as number, words[7] as number);
  }
  const max = ipv4 ? 32 : 128;
  if (prefix > max) return fail(`an ${ipv4 ? 'IPv4' : 'IPv6'} prefix length is 0 to ${max}`);
  const masked = maskWords(words, ipv4 ? prefix + 96 : prefix);
  if (masked.some((word, index) => word !== words[index])) {
    const start = ipv4 ? dotted(masked[6] as number, masked[7] as number) : ipv6Text(masked);
    return fail(`an address range has no bit set past its prefix (the range starting at that address is ${start}/${prefix})`);
  }
  if (prefix === max) return { ok: true, host, wildcard: false, isIp: true };
  return { ok: true, host: `${ipv4 ? host : ipv6Text(words)}/${prefix}`, wildcard: false, isIp: true, prefix };
}

/** How a domain list matches: `subtree` (block lists, approval rules) or `exact` (allow lists). */
export type DomainMode = 'subtree' | 'exact';

/** The eight 16-bit words of a bracketed IPv6 literal as WHATWG `URL` serialises it, or `undefined`. */
function ipv6Words(host: string): number[] | undefined {
  if (!host.startsWith('[') || !host.endsWith(']')) return undefined;
  const inner = host.slice(1, -1);
  const halves = inner.split('::');
  if (halves.length > 2) return undefined;
  const read = (text: string | undefined) => (text ? text.split(':').map((word) => Number.parseInt(word, 16)) : []);
  const head = read(halves[0]);
  const tail = read(halves[1]);
  const gap = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (gap < 0 || head.length + gap + tail.length !== 8) return undefined;
  const words = [...head, ...Array.from({ length: gap }, () => 0), ...tail];
  return words.every((word) => Number.isInteger(word) && word >= 0 && word <= 0xffff) ? words : undefined;
}

function dotted(high: number, low: number): string {
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

const IPV4_WORDS = /^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)$/;

/**
 * The eight 16-bit words of a canonical IP host (dotted IPv4 as its IPv4-mapped IPv6 form `::ffff:a.b.c.d`, IPv6 in
 * brackets), or `undefined` for anything else.
 */
function addressWords(host: string): number[] | undefined {
  if (host.startsWith('[')) return ipv6Words(host);
  const parts = IPV4_WORDS.exec(host);
  if (parts === null) return undefined;
  const [a, b, c, d] = [Number(parts[1]), Number(parts[2]), Number(parts[3]), Number(parts[4])];
  if (a > 255 || b > 255 || c > 255 || d > 255) return undefined;
  return [0, 0, 0, 0, 0, 0xffff, (a << 8) | b, (c << 8) | d];
}

function isMapped(words: readonly number[]): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff;
}

// The words with every bit past the first `prefix` cleared.
function maskWords(words: readonly number[], prefix: number): number[] {
  return words.map((word, index) => {
    const kept = prefix - index * 16;
    return kept >= 16 ? word : kept <= 0 ? 0 : word & ((0xffff << (16 - kept)) & 0xffff);
  });
}

// An address as 32 hex digits, four per word: the text its prefix keys are cut from.
function addressHex(words: readonly number[]): string {
  let hex = '';
  for (const word of words) hex += (HEX_BYTES[word >> 8] as string) + (HEX_BYTES[word & 0xff] as string);
  return hex;
}

const HEX_BYTES: readonly string[] = Array.from({ length: 0x100 }, (_, byte) => byte.toString(16).padStart(2, '0'));

// The key of an address's first `prefix` bits (from its addressHex): equal for two addresses exactly when those bits
// are.
function prefixKey(hex: string, prefix: number): string {
  const whole = prefix >> 2;
  const rest = prefix & 3;
  if (rest === 0) return hex.slice(0, whole);
  return hex.slice(0, whole) + (Number.parseInt(hex[whole] as string, 16) & (0xf << (4 - rest)) & 0xf).toString(16);
}

// An IPv6 address in the form WHATWG `URL` gives it (lowercase, the longest run of zero words as `::`), unbracketed.
function ipv6Text(words: readonly number[]): string {
  return new URL(`http://[${words.map((word) => word.toString(16)).join(':')}]/`).hostname.slice(1, -1);
}

// The blocks an entry naming this machine covers (see isThisMachine), as 128-bit prefixes.
const THIS_MACHINE_RANGES: readonly (readonly [string, number])[] = [
  [addressHex([0, 0, 0, 0, 0, 0xffff, 0x7f00, 0]), 104],
  [addressHex([0, 0, 0, 0, 0, 0xffff, 0, 0]), 104],
  [addressHex([0, 0, 0, 0, 0, 0, 0, 1]), 128],
  [addressHex([0, 0, 0, 0, 0, 0, 0, 0]), 128],
];

/**
 * An IPv4-mapped IPv6 literal (`[::ffff:a9fe:a9fe]`, `[::ffff:169.254.169.254]`) is the IPv4 address it carries:
 * a dual-stack socket connects to exactly that address. It is canonicalised to dotted IPv4, for hosts and entries
 * alike, so every IPv4 entry covers it.
 */
function canonicalIp(host: string): string {
  if (!host.startsWith('[::ffff:')) return host;
  const words = ipv6Words(host);
  if (words && isMapped(words)) return dotted(words[6] ?? 0, words[7] ?? 0);
  return host;
}

/**
 * IPv4 addresses an IPv6 literal routes to or embeds, for block lists and approval rules: IPv4-compatible
 * (`::a.b.c.d`, except `::` and `::1`), IPv4-translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::/96` and the local-use
 * `64:ff9b:1::/48`, address in the last 32 bits) and 6to4 (`2002:aabb:ccdd::/48`).
 */
export function embeddedIpv4(host: string): readonly string[] {
  if (!host.startsWith('[')) return NONE;
  const known = embeddedCache.get(host);
  if (known !== undefined) return known;
  return embeddedCache.set(host, Object.freeze(readEmbeddedIpv4(host)));
}

const NONE: readonly string[] = Object.freeze([]);
// A pure function of the host, asked on every check of an IPv6 address: memoised, bounded.
const embeddedCache = new BoundedCache<readonly string[]>(4096, 1024 * 1024, 64, (list) => 40 * list.length);

function readEmbeddedIpv4(host: string): string[] {
  const words = ipv6Words(host);
  if (!words) return [];
  const [w0, w1, w2, w3, w4, w5, w6 = 0, w7 = 0] = words;
  const out: string[] = [];
  if (w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0) {
    if (w4 === 0 && w5 === 0 && (w6 !== 0 || w7 > 1)) out.push(dotted(w6, w7));
    if (w4 === 0xffff && w5 === 0) out.push(dotted(w6, w7));
  }
  if (w0 === 0x64 && w1 === 0xff9b && (w2 === 0 || w2 === 1)) out.push(dotted(w6, w7));
  if (w0 === 0x2002) out.push(dotted(w1 ?? 0, w2 ?? 0));
  return out;
}

/**
 * Whether a normalised host names this machine: the name `localhost` and its subdomains (RFC 6761), a loopback
 * address (`127.0.0.0/8`, `::1`), an address of "this network" (`0.0.0.0/8`, `::`; a connection to `0.0.0.0` reaches
 * the local host on Linux and macOS), or an IPv6 literal that carries or routes to one of those IPv4 addresses.
 */
export function isThisMachine(host: string, isIp: boolean, carried = true): boolean {
  if (!isIp) return host === 'localhost' || host.endsWith('.localhost');
  if (!host.startsWith('[')) return host.startsWith('127.') || host.startsWith('0.');
  if (host === '[::1]' || host === '[::]') return true;
  if (!carried) return false;
  for (const ipv4 of embeddedIpv4(host)) if (ipv4.startsWith('127.') || ipv4.startsWith('0.')) return true;
  return false;
}

interface DomainNode {
  children: Map<string, DomainNode> | undefined;
  /** The entry naming exactly this host. */
  host: string | undefined;
  /** The `*.` entry for this host's strict subdomains. */
  wildcard: string | undefined;
}

/**
 * Whether a normalised IP host is an address of one of this machine's network interfaces (`10.0.0.5` of `eth0`, a
 * container bridge, a public address): a server bound to all interfaces answers there as it does on loopback. The
 * interfaces are read again when the last read is more than a second old; a machine whose interfaces cannot be read
 * has none.
 */
export function isOwnAddress(host: string): boolean {
  const now = Date.now();
  if (now - ownAddressesReadAt > 1000 || now < ownAddressesReadAt) {
    ownAddresses = readOwnAddresses();
    ownAddressesReadAt = now;
  }
  return ownAddresses.has(host);
}

let ownAddresses: ReadonlySet<string> = new Set();
let ownAddressesReadAt = Number.NEGATIVE_INFINITY;

function readOwnAddresses(): ReadonlySet<string> {
  const out = new Set<string>();
  let interfaces: ReturnType<typeof networkInterfaces>;
  try {
    interfaces = networkInterfaces();
  } catch {
    return out;
  }
  for (const addresses of Object.values(interfaces)) {
    for (const info of addresses ?? []) {
      const address = String(info.address).split('%')[0] as string;
      const target = parseTarget(`http://${address.includes(':') ? `[${address}]` : address}/`);
      if (target.ok && target.isIp) out.add(target.host);
    }
  }
  return out;
}

/**
 * A compiled domain list. In `exact` mode `example.com` matches only that host; in `subtree` mode it matches the
 * host and every subdomain, on a label boundary. In both modes `*.example.com` matches strict subdomains only.
 * IP entries match only the same canonical address, and a range entry (`10.0.0.0/8`, `fc00::/7`) every address it
 * holds (the longest prefix wins). In `subtree` mode an IPv4 entry or range also matches the IPv6 forms that embed
 * an address it covers (see {@link embeddedIpv4}), and an entry naming this machine (`localhost`, a `127.x` address,
 * `::1`, `0.0.0.0`, `::`, or a range reaching into those) matches every host that reaches it (see
 * {@link isThisMachine}), this machine's interface addresses too (see {@link isOwnAddress}), so blocking one of them
 * blocks them all (an allow-list entry naming one of them exactly still allows it: see {@link matchNamed}).
 * Names are held in a trie of labels read from the right, so a match costs time linear in the host's length, however
 * many labels it has.
 */
export class DomainMatcher {
  private readonly ips = new Map<string, string>();
  /** Address ranges by prefix length (of the 128-bit form), longest first: the key of the prefix, and the entry. */
  private readonly ranges: { prefix: number; entries: Map<string, string> }[] = [];
  private readonly root: DomainNode = { children: undefined, host: undefined, wildcard: undefined };
  private count = 0;
  /** In `subtree` mode, the first entry naming this machine. */
  private local: string | undefined;
  /** The entry {@link matchListed} found for an address (`null`: none), when there are ranges. */
  private readonly listedAddresses = new BoundedCache<string | null>(4096, 1024 * 1024, 64, (entry) => 2 * (entry?.length ?? 0));
  /** Range entries that reach past what an entry naming this machine covers (`0.0.0.0/0`, `10.0.0.0/8`). */
  private readonly wide = new Set<string>();

  constructor(
    entries: readonly string[],
    private readonly mode: DomainMode,
  ) {
    for (const entry of entries) {
      const normalized = normalizeDomainEntry(entry);
      if (!normalized.ok) continue;
      if (normalized.prefix !== undefined) {
        this.addRange(entry, normalized.host);
        continue;
      }
      if (mode === 'subtree' && !normalized.wildcard && this.local === undefined && isThisMachine(normalized.host, normalized.isIp)) this.local = entry;
      if (normalized.isIp) {
        if (!this.ips.has(normalized.host)) {
          this.ips.set(normalized.host, entry);
          this.count++;
        }
        continue;
      }
      let node = this.root;
      for (const label of normalized.host.split('.').reverse()) {
        node.children ??= new Map();
        let next = node.children.get(label);
        if (!next) {
          next = { children: undefined, host: undefined, wildcard: undefined };
          node.children.set(label, next);
        }
        node = next;
      }
      if (normalized.wildcard ? node.wildcard === undefined : node.host === undefined) {
        if (normalized.wildcard) node.wildcard = entry;
        else node.host = entry;
        this.count++;
      }
    }
  }

  get size(): number {
    return this.count;
  }

  /** Whether some address can match: an IP or range entry, or (in `subtree` mode) an entry naming this machine. */
  get coversAddresses(): boolean {
    return this.ips.size > 0 || this.ranges.length > 0 || this.local !== undefined;
  }

  // A range entry (canonical `address/prefix`), kept under its prefix in the 128-bit form. In `subtree` mode a range
  // that reaches into what an entry naming this machine covers names this machine.
  private addRange(entry: string, canonical: string): void {
    const slash = canonical.lastIndexOf('/');
    const address = canonical.slice(0, slash);
    const ipv4 = !address.includes(':');
    const hex = addressHex(addressWords(ipv4 ? address : `[${address}]`) as number[]);
    const prefix = Number(canonical.slice(slash + 1)) + (ipv4 ? 96 : 0);
    let within = false;
    for (const [block, size] of THIS_MACHINE_RANGES) {
      const shorter = Math.min(prefix, size);
      if (prefixKey(hex, shorter) !== prefixKey(block, shorter)) continue;
      if (this.mode === 'subtree') this.local ??= entry;
      if (prefix >= size) within = true;
    }
    if (!within) this.wide.add(entry);
    let group = this.ranges.find((candidate) => candidate.prefix === prefix);
    if (group === undefined) {
      group = { prefix, entries: new Map() };
      this.ranges.push(group);
      this.ranges.sort((a, b) => b.prefix - a.prefix);
    }
    const key = prefixKey(hex, prefix);
    if (!group.entries.has(key)) {
      group.entries.set(key, entry);
      this.count++;
    }
  }

  // The range entry that covers an address (the longest prefix wins). An IPv4 address is its mapped IPv6 form: in
  // `subtree` mode any range containing that form covers it (`::/0` too); in `exact` mode only a range within
  // `::ffff:0:0/96` (an IPv4 range) allows it.
  private rangeEntry(host: string): string | undefined {
    const words = addressWords(host);
    if (words === undefined) return undefined;
    const hex = addressHex(words);
    const ipv4 = !host.startsWith('[');
    for (const group of this.ranges) {
      if (ipv4 && this.mode === 'exact' && group.prefix < 96) break;
      const entry = group.entries.get(prefixKey(hex, group.prefix));
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /**
   * The entry that matches `host` (already normalised by {@link parseTarget}), or `undefined`. The most specific
   * entry wins: the host itself, then its nearest parent (a `*.` entry before a plain one at the same level), then
   * an entry naming this machine.
   */
  match(host: string, isIp: boolean, carried = true): string | undefined {
    const entry = this.matchListed(host, isIp, carried);
    if (entry !== undefined || this.local === undefined) return entry;
    if (isThisMachine(host, isIp, carried)) return this.local;
    if (!isIp) return undefined;
    if (isOwnAddress(host)) return this.local;
    if (carried) for (const ipv4 of embeddedIpv4(host)) if (isOwnAddress(ipv4)) return this.local;
    return undefined;
  }

  /**
   * {@link match} without the coverage of an entry naming this machine: only an entry naming the host or a parent.
   * With `carried` false, an IPv6 literal is not matched by the IPv4 address it carries or routes to (NAT64, 6to4:
   * those reach a translator first), only as the address it is.
   */
  matchListed(host: string, isIp: boolean, carried = true): string | undefined {
    if (isIp) {
      if (this.ranges.length === 0) return this.listedAddress(host, carried);
      // With ranges an address costs a look-up per prefix length: the answer (the lists never change) is memoised.
      const key = carried ? host : `!${host}`;
      const known = this.listedAddresses.get(key);
      if (known !== undefined) return known ?? undefined;
      const found = this.listedAddress(host, carried);
      this.listedAddresses.set(key, found ?? null);
      return found;
    }
    let node: DomainNode | undefined = this.root;
    let best: string | undefined;
    let end = host.length;
    for (;;) {
      const dot = end === 0 ? -1 : host.lastIndexOf('.', end - 1);
      node = node.children?.get(host.slice(dot + 1, end));
      if (node === undefined) return best;
      if (dot < 0) return node.host ?? best;
      if (node.wildcard !== undefined) best = node.wildcard;
      else if (this.mode === 'subtree' && node.host !== undefined) best = node.host;
      end = dot;
    }
  }
  private listedAddress(host: string, carried: boolean): string | undefined {
    const direct = this.ips.get(host) ?? (this.ranges.length === 0 ? undefined : this.rangeEntry(host));
    if (direct !== undefined || this.mode === 'exact' || !carried || !host.startsWith('[') || (this.ips.size === 0 && this.ranges.length === 0)) return direct;
    for (const ipv4 of embeddedIpv4(host)) {
      const entry = this.ips.get(ipv4) ?? (this.ranges.length === 0 ? undefined : this.rangeEntry(ipv4));
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /**
   * The entry that names `host` itself: {@link matchListed}, where an address range counts only when it lies within
   * what an entry naming this machine covers (`127.0.0.0/8`, `0.0.0.0/8`). An allow list lets a host blocked only as
   * a form of this machine through with such an entry; a wider range (`0.0.0.0/0`, `10.0.0.0/8`, `::/0`) allows many
   * addresses and names none of this machine's.
   */
  matchNamed(host: string, isIp: boolean): string | undefined {
    const entry = this.matchListed(host, isIp);
    return entry === undefined || this.wide.has(entry) ? undefined : entry;
  }
}
