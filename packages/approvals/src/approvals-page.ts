import { createHash } from 'node:crypto';
import { actionFingerprint, canonicalInput, foldToolName, formatUsd, readCost, toolNameProblem, type Action, type ApprovalState, type ApprovalTokenClaims } from '@agentpolicy/core';
import { escapeHtml, showText } from './html.js';

const STYLE = [
  'body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#1d1d1f;background:#fafafa}',
  'h1{font-size:1.3rem}h2{font-size:1.05rem;margin:0 0 .5rem;overflow-wrap:anywhere}',
  'article{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem;margin:0 0 1rem}',
  'dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0 0 .6rem}dt{color:#666}dd{margin:0;overflow-wrap:anywhere}',
  'pre{background:#f3f3f3;padding:.5rem;white-space:pre-wrap;overflow-wrap:anywhere;margin:0 0 .6rem}',
  'mark{background:#ffe08a;color:inherit;unicode-bidi:isolate;outline:1px solid #c9a227}mark.hidden-char{background:#f4c7c3;outline-color:#b3261e;font-family:monospace}',
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
  return page(title, `<h1>${escapeHtml(title)}</h1><p class="notice${options.problem ? ' problem' : ''}" role="status">${showText(message).html}</p>${back}`);
}

/** What the list page shows above the requests after an answer (a fixed message per outcome). */
export type Notice = { readonly text: string; readonly problem: boolean };

/** The page listing pending requests, each with an Approve / Reject form carrying the CSRF token. */
export function pendingPage(states: readonly ApprovalState[], options: { base: string; csrf: string; now: number; principal: string; notice?: Notice; sessionId?: string }): string {
  const session = options.sessionId === undefined ? '' : `<input type="hidden" name="session" value="${escapeHtml(options.sessionId)}">\n`;
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
${session}<label>Reason <input type="text" name="reason" maxlength="1000" autocomplete="off"></label>
<button class="approve" type="submit" name="answer" value="approve">Approve</button>
<button class="reject" type="submit" name="answer" value="reject">Reject</button>
</form></article>`,
        )
        .join('\n');
  return page(
    'Pending approvals',
    `<h1>Pending approvals</h1><p>Signed in as <strong>${showText(options.principal).html}</strong>.${options.sessionId === undefined ? '' : ` Session <strong>${showText(options.sessionId).html}</strong>.`} ${states.length} waiting${states.length > MAX_SHOWN ? `, the oldest ${MAX_SHOWN} shown` : ''}.</p>${notice}${items}`,
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
  let hidden = false;
  let marked = false;
  const show = (text: string) => {
    const shown = showText(text);
    hidden ||= shown.hidden;
    marked ||= shown.marked;
    return shown.html;
  };
  const heading = `<h2>${show(title)}</h2>`;
  const list = `<dl>${rows.map(([name, value]) => `<dt>${escapeHtml(name)}</dt><dd>${show(value)}</dd>`).join('')}</dl>`;
  let input = '';
  let long = false;
  if (action.type === 'tool' && action.input !== undefined) {
    const text = inputText(action.input);
    long = text.length > MAX_INPUT_CHARS;
    input = `<pre data-field="input">${show(long ? `${text.slice(0, MAX_INPUT_CHARS)}\n… (${text.length - MAX_INPUT_CHARS} more characters)` : text)}</pre>`;
  }
  // What an approval covers is the action's fingerprint; what is shown is core's record of the action, which bounds
  // long strings and large inputs (and converts what is not plain data). Worked out again from what is shown, the
  // fingerprint tells whether the approver reads all of it; when not (cut, converted, or changed in the store since
  // the request was raised), the page says so above everything else.
  const notices = [
    ...(long || !shownExactly(state)
      ? [`<p class="notice problem" data-field="input-cut">Part of this request is not shown as the agent gave it (it was cut or converted when recorded${long ? ', or is too long for this page; GET the request from the JSON API to read what was recorded' : ', or changed since'}). Approving covers the whole input.</p>`]
      : []),
    ...(hidden
      ? ['<p class="notice problem" data-field="input-hidden">This request holds invisible or direction-changing characters; each is shown as its \\u code, highlighted in red.</p>']
      : []),
    ...(marked ? ['<p class="notice" data-field="input-marked">Characters outside ASCII are highlighted: check letters that look like others.</p>'] : []),
  ];
  return `${heading}${notices.join('')}${list}${input}`;
}

/** Whether the recorded action, as shown, is exactly the action its fingerprint (what an approval covers) names. */
function shownExactly(state: ApprovalState): boolean {
  try {
    return fingerprintOf(state.action) === state.fingerprint;
  } catch {
    return false;
  }
}

function fingerprintOf(action: Action): string {
  const read = readCost(action.cost);
  const costNanos = read.ok ? read.nanos : -1;
  switch (action.type) {
    case 'tool': {
      const name = toolNameProblem(action.name) === undefined ? foldToolName(action.name) : action.name;
      return actionFingerprint({ type: 'tool', name, costNanos, input: action.input === undefined ? undefined : canonicalInput(action.input) });
    }
    case 'http':
      return actionFingerprint({ type: 'http', url: action.url, method: action.method ?? '', costNanos });
    default:
      return actionFingerprint({ type: 'cost', source: action.source, costNanos });
  }
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
