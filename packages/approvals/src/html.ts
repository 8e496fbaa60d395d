const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. Everything shown on a page goes through it. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (char) => ESCAPES[char] as string);
}

/** Text as {@link showText} renders it, and what it found. */
export interface ShownText {
  /** Escaped HTML. */
  readonly html: string;
  /** Whether the text holds characters that draw nothing or change the direction of what follows. */
  readonly hidden: boolean;
  /** Whether the text holds characters outside ASCII (highlighted). */
  readonly marked: boolean;
}

// Characters that draw nothing, or reorder what is drawn around them: controls (but the newline), format characters
// (bidi overrides and isolates, zero-width spaces and joiners, soft hyphen, tag characters), line and paragraph
// separators, private-use, unassigned and lone surrogate code points, and the invisible letters and marks that are
// not format characters (variation selectors, Hangul fillers, the combining grapheme joiner, the braille blank).
const HIDDEN = /^(?:(?!\n)\p{Cc}|[\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}\u115f\u1160\u2800\u3164\uffa0])$/u;
// Invisible marks, by code point (a regular expression class of combining marks reads as misleading).
const HIDDEN_MARKS: readonly (readonly [number, number])[] = [
  [0x034f, 0x034f], // combining grapheme joiner
  [0x17b4, 0x17b5], // Khmer inherent vowels
  [0x180b, 0x180f], // Mongolian variation selectors
  [0xfe00, 0xfe0f], // variation selectors
  [0xe0100, 0xe01ef], // variation selectors supplement
];

function isHidden(char: string, code: number): boolean {
  return HIDDEN.test(char) || HIDDEN_MARKS.some(([from, to]) => code >= from && code <= to);
}
const PLAIN = /^[\x20-\x7e\n]*$/;

/**
 * Escapes text for element content so that what a person reads is what is stored, character for character:
 * - each character that draws nothing or reorders the text (a right-to-left override, a zero-width space, a tag
 *   character) is shown as its `\uXXXX` escape (UTF-16, as JSON writes one, so JSON text stays JSON with the same
 *   value), marked `hidden-char`;
 * - each run of other characters outside ASCII is wrapped in a `<mark>` that the page's stylesheet highlights and
 *   isolates (`unicode-bidi: isolate`): a look-alike letter (Cyrillic "а" in "pаypal") stands out, and right-to-left
 *   letters cannot reorder the digits and words around them.
 */
export function showText(value: unknown): ShownText {
  const text = String(value);
  if (PLAIN.test(text)) return { html: escapeHtml(text), hidden: false, marked: false };
  let html = '';
  let run = '';
  let hidden = false;
  let marked = false;
  const flush = () => {
    if (run !== '') html += `<mark>${escapeHtml(run)}</mark>`;
    run = '';
  };
  for (const char of text) {
    const code = char.codePointAt(0) as number;
    if ((code >= 0x20 && code < 0x7f) || code === 0x0a) {
      flush();
      html += escapeHtml(char);
    } else if (isHidden(char, code)) {
      flush();
      hidden = true;
      let escaped = '';
      for (let i = 0; i < char.length; i++) escaped += `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`;
      html += `<mark class="hidden-char">${escaped}</mark>`;
    } else {
      marked = true;
      run += char;
    }
  }
  flush();
  return { html, hidden, marked };
}
