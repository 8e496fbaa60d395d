import { createHash } from 'node:crypto';
import { formatUsd, readCost, type ApprovalState, type ApprovalTokenClaims } from '@agentpolicy/core';
import { escapeHtml } from './html.js';

const STYLE = [
  'body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#1d1d1f;background:#fafafa}',
  'h1{font-size:1.3rem}h2{font-size:1.05rem;margin:0 0 .5rem}',
  'article{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem;margin:0 0 1rem}',
  'dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0 0 .6rem}dt{color:#666}dd{margin:0;overflow-wrap:anywhere}',
  'pre{background:#f3f3f3;padding:.5rem;overflow:auto;max-height:16rem;white-space:pre-wrap;overflow-wrap:anywhere;margin:0 0 .6rem}',
  'form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}label{flex:1 1 16rem;display:flex;gap:.4rem;align-items:center}',
  'input[type=text]{flex:1;padding:.3rem}button{padding:.35rem .9rem;border-radius:4px;border:1px solid #888;cursor:pointer}',
  '.approve{background:#e6f4ea;border-color:#3c8c50}.reject{background:#fdecea;border-color:#b3261e}',
  '.notice{padding:.6rem;border-radius:4px;background:#eef3fd;border:1px solid #9ab}.problem{background:#fdecea;border-color:#b3261e}',
].join('');

/**
 * The Content-Security-Policy of every response: nothing loads from anywhere, the one inline stylesheet is allowed
 * by its hash, forms post only to this origin, and no page can frame these.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `style-src '${'sha256-' + createHash('sha256').update(STYLE).digest('base64')}'`,
  "img-src 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** The most input text shown per request; past it the page says so and points to the JSON API. */
const MAX_INPUT_CHARS = 64_000;
/** The most requests one page shows (oldest first); the count says how many wait in all. */
const MAX_SHOWN = 200;
/** The markers core's bounded records leave where they cut a value. */
const CUT_MARKER = /…\[truncated: |\[nested too deep\]|\[\d+ more (?:items|keys)\]/;

/** A whole page around already-escaped body HTML. */
export function page(title: string, bodyHtml: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="same-origin"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><main>${bodyHtml}</main></body></html>`;
}

/** A page that only says something (a result, a refusal). */
export function messagePage(title: string, message: string, options: { problem?: boolean; backHref?: string } = {}): string {
  const back = options.backHref === undefined ? '' : `<p><a href="${escapeHtml(options.backHref)}">Back to pending approvals</a></p>`;
  return page(title, `<h1>${escapeHtml(title)}</h1><p class="notice${options.problem ? ' problem' : ''}" role="status">${escapeHtml(message)}</p>${back}`);
}

/** What the list page shows above the requests after an answer (a fixed message per outcome). */
export type Notice = { readonly text: string; readonly problem: boolean };

/** The page listing pending requests, each with an Approve / Reject form carrying the CSRF token. */
export function pendingPage(states: readonly ApprovalState[], options: { base: string; csrf: string; now: number; principal: string; notice?: Notice }): string {
  const notice = options.notice
    ? `<p class="notice${options.notice.problem ? ' problem' : ''}" role="status">${escapeHtml(options.notice.text)}</p>`
    : '';
  const items = states.length === 0
    ? '<p>No approval requests are waiting.</p>'
    : states
        .slice(0, MAX_SHOWN)
        .map(
          (state) => `<article data-request-id="${escapeHtml(state.id)}">${requestDetails(state, options.now)}
<form method="post" action="${escapeHtml(`${options.base}/requests/${encodeURIComponent(state.id)}`)}">
<input type="hidden" name="csrf" value="${escapeHtml(options.csrf)}">
<label>Reason <input type="text" name="reason" maxlength="1000" autocomplete="off"></label>
<button class="approve" type="submit" name="answer" value="approve">Approve</button>
<button class="reject" type="submit" name="answer" value="reject">Reject</button>
</form></article>`,
        )
        .join('\n');
  return page(
    'Pending approvals',
    `<h1>Pending approvals</h1><p>Signed in as <strong>${escapeHtml(options.principal)}</strong>. ${states.length} waiting${states.length > MAX_SHOWN ? `, the oldest ${MAX_SHOWN} shown` : ''}.</p>${notice}${items}`,
  );
}

/** The page a signed link opens: the request, what the link will answer, and one button that does it. */
export function linkPage(state: ApprovalState, claims: ApprovalTokenClaims, token: string, options: { base: string; now: number }): string {
  const verb = claims.answer === 'approve' ? 'Approve' : 'Reject';
  return page(
    `${verb} this action?`,
    `<h1>${verb} this action?</h1><article data-request-id="${escapeHtml(state.id)}">${requestDetails(state, options.now)}
<form method="post" action="${escapeHtml(`${options.base}/link`)}">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<label>Reason <input type="text" name="reason" maxlength="1000" autocomplete="off"></label>
<button class="${claims.answer}" type="submit">${verb}</button>
</form></article><p>This link answers once; the first answer given to a request is the one that counts.</p>`,
  );
}

function requestDetails(state: ApprovalState, now: number): string {
  const action = state.action;
  const title = action.type === 'tool' ? `tool ${action.name}` : action.type === 'http' ? `${action.method ?? 'request'} ${action.domain}` : `spend ${action.source}`;
  const rows: [string, string][] = [
    ['Action', title],
    ...(action.type === 'http' ? ([['URL', action.url]] as [string, string][]) : []),
    ['Cost', cost(action.cost)],
    ['Session', state.sessionId],
    ['Why', state.reason],
    ['Requested', `${age(now - Date.parse(state.createdAt))} ago (${state.createdAt})`],
    ['Expires', `${Date.parse(state.expiresAt) >= now ? 'in ' + age(Date.parse(state.expiresAt) - now) : 'expired'} (${state.expiresAt})`],
    ['Request', state.id],
  ];
  let input = '';
  if (action.type === 'tool' && action.input !== undefined) {
    const text = inputText(action.input);
    // Core records long strings and large inputs bounded; the approval still covers the whole input (its
    // fingerprint), so the approver is told when what they read is not all of it.
    const warning = CUT_MARKER.test(text) || text.length > MAX_INPUT_CHARS
      ? `<p class="notice problem" data-field="input-cut">Part of this input is not shown (it was cut when recorded${text.length > MAX_INPUT_CHARS ? ' or is too long for this page; GET the request from the JSON API to read what was recorded' : ''}). Approving covers the whole input.</p>`
      : '';
    input = `${warning}<pre data-field="input">${escapeHtml(text.length > MAX_INPUT_CHARS ? `${text.slice(0, MAX_INPUT_CHARS)}\n… (${text.length - MAX_INPUT_CHARS} more characters)` : text)}</pre>`;
  }
  return `<h2>${escapeHtml(title)}</h2><dl>${rows.map(([name, value]) => `<dt>${escapeHtml(name)}</dt><dd>${escapeHtml(value)}</dd>`).join('')}</dl>${input}`;
}

function cost(usd: number): string {
  const read = readCost(usd);
  return read.ok ? formatUsd(read.nanos) : String(usd);
}

function inputText(input: unknown): string {
  try {
    return JSON.stringify(input, null, 2) ?? String(input);
  } catch {
    return String(input);
  }
}

function age(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}
