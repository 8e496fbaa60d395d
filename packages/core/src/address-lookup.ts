import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { Decision } from './decision.js';
import { parseTarget } from './domain.js';
import { decisionError } from './errors.js';

/**
 * A `dns.lookup`-shaped function, as `net.connect`, `http.Agent({ lookup })` and undici's
 * `Agent({ connect: { lookup } })` call it.
 */
export type LookupFunction = (
  hostname: string,
  options: object | number,
  callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

/** Options of {@link PolicySession.createLookup}. */
export interface PolicyLookupOptions {
  /**
   * The resolver asked first; `dns.lookup` by default. It is always asked for every address (`all: true`); one that
   * answers a single address instead (`callback(null, address, family)`) is heard as well.
   */
  lookup?: (hostname: string, options: LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;
}

/**
 * Decides the addresses a name resolved to: the recorded deny when one of them may not be connected to, else
 * undefined. {@link PolicySession} supplies it.
 */
export type AddressCheck = (hostname: string, addresses: readonly string[]) => Decision | undefined;

/**
 * Builds the lookup of {@link PolicySession.lookup}: it resolves every address of the name, decides each one, and
 * refuses the connection (the callback gets the {@link PolicyDeniedError}) when any of them is blocked; otherwise it
 * answers as `dns.lookup` would have (the first address, or all of them when asked), once. The answer is built from
 * the addresses as they were read for the check (each with the family its form has), never handed on from the
 * resolver, so the socket connects to exactly what was decided, however the resolver's own objects change later
 * (happy eyeballs reads the addresses one attempt at a time). A name that answers differently on the next lookup
 * (DNS rebinding) is decided again then.
 */
export function createPolicyLookup(check: AddressCheck, options: PolicyLookupOptions = {}): LookupFunction {
  const resolve = options.lookup ?? (dnsLookup as NonNullable<PolicyLookupOptions['lookup']>);
  if (typeof resolve !== 'function') throw new TypeError('agentpolicy: the lookup option must be a dns.lookup-shaped function');
  return function policyLookup(hostname, given, callback) {
    let cb = callback;
    let lookupOptions: Record<string, unknown> = {};
    if (typeof given === 'function') cb = given as unknown as typeof callback;
    else if (typeof given === 'number') lookupOptions = { family: given };
    else if (typeof given === 'object' && given !== null) lookupOptions = { ...(given as Record<string, unknown>) };
    const wantsAll = lookupOptions['all'] === true;
    let heardOnce = false;
    const heard = (error: NodeJS.ErrnoException | null, resolved: LookupAddress[] | string, family?: number): void => {
      // dns.lookup answers once: a resolver calling back again is not heard (a refused connection stays refused).
      if (heardOnce) return;
      heardOnce = true;
      if (error) {
        cb(error, wantsAll ? [] : '');
        return;
      }
      // A resolver that ignores `all` answers as dns.lookup does without it: one address and its family.
      const addresses: unknown = typeof resolved === 'string' ? [{ address: resolved, family }] : resolved;
      let refused: Error | undefined;
      const answer: LookupAddress[] = [];
      try {
        if (!Array.isArray(addresses) || addresses.length === 0) {
          refused = Object.assign(new Error(`agentpolicy: ${JSON.stringify(hostname)} resolved to no address`), { code: 'ENOTFOUND', hostname });
        } else {
          const hosts: string[] = [];
          for (const entry of addresses) {
            const read = readAddress(entry);
            if (read === undefined) throw new TypeError(`the resolver answered ${JSON.stringify(entry)} for ${JSON.stringify(hostname)}, which is not an IP address`);
            hosts.push(read.host);
            answer.push(read.answer);
          }
          const denied = check(String(hostname), hosts);
          if (denied !== undefined) refused = decisionError(denied);
        }
      } catch (cause) {
        // A check that cannot be made refuses the connection: never a silent allow.
        refused = Object.assign(new Error(`agentpolicy: the addresses of ${JSON.stringify(hostname)} could not be checked: ${(cause as Error)?.message ?? String(cause)}`), { cause });
      }
      if (refused !== undefined) {
        cb(refused as NodeJS.ErrnoException, wantsAll ? [] : '');
        return;
      }
      const first = answer[0] as LookupAddress;
      if (wantsAll) cb(null, answer);
      else cb(null, first.address, first.family);
    };
    resolve(hostname, { ...lookupOptions, all: true } as LookupAllOptions, heard as Parameters<typeof resolve>[2]);
  };
}

/**
 * One address of a resolver's answer, read once: the host it is decided as (the form a URL host takes: IPv6 in
 * brackets, an IPv4-mapped IPv6 address as IPv4) and the entry answered for it, or undefined when it is not an
 * address a socket connects to. A zone id (`fe80::1%eth0`) names an interface, not another address: it is kept in
 * the answer and left out of the check.
 */
function readAddress(entry: unknown): { host: string; answer: LookupAddress } | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const address: unknown = (entry as { address?: unknown }).address;
  if (typeof address !== 'string' || address.length > 64) return undefined;
  const family = isIP(address);
  if (family === 0) return undefined;
  const host = family === 6 ? `[${address.replace(/%.*$/s, '')}]` : address;
  const target = parseTarget(`http://${host}/`);
  return target.ok && target.isIp ? { host: target.host, answer: { address, family } } : undefined;
}
