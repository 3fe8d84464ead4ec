/**
 * The crash runner: start a workflow in a child process, let it die (at an
 * armed crash point, or killed from outside), start it again on the same
 * log/database, and repeat until it finishes — then say what happened.
 *
 *   const run = await runUntilDone({
 *     script: 'chapters/03-postgres-log/main.ts', args: ['start', 'order-1'],
 *     env: world.env,
 *     faults: ['after-effect:charge_card'],      // attempt 1 dies there; attempt 2 runs clean
 *   });
 *   run.finished        // true: some attempt exited 0
 *   run.crashes         // 1
 *   run.attempts[0].crashedAt   // 'after-effect:charge_card@1'
 *
 * Every child is a real `node` process; every crash is a real SIGKILL.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRASH_MARKER } from './failpoints.ts';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** What kills one attempt: an armed crash point, or a SIGKILL from outside. */
export type Fault =
  | string // a crash point name, e.g. 'after-record:charge_card' or 'after-record:charge_card@2'
  | { killAfterMs: number; signal?: NodeJS.Signals }
  | { killWhenOutput: RegExp; signal?: NodeJS.Signals };

export interface Attempt {
  number: number;
  args: string[];
  fault?: Fault;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The crash point that killed it (`name@hit`), if one did. */
  crashedAt?: string;
  /** True when the harness killed it from outside (a timed or output-triggered kill, or a timeout). */
  killedFromOutside: boolean;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunResult {
  attempts: Attempt[];
  /** Some attempt exited with code 0. */
  finished: boolean;
  /** Attempts that died by SIGKILL (crash points and outside kills). */
  crashes: number;
  /** The last attempt's error output when it failed without crashing (e.g. "log is corrupt"). */
  error?: string;
}

export interface ChildOptions {
  script: string;
  args?: string[];
  env?: Record<string, string>;
  fault?: Fault;
  timeoutMs?: number;
  /** Live output, one line at a time (demos narrate it). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface RunOptions extends Omit<ChildOptions, 'fault'> {
  /** Arguments for the restarts (default: the same as the first attempt). */
  restartArgs?: string[];
  /** faults[i] is armed for attempt i+1; attempts after the list run clean. */
  faults?: Fault[];
  /** Give up after this many attempts (default: faults + 3). */
  maxAttempts?: number;
  onAttempt?: (attempt: Attempt) => void;
  onStart?: (attemptNumber: number, fault: Fault | undefined) => void;
}

/** A running child, for tests that need to act while it runs (SIGSTOP, kill at a moment). */
export interface ChildRun {
  pid: number;
  signal(signal: NodeJS.Signals): void;
  /** Resolves with the first line matching `pattern` (rejects if the child exits first). */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  done: Promise<Attempt>;
}

/** Start `script` with tsx in a child process. */
export function startChild(options: ChildOptions, number = 1): ChildRun {
  const args = options.args ?? [];
  // A fault is armed for one attempt only: never inherit one from our own environment.
  const inherited = stringEnv(process.env);
  delete inherited.CRASH_AT;
  delete inherited.CRASH_RANDOM;
  delete inherited.PAUSE_AT;
  const env: Record<string, string> = { ...inherited, FORCE_COLOR: process.env.FORCE_COLOR ?? '0', ...options.env };
  const fault = options.fault;
  if (typeof fault === 'string') env.CRASH_AT = fault;

  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(projectRoot, options.script), ...args], {
    cwd: projectRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let killedFromOutside = false;
  let timedOut = false;
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];

  const kill = (signal: NodeJS.Signals = 'SIGKILL') => {
    killedFromOutside = true;
    child.kill(signal);
  };

  const onLines = (stream: 'stdout' | 'stderr') => {
    let partial = '';
    return (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (stream === 'stdout') stdout += text;
      else stderr += text;
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        options.onLine?.(line, stream);
        for (const waiter of [...waiters]) {
          if (waiter.pattern.test(line)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
        if (fault && typeof fault === 'object' && 'killWhenOutput' in fault && fault.killWhenOutput.test(line)) {
          kill(fault.signal);
        }
      }
    };
  };
  child.stdout.on('data', onLines('stdout'));
  child.stderr.on('data', onLines('stderr'));

  const timers: NodeJS.Timeout[] = [];
  if (fault && typeof fault === 'object' && 'killAfterMs' in fault) {
    timers.push(setTimeout(() => kill(fault.signal), fault.killAfterMs));
  }
  if (options.timeoutMs) {
    timers.push(
      setTimeout(() => {
        timedOut = true;
        kill('SIGKILL');
      }, options.timeoutMs),
    );
  }

  const done = new Promise<Attempt>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode, signal) => {
      for (const timer of timers) clearTimeout(timer);
      const marker = stderr.split('\n').find((line) => line.startsWith(CRASH_MARKER));
      resolve({
        number,
        args,
        fault,
        exitCode,
        signal,
        crashedAt: marker ? marker.slice(CRASH_MARKER.length).trim() : undefined,
        killedFromOutside,
        timedOut,
        stdout,
        stderr,
        ms: Date.now() - started,
      });
    });
  });

  return {
    pid: child.pid ?? 0,
    signal: (signal) => {
      if (signal === 'SIGKILL') killedFromOutside = true;
      child.kill(signal);
    },
    waitForLine(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
        done.then(() => {
          clearTimeout(timer);
          reject(new Error(`the child exited before printing a line matching ${pattern}`));
        }, reject);
      });
    },
    done,
  };
}

/** Run, crash, restart, … until an attempt exits 0, one fails cleanly, or we run out of attempts. */
export async function runUntilDone(options: RunOptions): Promise<RunResult> {
  const faults = options.faults ?? [];
  const maxAttempts = options.maxAttempts ?? faults.length + 3;
  const attempts: Attempt[] = [];
  for (let number = 1; number <= maxAttempts; number++) {
    const fault = faults[number - 1];
    const args = number === 1 ? (options.args ?? []) : (options.restartArgs ?? options.args ?? []);
    options.onStart?.(number, fault);
    const attempt = await startChild({ ...options, args, fault }, number).done;
    attempts.push(attempt);
    options.onAttempt?.(attempt);
    if (attempt.exitCode === 0) break;
    // Died by a signal (a crash): restart. Exited with an error: that is the
    // engine telling us something (a corrupt log, say) — stop and report it.
    if (attempt.signal === null) break;
  }
  const last = attempts[attempts.length - 1];
  return {
    attempts,
    finished: last?.exitCode === 0,
    crashes: attempts.filter((a) => a.signal === 'SIGKILL').length,
    error: last && last.exitCode !== 0 && last.signal === null ? last.stderr.trim() : undefined,
  };
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out[key] = value;
  return out;
}
