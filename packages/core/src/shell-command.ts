/**
 * Shell command lines read the way the `command` condition needs them: one simple command split into its argv by
 * POSIX quoting rules, in one linear pass without regular expressions. Anything whose argv cannot be known without
 * running a shell (a pipe or list, a redirection, a substitution or expansion, a subshell, an assignment prefix, an
 * unterminated quote, a glob in the program's name, a space or line break a shell would not split on) is refused, and
 * the condition then resolves toward safety. A command run through another (`sudo rm`, `env rm`, `sh -c "rm …"`) is
 * judged by the command it runs too.
 */
import { isInvisible } from './hidden-characters.js';
import { compileGlob } from './tool-matcher.js';

/** Longest command line read; a longer one is refused rather than scanned. */
export const MAX_COMMAND_LENGTH = 16_384;

/**
 * The argv of a single simple command, or `null` when the line is not one (empty, several commands, or any construct
 * a shell would expand or redirect). Quotes are removed as a shell removes them; `\`-newline continues the line.
 */
export function parseShellCommand(line: string): string[] | null {
  if (line.length > MAX_COMMAND_LENGTH) return null;
  const argv: string[] = [];
  let word = '';
  let inWord = false;
  // Where the first quote or escape of the first word fell: `A=1 x` assigns, `'A=1' x` runs a program named A=1.
  let firstQuoteAt = -1;
  // An unquoted `*`, `?` or `[` in the program's name: the shell picks the program by globbing (`/bin/r?`).
  let programGlob = false;
  let programBracket = false;
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line.charCodeAt(i);
    switch (c) {
      case 0x20: // space
      case 0x09: // tab
        if (inWord) {
          argv.push(word);
          word = '';
          inWord = false;
        }
        i++;
        continue;
      case 0x5c: // backslash: the next character is literal; backslash-newline joins lines
        if (i + 1 >= n) return null;
        if (argv.length === 0 && firstQuoteAt < 0) firstQuoteAt = word.length;
        if (line.charCodeAt(i + 1) !== 0x0a) {
          word += line[i + 1];
          inWord = true;
        }
        i += 2;
        continue;
      case 0x27: {
        // single quotes: everything literal up to the next quote
        const end = line.indexOf("'", i + 1);
        if (end < 0) return null;
        if (argv.length === 0 && firstQuoteAt < 0) firstQuoteAt = word.length;
        word += line.slice(i + 1, end);
        inWord = true;
        i = end + 1;
        continue;
      }
      case 0x22: {
        // double quotes: literal except $, ` (expansions: refused) and \ before " \ $ ` newline
        if (argv.length === 0 && firstQuoteAt < 0) firstQuoteAt = word.length;
        i++;
        for (;;) {
          if (i >= n) return null;
          const d = line.charCodeAt(i);
          if (d === 0x22) break;
          if (d === 0x24 || d === 0x60) return null;
          if (d === 0x5c && i + 1 < n) {
            const next = line.charCodeAt(i + 1);
            if (next === 0x22 || next === 0x5c || next === 0x24 || next === 0x60) {
              word += line[i + 1];
              i += 2;
              continue;
            }
            if (next === 0x0a) {
              i += 2;
              continue;
            }
          }
          word += line[i];
          i++;
        }
        inWord = true;
        i++;
        continue;
      }
      case 0x0a: // newline: a second command
      case 0x0d:
      case 0x3b: // ;
      case 0x26: // &
      case 0x7c: // |
      case 0x3c: // <
      case 0x3e: // >
      case 0x28: // (
      case 0x29: // )
      case 0x60: // `
      case 0x24: // $
      case 0x7b: // { brace expansion or group
      case 0x7d: // }
        return null;
      case 0x23: // # starts a comment only at the start of a word
        if (!inWord) return null;
        word += '#';
        i++;
        continue;
      case 0x2a: // * ? [ ] : a glob, literal when nothing matches; in the program's name it decides what runs
      case 0x3f:
      case 0x5b:
      case 0x5d:
        if (argv.length === 0) {
          if (c === 0x5b) programBracket = true;
          else if (c !== 0x5d || programBracket) programGlob = true;
        }
        word += line[i];
        inWord = true;
        i++;
        continue;
      default:
        if (c < 0x20 || c === 0x7f || (c >= 0x80 && isUnicodeBlank(c))) return null;
        word += line[i];
        inWord = true;
        i++;
    }
  }
  if (inWord) argv.push(word);
  if (argv.length === 0 || programGlob) return null;
  // `NAME=value cmd`: the assignment changes what `cmd` is (PATH=…), so the command is not known statically.
  const first = argv[0] as string;
  const equals = first.indexOf('=');
  if (equals > 0 && (firstQuoteAt < 0 || equals < firstQuoteAt) && isName(first, equals)) return null;
  return argv;
}

/**
 * A space, line or paragraph separator, or an invisible format character outside ASCII: a shell keeps it inside a
 * word, but a tool that splits on any whitespace (or a reader who cannot see it) does not, so the line is not judged.
 */
function isUnicodeBlank(c: number): boolean {
  return c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || isInvisible(c);
}

function isName(text: string, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    const letter = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
    if (!letter && !(i > 0 && c >= 0x30 && c <= 0x39)) return false;
  }
  return true;
}

/**
 * The forms of a command matched by a `command` glob: the argv joined by single spaces, and, when the program is
 * given by path (`/bin/rm`), the same with its base name (`rm`).
 */
export function commandForms(argv: readonly string[]): string[] {
  const joined = argv.join(' ');
  const program = argv[0] as string;
  const slash = program.lastIndexOf('/');
  if (slash < 0) return [joined];
  return [joined, [program.slice(slash + 1), ...argv.slice(1)].join(' ')];
}

