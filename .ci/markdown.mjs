// Markdown helpers shared by the docs checks: heading anchors as GitHub makes them, the links a page holds, and
// its fenced code blocks with the marker comment before each.

/** GitHub's heading anchors: lowercase, punctuation dropped, spaces to dashes, repeats numbered. */
export function anchorsOf(markdown) {
  const anchors = new Set();
  const counts = new Map();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = !fenced && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const text = heading[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '');
    const base = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const seen = counts.get(base) ?? 0;
    counts.set(base, seen + 1);
    anchors.add(seen === 0 ? base : `${base}-${seen}`);
  }
  return anchors;
}

export function linksOf(markdown) {
  const withoutCode = markdown.replace(/^(```|~~~)[\s\S]*?^\1/gm, '').replace(/`[^`\n]*`/g, '');
  const links = [];
  for (const match of withoutCode.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) links.push(match[1]);
  for (const match of withoutCode.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)) links.push(match[1]);
  for (const match of withoutCode.matchAll(/\b(?:href|src)\s*=\s*"([^"]+)"/g)) links.push(match[1]);
  return links;
}

/**
 * Fenced code blocks: `{ lang, code, line, marker }`. `line` is the 1-based line of the first code line; `marker` is
 * the text of a `<!-- docs-check: … -->` comment on the line right before the fence (blank lines between allowed).
 */
export function codeBlocksOf(markdown) {
  const lines = markdown.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+|~~~+)\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[2];
    let end = i + 1;
    while (end < lines.length && !lines[end].trimStart().startsWith(fence)) end++;
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    const marker = before >= 0 ? /^\s*<!--\s*docs-check:\s*(.*?)\s*-->\s*$/.exec(lines[before])?.[1] : undefined;
    blocks.push({ lang: open[3].toLowerCase(), code: lines.slice(i + 1, end).join('\n'), line: i + 2, marker });
    i = end;
  }
  return blocks;
}
