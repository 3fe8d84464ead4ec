/**
 * Exercise 2's tests: an append-only log with a checksum per record, that
 * survives a torn last line.
 *
 * First in process (a temp folder, steps that count their runs), then under
 * real crashes: the driver process (drivers/02-jsonl-log.ts) runs the order
 * workflow on the implementation under test and is SIGKILLed by a crash
 * point half-way through an append — never an exception pretending to be a
 * crash. Effects are counted in their own file, not in the engine's log.
 *
 * The import names the exercise's starter for the type checker; the grading
 * config swaps it for the implementation under test. Points:
 * exercises/02-jsonl-log/points.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startChild, type Attempt } from '../../../shared/crash/runner.ts';
import { CorruptLogError, openLog, runWorkflow, type DurableLog, type Workflow } from '../../../exercises/02-jsonl-log/engine.ts';
import { childTimeoutMs, crashTest } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/02-jsonl-log.ts';

let dir: string;
let file: string;
const opened: DurableLog[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'exercise-02-'));
  file = path.join(dir, 'workflow-log.jsonl');
  vi.spyOn(console, 'log').mockImplementation(() => {}); // the engine's ▶ ran / ↺ replayed lines
});

afterEach(() => {
  for (const log of opened.splice(0)) {
    try {
      log.close();
    } catch {
      // already closed
    }
  }
  vi.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** openLog, remembered so the test closes it. */
function open(): DurableLog {
  const log = openLog(file);
  opened.push(log);
  return log;
}

/** Two steps that count their runs and return recognisable text. */
function countingWorkflow(runs: { a: number; b: number }): Workflow<null, string> {
  return async (ctx) => {
    const a = await ctx.step('a', async () => `first-result-${++runs.a}`);
    const b = await ctx.step('b', async () => `second-result-${++runs.b}`);
    return `${a}+${b}`;
  };
}

const lines = (text: string) => text.split('\n').filter((line) => line !== '');

describe('the append-only log, in process', () => {
  it('a log reopened from its file replays every finished step instead of running it', async () => {
    const runs = { a: 0, b: 0 };
    expect(await runWorkflow(open(), 'wf-1', countingWorkflow(runs), null)).toBe('first-result-1+second-result-1');
    const reopened = open();
    expect(reopened.statusOf('wf-1')).toBe('completed');
    expect(await runWorkflow(reopened, 'wf-1', countingWorkflow(runs), null)).toBe('first-result-1+second-result-1');
    expect(runs).toEqual({ a: 1, b: 1 });
  });

  it('each record is appended as a line of its own: what was written before is never rewritten', async () => {
    const log = open();
    log.recordStep('wf-1', 'a', 'first-result-1');
    const before = fs.readFileSync(file, 'utf8');
    log.recordStep('wf-1', 'b', 'second-result-1');
    const after = fs.readFileSync(file, 'utf8');
    expect(after.startsWith(before)).toBe(true);
    expect(lines(after)).toHaveLength(lines(before).length + 1);
    expect(after.endsWith('\n')).toBe(true);
  });

  it('a torn last line — a record cut off half-way — is dropped, and the log opens with the records before it', async () => {
    const runs = { a: 0, b: 0 };
    await runWorkflow(open(), 'wf-1', countingWorkflow(runs), null);
    const whole = fs.readFileSync(file, 'utf8');
    // What a crash in the middle of an append leaves: the start of a line, no newline.
    fs.appendFileSync(file, lines(whole)[0]!.slice(0, 20));
    const reopened = open();
    expect(reopened.statusOf('wf-1')).toBe('completed');
    expect(await runWorkflow(reopened, 'wf-1', countingWorkflow(runs), null)).toBe('first-result-1+second-result-1');
    expect(runs).toEqual({ a: 1, b: 1 });
  });

  it('after dropping a torn last line, the file is cut back, so the next record starts on a line of its own', async () => {
    const log = open();
    log.recordStep('wf-1', 'a', 'first-result-1');
    log.close();
    const whole = fs.readFileSync(file, 'utf8');
    fs.appendFileSync(file, whole.slice(0, 15)); // torn
    const reopened = open();
    expect(fs.readFileSync(file, 'utf8')).toBe(whole);
    reopened.recordStep('wf-1', 'b', 'second-result-1');
    reopened.close();
    // A third opening reads both records: nothing was glued to the torn bytes.
    const third = open();
    expect(third.stepOf('wf-1', 'a')).toEqual({ result: 'first-result-1' });
    expect(third.stepOf('wf-1', 'b')).toEqual({ result: 'second-result-1' });
  });

  it('a last line whose checksum does not match is a torn append too: it is dropped', async () => {
    const runs = { a: 0, b: 0 };
    await runWorkflow(open(), 'wf-1', countingWorkflow(runs), null);
    // Damage the last record (the completion) while keeping it valid JSON.
    const text = fs.readFileSync(file, 'utf8');
    const damaged = text.slice(0, text.lastIndexOf('first-result-1')) + 'first-result-X' + text.slice(text.lastIndexOf('first-result-1') + 14);
    expect(damaged).not.toBe(text);
    fs.writeFileSync(file, damaged);
    const reopened = open();
    expect(reopened.statusOf('wf-1')).toBe('running'); // the completion record is gone, the steps are not
    expect(reopened.stepOf('wf-1', 'b')).toEqual({ result: 'second-result-1' });
  });

  it('a damaged record before the last line is a CorruptLogError naming the file and the line, and the file is left as it was', async () => {
    const runs = { a: 0, b: 0 };
    await runWorkflow(open(), 'wf-1', countingWorkflow(runs), null);
    const text = fs.readFileSync(file, 'utf8');
    // The first record, still valid JSON, one letter changed: only a checksum can tell.
    const damaged = text.replace('first-result-1', 'first-result-X');
    fs.writeFileSync(file, damaged);
    let error: unknown;
    try {
      open();
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as Error).message).toContain(file);
    expect((error as Error).message).toMatch(/line 1\b/);
    expect(fs.readFileSync(file, 'utf8')).toBe(damaged);
  });
});

