import { canonicalInput } from './action-fingerprint.js';
import type { PolicySession } from './session.js';

/** A tool call as a framework returned it: its id, its tool, and its arguments as the model sent them. */
export interface ReturnedCall {
  readonly id: string | undefined;
  readonly name: string;
  /** The arguments as sent (an object, or the JSON text): the call is the same call only while they are. */
  readonly sent: unknown;
}

const REMEMBERED = 1024;
const bySession = new WeakMap<PolicySession, Map<string, { readonly input: unknown }>>();

function keyOf(call: ReturnedCall): string | undefined {
  if (typeof call.id !== 'string' || call.id === '') return undefined;
  try {
    return `${call.id}\u0000${call.name}\u0000${canonicalInput(call.sent)}`;
  } catch {
    return undefined;
  }
}

/**
 * The input a tool call was decided on while it waits for an approval, for adapters that decide on a parsed input
 * (the tool's own schema applied: defaults, transforms). When the call comes back after the answer (a resume, the
 * conversation sent again), a parse that is not deterministic (a default from the clock, a random id) would give it
 * another input, so another fingerprint, and the answer would never match it: the adapter decides it again on the
 * input kept here instead. Kept per session, by call id, tool and the arguments as sent, for the last 1,024 waiting
 * calls, in this process only (a resume in another process parses again and is asked again).
 */
export const waitingInputs = {
  /** The input the call was decided on while it waits, or undefined. */
  get(session: PolicySession, call: ReturnedCall): { readonly input: unknown } | undefined {
    const calls = bySession.get(session);
    if (calls === undefined || calls.size === 0) return undefined;
    const key = keyOf(call);
    return key === undefined ? undefined : calls.get(key);
  },

  /** Keeps the input of a call that waits for an approval (`waits`), or forgets it once the call is decided. */
  set(session: PolicySession, call: ReturnedCall, input: unknown, waits: boolean): void {
    let calls = bySession.get(session);
    if (!waits && (calls === undefined || calls.size === 0)) return;
    const key = keyOf(call);
    if (key === undefined) return;
    if (!waits) {
      calls?.delete(key);
      return;
    }
    if (calls === undefined) bySession.set(session, (calls = new Map()));
    if (calls.size >= REMEMBERED) calls.clear();
    calls.set(key, { input });
  },
};
