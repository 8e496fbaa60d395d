import { isAlias, isNode, parseAllDocuments, visit, type Document } from 'yaml';
import type { PolicyIssue } from './errors.js';

const MAX_ALIASES = 100;
const MAX_BYTES = 1_000_000;
const CORE_TAGS = new Set([
  'tag:yaml.org,2002:map',
  'tag:yaml.org,2002:seq',
  'tag:yaml.org,2002:str',
  'tag:yaml.org,2002:int',
  'tag:yaml.org,2002:float',
  'tag:yaml.org,2002:bool',
  'tag:yaml.org,2002:null',
]);

function position(text: string, offset: number | undefined): string {
  if (offset === undefined) return '';
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return ` at line ${line}, column ${column}`;
}

/**
 * Parses policy YAML safely: YAML 1.2 core schema whatever `%YAML` directive the file declares, exactly one
 * document, no duplicate keys, no tags beyond the core ones, a bounded number of alias expansions, at most 1 MB.
 */
export function parseYamlPolicy(text: string): { ok: true; value: unknown } | { ok: false; issues: PolicyIssue[] } {
  if (typeof text !== 'string') return { ok: false, issues: [{ path: '', message: 'policy YAML must be a string' }] };
  if (text.length > MAX_BYTES) return { ok: false, issues: [{ path: '', message: `policy file is larger than ${MAX_BYTES} bytes` }] };
  let docs: Document.Parsed[];
  try {
    const parsed = parseAllDocuments(text, {
      version: '1.2',
      schema: 'core',
      uniqueKeys: true,
      merge: false,
      strict: true,
      prettyErrors: true,
      customTags: [],
      stringKeys: true,
    });
    docs = Array.isArray(parsed) ? parsed : [parsed as unknown as Document.Parsed];
  } catch (error) {
    return { ok: false, issues: [{ path: '', message: `YAML could not be parsed: ${firstLine((error as Error).message)}` }] };
  }
  const meaningful = docs.filter((doc) => doc.contents !== null || doc.errors.length > 0);
  if (meaningful.length === 0) {
    return { ok: false, issues: [{ path: '', message: 'the policy file is empty; expected a mapping with budget, tools, network, approval or pricing' }] };
  }
  if (meaningful.length > 1) {
    return { ok: false, issues: [{ path: '', message: `the policy file must hold one YAML document, found ${meaningful.length}` }] };
  }
  const doc = meaningful[0] as Document.Parsed;
  const issues: PolicyIssue[] = [];
  for (const error of doc.errors) issues.push({ path: '', message: `YAML: ${firstLine(error.message)}` });
  for (const warning of doc.warnings) issues.push({ path: '', message: `YAML: ${firstLine(warning.message)}` });
  let aliases = 0;
  visit(doc, {
    Node(_key, node) {
      if (isAlias(node)) aliases++;
      if (isNode(node) && node.tag !== undefined && !CORE_TAGS.has(node.tag)) {
        issues.push({ path: '', message: `YAML tag ${node.tag} is not allowed${position(text, node.range?.[0])}; policies use plain YAML values only` });
      }
    },
  });
  if (aliases > MAX_ALIASES) issues.push({ path: '', message: `YAML uses ${aliases} aliases; at most ${MAX_ALIASES} are allowed` });
  if (issues.length > 0) return { ok: false, issues: dedupe(issues) };
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: MAX_ALIASES }) };
  } catch (error) {
    return { ok: false, issues: [{ path: '', message: `YAML: ${firstLine((error as Error).message)}` }] };
  }
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

function dedupe(issues: PolicyIssue[]): PolicyIssue[] {
  const seen = new Set<string>();
  return issues.filter((issue) => {
    const key = `${issue.path}\u0000${issue.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
