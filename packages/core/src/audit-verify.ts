import { closeSync, openSync, readSync } from 'node:fs';
import { GENESIS_HASH, HASH_TAIL, recordHash, type AuditRecord } from './audit-log.js';

/** How the chain breaks at a line. */
export type AuditBreakKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'malformed' | 'key_required';

/** One place where an audit log's chain breaks. */
export interface AuditBreak {
  readonly kind: AuditBreakKind;
  readonly file: string;
  /** 1-based line number in `file`. */
  readonly line: number;
  /** The record's sequence number, when it could be read. */
  readonly seq: number | null;
  readonly message: string;
}

/** What {@link verifyAuditLog} found. */
export interface AuditVerification {
  /** True when every whole line verifies and links to the one before (an incomplete last line is allowed). */
  readonly ok: boolean;
  readonly files: readonly string[];
  /** Whole lines read. */
  readonly records: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  /** The hash of the last record: compare it with an anchor kept elsewhere to detect a cut tail. */
  readonly head: string | null;
  /** Whether the chain was checked with an HMAC key. */
  readonly keyed: boolean;
  /** Where the chain breaks, in file order. */
  readonly breaks: readonly AuditBreak[];
  /** An incomplete last line (a write cut off by a crash): not a break, everything before it verifies. */
  readonly partial: { readonly file: string; readonly line: number; readonly bytes: number } | null;
  /** The first record's `prev` when it is not the genesis hash: the log continues a file not given. */
  readonly continuesFrom: string | null;
}

/** One line of a file: its text, 1-based number, and whether a newline ended it. */
export interface AuditLine {
  readonly text: string;
  readonly number: number;
  readonly complete: boolean;
}

/** Reads a file line by line without holding it whole. */
export function* readLines(path: string): Generator<AuditLine> {
  const fd = openSync(path, 'r');
  const buffer = Buffer.alloc(1 << 20);
  let rest = Buffer.alloc(0);
  let number = 0;
  try {
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null);
      if (read === 0) break;
      const chunk = rest.length > 0 ? Buffer.concat([rest, buffer.subarray(0, read)]) : buffer.subarray(0, read);
      let start = 0;
      let newline: number;
      while ((newline = chunk.indexOf(0x0a, start)) !== -1) {
        yield { text: chunk.toString('utf8', start, newline), number: ++number, complete: true };
        start = newline + 1;
      }
      rest = Buffer.from(chunk.subarray(start));
    }
    if (rest.length > 0) yield { text: rest.toString('utf8'), number: ++number, complete: false };
  } finally {
    closeSync(fd);
  }
}

/** A line read back as a record: `null` when it is not one (with why). */
export function parseRecord(text: string): { record: AuditRecord; body: string } | { record: null; problem: string } {
  const match = HASH_TAIL.exec(text);
  if (!match) return { record: null, problem: 'it does not end with a record hash' };
  let record: AuditRecord;
  try {
    record = JSON.parse(text) as AuditRecord;
  } catch (error) {
    return { record: null, problem: `it is not JSON (${(error as Error).message})` };
  }
  if (typeof record !== 'object' || record === null || !Number.isSafeInteger(record.seq) || record.seq < 1 || typeof record.prev !== 'string' || !/^[0-9a-f]{64}$/.test(record.prev)) {
    return { record: null, problem: 'it has no valid seq and prev' };
  }
  return { record, body: `${text.slice(0, match.index)}}` };
}

interface Entry {
  readonly file: string;
  readonly line: number;
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
  readonly intact: boolean;
  /** The record opens a file: a process opened the log (seq 1 from genesis) or a rotation began it. */
  readonly opensFile: boolean;
}

/**
 * Checks the hash chain of an audit log: each line's own hash, and that it links to the line before. Give rotated
 * files oldest first (`audit.1.jsonl audit.2.jsonl audit.jsonl`) to check the links between them too. Says where
 * the chain breaks and how: a line edited, deleted, inserted or moved. An incomplete last line (a crash mid-write)
 * is reported as `partial`, not as a break: everything before it still verifies.
 *
 * @example
 * ```ts
 * const result = verifyAuditLog('audit/agent.jsonl');
 * if (!result.ok) for (const b of result.breaks) console.error(`${b.file}:${b.line}: ${b.kind}: ${b.message}`);
 * ```
 */
