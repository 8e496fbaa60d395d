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
}

/**
 * The decisions of keyed checks (`idempotencyKey`), bound to the action's identity: a repeat of the same key for the
 * same action (same fingerprint) finds the first decision; for another action (other input, other cost, another
 * tool) it finds nothing and is a new action. Looked up by key first, so a key seen for the first time costs no
 * fingerprint; actions under one key are compared by {@link ActionIdentity.key} (their exact fingerprint text, or
 * the fingerprint for long ones). Kept in two generations: a lookup reads both, and when the newer one fills up it
 * becomes the older one. Bounded (at most 2 × 4,096 keyed checks, long keys stored as their hash).
 */
export class CallKeys {
  private keyed = new Map<string, Keyed[]>();
  private keyedOld = new Map<string, Keyed[]>();
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
    let list = this.keyed.get(slot);
    if (list === undefined) {
      list = [];
      this.keyed.set(slot, list);
    } else {
      // The same action again under this key (its allow was used, say): the newer decision replaces the older.
      const at = indexOf(list, identity);
      if (at >= 0) list.splice(at, 1);
      else if (list.length >= PER_KEY) list.shift();
    }
    list.push({ identity, decision });
    this.count++;
  }
}

function indexOf(list: readonly Keyed[], identity: ActionIdentity): number {
  for (let i = 0; i < list.length; i++) {
    const other = (list[i] as Keyed).identity;
    if (other === identity || other.key === identity.key) return i;
  }
  return -1;
}

function find(list: readonly Keyed[] | undefined, identity: ActionIdentity): Decision | undefined {
  if (list === undefined) return undefined;
  const at = indexOf(list, identity);
  return at < 0 ? undefined : (list[at] as Keyed).decision;
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
