import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { foldToolName, globMatch, ToolMatcher, toolNameProblem } from './tool-matcher.js';

describe('globMatch', () => {
  it.each([
    ['delete_*', 'delete_prod_db', true],
    ['delete_*', 'delete_', true],
    ['delete_*', 'undelete_x', false],
    ['mcp__github__*', 'mcp__github__create_issue', true],
    ['mcp__github__*', 'mcp__gitlab__create_issue', false],
    ['*_db', 'drop_db', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false],
    ['*', '', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
  ])('%s ~ %s → %s', (pattern, name, expected) => {
    expect(globMatch(pattern, name)).toBe(expected);
  });

  it('agrees with a reference regular expression on random inputs', () => {
    const alphabet = fc.constantFrom('a', 'b', '_', '*');
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 8 }), fc.array(fc.constantFrom('a', 'b', '_'), { maxLength: 10 }), (p, n) => {
        const pattern = p.join('');
        const name = n.join('');
        const reference = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
        return globMatch(pattern, name) === reference.test(name);
      }),
      { numRuns: 2000 },
    );
  });

  it('stays linear on a pathological pattern (no backtracking blow-up)', () => {
    const pattern = `${'a*'.repeat(50)}b`;
    const name = 'a'.repeat(20_000);
    expect(globMatch(pattern, name)).toBe(false);
  });
});

describe('tool names', () => {
  it.each([
    ['send email', /whitespace/],
    ['send\temail', /whitespace/],
    ['send\u0000email', /control/],
    ['send\u200bemail', /invisible/],
    ['send\u202eliame', /bidi/],
    ['send\u2066email', /U\+2066/],
    ['\u00adsend', /U\+00AD/],
    ['', /empty/],
    [42, /must be a string/],
  ])('refuses %j', (name, message) => {
    expect(toolNameProblem(name)).toMatch(message);
  });

  it('accepts identifiers', () => {
    expect(toolNameProblem('mcp__github__create_issue')).toBeUndefined();
    expect(toolNameProblem('search-docs.v2')).toBeUndefined();
  });

  it('folds case, NFKC compatibility forms and look-alikes', () => {
    expect(foldToolName('DELETE_PROD_DB')).toBe('delete_prod_db');
    expect(foldToolName('ｄｅｌｅｔｅ_prod_db')).toBe('delete_prod_db');
    expect(foldToolName('d\u0435lete_prod_db')).toBe('delete_prod_db');
    expect(foldToolName('Straße')).toBe('strasse');
  });
});

describe('ToolMatcher', () => {
  it('reports the first matching entry in policy order', () => {
    const matcher = new ToolMatcher(['delete_*', 'delete_prod_db', '*_db'], true);
    expect(matcher.match('delete_prod_db')).toBe('delete_*');
    expect(matcher.match('drop_db')).toBe('*_db');
    expect(matcher.match('read_file')).toBeUndefined();
  });

  it('exact entries win when they come first', () => {
    const matcher = new ToolMatcher(['delete_prod_db', 'delete_*'], true);
    expect(matcher.match('DELETE_PROD_DB')).toBe('delete_prod_db');
  });

  it('allow lists match exactly (no folding)', () => {
    const matcher = new ToolMatcher(['read_file', 'mcp__github__*'], false);
    expect(matcher.match('read_file')).toBe('read_file');
    expect(matcher.match('READ_FILE')).toBeUndefined();
    expect(matcher.match('mcp__github__list')).toBe('mcp__github__*');
  });

  it('agrees with a linear scan over many patterns', () => {
    const entries = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `tool_${i}_*` : i % 3 === 1 ? `*_suffix_${i}` : `exact_${i}`));
    const matcher = new ToolMatcher(entries, false);
    for (const name of ['tool_3_x', 'a_suffix_4', 'exact_5', 'tool_30_', 'nothing', 'tool_3', 'exact_6']) {
      expect(matcher.match(name)).toBe(entries.find((entry) => globMatch(entry, name)));
    }
  });
});
