import { createHmac, timingSafeEqual } from 'node:crypto';
import { AgentPolicyError } from './errors.js';

/** What an approval token says, all of it covered by its signature. */
export interface ApprovalTokenClaims {
  /** The approval request it answers. */
  readonly requestId: string;
  /** The fingerprint of the action the request is for: the token answers for that action only. */
  readonly fingerprint: string;
  /** Milliseconds since the epoch; the token is refused after this. */
  readonly expiresAt: number;
  /** The answer the token gives when redeemed (an approve link and a reject link are two tokens). */
  readonly answer: 'approve' | 'reject';
}

/** The result of {@link verifyApprovalToken}. */
export type TokenCheck =
  | { readonly ok: true; readonly claims: ApprovalTokenClaims }
  | { readonly ok: false; readonly problem: 'malformed' | 'forged' | 'expired'; readonly detail: string };

const PREFIX = 'apt1';
const CONTEXT = 'agentpolicy approval token v1\n';

function keyOf(secret: string | Uint8Array): Buffer {
  const key = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  if (key.length < 32) throw new AgentPolicyError('INVALID_ARGUMENT', 'the approval secret must be at least 32 bytes (e.g. crypto.randomBytes(32))');
  return key;
}

function mac(key: Buffer, payload: string): Buffer {
  return createHmac('sha256', key).update(CONTEXT).update(payload).digest();
}

/**
 * Signs an approval token for a one-click link: HMAC-SHA256 with the application's secret over the request id, the
 * action's fingerprint, the expiry and the answer. Redeem it with {@link PolicySession.resolveApprovalToken}; it
 * answers its request once (the first answer wins), and only while the request is for that fingerprint.
 */
export function signApprovalToken(claims: ApprovalTokenClaims, secret: string | Uint8Array): string {
  const payload = Buffer.from(JSON.stringify([claims.requestId, claims.fingerprint, claims.expiresAt, claims.answer]), 'utf8').toString('base64url');
  return `${PREFIX}.${payload}.${mac(keyOf(secret), payload).toString('base64url')}`;
}

/**
 * Checks a token's signature (timing-safe; only its one canonical base64url spelling) and expiry. A token that fails
 * either is refused, never partly read.
 */
export function verifyApprovalToken(token: unknown, secret: string | Uint8Array, now: number = Date.now()): TokenCheck {
  const key = keyOf(secret);
  if (typeof token !== 'string' || token.length > 4096) return { ok: false, problem: 'malformed', detail: 'the token is not a string of a sensible length' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) return { ok: false, problem: 'malformed', detail: 'the token is not an agentpolicy approval token' };
  const payload = parts[1] as string;
  const signature = parts[2] as string;
  const given = Buffer.from(signature, 'base64url');
  // Node's decoder skips characters outside the alphabet, padding and the unused low bits of the last digit: only the
  // one canonical spelling of a signature is accepted, so a token is one string (a handler may key on it).
  if (given.toString('base64url') !== signature) return { ok: false, problem: 'malformed', detail: 'the token signature is not canonical base64url' };
  const expected = mac(key, payload);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, problem: 'forged', detail: 'the token signature does not match' };
  let fields: unknown;
  try {
    fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, problem: 'malformed', detail: 'the token payload cannot be read' };
  }
  if (!Array.isArray(fields) || fields.length !== 4) return { ok: false, problem: 'malformed', detail: 'the token payload has the wrong shape' };
  const [requestId, fingerprint, expiresAt, answer] = fields as unknown[];
  if (typeof requestId !== 'string' || typeof fingerprint !== 'string' || typeof expiresAt !== 'number' || (answer !== 'approve' && answer !== 'reject')) {
    return { ok: false, problem: 'malformed', detail: 'the token payload has the wrong shape' };
  }
  if (!(now <= expiresAt)) return { ok: false, problem: 'expired', detail: `the token expired at ${new Date(expiresAt).toISOString()}` };
  return { ok: true, claims: { requestId, fingerprint, expiresAt, answer } };
}
