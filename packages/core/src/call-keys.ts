import { createHash } from 'node:crypto';
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
  private keyed = new Map<string, Decision>();
  private keyedOld = new Map<string, Decision>();

  /** The decision an earlier check of this action (fingerprint) with this key got, if it is still kept. */
  get(fingerprint: string, key: string): Decision | undefined {
    const slot = slotOf(fingerprint, key);
    return this.keyed.get(slot) ?? this.keyedOld.get(slot);
  }

  /** Remembers the decision a keyed check got. */
  remember(fingerprint: string, key: string, decision: Decision): void {
    if (this.keyed.size >= KEY_GENERATION) {
      this.keyedOld = this.keyed;
      this.keyed = new Map();
    }
    this.keyed.set(slotOf(fingerprint, key), decision);
  }
}

function slotOf(fingerprint: string, key: string): string {
  return `${fingerprint}\n${key.length > LONG_KEY ? createHash('sha256').update(key).digest('hex') : key}`;
}
