import { hash } from 'node:crypto';
import type { Decision } from './decision.js';

const KEY_GENERATION = 4096;
const LONG_KEY = 256;

/**
 * The decisions of keyed checks (`idempotencyKey`), bound to the action's fingerprint: a repeat of the same key
 * with the same fingerprint finds the first decision; with another fingerprint (other input, other cost, another
 * tool) it finds nothing and is a new action. Kept in two generations: a lookup reads both, and when the newer one
 * fills up it becomes the older one. Bounded (at most 2 × 4,096 keys, long keys stored as their hash) and O(1).
 */
export class CallKeys {
  private keyed = new Map<string, Map<string, Decision>>();
  private keyedOld = new Map<string, Map<string, Decision>>();
  private count = 0;

  /** The decision an earlier check of this action (fingerprint) with this key got, if it is still kept. */
  get(fingerprint: string, key: string): Decision | undefined {
    const slot = slotOf(key);
    return this.keyed.get(fingerprint)?.get(slot) ?? this.keyedOld.get(fingerprint)?.get(slot);
  }

  /** Remembers the decision a keyed check got. */
  remember(fingerprint: string, key: string, decision: Decision): void {
    if (this.count >= KEY_GENERATION) {
      this.keyedOld = this.keyed;
      this.keyed = new Map();
      this.count = 0;
    }
    let keys = this.keyed.get(fingerprint);
    if (keys === undefined) {
      keys = new Map();
      this.keyed.set(fingerprint, keys);
    }
    keys.set(slotOf(key), decision);
    this.count++;
  }
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
