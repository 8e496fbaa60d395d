import { createHash, createHmac, randomUUID } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, fstatSync, ftruncateSync, linkSync, openSync, readdirSync, readFileSync, readSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { isoNow } from './audit-trail.js';
import type { Decision } from './decision.js';
import type { DecisionSink } from './decision-sink.js';
import { AgentPolicyError } from './errors.js';
import type { PolicySession } from './session.js';

/** The audit log format version written in every record's `v`. */
export const AUDIT_LOG_VERSION = 1;
/** The `prev` of the very first record of a log. */
export const GENESIS_HASH = '0'.repeat(64);

/** Every record ends with its own hash, as the last key: `…,"hash":"<64 hex>"}`. */
export const HASH_TAIL = /,"hash":"([0-9a-f]{64})"\}$/;

/** One line of the audit log, as read back. `hash` covers the line's exact bytes without the `,"hash":…` tail. */
export type AuditRecord = AuditDecisionRecord | AuditSettlementRecord | AuditOpenRecord;

interface AuditRecordBase {
  readonly v: number;
  /** 1, 2, 3, … across the whole log, rotated files included. */
  readonly seq: number;
  /** The hash of the record before (GENESIS_HASH for the first). */
  readonly prev: string;
  /** ISO 8601, when the record was written. */
  readonly time: string;
  readonly hash: string;
}

/** A decision, whole, with the context a later re-decision needs: the policy's hash and the budget at the time. */
export interface AuditDecisionRecord extends AuditRecordBase {
  readonly kind: 'decision';
  readonly sessionId: string;
  readonly policyHash: string;
  /** USD budget of the session's policy, or null without one. */
  readonly budget: number | null;
  /** USD the session had committed when the record was written (this decision's own charge may still be held). */
  readonly spent: number;
  readonly remaining: number | null;
  readonly decision: Decision;
}

/** A reservation settled: how much was finally charged for the decision `decisionId`. */
export interface AuditSettlementRecord extends AuditRecordBase {
  readonly kind: 'settlement';
  readonly sessionId: string;
  readonly policyHash: string;
  readonly decisionId: string;
  readonly settlement: NonNullable<Decision['settlement']>;
  /** The action's metadata once settled (token usage, notes). */
  readonly metadata?: Readonly<Record<string, unknown>>;
  readonly budget: number | null;
  readonly spent: number;
  readonly remaining: number | null;
}

/** Written when a process opens the log and as the first record of every file after a rotation. */
export interface AuditOpenRecord extends AuditRecordBase {
  readonly kind: 'open';
  readonly pid: number;
  /** `sha256`, or `hmac-sha256` when the log is keyed. */
  readonly alg: 'sha256' | 'hmac-sha256';
  /** The file this one continues after a rotation. */
  readonly rotatedFrom?: string;
  /** An incomplete last line (a write cut off by a crash) found and cut from the file when it was opened. */
  readonly recovered?: { readonly bytes: number; readonly sha256: string };
}

/** Options of {@link createAuditLog}. */
export interface AuditLogOptions {
  /** Rotate once the file would grow past this many bytes. Default 64 MiB. */
  maxBytes?: number;
  /** `fdatasync` after every record, so a power loss cannot lose it (each record costs a disk flush). Default false. */
  fsync?: boolean;
  /**
   * Key the chain with HMAC-SHA256: without the key nobody can rewrite a record and recompute the hashes after it.
   * Verify with the same key. Unkeyed, the chain still shows any edit, deletion, insertion or reordering unless
   * every later hash is recomputed too.
   */
  key?: string | Uint8Array;
}

/** Hashes one record body (the line without its hash tail). */
export function recordHash(body: string, key: string | Uint8Array | undefined): string {
  return (key === undefined ? createHash('sha256') : createHmac('sha256', key)).update(body).digest('hex');
}

// BigInts become strings, so odd metadata never makes a record unwritable.
function replacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

// JSON leaves DEL, the C1 controls (NEL among them) and U+2028/U+2029 raw: readers that split lines on them (Python's
// str.splitlines(), some log shippers) would cut a record in two, and a C1 CSI reaches a terminal that cats the log.
const UNESCAPED = /[\u007f-\u009f\u2028\u2029]/;
const UNESCAPED_ALL = /[\u007f-\u009f\u2028\u2029]/g;
const escapeChar = (char: string) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;

function serialize(fields: Record<string, unknown>): string {
  const text = stringify(fields);
  return UNESCAPED.test(text) ? text.replace(UNESCAPED_ALL, escapeChar) : text;
}

