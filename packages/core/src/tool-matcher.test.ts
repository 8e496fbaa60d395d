import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
import { allowGlobMatch, foldToolName, globMatch, ToolMatcher, toolNameProblem } from './tool-matcher.js';

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
    const matcher = new ToolMatcher(['delete_*', 'delete_prod_db', '*_db'], 'block');
    expect(matcher.match('delete_prod_db')).toBe('delete_*');
    expect(matcher.match('drop_db')).toBe('*_db');
    expect(matcher.match('read_file')).toBeUndefined();
  });

  it('exact entries win when they come first', () => {
    const matcher = new ToolMatcher(['delete_prod_db', 'delete_*'], 'block');
    expect(matcher.match('DELETE_PROD_DB')).toBe('delete_prod_db');
  });

  it('allow lists match exactly (no folding)', () => {
    const matcher = new ToolMatcher(['read_file', 'mcp__github__*'], 'allow');
    expect(matcher.match('read_file')).toBe('read_file');
    expect(matcher.match('READ_FILE')).toBeUndefined();
    expect(matcher.match('mcp__github__list')).toBe('mcp__github__*');
  });

  it('agrees with a linear scan over many patterns', () => {
    const entries = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `tool_${i}_*` : i % 3 === 1 ? `*_suffix_${i}` : `exact_${i}`));
    const matcher = new ToolMatcher(entries, 'allow');
    for (const name of ['tool_3_x', 'a_suffix_4', 'exact_5', 'tool_30_', 'nothing', 'tool_3', 'exact_6']) {
      expect(matcher.match(name)).toBe(entries.find((entry) => globMatch(entry, name)));
    }
  });
});

describe('block lists see through marks, compatibility forms and look-alikes', () => {
  const block = new ToolMatcher(['delete_file', 'drop_*'], 'block');
  const marks = ['\u0301', '\u0300', '\u0308', '\u0327', '\u0336', '\u20dd', '\u0489', '\u1ab0', '\u1dc0', '\ufe20'];

  it.each([
    ['delete_file\u0301', 'a combining acute after the last letter'],
    ['de\u0301lete_file', 'a combining acute inside'],
    ['de\u0301le\u0300te_fi\u0327le\u0308', 'several marks'],
    ['delete_file\u20dd', 'an enclosing mark'],
    ['d\u00e9l\u00e8te_f\u00efle', 'precomposed accented letters'],
    ['DELETE_FILE\u0301', 'upper case with a mark'],
    ['ｄｅｌｅｔｅ＿ｆｉｌｅ', 'full-width letters and low line'],
    ['\u{1d41d}\u{1d41e}\u{1d425}\u{1d41e}\u{1d42d}\u{1d41e}_file', 'mathematical bold letters'],
    ['delete_\ufb01le', 'the fi ligature'],
    ['d\u0435l\u0435t\u0435_fil\u0435', 'Cyrillic е'],
    ['d\u0451lete_file', 'Cyrillic ё'],
    ['delete\u2017file', 'a double low line'],
    ['DELETE_F\u0130LE', 'Turkish dotted capital I'],
    ['drop_table\u0301', 'a glob entry with a mark in the name'],
  ])('%j (%s) is blocked', (name) => {
    expect(toolNameProblem(name)).toBeUndefined();
    expect(block.match(name)).toBeDefined();
  });

  it('marks inserted anywhere never unblock a name (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 11 }), fc.constantFrom(...marks)), { maxLength: 6 }), (inserts) => {
        const chars = [...'delete_file'];
        for (const [at, mark] of inserts) chars.splice(Math.min(at, chars.length) + 1, 0, mark);
        const name = chars.join('');
        return toolNameProblem(name) !== undefined || block.match(name) === 'delete_file';
      }),
      { numRuns: 2000 },
    );
  });

  it.each([
    ['delete\u200d_file', 'zero-width joiner'],
    ['delete_file\ufe0f', 'variation selector'],
    ['delete_file\u{e0100}', 'supplementary variation selector'],
    ['delete\u034f_file', 'combining grapheme joiner'],
    ['delete_file\u{e0061}', 'tag character'],
    ['\u202edelete_file', 'bidi override'],
    ['delete\u2060_file', 'word joiner'],
    ['delete\u3164_file', 'Hangul filler'],
  ])('%j (%s) is refused before matching', (name) => {
    expect(toolNameProblem(name)).toBeDefined();
  });
});

