/**
 * Money is kept as integer nano-dollars (1 USD = 1e9). Every amount in the engine is one of these integers, so
 * sums are exact; USD numbers exist only at the edges (input and reports).
 */
export const NANOS_PER_USD = 1_000_000_000;

/** The largest amount the ledger holds exactly (about 9 million USD). */
export const MAX_NANOS = Number.MAX_SAFE_INTEGER;

const MONEY_STRING = /^\$?(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;

export type MoneyParse = { ok: true; nanos: number } | { ok: false; message: string };

/**
 * Parses a policy amount: a finite non-negative number, or a string of the strict grammar `$?digits(.digits)?`
 * (`"5"`, `"5.00"`, `"$5.00"`). Rejects `"5,000"`, `"0x10"`, `"5 USD"`, `""`, negatives, NaN and Infinity, and
 * amounts finer than a nano-dollar.
 */
export function parseMoney(value: unknown): MoneyParse {
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return { ok: false, message: 'must be a number, got NaN' };
    if (!Number.isFinite(value)) return { ok: false, message: `must be finite, got ${value}` };
    if (value < 0) return { ok: false, message: `must not be negative, got ${value}` };
    return parseDecimal(numberToDecimalString(value), false);
  }
  if (typeof value === 'string') {
    const text = value;
    if (text.trim() === '') return { ok: false, message: 'must be an amount like 5, "5.00" or "$5.00", got an empty string' };
    if (text.trim().startsWith('-') || text.trim().startsWith('$-')) {
      return { ok: false, message: `must not be negative, got ${JSON.stringify(text)}` };
    }
    if (!MONEY_STRING.test(text)) {
      return {
        ok: false,
        message: `must be an amount like 5, "5.00" or "$5.00" (digits, an optional "$" and decimal point; no commas, spaces, units or hex), got ${JSON.stringify(text)}`,
      };
    }
    return parseDecimal(text.startsWith('$') ? text.slice(1) : text, false);
  }
  return { ok: false, message: `must be an amount like 5, "5.00" or "$5.00", got ${describe(value)}` };
}

/** Converts nanos to a USD number (for reports). */
export function nanosToUsd(nanos: number): number {
  return nanos / NANOS_PER_USD;
}

/** Formats nanos as `$1.23` (at least two decimals, more when the amount has them). */
export function formatUsd(nanos: number): string {
  const whole = Math.floor(nanos / NANOS_PER_USD);
  const fraction = String(nanos % NANOS_PER_USD).padStart(9, '0').replace(/0+$/, '');
  return `$${whole}.${fraction.padEnd(2, '0')}`;
}

export type CostParse = { ok: true; nanos: number } | { ok: false; reason: string };

/**
 * Reads a runtime cost (USD). It must be a finite, non-negative `number`; anything else is refused with a reason.
 * The amount is taken as the shortest decimal that the number stands for (so 0.1 is exactly 100,000,000 nanos) and
 * anything finer than a nano-dollar is rounded up, never down to zero.
 */
export function readCost(value: unknown): CostParse {
  if (typeof value !== 'number') return { ok: false, reason: `cost must be a finite non-negative number, got ${describe(value)}` };
  if (value !== value) return { ok: false, reason: 'cost must be a finite non-negative number, got NaN' };
  if (value === 0) return { ok: true, nanos: 0 };
  if (!(value > 0)) return { ok: false, reason: `cost must be a finite non-negative number, got ${value}` };
  if (value === Infinity) return { ok: false, reason: 'cost must be a finite non-negative number, got Infinity' };
  // Fast path: a cost with at most nine decimals round-trips through its nano count exactly.
  const scaled = value * NANOS_PER_USD;
  if (scaled <= MAX_NANOS) {
    const rounded = Math.round(scaled);
    if (rounded / NANOS_PER_USD === value && rounded > 0) return { ok: true, nanos: rounded };
  }
  const parsed = parseDecimal(numberToDecimalString(value), true);
  if (!parsed.ok) return { ok: false, reason: `cost ${parsed.message}` };
  return { ok: true, nanos: parsed.nanos };
}

/** A declared cost as read by {@link declaredCost}: USD (or undefined: no cost), and why it could not be read. */
export interface DeclaredCost {
  readonly cost: number | undefined;
  /** The message of a cost function that threw (`cost` is then NaN). Adapters record it as `costError` metadata. */
  readonly error?: string;
}

