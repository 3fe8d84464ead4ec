import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sleep } from '../testing/waiting.ts';
import { runUntilDone, startChild } from './runner.ts';

const script = 'shared/crash/fixtures/counter.ts';
const tempFile = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'crash-test-')), 'items.txt');
const lines = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n');

describe('crash points', () => {
  it('a crash point kills the process with SIGKILL: no finally block, no exit handler runs', async () => {
    const file = tempFile();
    const attempt = await startChild({ script, args: [file], fault: 'after-item' }).done;
    expect(attempt.signal).toBe('SIGKILL');
    expect(attempt.crashedAt).toBe('after-item@1');
    expect(lines(file)).toEqual(['item 1']);
  });

  it('an unarmed run passes every crash point and runs its finally block and exit handler', async () => {
    const file = tempFile();
    const attempt = await startChild({ script, args: [file, '3'] }).done;
    expect(attempt.exitCode).toBe(0);
    expect(lines(file)).toEqual(['item 1', 'item 2', 'item 3', 'finally', 'exit-handler']);
  });

  it('name@N crashes on the Nth time the point is reached', async () => {
    const file = tempFile();
    const attempt = await startChild({ script, args: [file], fault: 'after-item@3' }).done;
    expect(attempt.crashedAt).toBe('after-item@3');
    expect(lines(file)).toEqual(['item 1', 'item 2', 'item 3']);
  });

  it('random mode with the same seed crashes at the same place', async () => {
    const runWithSeed = async (seed: number) => {
      const file = tempFile();
      const attempt = await startChild({ script, args: [file, '40'], env: { CRASH_RANDOM: `seed=${seed},p=0.2` } }).done;
      return attempt.crashedAt;
    };
    const first = await runWithSeed(11);
    expect(first).toMatch(/^after-item@\d+$/);
    expect(await runWithSeed(11)).toBe(first);
  });
});

describe('pause points', () => {
  it('a pause point freezes the process until SIGCONT, then it carries on', async () => {
    const file = tempFile();
    const child = startChild({ script, args: [file, '3'], env: { PAUSE_AT: 'after-item@2' } });
    await child.waitForLine(/\[pause-point\] after-item@2/);
    // Frozen: nothing past item 2 gets written while it is stopped.
    await sleep(300);
    expect(lines(file)).toEqual(['item 1', 'item 2']);
    child.signal('SIGCONT');
    const attempt = await child.done;
    expect(attempt.exitCode).toBe(0);
    expect(lines(file)).toEqual(['item 1', 'item 2', 'item 3', 'finally', 'exit-handler']);
  });
});

describe('the crash runner', () => {
  it('restarts after each crash until the program finishes, and reports each crash', async () => {
    const file = tempFile();
    const run = await runUntilDone({ script, args: [file], faults: ['after-item@2', 'after-item@1'] });
    expect(run.finished).toBe(true);
    expect(run.crashes).toBe(2);
    expect(run.attempts.map((a) => a.crashedAt)).toEqual(['after-item@2', 'after-item@1', undefined]);
    // Nothing was lost or repeated across the two crashes.
    expect(lines(file).filter((l) => l.startsWith('item '))).toEqual(['item 1', 'item 2', 'item 3', 'item 4', 'item 5']);
  });

  it('can kill the child from outside when it prints a given line', async () => {
    const file = tempFile();
    const run = await runUntilDone({ script, args: [file], faults: [{ killWhenOutput: /appended item 2/ }] });
    expect(run.attempts[0]?.killedFromOutside).toBe(true);
    expect(run.attempts[0]?.signal).toBe('SIGKILL');
    expect(run.finished).toBe(true);
  });

  it('stops and reports when the program fails without crashing', async () => {
    const run = await runUntilDone({ script, args: [] });
    expect(run.finished).toBe(false);
    expect(run.crashes).toBe(0);
    expect(run.error).toContain('usage: counter.ts');
  });
});
