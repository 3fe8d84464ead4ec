/**
 * Worker processes (worker.ts) as the benchmark sees them: spawn, wait for
 * their events, send commands, kill.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { projectRoot } from '../../shared/db/server.ts';

export interface WorkerEvent {
  event: string;
  [field: string]: unknown;
}

export interface WorkerStats {
  cpuMs: number | undefined;
  rss: number;
  peakRss: number;
  roundTrips: number;
}

export class WorkerProcess {
  readonly events: WorkerEvent[] = [];
  private waiters: Array<{ match: (e: WorkerEvent) => boolean; resolve: (e: WorkerEvent) => void }> = [];
  private stderr = '';
  private exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let event: WorkerEvent;
      try {
        event = JSON.parse(line) as WorkerEvent;
      } catch {
        return; // not ours (a stray log line)
      }
      this.events.push(event);
      for (const waiter of [...this.waiters]) {
        if (waiter.match(event)) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  static spawn(env: Record<string, string>): WorkerProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'tools', 'bench', 'worker.ts')], {
      cwd: projectRoot,
      env: { ...process.env, COURSE_TRACE: '0', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new WorkerProcess(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The next event (from now, or already received if `past`) that matches, within `timeoutMs`. */
  waitFor(match: (e: WorkerEvent) => boolean, timeoutMs = 30_000, past = true): Promise<WorkerEvent> {
    if (past) {
      const seen = this.events.find(match);
      if (seen) return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${this.pid}: no matching event within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      const waiter = {
        match,
        resolve: (e: WorkerEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      this.waiters.push(waiter);
      void this.exited.then((code) => {
        if (!this.waiters.includes(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`worker ${this.pid} exited (${code}) before the event; stderr: ${this.stderr}`));
      });
    });
  }

  ready(timeoutMs = 60_000): Promise<WorkerEvent> {
    return this.waitFor((e) => e.event === 'ready', timeoutMs);
  }

  send(command: string): void {
    this.child.stdin!.write(`${command}\n`);
  }

  async stats(command: 'stats' | 'reset-peak' = 'stats'): Promise<WorkerStats> {
    const answer = this.waitFor((e) => e.event === 'stats', 10_000, false);
    this.send(command);
    return (await answer) as unknown as WorkerStats;
  }

  kill9(): void {
    this.child.kill('SIGKILL');
  }

  /** Stop cleanly (stop command), or kill -9 after `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send('stop');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}