/**
 * Programs that run the rest of their arguments as a command (`sudo rm …`, `env -i rm …`, `nice -n 5 rm …`,
 * `find … -exec rm …`): the command they run is judged too, at every word it could start at.
 */
const WRAPPERS = new Set([
  '!',
  'builtin',
  'busybox',
  'caffeinate',
  'chroot',
  'chrt',
  'command',
  'coproc',
  'doas',
  'env',
  'exec',
  'fakeroot',
  'find',
  'firejail',
  'flock',
  'ionice',
  'ltrace',
  'nice',
  'nohup',
  'nsenter',
  'parallel',
  'pkexec',
  'proxychains',
  'proxychains4',
  'runuser',
  'setsid',
  'sg',
  'stdbuf',
  'strace',
  'su',
  'sudo',
  'systemd-run',
  'taskset',
  'time',
  'timeout',
  'toybox',
  'torsocks',
  'unbuffer',
  'unshare',
  'watch',
  'xargs',
]);

/** Programs that read an argument as a command line of their own (`sh -c "…"`, `eval "…"`, `su -c "…"`, `ssh host "…"`). */
const SHELLS = new Set(['ash', 'bash', 'csh', 'dash', 'eval', 'fish', 'ksh', 'mksh', 'runuser', 'script', 'sh', 'ssh', 'su', 'tcsh', 'watch', 'zsh', 'flock']);

/** A wrapper's argv longer than this is not searched word by word: it is undecided. */
const MAX_WRAPPED_WORDS = 64;
/** Command lines inside command lines (`sudo sh -c "bash -c '…'"`) are followed this deep, then undecided. */
const MAX_NESTING = 4;

/** A program's name as a case-insensitive file system (macOS, Windows) finds it: `RM`, `Rm` and `ｒｍ` run `rm` there. */
function foldProgram(name: string): string {
  let ascii = true;
  for (let i = 0; i < name.length && ascii; i++) if (name.charCodeAt(i) > 0x7e) ascii = false;
  return ascii ? name.toLowerCase() : name.normalize('NFKC').toLowerCase();
}

function baseName(program: string): string {
  const slash = program.lastIndexOf('/');
  return slash < 0 ? program : program.slice(slash + 1);
}

/** A compiled `command` condition: judges a command line, or an argv given as a list of strings. */
export interface CommandTest {
  /** 1: the command matches in every reading; 0: in none; 2: in some, or it cannot be judged. */
  line(text: string): 0 | 1 | 2;
  argv(argv: readonly string[]): 0 | 1 | 2;
}

/**
 * Compiles command globs. An argv's readings: as written, with the program's base name, and with the program's name
 * case-folded (matched against the globs with their program word folded). A command that runs another (a wrapper or
 * a shell) also reads as each command it may run; those readings can only make a match undecided, never certain.
 */
export function compileCommandTest(patterns: readonly string[]): CommandTest {
  const exact = patterns.map(compileGlob);
  const foldedPatterns = patterns.map((pattern) => {
    const space = pattern.indexOf(' ');
    return space < 0 ? foldProgram(pattern) : foldProgram(pattern.slice(0, space)) + pattern.slice(space);
  });
  const folded = foldedPatterns.map(compileGlob);
  // Globs that name their program in capitals: a lower-case program name may run that program too.
  const foldsPatterns = foldedPatterns.some((pattern, index) => pattern !== patterns[index]);
  const matches = (globs: readonly ((text: string) => boolean)[], text: string): boolean => {
    for (let i = 0; i < globs.length; i++) if ((globs[i] as (text: string) => boolean)(text)) return true;
    return false;
  };
  // [all readings match, some reading matches] of the argv as written (no wrapped command).
  const direct = (argv: readonly string[]): [boolean, boolean] => {
    let all = true;
    let any = false;
    for (const form of commandForms(argv)) {
      if (matches(exact, form)) any = true;
      else all = false;
    }
    const program = baseName(argv[0] as string);
    const foldedProgram = foldProgram(program);
    if (foldedProgram !== program || foldsPatterns) {
      const form = argv.length === 1 ? foldedProgram : `${foldedProgram} ${argv.slice(1).join(' ')}`;
      if (matches(folded, form)) any = true;
      else all = false;
    }
    return [all, any];
  };
  const judge = (argv: readonly string[], depth: number): 0 | 1 | 2 => {
    if (argv.length === 0) return 2;
    const [all, any] = direct(argv);
    if (all) return 1;
    if (any) return 2;
    const program = foldProgram(baseName(argv[0] as string));
    if (!WRAPPERS.has(program) && !SHELLS.has(program)) return 0;
    if (depth >= MAX_NESTING || argv.length > MAX_WRAPPED_WORDS) return 2;
    let shell = SHELLS.has(program);
    for (let k = 1; k < argv.length; k++) {
      const word = argv[k] as string;
      // Every later word may be where the wrapped command starts (after the wrapper's options and their values).
      if (direct(argv.slice(k))[1]) return 2;
      if (shell && word.length > 0) {
        // A shell may run this argument as a command line: judged as one, and undecided when it is not one simple command.
        const parsed = parseShellCommand(word);
        if (parsed === null || judge(parsed, depth + 1) !== 0) return 2;
      }
      if (!shell && SHELLS.has(foldProgram(baseName(word)))) shell = true;
    }
    return 0;
  };
  return {
    line: (text) => {
      const argv = parseShellCommand(text);
      return argv === null ? 2 : judge(argv, 0);
    },
    argv: (argv) => judge(argv, 0),
  };
}