describe('tool names that look like paths', () => {
  it.each([
    ['read_file/../delete_file', /path segment/],
    ['read_file/./x', /path segment/],
    ['../delete_file', /path segment/],
    ['./x', /path segment/],
    ['x/..', /path segment/],
    ['..', /path segment/],
    ['read_file\\..\\delete_file', /backslash/],
    ['a\\b', /backslash/],
  ])('%j is refused', (name, message) => {
    expect(toolNameProblem(name)).toMatch(message);
  });

  it.each(['admin.tools.list', 'user-profile/update', 'DATA_EXPORT_v2', 'a..b', 'v1.2/x'])('%j is an acceptable name', (name) => {
    expect(toolNameProblem(name)).toBeUndefined();
  });
});

describe('allow-list globs: * spans name characters only', () => {
  const allow = new ToolMatcher(['read_*', 'github/*', 'mcp__fs__*', 'svc:*:get'], 'allow');

  it.each([
    ['read_file', 'read_*'],
    ['read_file.v2', 'read_*'],
    ['read_fichier\u0301', 'read_*'],
    ['read_\u30d5\u30a1\u30a4\u30eb', 'read_*'],
    ['github/create_issue', 'github/*'],
    ['mcp__fs__read', 'mcp__fs__*'],
    ['svc:users:get', 'svc:*:get'],
  ])('%j is allowed by %s', (name, entry) => {
    expect(allow.match(name)).toBe(entry);
  });

  it.each([
    'read_file/../delete_file',
    'read_file/delete_file',
    'read_x:delete',
    'read_a@evil',
    'read_a;rm',
    'read_*',
    'read_file\\x',
    'github/a/b',
    'svc:a:b:get',
    'READ_FILE',
  ])('%j is not allowed', (name) => {
    expect(allow.match(name)).toBeUndefined();
  });

  it('agrees with a reference regular expression on random inputs (property)', () => {
    const chars = ['a', 'b', '_', '.', '/', ':', '-', '\u00e9', '@'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...chars, '*'), { maxLength: 8 }), fc.array(fc.constantFrom(...chars), { maxLength: 10 }), (p, n) => {
        const pattern = p.join('');
        const name = n.join('');
        const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const reference = new RegExp(`^${pattern.split('*').map(escape).join('[\\p{L}\\p{N}\\p{M}_.\\-]*')}$`, 'u');
        return allowGlobMatch(pattern, name) === reference.test(name);
      }),
      { numRuns: 3000 },
    );
  });

  it('agrees with a linear scan over the entries (property)', () => {
    const entries = ['a*', 'a/*', '*_b', 'a:*:c', '*', 'x'];
    const matcher = new ToolMatcher(entries, 'allow');
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', 'c', '_', '/', ':', 'x'), { maxLength: 8 }), (n) => {
        const name = n.join('');
        return matcher.match(name) === entries.find((entry) => (entry.includes('*') ? allowGlobMatch(entry, name) : entry === name));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('through a session: look-alikes and path names never run a blocked or unapproved tool', () => {
  const policy = new AgentPolicy({ blockedTools: ['delete_file'], allowedTools: ['read_*', 'send_email', 'delete_file_safe'], approvalRules: [{ tool: 'send_email' }] });

  it.each(['delete_file\u0301', 'DELETE_FILE', 'delete\u200d_file', 'read_file/../delete_file', 'read_file\\..\\delete_file', 'read_file/delete_file', 'read_x:delete_file'])(
    '%j is denied',
    async (name) => {
      expect((await policy.session().checkTool(name)).decision).toBe('deny');
    },
  );

  it('a marked variant of an approval-rule tool still needs approval when it is allowed', async () => {
    const open = new AgentPolicy({ approvalRules: [{ tool: 'send_email' }] }).session();
    expect((await open.checkTool('send_e\u0301mail')).decision).toBe('require_approval');
    expect((await open.checkTool('ｓｅｎｄ_email')).decision).toBe('require_approval');
  });

  it('the allowed names still run', async () => {
    const session = policy.session();
    expect((await session.checkTool('read_file')).decision).toBe('allow');
    expect((await session.checkTool('send_email')).decision).toBe('require_approval');
  });
});
