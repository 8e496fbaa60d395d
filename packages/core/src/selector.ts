/**
 * Which actions a policy entry is about: a tool glob, a domain, an action type — the keys approval rules, `rules:`
 * and `limits:` share. Every key present must match.
 */
import type { ActionType } from './decision.js';
import { DomainMatcher, normalizeDomainEntry } from './domain.js';
import type { PolicyIssue } from './errors.js';
import { describe } from './money.js';
import type { PreparedAction } from './policy-evaluator.js';
import { compileGlob, foldToolName, toolNameProblem } from './tool-matcher.js';

export const ACTION_TYPES: readonly ActionType[] = ['tool', 'http', 'cost'];

/** A validated selector, as written. */
export interface Selector {
  readonly tool?: string;
  readonly domain?: string;
  readonly action?: ActionType;
}

/** Reads `tool`, `domain` and `action` of `item`, checking that they can match together. */
export function readSelector(item: Record<string, unknown>, path: string, issues: PolicyIssue[]): Selector | undefined {
  const before = issues.length;
  const selector: { tool?: string; domain?: string; action?: ActionType } = {};
  const at = (key: string) => `${path}.${key}`;
  const tool = Object.hasOwn(item, 'tool') ? item.tool : undefined;
  if (tool !== undefined) {
    const problem = toolNameProblem(tool);
    if (problem) issues.push({ path: at('tool'), message: problem.replace('tool name', 'tool name pattern') });
    else selector.tool = tool as string;
  }
  const domain = Object.hasOwn(item, 'domain') ? item.domain : undefined;
  if (domain !== undefined) {
    const normalized = normalizeDomainEntry(domain);
    if (!normalized.ok) issues.push({ path: at('domain'), message: normalized.message });
    else selector.domain = domain as string;
  }
  const action = Object.hasOwn(item, 'action') ? item.action : undefined;
  if (action !== undefined) {
    if (typeof action !== 'string' || !(ACTION_TYPES as readonly string[]).includes(action)) {
      issues.push({ path: at('action'), message: `must be one of ${ACTION_TYPES.join(', ')}, got ${describe(action)}` });
    } else selector.action = action as ActionType;
  }
  if (issues.length === before) {
    if (selector.tool !== undefined && selector.domain !== undefined) {
      issues.push({ path, message: 'an entry with both tool and domain can never match (a tool call has no domain); write two entries' });
    } else if (selector.tool !== undefined && selector.action !== undefined && selector.action !== 'tool') {
      issues.push({ path: at('action'), message: `an entry with tool only matches tool actions, but action is ${selector.action}` });
    } else if (selector.domain !== undefined && selector.action !== undefined && selector.action !== 'http') {
      issues.push({ path: at('action'), message: `an entry with domain only matches http actions, but action is ${selector.action}` });
    }
  }
  return issues.length === before ? selector : undefined;
}

/** The action types a selector can match. */
export function admittedTypes(selector: Selector): ReadonlySet<ActionType> {
  if (selector.tool !== undefined) return new Set(['tool']);
  if (selector.domain !== undefined) return new Set(['http']);
  if (selector.action !== undefined) return new Set([selector.action]);
  return new Set(ACTION_TYPES);
}

/** The selector's keys, in document order, without the absent ones. */
export function selectorToDocument(selector: Selector): Selector {
  return {
    ...(selector.tool !== undefined ? { tool: selector.tool } : {}),
    ...(selector.domain !== undefined ? { domain: selector.domain } : {}),
    ...(selector.action !== undefined ? { action: selector.action } : {}),
  };
}

/** A compiled selector: tool globs folded like block lists, domains matched on the subtree. */
export function compileSelector(selector: Selector): (action: PreparedAction) => boolean {
  const tool = selector.tool !== undefined ? compileGlob(foldToolName(selector.tool)) : undefined;
  const domain = selector.domain !== undefined ? new DomainMatcher([selector.domain], 'subtree') : undefined;
  const type = selector.action;
  return (action) => {
    if (type !== undefined && type !== action.type) return false;
    if (tool !== undefined && (action.type !== 'tool' || !tool(action.folded))) return false;
    if (domain !== undefined && (action.type !== 'http' || domain.match(action.host, action.isIp) === undefined)) return false;
    return true;
  };
}
