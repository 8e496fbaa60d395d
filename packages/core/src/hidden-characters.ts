/**
 * Characters a reader cannot see, which argument rules never take at face value: a control character, or a format
 * character that draws nothing or reorders text (zero-width space and joiners, word joiner, BOM, bidi controls,
 * soft hyphen). Read without a regular expression, by code unit.
 */

/** Zero-width and other format characters a reader cannot see (ZWSP, ZWJ, word joiner, BOM, bidi controls, soft hyphen). */
export function isInvisible(c: number): boolean {
  return c === 0xad || c === 0x180e || (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) || (c >= 0x2060 && c <= 0x206f) || c === 0xfeff;
}

/** A C0 or C1 control character, or DEL. */
export function isControl(c: number): boolean {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

/** Whether a string holds a control or invisible character. */
export function hasHidden(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && (c <= 0x9f || isInvisible(c)))) return true;
  }
  return false;
}
