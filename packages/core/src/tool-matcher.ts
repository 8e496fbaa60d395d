/**
 * Tool-name matching: exact names in a Set, `*` globs in a prefix trie, each glob matched by segment search
 * (linear in the name, no regular expressions, no backtracking).
 */

// Whitespace, control, format (zero-width, bidi controls), private-use, unassigned, separators and default-ignorable
// code points never belong in a tool name.
const ASCII_PRINTABLE = /^[\x21-\x7e]*$/;
const FORBIDDEN = /[\p{White_Space}\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;
// `.` or `..` as a whole `/`-separated segment: a path step, never part of a name (`read_file/../delete_file`).
const DOT_SEGMENT = /(?:^|\/)\.{1,2}(?:\/|$)/;

/** Returns why a tool name is refused outright, or `undefined` when it is acceptable. */
export function toolNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `tool name must be a string, got ${typeof name}`;
  if (name.length === 0) return 'tool name is empty';
  if (name.length > 256) return 'tool name is longer than 256 characters';
  if (!ASCII_PRINTABLE.test(name)) {
    const bad = FORBIDDEN.exec(name);
    if (bad) {
      const cp = bad[0].codePointAt(0) ?? 0;
      return `tool name contains a whitespace, control, invisible or bidi character (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
    }
  }
  if (name.includes('\\')) return 'tool name contains a backslash';
  if (name.includes('.') && DOT_SEGMENT.test(name)) return 'tool name contains a "." or ".." path segment';
  return undefined;
}

// Letters from other scripts that render like Latin ones; folded so `dеlete_prod_db` (Cyrillic е) is still blocked.
// Accented forms need no entry: marks are stripped before this table applies.
const CONFUSABLES: Record<string, string> = {
  а: 'a', в: 'b', е: 'e', к: 'k', м: 'm', н: 'h', о: 'o', р: 'p', с: 'c', т: 't', у: 'y', х: 'x',
  ѕ: 's', і: 'i', ј: 'j', ԁ: 'd', ԛ: 'q', ԝ: 'w', һ: 'h', ӏ: 'l', ɡ: 'g', ɑ: 'a', ɩ: 'i', ʋ: 'u',
  α: 'a', β: 'b', ε: 'e', η: 'n', ι: 'i', κ: 'k', ν: 'v', ο: 'o', ρ: 'p', τ: 't', υ: 'u', χ: 'x', ϲ: 'c',
  օ: 'o', ս: 'u', ո: 'n', հ: 'h', ց: 'g',
  ı: 'i', ſ: 's', 'ʼ': "'", '‐': '-', '‑': '-', '‒': '-', '–': '-', '—': '-', '−': '-', '‗': '_',
};
const CONFUSABLE_RE = new RegExp(`[${Object.keys(CONFUSABLES).join('')}]`, 'gu');
const MARKS = /\p{M}/gu;

/**
 * The form of a name used for block lists and approval rules: NFKC compatibility forms (full-width, mathematical,
 * ligatures) mapped, case-folded, every combining mark stripped (so `delete_file` + U+0301 is `delete_file`) and
 * common look-alike letters folded to Latin. Default-ignorable code points never get here: such names are refused.
 */
export function foldToolName(name: string): string {
  if (ASCII_PRINTABLE.test(name)) return name.toLowerCase();
  // Look-alikes are folded before normalising too: NFKC turns some (‗) into a space and a mark.
  const folded = name
    .replace(CONFUSABLE_RE, (ch) => CONFUSABLES[ch] ?? ch)
    .normalize('NFKD')
    .replace(MARKS, '')
    .toUpperCase()
    .toLowerCase()
    .normalize('NFKD')
    .replace(MARKS, '')
    .normalize('NFKC');
  return folded.replace(CONFUSABLE_RE, (ch) => CONFUSABLES[ch] ?? ch);
}

/** Matches `name` against a glob where `*` stands for any run of characters (possibly empty). */
export function globMatch(pattern: string, name: string): boolean {
  return matchParts(pattern.split('*'), pattern, name);
}

/** A glob split once, for matching many strings: linear in each string, no regular expression, no backtracking. */
export function compileGlob(pattern: string): (name: string) => boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return (name) => name === pattern;
  if (parts.length === 2) {
    const first = parts[0] as string;
    const last = parts[1] as string;
    const least = first.length + last.length;
    return (name) => name.length >= least && name.startsWith(first) && name.endsWith(last);
  }
  return (name) => matchParts(parts, pattern, name);
}

function matchParts(parts: readonly string[], pattern: string, name: string): boolean {
  if (parts.length === 1) return pattern === name;
  const first = parts[0] ?? '';
  const last = parts[parts.length - 1] ?? '';
  if (name.length < first.length + last.length) return false;
  if (!name.startsWith(first) || !name.endsWith(last)) return false;
  let position = first.length;
  const end = name.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] ?? '';
    if (part.length === 0) continue;
    const found = name.indexOf(part, position);
    if (found < 0 || found + part.length > end) return false;
    position = found + part.length;
  }
  return true;
}

// What a `*` in an allow-list entry may stand for: letters, digits, combining marks, `_`, `-` and `.`. Any other
// character (`/`, `:`, `@`, …) must be written literally in the entry, so `read_*` never allows
// `read_file/x` and `github/*` allows `github/create_issue` but not `github/a/b`.
const ASCII_NAME = /^[A-Za-z0-9_.-]*$/;
const ASCII_PATTERN = /^[A-Za-z0-9_.*-]*$/;
const NAME_SEPARATOR = /([^\p{L}\p{N}\p{M}_.-])/u;
const PATTERN_SEPARATOR = /([^\p{L}\p{N}\p{M}_.*-])/u;

/** `pattern` split into runs a `*` may span, with the separator characters between them at the odd indices. */
function splitPattern(pattern: string): readonly string[] {
  return ASCII_PATTERN.test(pattern) ? [pattern] : pattern.split(PATTERN_SEPARATOR);
}

function splitName(name: string): readonly string[] {
  return ASCII_NAME.test(name) ? [name] : name.split(NAME_SEPARATOR);
}

function segmentsMatch(pattern: readonly string[], name: readonly string[]): boolean {
  if (pattern.length !== name.length) return false;
  for (let i = 0; i < pattern.length; i++) {
    if (i % 2 === 1 ? pattern[i] !== name[i] : !globMatch(pattern[i] ?? '', name[i] ?? '')) return false;
  }
  return true;
}

/**
 * Matches `name` against an allow-list glob: like {@link globMatch}, except that a `*` never spans a character
 * outside letters, digits, combining marks, `_`, `-` and `.`. Linear in the name.
 */
export function allowGlobMatch(pattern: string, name: string): boolean {
  return segmentsMatch(splitPattern(pattern), splitName(name));
}

/** How a list matches: `block` folds names and lets `*` span anything; `allow` is exact and `*` spans name characters only. */
export type ToolListMode = 'block' | 'allow';

interface Glob {
  readonly pattern: string;
  readonly segments: readonly string[];
  readonly entry: string;
  readonly order: number;
}

interface TrieNode {
  children: Map<string, TrieNode> | undefined;
  globs: Glob[] | undefined;
}

/**
 * A compiled list of tool entries. `match(name)` returns the first entry (in policy order) that matches, or
 * `undefined`. In `block` mode, entries and names are folded first (see {@link foldToolName}) and `*` spans any
 * characters; in `allow` mode, names match exactly and `*` spans name characters only (see {@link allowGlobMatch}).
 */
export class ToolMatcher {
  private readonly exact = new Map<string, { entry: string; order: number }>();
  private readonly root: TrieNode = { children: undefined, globs: undefined };
  private readonly hasGlobs: boolean;
  private readonly fold: boolean;

  constructor(
    entries: readonly string[],
    private readonly mode: ToolListMode,
  ) {
    this.fold = mode === 'block';
    let globs = 0;
    entries.forEach((entry, order) => {
      const pattern = this.fold ? foldToolName(entry) : entry;
      if (!pattern.includes('*')) {
        if (!this.exact.has(pattern)) this.exact.set(pattern, { entry, order });
        return;
      }
      globs++;
      const prefix = pattern.slice(0, pattern.indexOf('*'));
      let node = this.root;
      for (const ch of prefix) {
        node.children ??= new Map();
        let next = node.children.get(ch);
        if (!next) {
          next = { children: undefined, globs: undefined };
          node.children.set(ch, next);
        }
        node = next;
      }
      (node.globs ??= []).push({ pattern, segments: mode === 'allow' ? splitPattern(pattern) : [pattern], entry, order });
    });
    this.hasGlobs = globs > 0;
  }

  get size(): number {
    return this.exact.size;
  }

  match(name: string): string | undefined {
    const key = this.fold ? foldToolName(name) : name;
    const exact = this.exact.get(key);
    if (!this.hasGlobs) return exact?.entry;
    let best = exact;
    let node: TrieNode | undefined = this.root;
    let index = 0;
    let segments: readonly string[] | undefined;
    for (;;) {
      if (node.globs) {
        for (const glob of node.globs) {
          if (best !== undefined && glob.order > best.order) continue;
          const matched = this.mode === 'allow' ? segmentsMatch(glob.segments, (segments ??= splitName(key))) : globMatch(glob.pattern, key);
          if (matched) best = glob;
        }
      }
      if (index >= key.length || !node.children) break;
      const ch = String.fromCodePoint(key.codePointAt(index) ?? 0);
      node = node.children.get(ch);
      if (!node) break;
      index += ch.length;
    }
    return best?.entry;
  }
}
