/**
 * The benchmark's smoke run: tiny counts, no thresholds — only that every
 * part still runs and reports, for the four production chapters side by
 * side, and durable sleep and events on the last, so `npm run bench` cannot
 * rot between runs. (That no sleeping or waiting workflow is ever held or
 * claimed, and what a sent event costs in commits, are checked: properties,
 * not speeds.)
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../../shared/db/server.ts';

const n = String.raw`-?[\d.,]+`; // a figure
const x = String.raw`(?:[\d.,]+×|—)`; // a ratio (— when a figure is 0)
const row = (...cells: string[]) => new RegExp(String.raw`^\| ${cells.join(' \\| ')} \|`, 'm');

describe('npm run bench -- --quick', () => {
  it('measures the yardsticks, every chapter, chapters 6 to 9 side by side and chapter 9 alone, durable sleep, events and a fan-out included, and prints the report', { timeout: 300_000 }, () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick'], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 290_000,
    });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.status, output).toBe(0);
    expect(output).toMatch(/\| INSERT autocommit, 1 client \| [\d,]+ commits\/s/);
    expect(output).toMatch(/\| INSERT autocommit, 8 clients \| [\d,]+ commits\/s/);
    // The per-chapter table: chapters 1–5 measured there, 6 to 9 from the sequential suite.
    expect(output).toMatch(/\| 03-postgres-log \| a committed INSERT per step \| [\d,]+ \|/);
    // Write transactions per workflow are counted server-wide, and other test
    // files share this server: only check the column is there, not its value.
    expect(output).toMatch(/\| 04-transactions \|.*\| [\d.]+ \| [\d,]+ \| [\d.]+ \/ ([\d.]+|n\/a) \|$/m);
    for (const chapter of ['06-leasing-workers', '07-fast-path', '08-failures-and-time', '09-waiting-for-the-world']) expect(output).toMatch(new RegExp(`^\\| ${chapter} \\| .+ \\| [\\d,]+ \\| ${n} ms \\|`, 'm'));

    // What chapter 7 buys: chapters 6 and 7 alone, a column each, then 7/6.
    expect(output).toMatch(/## What chapter 7 buys: chapter 6's figures beside it, same run/);
    expect(output).toMatch(row('sequential 3-step workflows/s', `${n}/s`, `${n}/s`, x));
    // Did chapter 9 keep chapter 8's figures: 8, 9, 9/8, 8 measured again, a verdict; then one sentence that says it.
    expect(output).toMatch(/## Did chapter 9 keep chapter 8's figures\?/);
    expect(output).toMatch(/Chapter 9 adds events, cancellation and child workflows to chapter 8's engine — .* — and must not give back the fast path/);
    expect(output).toMatch(row('one step', `${n} ms`, `${n} ms`, x, `${n} ms`, String.raw`(kept|better by \d+ %|\*\*worse by \d+ %\*\*)`));
    expect(output).toMatch(row('sequential 3-step workflows/s', `${n}/s`, `${n}/s`, x, `${n}/s`, String.raw`(kept|better by \d+ %|\*\*worse by \d+ %\*\*)`));
    expect(output).toMatch(row(String.raw`drained by one worker × 8: workflows/s`, `${n}/s`, `${n}/s`, x, '—', String.raw`(kept|better by \d+ %|\*\*worse by \d+ %\*\*)`));
    expect(output).toMatch(/^\*\*Chapter 9 kept (chapter 8's figures: \d+ of \d+|\d+ of chapter 8's \d+ figures)/m);
    // The four side by side: a column each, then 7/6, 8/7 and 9/8.
    expect(output).toMatch(
      new RegExp(String.raw`\*\*One step: ${n} ms in chapter 6 \(${n}× the commit\), ${n} ms in chapter 7 \(${n}× the commit\), ${n} ms in chapter 8 \(${n}× the commit\), ${n} ms in chapter 9 \(${n}× the commit\)\.\*\*`),
    );
    expect(output).toMatch(row('', 'chapter 6', 'chapter 7', 'chapter 8', 'chapter 9', '7/6', '8/7', '9/8')); // step overhead and sequential
    expect(output).toMatch(row(String.raw`\*\*workflows/s\*\*`, ...Array(4).fill(String.raw`\*\*${n}\*\*`), x, x, x)); // sequential
    expect(output).toMatch(row('commits / wf', n, n, n, n, x, x, x)); // server-wide counts (other test files share the server): the shape only
    for (const drainedBy of ['1 worker × 1', '1 worker × 8', '2 processes × 1']) expect(output).toMatch(row(drainedBy, n, n, n, n, x, x, x, n, n, n, n));
    for (const chapter of [6, 7, 8, 9]) expect(output).toMatch(new RegExp(`### Throughput of chapter ${chapter} in detail`));
    expect(output).toMatch(row('worker process', 'LISTEN/NOTIFY .*', String.raw`\d+`, ...Array(12).fill(`${n} ms`), x, x, x, x));
    expect(output).toMatch(row('same process', '.*', String.raw`\d+`, ...Array(12).fill(`${n} ms`), x, x, x, x));
    // Chapters 6 and 7, the references, skip the polling-only run.
    expect(output).toMatch(row('worker process', 'polling only .*', String.raw`\d+`, '— \\| — \\| —', '— \\| — \\| —', ...Array(6).fill(`${n} ms`), '—', '—', x, x));
    expect(output).toMatch(row(String.raw`\*\*measured in this run\*\* \(sequential suite\)`, ...Array(4).fill(String.raw`\*\*${n}\*\*`)));

    // Chapter 9 against the targets, chapters 6, 7 and 8 beside it; the rest on chapter 9 alone.
    const met = '(✓ met|✗ not met)';
    expect(output).toMatch(new RegExp(String.raw`\| sequential ≥ 270 workflows\/s \| .* \| ${met} \| .* \| ${met} \| .* \| ${met} \| .* \| ${met} \|`));
    expect(output).toMatch(new RegExp(String.raw`\| takeover ≤ lease \+ 1 s \| .* \| ${met} \| — \(chapter 9 only\) \|`));
    expect(output).toMatch(new RegExp(String.raw`\| wake-up lateness p99 < 50 ms beyond the chapter’s polling \| p50 ${n} ms, p99 ${n} ms, max ${n} ms .* \| ${met} \| — \(chapter 9 only\) \|`));
    expect(output).toMatch(new RegExp(String.raw`\| 1,000 sleeping workflows hold no slot and leave the claim as fast .* \| held: 0 while idle, 0 sleepers in ${n} samples; .* \| ${met} \|`));
    for (const how of ['sender and worker in one engine: in memory', 'another engine, same process: NOTIFY', 'worker in another process: NOTIFY']) {
      expect(output).toMatch(new RegExp(String.raw`\| event delivery \(${how}\) p50 < 3 ms, p99 < 10 ms \| p50 ${n} ms, p99 ${n} ms, max ${n} ms \(5 events, .*\) \| ${met} \| — \(chapter 9 only\) \|`));
    }
    expect(output).toMatch(new RegExp(String.raw`\| 1,000 workflows waiting for an event hold no slot and leave the claim as fast .* \| held: 0 while idle, 0 waiters in ${n} samples; .* \| ${met} \|`));
    expect(output).toMatch(/## Takeover \(chapter 9\)/);
    expect(output).toMatch(/Trials: [\d.,]+ ms/);
    expect(output).toMatch(/\| last third \| \d+ \| [\d.,]+ ms \|/);
    expect(output).toMatch(/\| workflows \| [\d,]+ \| [\d,]+ \|/);
    expect(output).toMatch(/resumed by an idle worker process .*\*\*\d+ round trips\*\*/);

    // Durable sleep: wake-up lateness on the database clock, its own worker and another one; the bare timer beside them.
    expect(output).toMatch(/## Durable sleep: how late a sleeping workflow wakes \(chapter 9\)/);
    expect(output).toMatch(row('yardstick: a bare `setTimeout`.*', String.raw`\d+`, `${n} ms`, `${n} ms`, `${n} ms`, `${n} ms`));
    expect(output).toMatch(row('the worker that put it to sleep .*', String.raw`\d+ of 50–500 ms`, `${n} ms`, String.raw`\*\*${n} ms\*\*`, `${n} ms`, `${n} ms`));
    expect(output).toMatch(row('another idle worker, the first gone .*', String.raw`\d+ of [\d,]+–[\d,]+ ms`, `${n} ms`, String.raw`\*\*${n} ms\*\*`, `${n} ms`, `${n} ms`));
    // 1,000 sleeping (10,000 in the full run): the others as fast, no slot held, no sleeper claimed.
    expect(output).toMatch(/## 1,000 sleeping workflows \(chapter 9\)/);
    expect(output).toMatch(row('measure', 'nothing asleep', '1,000 asleep', 'asleep / none'));
    expect(output).toMatch(row('a backlog drained by one worker × 8: workflows/s', String.raw`\*\*${n}/s\*\*`, String.raw`\*\*${n}/s\*\*`, x));
    expect(output).toMatch(row(String.raw`dispatch through a claim \(start\(\) → NOTIFY → claim → first step\): p50`, `${n} ms`, `${n} ms`, x));
    expect(output).toMatch(/\*\*No slot held:\*\* an idle worker beside them held at most 0 workflow\(s\) .* in [\d,]+ samples .* 0 was a sleeper, and no claim touched a sleeper's row \(0 with/);

    // Events: send → the step after the wait, three senders beside the idle-commit yardstick (commits are server-wide: the shape only).
    expect(output).toMatch(/## Events: from send\(\) to the step after the wait \(chapter 9\)/);
    expect(output).toMatch(row('yardstick: a bare INSERT autocommit after 15 ms idle .*', '—', 'same process', '5', ...Array(3).fill(`${n} ms`), '—', '—', '1', '1', '1×'));
    const event = (sender: string, wake: string, clock: string, trips: string) =>
      row(sender, wake, clock, '5', ...Array(2).fill(String.raw`\*\*${n} ms\*\*`), ...Array(3).fill(`${n} ms`), n, trips, x);
    expect(output).toMatch(event(String.raw`the engine whose worker parked it \(send\(\) hands it over in memory, claimed\)`, 'in memory', 'same process', n));
    expect(output).toMatch(event(String.raw`another engine in this process, no worker .*`, 'NOTIFY', 'same process', n));
    expect(output).toMatch(event(String.raw`this process, the worker in another .*`, 'NOTIFY', 'database', String.raw`${n} \+ the worker's \(not counted here\)`));
    expect(output).toMatch(/Target: p50 < 3 ms, p99 < 10 ms — \*\*(met in all 3 cases|not met in any case|met in \d of 3)\*\*/);
    // 1,000 waiting for an event (10,000 in the full run): the others as fast, no slot held, no waiter claimed.
    expect(output).toMatch(/## 1,000 workflows waiting for an event \(chapter 9\)/);
    expect(output).toMatch(row('measure', 'nothing waiting', '1,000 waiting', 'waiting / none'));
    expect(output).toMatch(row(String.raw`dispatch through a claim \(start\(\) → NOTIFY → claim → first step\): p50`, `${n} ms`, `${n} ms`, x));
    expect(output).toMatch(/\*\*No slot held:\*\* an idle worker beside them held at most 0 workflow\(s\) .* in [\d,]+ samples .* 0 was a waiting workflow, and no claim touched a waiting workflow's row \(0 with/);
    // Fan-out (1,000 children in the full run): wall time, commits a child, the parent's runs — twice, a property of the engine, not a speed.
    expect(output).toMatch(/## Fan-out: a parent and 20 children \(chapter 9\)/);
    const cpu = `(${n}|n/a)`; // n/a on an external server (DATABASE_URL: PostgreSQL's pid is unknown)
    expect(output).toMatch(row('fan-out 1', String.raw`\*\*${n} s\*\*`, n, n, n, cpu, String.raw`\*\*2\*\*`, 'waiting, completed', String.raw`\d+`));
    expect(output).toMatch(row(String.raw`the same children on their own .*`, `${n} s`, n, n, n, cpu, '—', '—', '—'));
    expect(output).toMatch(row('fan-out / on their own', x, x, x, x, x));
    expect(output).toMatch(new RegExp(String.raw`\| a fan-out of 20 children: the parent runs twice .* \| ran 2 times in each of 1 fan-out; .* \| ✓ met \| — \(chapter 9 only\) \|`));
    expect(output).toMatch(/## Where the time goes/);
  });

  it('runs a subset with --only, and refuses an unknown suite', { timeout: 60_000 }, () => {
    const env = { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' };
    const ok = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'steps'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    const output = `${ok.stdout}${ok.stderr}`;
    expect(ok.status, output).toBe(0);
    expect(output).toMatch(/\*\*One step: [\d.]+ ms in chapter 6 .*, [\d.]+ ms in chapter 7 .*, [\d.]+ ms in chapter 8 .*, [\d.]+ ms in chapter 9 /);
    expect(output).not.toMatch(/## Throughput|## What durability costs, per chapter|## Takeover|## Durable sleep|## Events|waiting for an event \(|## Fan-out/);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'nope'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    expect(bad.status).not.toBe(0);
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/unknown suite nope/);
  });
});
