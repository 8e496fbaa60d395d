import type { ActionType, Decision } from './decision.js';
import type { ActionInput } from './action-input.js';

// Idempotency keys are scoped by the action they were given with (tool name, URL, cost source): the same key on
// another action is another check.
type KeyIndex = Record<ActionType, Map<string, Map<string, Decision>>>;

const KEY_GENERATION = 4096;

const newKeyIndex = (): KeyIndex => ({ tool: new Map(), http: new Map(), cost: new Map() });

function scopeOf(index: KeyIndex, action: ActionInput): Map<string, Map<string, Decision>> {
  return action?.type === 'tool' ? index.tool : action?.type === 'http' ? index.http : index.cost;
}

function scopeName(action: ActionInput): string {
  if (action?.type === 'tool') return typeof action.name === 'string' ? action.name : String(action.name);
  if (action?.type === 'http') return typeof action.url === 'string' ? action.url : String(action.url);
  return String((action as { source?: unknown })?.source);
}

/**
 * The decisions of keyed checks (`idempotencyKey`), so a repeat of the same call gets the first decision back.
 * Kept in two generations: a lookup reads both, and when the newer one fills up it becomes the older one. Bounded
 * (at most 2 × 4,096 keys) and O(1), unlike evicting a Map's oldest entry one at a time.
 */
export class CallKeys {
  private keyed: KeyIndex = newKeyIndex();
  private keyedOld: KeyIndex = newKeyIndex();
  private keyedCount = 0;

  /** The decision an earlier check of this action with this key got, if it is still kept. */
  get(action: ActionInput, key: string): Decision | undefined {
    const name = scopeName(action);
    return scopeOf(this.keyed, action).get(name)?.get(key) ?? scopeOf(this.keyedOld, action).get(name)?.get(key);
  }

  /** Remembers the decision a keyed check got. */
  remember(action: ActionInput, key: string, decision: Decision): void {
    if (this.keyedCount >= KEY_GENERATION) {
      this.keyedOld = this.keyed;
      this.keyed = newKeyIndex();
      this.keyedCount = 0;
    }
    const scope = scopeOf(this.keyed, action);
    const name = scopeName(action);
    let keys = scope.get(name);
    if (keys === undefined) {
      keys = new Map();
      scope.set(name, keys);
    }
    keys.set(key, decision);
    this.keyedCount++;
  }
}
