// Starting worker processes (test/worker.ts) and waiting for what they report.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ClientKind } from './clients.js';

export type Target = { url: string } | { nodes: string[] };

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** A worker process with its own client of `kind` on `target`; `args` are its mode and parameters. */
export function startWorker(kind: ClientKind, target: Target, args: string[]): ChildProcess {
  return fork(WORKER, [kind, JSON.stringify(target), ...args], { execArgv: ['--no-warnings'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** The worker's next message; rejects if it exits first. */
export const nextMessage = <T>(child: ChildProcess): Promise<T> =>
  new Promise((resolve, reject) => {
    child.once('message', (message) => resolve(message as T));
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
  });