describe('the append-only log, under real crashes', () => {
  /** Start the driver in a real child process (optionally armed with a crash point) and wait for it to end. */
  const run = (args: string[], fault?: string): Promise<Attempt> =>
    startChild({ script: driver, args, fault, env: { FORCE_COLOR: '0' }, timeoutMs: childTimeoutMs() }).done;
  const effects = (folder: string) => (fs.existsSync(path.join(folder, 'effects.log')) ? lines(fs.readFileSync(path.join(folder, 'effects.log'), 'utf8')) : []);
  const report = (a: Attempt) => `exit ${a.exitCode} signal ${a.signal}\n${a.stdout}${a.stderr}`;

  crashTest('killed half-way through appending the completion: the restart drops the torn line and finishes, every effect exactly once', async () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'exercise-02-crash-'));
    try {
      const crashed = await run(['start', folder, 'order-1'], 'during-record:complete');
      expect(crashed.crashedAt, report(crashed)).toBe('during-record:complete@1');
      const log = path.join(folder, 'workflow-log.jsonl');
      expect(fs.readFileSync(log, 'utf8').endsWith('\n')).toBe(false); // the kill really tore the last line

      const restarted = await run(['start', folder, 'order-1']);
      expect(restarted.exitCode, report(restarted)).toBe(0);
      expect(effects(folder).sort()).toEqual(['charge_card order-1', 'reserve_inventory order-1', 'send_email order-1']);

      // The log the restart left behind reads back whole: the torn line is gone, the completion is there.
      expect(fs.readFileSync(log, 'utf8').endsWith('\n')).toBe(true);
      const reread = openLog(log);
      opened.push(reread);
      expect(reread.statusOf('order-1')).toBe('completed');
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });

  crashTest('killed right after a step is recorded: the restart replays it from the file and never runs it again', async () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'exercise-02-crash-'));
    try {
      const crashed = await run(['start', folder, 'order-1'], 'after-record:reserve_inventory');
      expect(crashed.crashedAt, report(crashed)).toBe('after-record:reserve_inventory@1');
      const restarted = await run(['start', folder, 'order-1']);
      expect(restarted.exitCode, report(restarted)).toBe(0);
      expect(restarted.stdout).toMatch(/replayed.*reserve_inventory/);
      expect(effects(folder).sort()).toEqual(['charge_card order-1', 'reserve_inventory order-1', 'send_email order-1']);
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
