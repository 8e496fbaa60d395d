import { DomainMatcher, normalizeDomainEntry } from './domain.js';
import type { NormalizedPolicy } from './policy-document.js';
import { ToolMatcher } from './tool-matcher.js';

/** What a warning is about. */
export type PolicyWarningCode = 'zero_budget' | 'allow_entry_blocked';

/**
 * A valid policy that probably does not decide what its author meant, in particular a file written for the Python
 * agentpolicy that loads here but would decide differently. A warning never makes a policy invalid.
 */
export interface PolicyWarning {
  readonly code: PolicyWarningCode;
  /** Where, in the file format (`budget.max_spend`, `network.allow[1]`). */
  readonly path: string;
  /** What the policy does as written. */
  readonly message: string;
  /** What to change to get the likely intent. */
  readonly fix: string;
}

/**
 * The warnings of a validated policy: a `max_spend` of 0 (a budget that denies every costed action, where the
 * Python agentpolicy read 0 as "no budget"), and allow entries that a block entry makes unreachable (blocks here
 * cover subdomains and `*` patterns, the Python agentpolicy blocked exact strings only).
 */
export function policyWarnings(policy: NormalizedPolicy): PolicyWarning[] {
  const warnings: PolicyWarning[] = [];
  if (policy.budget && policy.budget.maxSpendNanos === 0) {
    warnings.push({
      code: 'zero_budget',
      path: 'budget.max_spend',
      message: 'max_spend 0 is a budget of $0.00: every action with a cost is denied (the Python agentpolicy read 0 as no budget)',
      fix: 'remove the budget section for no budget, or set max_spend to the amount a session may spend',
    });
  }

  if (policy.tools.allow && policy.tools.block.length > 0) {
    const blocked = new ToolMatcher(policy.tools.block, 'block');
    policy.tools.allow.forEach((entry, index) => {
      // Matching the allow entry's text also covers an allow pattern: a block pattern that matches `mcp__fs__*` as
      // text matches every name that pattern can stand for.
      const by = blocked.match(entry);
      if (by === undefined) return;
      warnings.push({
        code: 'allow_entry_blocked',
        path: `tools.allow[${index}]`,
        message: `tool ${JSON.stringify(entry)} can never run: tools.block entry ${JSON.stringify(by)} blocks it (blocks match case-insensitively and as * patterns; the Python agentpolicy blocked only the exact name)`,
        fix: `with tools.allow present, tools not listed are denied anyway: remove the tools.block entry ${JSON.stringify(by)} or narrow it, or remove the tools.allow entry`,
      });
    });
  }

  if (policy.network.allow && policy.network.block.length > 0) {
    const blocked = new DomainMatcher(policy.network.block, 'subtree');
    policy.network.allow.forEach((entry, index) => {
      const normalized = normalizeDomainEntry(entry);
      if (!normalized.ok) return;
      const by = normalized.prefix === undefined ? blocked.matchListed(normalized.host, normalized.isIp) : blockingWholeRange(blocked, normalized.host);
      if (by === undefined) return;
      const what = normalized.wildcard ? `no subdomain of ${normalized.host}` : normalized.prefix !== undefined ? `no address of ${normalized.host}` : `${normalized.host}`;
      const covers = normalized.isIp ? (normalized.prefix !== undefined ? 'covers that whole range' : 'covers that address') : 'blocks that domain and every subdomain (the Python agentpolicy blocked only the exact host)';
      warnings.push({
        code: 'allow_entry_blocked',
        path: `network.allow[${index}]`,
        message: `${what} can ${normalized.wildcard || normalized.prefix !== undefined ? 'be reached' : 'never be reached'}: network.block entry ${JSON.stringify(by)} ${covers}`,
        fix: `with network.allow present, hosts not listed are denied anyway: remove the network.block entry ${JSON.stringify(by)}, or remove the network.allow entry`,
      });
    });
  }
  return warnings;
}

// The block entry that covers every address of an allowed range (`10.1.0.0/16` under `10.0.0.0/8`), if one does: the
// entry covering the range's first address, when its prefix is no longer than the range's.
function blockingWholeRange(blocked: DomainMatcher, range: string): string | undefined {
  const slash = range.lastIndexOf('/');
  const start = range.slice(0, slash);
  const ipv4 = !start.includes(':');
  const by = blocked.matchListed(ipv4 ? start : `[${start}]`, true);
  if (by === undefined) return undefined;
  const entry = normalizeDomainEntry(by);
  if (!entry.ok) return undefined;
  const width = (prefix: number | undefined, host: string) => (prefix === undefined ? 128 : prefix + (host.includes(':') ? 0 : 96));
  return width(entry.prefix, entry.host) <= width(Number(range.slice(slash + 1)), range) ? by : undefined;
}