function stringify(fields: Record<string, unknown>): string {
  try {
    // Without a replacer first: it is several times faster, and BigInts are rare.
    return JSON.stringify(fields);
  } catch {
    // a BigInt or a cycle: see below
  }
  try {
    return JSON.stringify(fields, replacer);
  } catch (error) {
    // A cycle in caller metadata: keep everything else, and say what could not be written.
    const note = { unserializable: (error as Error)?.message ?? String(error) };
    const decision = fields['decision'] as Decision | undefined;
    if (decision) return JSON.stringify({ ...fields, decision: { ...decision, action: { ...decision.action, metadata: note } } }, replacer);
    return JSON.stringify({ ...fields, metadata: note }, replacer);
  }
}

const openLogs = new Set<AuditLog>();
let exitHook = false;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockedError(logPath: string, owner: number): AgentPolicyError {
  return new AgentPolicyError(
    'AUDIT_LOG_LOCKED',
    `audit log ${logPath} is being written by process ${owner}${owner === process.pid ? ' (this one: share one AuditLog between sessions)' : ''}; one writer per file keeps the chain whole`,
  );
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

/**
 * Takes the lock file beside a log, or throws AUDIT_LOG_LOCKED. Returns the lock's text (`<pid> <random>`), which
 * {@link releaseLock} checks before removing it.
 *
 * The lock appears whole: it is written under a name of this process's own and hard-linked into place, which fails
 * if a lock exists — so another process never reads a lock that is still empty and takes it for a dead one's. A lock
 * whose process is dead is moved aside under a name of our own (one process wins the move) and checked: if what was
 * moved is not the dead lock that was read (another process took it over meanwhile), it is put back and the log is
 * locked.
 */
function acquireLock(lockPath: string, logPath: string): string {
  const token = `${process.pid} ${randomUUID()}`;
  const staged = `${lockPath}.${randomUUID()}`;
  writeFileSync(staged, token, { flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(staged, lockPath);
        return token;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // A file system without hard links: the lock is created in place (briefly empty).
        if (code !== 'EEXIST') return createLockInPlace(lockPath, logPath, token);
      }
      let held: string;
      try {
        held = readFileSync(lockPath, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const owner = Number.parseInt(held, 10);
      if (Number.isSafeInteger(owner) && owner > 0 && isAlive(owner)) throw lockedError(logPath, owner);
      // Left by a process that died without closing the log.
      const aside = `${lockPath}.${randomUUID()}.stale`;
      try {
        renameSync(lockPath, aside);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const moved = readFileSync(aside, 'utf8');
      if (moved !== held) {
        // Another process replaced the dead lock between the read and the move: its lock goes back.
        try {
          linkSync(aside, lockPath);
        } catch {
          // a third process holds it now
        }
        removeQuietly(aside);
        throw lockedError(logPath, Number.parseInt(moved, 10));
      }
      removeQuietly(aside);
    }
    throw new AgentPolicyError('AUDIT_LOG_LOCKED', `could not lock audit log ${logPath}`);
  } finally {
    removeQuietly(staged);
  }
}

function createLockInPlace(lockPath: string, logPath: string, token: string): string {
  try {
    writeFileSync(lockPath, token, { flag: 'wx' });
    return token;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    throw lockedError(logPath, Number.parseInt(readFileSync(lockPath, 'utf8'), 10));
  }
}

/** Removes the lock file if it is still the one this writer took. */
function releaseLock(lockPath: string, token: string): void {
  try {
    if (readFileSync(lockPath, 'utf8') === token) unlinkSync(lockPath);
  } catch {
    // removed already
  }
}

/** The last complete line of an open file and what follows it (an incomplete line, when a write was cut off). */
function readTail(fd: number, size: number): { last: string | null; completeBytes: number; partial: Buffer } {
  const chunk = 64 * 1024;
  let end = size;
  let tail = Buffer.alloc(0);
  // Read backwards until the buffer holds the last newline and the one before it (or the file's start).
  for (;;) {
    const start = Math.max(0, end - chunk);
    const part = Buffer.alloc(end - start);
    readSync(fd, part, 0, part.length, start);
    tail = Buffer.concat([part, tail]);
    end = start;
    const lastNewline = tail.lastIndexOf(0x0a);
    if (lastNewline !== -1) {
      const before = tail.lastIndexOf(0x0a, lastNewline - 1);
      if (before !== -1 || end === 0) {
        const offset = size - tail.length;
        return {
          last: tail.subarray(before + 1, lastNewline).toString('utf8'),
          completeBytes: offset + lastNewline + 1,
          partial: tail.subarray(lastNewline + 1),
        };
      }
    } else if (end === 0) {
      return { last: null, completeBytes: 0, partial: tail };
    }
    if (end === 0) return { last: null, completeBytes: 0, partial: tail };
  }
}

/** Reads the seq and hash a line carries; throws a typed error when it is not an audit record. */
function parseHead(line: string, path: string): { seq: number; hash: string } {
  const match = HASH_TAIL.exec(line);
  let seq: unknown;
  try {
    seq = (JSON.parse(line) as { seq?: unknown }).seq;
  } catch {
    seq = undefined;
  }
  if (!match || typeof seq !== 'number' || !Number.isSafeInteger(seq)) {
    throw new AgentPolicyError(
      'AUDIT_LOG_INVALID',
      `${path}: the last line is not an audit record, so the chain cannot be continued; run \`agentpolicy audit verify ${path}\` and move the file aside`,
    );
  }
  return { seq, hash: match[1] as string };
}

/**
 * An append-only, hash-chained JSON Lines audit log, and a {@link DecisionSink}: pass it to sessions
 * (`policy.session({ sinks: [log] })`) and every decision and settlement becomes one line, written (one `write`)
 * before the check returns. Each record carries the hash of the one before and its own, so an edited, deleted,
 * inserted or reordered line breaks the chain ({@link verifyAuditLog}). One writer per file: a lock file beside the
 * log (`FILE.lock`) keeps a second process out; a lock left by a dead process is taken over.
 *
 * @example
 * ```ts
 * const log = createAuditLog('audit/agent.jsonl', { maxBytes: 16 * 1024 * 1024 });
 * const session = policy.session({ sinks: [log] });
 * // … later: agentpolicy audit verify audit/agent.jsonl
 * ```
 */
export class AuditLog implements DecisionSink {
  readonly path: string;
  private readonly lockPath: string;
  private readonly lockToken: string;
  private readonly maxBytes: number;
  private readonly fsync: boolean;
  private readonly key: string | Uint8Array | undefined;
  private fd: number;
  private size = 0;
  private seq = 0;
  private prev = GENESIS_HASH;
  private rotation = 0;
  private closed = false;

  constructor(path: string, options: AuditLogOptions = {}) {
    if (typeof path !== 'string' || path === '') throw new AgentPolicyError('INVALID_ARGUMENT', 'audit log path must be a non-empty string');
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!(Number.isFinite(maxBytes) && maxBytes >= 1024)) throw new AgentPolicyError('INVALID_ARGUMENT', 'audit log maxBytes must be a number ≥ 1024');
    this.path = path;
    this.lockPath = `${path}.lock`;
    this.maxBytes = maxBytes;
    this.fsync = options.fsync === true;
    this.key = options.key;
    if (!existsSync(dirname(path))) throw new AgentPolicyError('INVALID_ARGUMENT', `audit log directory ${dirname(path)} does not exist`);
    this.lockToken = acquireLock(this.lockPath, path);
    try {
      this.rotation = lastRotation(path);
      try {
        this.fd = openSync(path, 'a+');
      } catch (error) {
        throw new AgentPolicyError('AUDIT_LOG_WRITE_FAILED', `cannot open audit log ${path}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
      }
      const recovered = this.resume();
      openLogs.add(this);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => {
          for (const log of openLogs) log.close();
        });
      }
      this.append({ kind: 'open', pid: process.pid, alg: this.key === undefined ? 'sha256' : 'hmac-sha256', ...(recovered ? { recovered } : {}) });
    } catch (error) {
      releaseLock(this.lockPath, this.lockToken);
      throw error;
    }
  }

  /** The last record written: its sequence number and hash (an anchor to keep elsewhere). */
  get head(): { readonly seq: number; readonly hash: string } {
    return { seq: this.seq, hash: this.prev };
  }

  decision(decision: Decision, session: PolicySession): void {
    const remaining = session.remaining;
    this.append({
      kind: 'decision',
      sessionId: decision.sessionId,
      policyHash: decision.policyHash,
      budget: remaining === null ? null : (session.policy.normalized.budget?.maxSpendNanos ?? 0) / 1e9,
      spent: session.spent,
      remaining,
      decision,
    });
  }

  settlement(decision: Decision, session: PolicySession): void {
    if (decision.settlement === undefined) return;
    const remaining = session.remaining;
    this.append({
      kind: 'settlement',
      sessionId: decision.sessionId,
      policyHash: decision.policyHash,
      decisionId: decision.id,
      settlement: decision.settlement,
      ...(decision.action.metadata !== undefined ? { metadata: decision.action.metadata } : {}),
      budget: remaining === null ? null : (session.policy.normalized.budget?.maxSpendNanos ?? 0) / 1e9,
      spent: session.spent,
      remaining,
    });
  }

  /** Closes the file and releases the lock. Records after this throw. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    openLogs.delete(this);
    try {
      closeSync(this.fd);
    } finally {
      releaseLock(this.lockPath, this.lockToken);
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // Continues the chain of an existing file; cuts an incomplete last line (left by a crash mid-write) and says so.
  private resume(): { bytes: number; sha256: string } | undefined {
    const size = fstatSync(this.fd).size;
    if (size === 0) return undefined;
    const tail = readTail(this.fd, size);
    let recovered: { bytes: number; sha256: string } | undefined;
    if (tail.partial.length > 0) {
      recovered = { bytes: tail.partial.length, sha256: createHash('sha256').update(tail.partial).digest('hex') };
      ftruncateSync(this.fd, tail.completeBytes);
    }
    this.size = tail.completeBytes;
    if (tail.last !== null) {
      const head = parseHead(tail.last, this.path);
      this.seq = head.seq;
      this.prev = head.hash;
    }
    return recovered;
  }

  private append(fields: Record<string, unknown>): void {
    if (this.closed) throw new AgentPolicyError('AUDIT_LOG_WRITE_FAILED', `audit log ${this.path} is closed`);
    const time = isoNow();
    let line = this.line(fields, time);
    if (this.size > 0 && this.size + line.bytes > this.maxBytes && fields['kind'] !== 'open') {
      this.rotate(time);
      line = this.line(fields, time);
    }
    this.write(line);
  }

  private line(fields: Record<string, unknown>, time: string): { text: string; bytes: number; hash: string } {
    const body = serialize({ v: AUDIT_LOG_VERSION, seq: this.seq + 1, prev: this.prev, time, ...fields });
    const hash = recordHash(body, this.key);
    const text = `${body.slice(0, -1)},"hash":"${hash}"}\n`;
    return { text, bytes: Buffer.byteLength(text), hash };
  }

  // One write per record, so a crash leaves whole lines or one cut-off last line, never two records interleaved.
  private write(line: { text: string; bytes: number; hash: string }): void {
    let written = 0;
    try {
      written = writeSync(this.fd, line.text);
      if (written < line.bytes) {
        const rest = Buffer.from(line.text);
        while (written < line.bytes) written += writeSync(this.fd, rest, written, line.bytes - written);
      }
      if (this.fsync) fdatasyncSync(this.fd);
    } catch (error) {
      // Cut what a failed write left, so the next record starts on a line of its own.
      if (written > 0) {
        try {
          ftruncateSync(this.fd, this.size);
        } catch {
          // the next open finds the incomplete line and cuts it
        }
      }
      throw new AgentPolicyError('AUDIT_LOG_WRITE_FAILED', `audit log ${this.path}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    }
    this.size += line.bytes;
    this.seq++;
    this.prev = line.hash;
  }

  // The file is renamed while still open and the old descriptor closed only once the new file is open: whatever
  // fails, the log keeps one descriptor it owns (a closed number could be reused by another file of the process and
  // then closed, or written to, by the next record). A rotation that fails is tried again by the next record.
  private rotate(time: string): void {
    const rotated = rotatedName(this.path, this.rotation + 1);
    let fd: number;
    try {
      if (existsSync(rotated)) throw new Error(`${rotated} exists already`);
      renameSync(this.path, rotated);
      try {
        fd = openSync(this.path, 'a+');
      } catch (error) {
        renameSync(rotated, this.path);
        throw error;
      }
    } catch (error) {
      throw new AgentPolicyError('AUDIT_LOG_WRITE_FAILED', `audit log ${this.path} cannot rotate: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    }
    const old = this.fd;
    this.fd = fd;
    this.rotation++;
    this.size = 0;
    try {
      closeSync(old);
    } catch {
      // the records in it are written; nothing more to lose
    }
    this.write(this.line({ kind: 'open', pid: process.pid, alg: this.key === undefined ? 'sha256' : 'hmac-sha256', rotatedFrom: basename(rotated) }, time));
  }
}

/** `audit.jsonl` → `audit.3.jsonl`: rotated files keep their number for good; the lowest is the oldest. */
export function rotatedName(path: string, n: number): string {
  const ext = extname(path);
  return join(dirname(path), `${basename(path, ext)}.${n}${ext}`);
}

function lastRotation(path: string): number {
  const dir = dirname(path);
  const ext = extname(path);
  const stem = basename(path, ext);
  let max = 0;
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(`${stem}.`) || !name.endsWith(ext)) continue;
    const middle = name.slice(stem.length + 1, name.length - ext.length);
    if (/^[1-9][0-9]*$/.test(middle)) max = Math.max(max, Number(middle));
  }
  return max;
}

/** Opens (or continues) an audit log at `path`. See {@link AuditLog}. */
export function createAuditLog(path: string, options: AuditLogOptions = {}): AuditLog {
  return new AuditLog(path, options);
}