const NO_DECLARED_COST: DeclaredCost = Object.freeze({ cost: undefined });

/**
 * Reads what a call is declared to cost, the one way every adapter reads its `costs` / `toolCosts` option: a number
 * (or undefined: no cost) as it is, or a function asked with the call. A function that throws gives NaN and its
 * message, so the check denies the call and records why (fail closed: a cost that cannot be read is never taken as
 * free, and never crashes the run). Whatever comes back is checked by the check itself, like any `cost`.
 *
 * @example
 * ```ts
 * const perRecipient = (args: { to: string[] }) => 0.02 * args.to.length;
 * const { cost, error } = declaredCost(perRecipient, args);
 * const decision = await session.checkTool('send_sms', { input: args, cost, metadata: error ? { costError: error } : {} });
 * ```
 */
export function declaredCost<C>(cost: number | ((call: C) => number | undefined) | undefined, call: C): DeclaredCost {
  if (cost === undefined) return NO_DECLARED_COST;
  if (typeof cost !== 'function') return { cost };
  try {
    return { cost: cost(call) };
  } catch (error) {
    return { cost: Number.NaN, error: (error as Error)?.message ?? String(error) };
  }
}

/** Declared costs by name, as adapters take them: a map from a name to USD, or a function of the call. */
export type CostTable<C> = Readonly<Record<string, number>> | ((call: C) => number | undefined);

/**
 * {@link declaredCost} read from a {@link CostTable}: the function asked with `call`, or the map's own entry for
 * `name` (never one it inherits, such as `constructor`); a name with no entry costs nothing.
 */
export function declaredCostIn<C>(costs: CostTable<C> | undefined, name: string, call: C): DeclaredCost {
  if (typeof costs === 'function') return declaredCost(costs, call);
  return declaredCost(costs !== undefined && Object.hasOwn(costs, name) ? costs[name] : undefined, call);
}

/** Converts a USD number to nanos, rounding up (used for catalog prices, which are binary floats). */
export function usdToNanosCeil(value: number): number {
  const read = readCost(value);
  if (!read.ok) throw new RangeError(read.reason);
  return read.nanos;
}

function parseDecimal(text: string, roundUp: boolean): MoneyParse {
  const match = /^([0-9]+)(?:\.([0-9]*))?$/.exec(text);
  if (!match) return { ok: false, message: `is not a decimal amount: ${text}` };
  const whole = match[1] ?? '0';
  let fraction = match[2] ?? '';
  let carry = 0;
  if (fraction.length > 9) {
    const rest = fraction.slice(9);
    fraction = fraction.slice(0, 9);
    if (/[1-9]/.test(rest)) {
      if (!roundUp) return { ok: false, message: `has more than 9 decimal places (finer than a nano-dollar): ${text}` };
      carry = 1;
    }
  }
  const nanos = BigInt(whole) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0') || '0') + BigInt(carry);
  if (nanos > BigInt(MAX_NANOS)) return { ok: false, message: `is too large (the most is ${formatUsd(MAX_NANOS)})` };
  return { ok: true, nanos: Number(nanos) };
}

/** The shortest decimal string for a finite non-negative number, without exponent notation. */
function numberToDecimalString(value: number): string {
  const text = String(value);
  const exp = /^([0-9]+)(?:\.([0-9]+))?e([+-][0-9]+)$/.exec(text);
  if (!exp) return text;
  const digits = (exp[1] ?? '') + (exp[2] ?? '');
  const point = (exp[1] ?? '').length + Number(exp[3]);
  if (point <= 0) return `0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return digits + '0'.repeat(point - digits.length);
  return `${digits.slice(0, point)}.${digits.slice(point)}`;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value)}`;
    case 'bigint':
      return `the bigint ${value}n`;
    case 'number':
    case 'boolean':
      return `${typeof value} ${String(value)}`;
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      return describeObject(value as object);
  }
}

// A Map or a class instance reads as what it is, so "must be a mapping, got a Map" explains itself.
function describeObject(value: object): string {
  try {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === null || proto === Object.prototype) return 'an object';
    const name: unknown = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object with a custom prototype';
  } catch {
    return 'an object';
  }
}
