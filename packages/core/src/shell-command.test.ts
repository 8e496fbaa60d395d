import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commandForms, compileCommandTest, MAX_COMMAND_LENGTH, parseShellCommand } from './shell-command.js';

describe('parseShellCommand', () => {
  it.each([
    ['rm -rf /', ['rm', '-rf', '/']],
    ['  ls   -la  ', ['ls', '-la']],
    ["echo 'a b' \"c d\"", ['echo', 'a b', 'c d']],
    ["'r'm -rf x", ['rm', '-rf', 'x']],
    ['r\\m -rf x', ['rm', '-rf', 'x']],
    ['echo "a \\" b"', ['echo', 'a " b']],
    ['echo "a \\n b"', ['echo', 'a \\n b']],
    ['grep "a|b;c" f', ['grep', 'a|b;c', 'f']],
    ["grep 'a$b`c' f", ['grep', 'a$b`c', 'f']],
    ['ls \\\n -la', ['ls', '-la']],
    ['echo a#b', ['echo', 'a#b']],
    ['git commit -m ""', ['git', 'commit', '-m', '']],
    ['a=b', null],
    ['x=1 y', null],
    ['./x=1 y', ['./x=1', 'y']],
    ["'A=1' y", ['A=1', 'y']],
    ["A='1' y", null],
    ['A\\=1 y', ['A=1', 'y']],
    ['ls *.txt', ['ls', '*.txt']],
    ["'/bin/r?' x", ['/bin/r?', 'x']],
    ['[ -f x ]', ['[', '-f', 'x', ']']],
  ])('%j → %j', (line, argv) => {
    expect(parseShellCommand(line)).toEqual(argv);
  });

  it.each([
    '',
    '   ',
    'ls | sh',
    'a; b',
    'a && b',
    'a || b',
    'a & b',
    'a\nb',
    'a\rb',
    'echo $(id)',
    'echo `id`',
    'echo "$(id)"',
    'echo "`id`"',
    'echo $HOME',
    'echo ${HOME}',
    'cat < /etc/passwd',
    'echo x > f',
    '(rm -rf /)',
    'rm -{r,f} /',
    "echo 'unterminated",
    'echo "unterminated',
    'echo trailing\\',
    '# comment',
    'ls # comment',
    'a\u0000b',
    'rm\u00a0-rf /',
    'ls\u2028rm',
    'ls\u0085rm',
    'rm\u200b -rf',
    'rm\ufeff -rf',
    'r\u00adm -rf /',
    'rm\u2066 -rf /',
    '/bin/r? -rf /',
    '/bin/r* -rf /',
    '/bin/[r]m -rf /',
  ])('%j cannot be read as one simple command', (line) => {
    expect(parseShellCommand(line)).toBeNull();
  });

  it('refuses a line longer than the limit rather than scanning it', () => {
    expect(parseShellCommand(`echo ${'a'.repeat(MAX_COMMAND_LENGTH)}`)).toBeNull();
  });

  it('splits plain words exactly as a shell would', () => {
    const word = fc.stringMatching(/^[A-Za-z0-9_./:@%+,-]{1,12}$/).filter((w) => !w.includes('=') || w.startsWith('.'));
    fc.assert(
      fc.property(fc.array(word, { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 3 }), (words, gap) => {
        expect(parseShellCommand(words.join(' '.repeat(gap)))).toEqual(words);
      }),
      { numRuns: 500 },
    );
  });

  it('single-quoting any word gives it back unchanged', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 10 }).filter((w) => !w.includes("'")), { minLength: 1, maxLength: 5 }), (words) => {
        expect(parseShellCommand(words.map((w) => `'${w}'`).join(' '))).toEqual(words);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on any input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (line) => {
        const argv = parseShellCommand(line);
        expect(argv === null || (Array.isArray(argv) && argv.length > 0)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('commandForms', () => {
  it('adds the base-name form when the program is given by path', () => {
    expect(commandForms(['rm', '-rf'])).toEqual(['rm -rf']);
    expect(commandForms(['/usr/bin/rm', '-rf', '/'])).toEqual(['/usr/bin/rm -rf /', 'rm -rf /']);
  });
});

describe('compileCommandTest', () => {
  const rm = compileCommandTest(['rm *']);
  it.each([
    ['rm -rf /', 1],
    ['ls -la', 0],
    ['RM -rf /', 2],
    ['sudo rm -rf /', 2],
    ['sudo -u root /BIN/RM -rf /', 2],
    ["bash -c 'cd /tmp && rm -rf x'", 2],
    ["sudo sh -c \"bash -c 'rm -rf x'\"", 2],
    ["sh -c 'ls -la'", 0],
    ['sudo ls -la', 0],
    [`sudo ${'-n '.repeat(70)}ls`, 2],
  ] as const)('%j → %i', (line, expected) => {
    expect(rm.line(line)).toBe(expected);
  });

  it('judges an argv given as a list the same way', () => {
    expect(rm.argv(['rm', '-rf', '/'])).toBe(1);
    expect(rm.argv(['env', 'rm', '-rf', '/'])).toBe(2);
    expect(rm.argv(['ls'])).toBe(0);
  });

  it('a folded program name matches a glob whose program is written in capitals too', () => {
    const tool = compileCommandTest(['MyTool *']);
    expect(tool.line('MyTool run')).toBe(1);
    expect(tool.line('mytool run')).toBe(2);
    expect(tool.line('other run')).toBe(0);
  });
});
