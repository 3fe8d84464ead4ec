/**
 * The JSON file log, in process: no world, no child processes — a temp
 * directory and steps that count how often they ran. (The crash tests, with
 * real processes and real kills, are in crash.test.ts.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silenceConsoleLog } from '../../shared/testing/console.ts';
import { rejectionOf } from '../../shared/testing/errors.ts';
import { CorruptLogError, openLog, readLog, runWorkflow, writeLogAtomically, type Workflow } from './engine.ts';

silenceConsoleLog(); // the engine's ▶ ran / ↺ replayed lines

let dir: string;
let file: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ch02-log-'));
  file = path.join(dir, 'workflow-log.json');
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A two-step workflow whose steps count their runs; `failSecond` makes step two throw. */
function countingWorkflow(runs: { a: number; b: number }, failSecond = false): Workflow<string, string> {
  return async (ctx, input) => {
    const a = await ctx.step('a', async () => ({ n: ++runs.a, input }));
    const b = await ctx.step('b', async () => {
      runs.b++;
      if (failSecond) throw new Error('step b failed');
      return `b-${a.n}`;
    });
    return b;
  };
}

describe('the JSON file log', () => {
  it('a log reopened from its file replays every finished step instead of running it', async () => {
    const runs = { a: 0, b: 0 };
    expect(await runWorkflow(await openLog(file), 'wf-1', countingWorkflow(runs), 'x')).toBe('b-1');

    const reopened = await openLog(file); // a new process, as far as the log can tell
    expect(reopened.statusOf('wf-1')).toBe('completed');
    expect(await runWorkflow(reopened, 'wf-1', countingWorkflow(runs), 'x')).toBe('b-1');
    expect(runs).toEqual({ a: 1, b: 1 });
  });

  it('a workflow resumed from the file runs only the steps the file does not have', async () => {
    const runs = { a: 0, b: 0 };
    await expect(runWorkflow(await openLog(file), 'wf-1', countingWorkflow(runs, true), 'x', { attempts: 1 })).rejects.toThrow('step b failed');

    const reopened = await openLog(file);
    expect(reopened.statusOf('wf-1')).toBe('running');
    expect(await runWorkflow(reopened, 'wf-1', countingWorkflow(runs), 'x')).toBe('b-1');
    expect(runs).toEqual({ a: 1, b: 2 });
  });

  it('the file is plain JSON: version, and per workflow its status, step results by name and output', async () => {
    const runs = { a: 0, b: 0 };
    await runWorkflow(await openLog(file), 'wf-1', countingWorkflow(runs), 'x');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({
      version: 1,
      workflows: { 'wf-1': { status: 'completed', steps: { a: { n: 1, input: 'x' }, b: 'b-1' }, output: 'b-1' } },
    });
  });

  it('the atomic writer replaces the log whole and leaves no temp file behind', async () => {
    fs.writeFileSync(file, 'old');
    await writeLogAtomically(file, 'new', 'a');
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(fs.readdirSync(dir)).toEqual(['workflow-log.json']);
  });

  it('no log file at all is the only fresh start: an empty log', async () => {
    expect(await readLog(file)).toEqual({ version: 1, workflows: {} });
    expect((await openLog(file)).statusOf('wf-1')).toBe('missing');
  });

  it.each([
    ['torn half-way', '{\n  "version": 1,\n  "workflows": {\n    "order-1": {\n      "status": "run'],
    ['empty (truncated, never written)', ''],
    ['garbage', '\u0000\u0000\u0000garbage'],
    ['valid JSON of the wrong shape', '[1, 2, 3]'],
    ['a workflow entry without steps', '{"version":1,"workflows":{"order-1":{"status":"completed"}}}'],
  ])('a log that is %s is a CorruptLogError naming the file, and is left untouched', async (_what, text) => {
    fs.writeFileSync(file, text);
    const error = await rejectionOf(openLog(file));
    expect(error).toBeInstanceOf(CorruptLogError);
    const corrupt = error as CorruptLogError;
    expect(corrupt.message).toContain(file);
    expect(corrupt.message).toMatch(/refuse to start with an empty log/);
    expect(corrupt.hint).toMatch(/restore it/);
    expect(fs.readFileSync(file, 'utf8')).toBe(text);
  });
});
