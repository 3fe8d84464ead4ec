/**
 * Course processes started from tests: a chapter's long-running worker, and a
 * command run to its end the way a learner runs it.
 */
import { spawnSync } from 'node:child_process';
import { startChild, type ChildRun } from '../crash/runner.ts';
import { projectRoot } from '../db/server.ts';
import { noColourEnv } from './output.ts';

/** A `<script> worker` process named `name` (WORKER_NAME), printing plain text; `env` is the rest of its environment. */
export function startWorker(script: string, name: string, env: Record<string, string>, { timeoutMs = 60_000 } = {}): ChildRun {
  return startChild({ script, args: ['worker'], env: { ...env, ...noColourEnv, WORKER_NAME: name }, timeoutMs });
}

/**
 * Run `script` (e.g. 'tools/bin/diff.ts') with tsx to its end, from the project
 * root, with plain output and `env` over this process's environment; what it
 * printed is stdout then stderr.
 */
export function runScript(script: string, args: string[] = [], env: Record<string, string> = {}, { timeoutMs = 120_000 } = {}) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: projectRoot,
    env: { ...process.env, ...noColourEnv, ...env },
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}
