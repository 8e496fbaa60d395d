/**
 * Shell command lines read the way the `command` condition needs them: one simple command split into its argv by
 * POSIX quoting rules, in one linear pass without regular expressions. Anything whose argv cannot be known without
 * running a shell (a pipe or list, a redirection, a substitution or expansion, a subshell, an assignment prefix, an
 * unterminated quote) is refused, and the condition then resolves toward safety.
 */

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
      default:
        if (c < 0x20 || c === 0x7f) return null;
        word += line[i];
        inWord = true;
        i++;
    }
  }
  if (inWord) argv.push(word);
  if (argv.length === 0) return null;
  // `NAME=value cmd`: the assignment changes what `cmd` is (PATH=…), so the command is not known statically.
  const first = argv[0] as string;
  const equals = first.indexOf('=');
  if (equals > 0 && (firstQuoteAt < 0 || equals < firstQuoteAt) && isName(first, equals)) return null;
  return argv;
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
