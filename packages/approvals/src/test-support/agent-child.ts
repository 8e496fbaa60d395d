// An agent process (agent-process.mjs) seen from a test: its printed lines, and core's file store it shares.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ApprovalStore } from '@agentpolicy/core';

const AGENT = fileURLToPath(new URL('./agent-process.mjs', import.meta.url));
// Core's test store, shared by processes through a directory (the agent processes load the same file).
const FILE_STORE = new URL('../../../core/src/test-support/file-approval-store.ts', import.meta.url).href;
export const { FileApprovalStore } = (await import(FILE_STORE)) as { FileApprovalStore: new (dir: string) => ApprovalStore };

export interface AgentLine {
  event: 'request' | 'result';
  id?: string;
  expiresAt?: string;
  links?: { approve: string; reject: string };
  ran?: boolean;
  decision?: string;
  by?: string;
  reason?: string;
  rule?: { section: string; outcome?: string };
}

/**
 * An agent process and the lines it prints. Arguments: store dir, secret, tool log, handler URL, input JSON,
 * approval timeout in ms.
 */
export class Agent {
  readonly lines: AgentLine[] = [];
  private readonly waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--no-warnings', AGENT, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      this.lines.push(JSON.parse(line) as AgentLine);
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
  }

  async next(event: AgentLine['event'], timeoutMs = 20_000): Promise<AgentLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((line) => line.event === event);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`the agent printed no ${event} line (got ${JSON.stringify(this.lines)})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill();
  }
}

