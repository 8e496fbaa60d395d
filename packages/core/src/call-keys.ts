import { hash } from 'node:crypto';
import type { ActionIdentity } from './action-fingerprint.js';
import type { Decision } from './decision.js';

const KEY_GENERATION = 4096;
const LONG_KEY = 256;
/** Most actions remembered under one key; an older one is forgotten (its repeat is then a new action). */
const PER_KEY = 8;

interface Keyed {
  readonly identity: ActionIdentity;
  readonly decision: Decision;
  /** The previous action remembered under the same key (a short chain, newest first). */
  readonly next: Keyed | undefined;
}

/**
 * The decisions of keyed checks (`idempotencyKey`), bound to the action's identity: a repeat of the same key for the
 * same action (same fingerprint) finds the first decision; for another action (other input, other cost, another
 * tool) it finds nothing and is a new action. Looked up by key first, so a key seen for the first time costs no
 * fingerprint; actions under one key are compared by {@link ActionIdentity.key} (their exact fingerprint text, or
 * the fingerprint for long ones). Kept in two generations: a lookup reads both, and when the newer one fills up it
 * becomes the older one. Bounded (at most 2 × 4,096 keyed checks, 8 actions per key, long keys stored as their
 * hash). One small object per keyed check: the actions under a key are a chain, not an array.
 */
export class CallKeys {
  private keyed = new Map<string, Keyed>();
  private keyedOld = new Map<string, Keyed>();
  private count = 0;

  /** The decision an earlier check of this action with this key got, if it is still kept. */
  get(identity: ActionIdentity, key: string): Decision | undefined {
    const slot = slotOf(key);
    return find(this.keyed.get(slot), identity) ?? find(this.keyedOld.get(slot), identity);
  }

  /** Remembers the decision a keyed check got. */
  remember(identity: ActionIdentity, key: string, decision: Decision): void {
    if (this.count >= KEY_GENERATION) {
      this.keyedOld = this.keyed;
      this.keyed = new Map();
      this.count = 0;
    }
    const slot = slotOf(key);
    // The same action again under this key (its allow was used, say): the newer decision replaces the older; the
    // chain keeps at most PER_KEY actions, newest first.
    const chain = this.keyed.get(slot);
    this.keyed.set(slot, { identity, decision, next: chain === undefined ? undefined : without(chain, identity, PER_KEY - 1) });
    this.count++;
  }
}

// The chain without `identity`'s entry, cut to `room` entries (rebuilt: entries are immutable; chains are short).
function without(chain: Keyed, identity: ActionIdentity, room: number): Keyed | undefined {
  if (room <= 0) return undefined;
  if (same(chain.identity, identity)) return chain.next === undefined ? undefined : without(chain.next, identity, room);
  const rest = chain.next === undefined ? undefined : without(chain.next, identity, room - 1);
  return rest === chain.next ? chain : { identity: chain.identity, decision: chain.decision, next: rest };
}

function same(a: ActionIdentity, b: ActionIdentity): boolean {
  return a === b || a.key === b.key;
}

function find(chain: Keyed | undefined, identity: ActionIdentity): Decision | undefined {
  for (let entry = chain; entry !== undefined; entry = entry.next) if (same(entry.identity, identity)) return entry.decision;
  return undefined;
}

function slotOf(key: string): string {
  return key.length > LONG_KEY ? hash('sha256', key, 'hex') : key;
}

/**
 * Which of a session's allows have been used for their one execution, by the sequence number in their id
 * (`<session id>:<n>`): one bit per decision, so marking and asking are O(1) and keep nothing alive for the
 * garbage collector to trace (a WeakSet of decisions did, and cost more than the check itself).
 */
export class UsedAllows {
  private bits = new Uint8Array(1024);

  has(seq: number): boolean {
    const index = seq >>> 3;
    return index < this.bits.length && (this.bits[index]! & (1 << (seq & 7))) !== 0;
  }

  add(seq: number): void {
    const index = seq >>> 3;
    if (index >= this.bits.length) {
      const grown = new Uint8Array(Math.max(this.bits.length * 2, index + 1));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[index]! |= 1 << (seq & 7);
  }
}
