import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The cookie that holds the browser's half of the double-submit pair. */
export const CSRF_COOKIE = 'agentpolicy_approvals_csrf';

const NONCE = /^[A-Za-z0-9_-]{22}$/;

/**
 * Signed double-submit tokens for the page's forms. The cookie carries a random nonce; each form carries
 * `nonce.issuedAt.signature`, where the signature (HMAC-SHA256 under a key derived from the application secret)
 * covers the principal the page was served to, the nonce and the time. A post counts only when its form token is
 * genuine, recent, issued to the same principal, and its nonce equals the cookie's: a page of another site can
 * neither read the token nor set the cookie.
 */
export class CsrfTokens {
  private readonly key: Buffer;

  constructor(
    secret: string | Uint8Array,
    private readonly maxAgeMs: number,
  ) {
    const raw = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
    this.key = createHmac('sha256', raw).update('agentpolicy approvals csrf v1').digest();
  }

  /** A new nonce for the cookie. */
  nonce(): string {
    return randomBytes(16).toString('base64url');
  }

  /** Whether a cookie value is a nonce this code could have issued (its shape only). */
  isNonce(value: string | undefined): value is string {
    return value !== undefined && NONCE.test(value);
  }

  /** The form token for this principal and cookie nonce. */
  issue(principalId: string, nonce: string, now: number): string {
    const issued = now.toString(36);
    return `${nonce}.${issued}.${this.sign(principalId, nonce, issued)}`;
  }

  /** Whether a posted form token is genuine, unexpired, issued to this principal and paired with this cookie nonce. */
  verify(token: string | undefined, cookieNonce: string | undefined, principalId: string, now: number): boolean {
    if (token === undefined || !this.isNonce(cookieNonce) || token.length > 200) return false;
    const [nonce, issued, signature, ...rest] = token.split('.');
    if (rest.length > 0 || nonce === undefined || issued === undefined || signature === undefined) return false;
    if (!same(nonce, cookieNonce) || !/^[0-9a-z]{1,12}$/.test(issued)) return false;
    const at = Number.parseInt(issued, 36);
    if (!(now - at <= this.maxAgeMs) || at > now + 60_000) return false;
    return same(signature, this.sign(principalId, nonce, issued));
  }

  private sign(principalId: string, nonce: string, issued: string): string {
    return createHmac('sha256', this.key).update(`${principalId.length}:${principalId}\n${nonce}\n${issued}`).digest('base64url');
  }
}

function same(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  return left.length === right.length && timingSafeEqual(left, right);
}
