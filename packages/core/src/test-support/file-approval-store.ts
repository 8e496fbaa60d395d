// A file-backed ApprovalStore for tests: every process that opens the same directory sees the same requests.
// Atomic across processes: an answer and a use are each created once (hard link / exclusive create); a second
// attempt finds the file already there. Erasable TypeScript only, so a child process can run it with Node's type
// stripping.
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApprovalRequest, ApprovalResolution, ApprovalState, ApprovalStatus, ApprovalStore, ResolveResult } from '../approval-store.js';

const ID = /^apr_[A-Za-z0-9_-]{1,64}$/;

export class FileApprovalStore implements ApprovalStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  create(request: ApprovalRequest): void {
    if (!ID.test(request.id)) throw new Error(`bad request id ${request.id}`);
    writeFileSync(this.path(request.id, 'request'), JSON.stringify(request), { flag: 'wx' });
  }

  get(id: string, now: number): ApprovalState | undefined {
    if (!ID.test(id) || !existsSync(this.path(id, 'request'))) return undefined;
    const request = JSON.parse(readFileSync(this.path(id, 'request'), 'utf8')) as ApprovalRequest;
    const resolution = existsSync(this.path(id, 'answer')) ? (JSON.parse(readFileSync(this.path(id, 'answer'), 'utf8')) as ApprovalResolution) : undefined;
    let status: ApprovalStatus = resolution === undefined ? 'pending' : resolution.approved ? 'approved' : 'rejected';
    if (status === 'approved' && existsSync(this.path(id, 'used'))) status = 'used';
    if ((status === 'pending' || status === 'approved') && now > Date.parse(request.expiresAt)) status = 'expired';
    return resolution === undefined ? { ...request, status } : { ...request, status, resolution };
  }

  listPending(sessionId: string | undefined, now: number): ApprovalState[] {
    const out: ApprovalState[] = [];
    for (const file of readdirSync(this.dir)) {
      if (!file.endsWith('.request.json')) continue;
      const state = this.get(file.slice(0, -'.request.json'.length), now);
      if (state && state.status === 'pending' && (sessionId === undefined || state.sessionId === sessionId)) out.push(state);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  resolve(id: string, resolution: ApprovalResolution, now: number): ResolveResult {
    const state = this.get(id, now);
    if (state === undefined) return { ok: false, problem: 'unknown' };
    if (state.status === 'expired') return { ok: false, problem: 'expired', request: state };
    if (state.status !== 'pending') return { ok: false, problem: 'answered', request: state };
    // Written aside, then hard-linked into place: the link fails if another process answered first.
    const temp = join(this.dir, `${id}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    writeFileSync(temp, JSON.stringify(resolution));
    try {
      linkSync(temp, this.path(id, 'answer'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      return { ok: false, problem: 'answered', request: this.get(id, now) as ApprovalState };
    } finally {
      unlinkSync(temp);
    }
    return { ok: true, request: this.get(id, now) as ApprovalState };
  }

  consume(id: string, fingerprint: string, now: number): boolean {
    const state = this.get(id, now);
    if (state === undefined || state.status !== 'approved' || state.fingerprint !== fingerprint) return false;
    try {
      writeFileSync(this.path(id, 'used'), String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  }

  private path(id: string, part: 'request' | 'answer' | 'used'): string {
    return join(this.dir, `${id}.${part}.json`);
  }
}