export function verifyAuditLog(files: string | readonly string[], options: { key?: string | Uint8Array } = {}): AuditVerification {
  const paths = typeof files === 'string' ? [files] : [...files];
  const breaks: AuditBreak[] = [];
  const entries: Entry[] = [];
  let partial: AuditVerification['partial'] = null;
  let keyedLog = false;
  let records = 0;

  paths.forEach((file, fileIndex) => {
    for (const line of readLines(file)) {
      if (!line.complete && fileIndex === paths.length - 1) {
        partial = { file, line: line.number, bytes: Buffer.byteLength(line.text) };
        continue;
      }
      records++;
      const parsed = parseRecord(line.text);
      if (parsed.record === null) {
        breaks.push({ kind: 'malformed', file, line: line.number, seq: null, message: `line ${line.number} is not a whole audit record: ${line.complete ? parsed.problem : 'it has no newline (an incomplete write in the middle of the log)'}` });
        entries.push({ file, line: line.number, seq: -1, prev: '', hash: '', intact: false, opensFile: false });
        continue;
      }
      const { record, body } = parsed;
      if (record.kind === 'open' && record.alg === 'hmac-sha256') keyedLog = true;
      const opensFile = record.kind === 'open' && ((record.seq === 1 && record.prev === GENESIS_HASH) || typeof record.rotatedFrom === 'string');
      entries.push({ file, line: line.number, seq: record.seq, prev: record.prev, hash: record.hash, intact: recordHash(body, options.key) === record.hash, opensFile });
    }
  });

  if (keyedLog && options.key === undefined) {
    breaks.unshift({ kind: 'key_required', file: paths[0] ?? '', line: 1, seq: null, message: 'the log is keyed (hmac-sha256): give the key to verify it' });
    return result(paths, records, entries, breaks, partial, false, null);
  }

  const bySeq = new Map<number, number[]>();
  const referenced = new Set<string>();
  entries.forEach((entry, index) => {
    if (entry.seq < 0) return;
    const list = bySeq.get(entry.seq);
    if (list) list.push(index);
    else bySeq.set(entry.seq, [index]);
    if (entry.intact) referenced.add(entry.prev);
  });
  const laterWith = (seq: number, after: number, test: (entry: Entry) => boolean) => (bySeq.get(seq) ?? []).some((j) => j > after && test(entries[j] as Entry));

  let expectSeq: number | null = null;
  let expectPrev = '';
  let resync = false;
  let continuesFrom: string | null = null;
  const accepted = new Map<number, Entry>();
  const skipped = new Map<number, Entry>();
  const accept = (entry: Entry) => {
    expectSeq = entry.seq + 1;
    expectPrev = entry.hash;
    accepted.set(entry.seq, entry);
  };
  const at = (entry: Entry, kind: AuditBreakKind, message: string) => breaks.push({ kind, file: entry.file, line: entry.line, seq: entry.seq, message });

  entries.forEach((entry, index) => {
    if (entry.seq < 0) {
      resync = true;
      return;
    }
    if (!entry.intact) {
      at(entry, 'edited', `line ${entry.line} (seq ${entry.seq}) was changed after it was written: its content does not match its hash`);
      accept(entry);
      return;
    }
    if (expectSeq === null) {
      // A file begins with the record that opened it; anything else means its first lines are gone.
      if (!entry.opensFile) {
        at(entry, 'deleted', `the log starts at line ${entry.line} with seq ${entry.seq}, not with the record that opens a file: the records before it were deleted`);
      } else if (entry.prev !== GENESIS_HASH) continuesFrom = entry.prev;
      accept(entry);
      return;
    }
    if (resync) {
      resync = false;
      accept(entry);
      return;
    }
    // Records seen early (moved up) join the chain once it reaches them.
    for (let next = skipped.get(expectSeq); next !== undefined && next.prev === expectPrev; next = skipped.get(expectSeq)) {
      skipped.delete(next.seq);
      accept(next);
    }
    const seq = expectSeq as number;
    if (entry.seq === seq && entry.prev === expectPrev) {
      // Two records claim this place: the one a later record links to is the original.
      if (!referenced.has(entry.hash) && laterWith(seq, index, (other) => other.intact && other.prev === expectPrev && referenced.has(other.hash))) {
        at(entry, 'inserted', `line ${entry.line} (seq ${entry.seq}) was inserted: another record holds seq ${seq} and the chain continues from that one`);
        return;
      }
      accept(entry);
      return;
    }
    if (entry.seq < seq) {
      const original = accepted.get(entry.seq);
      if (original !== undefined) {
        at(entry, 'inserted', `line ${entry.line} (seq ${entry.seq}) was inserted: seq ${entry.seq} is already at ${original.file}:${original.line}${original.hash === entry.hash ? ' (this is a copy of it)' : ''}`);
      } else {
        at(entry, 'reordered', `line ${entry.line} (seq ${entry.seq}) is out of order: it comes after seq ${seq - 1}`);
      }
      return;
    }
    if (entry.seq > seq) {
      let movedDown = false;
      for (let s = seq; s < entry.seq && !movedDown; s++) movedDown = laterWith(s, index, () => true);
      if (movedDown) {
        at(entry, 'reordered', `line ${entry.line} (seq ${entry.seq}) is out of order: seq ${seq} comes after it`);
        skipped.set(entry.seq, entry);
        return;
      }
      const missing = entry.seq - seq;
      at(entry, 'deleted', `${missing} record${missing === 1 ? '' : 's'} deleted before line ${entry.line}: seq ${seq}${missing > 1 ? `–${entry.seq - 1}` : ''} ${missing === 1 ? 'is' : 'are'} missing`);
      accept(entry);
      return;
    }
    if (laterWith(seq, index, (other) => other.intact && other.prev === expectPrev)) {
      at(entry, 'inserted', `line ${entry.line} (seq ${entry.seq}) was inserted: it does not link to the record before it, and a later record does`);
      return;
    }
    at(entry, 'edited', `line ${entry.line} (seq ${entry.seq}) does not link to the record before it: that record, or this one, was replaced with its hash recomputed`);
    accept(entry);
  });

  return result(paths, records, entries, breaks, partial, options.key !== undefined, continuesFrom);
}

function result(
  files: readonly string[],
  records: number,
  entries: readonly Entry[],
  breaks: readonly AuditBreak[],
  partial: AuditVerification['partial'],
  keyed: boolean,
  continuesFrom: string | null,
): AuditVerification {
  const valid = entries.filter((entry) => entry.seq > 0);
  const last = valid[valid.length - 1];
  return {
    ok: breaks.length === 0,
    files,
    records,
    firstSeq: valid[0]?.seq ?? null,
    lastSeq: last?.seq ?? null,
    head: last?.hash ?? null,
    keyed,
    breaks,
    partial,
    continuesFrom,
  };
}
