/**
 * The benchmark's smoke run: tiny counts, no thresholds — only that every
 * part still runs and reports, for the three production chapters side by
 * side and durable sleep on the last, so `npm run bench` cannot rot between
 * runs. (That no sleeping workflow is ever held or claimed is checked: a
 * property, not a speed.)
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../../shared/db/server.ts';

const n = String.raw`-?[\d.,]+`; // a figure
const x = String.raw`(?:[\d.,]+×|—)`; // a ratio (— when a figure is 0)
const row = (...cells: string[]) => new RegExp(String.raw`^\| ${cells.join(' \\| ')} \|`, 'm');

describe('npm run bench -- --quick', () => {
  it('measures the yardsticks, every chapter, chapters 6, 7 and 8 side by side and chapter 8 alone, durable sleep included, and prints the report', { timeout: 240_000 }, () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick'], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 230_000,
    });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.status, output).toBe(0);
    expect(output).toMatch(/\| INSERT autocommit, 1 client \| [\d,]+ commits\/s/);
    expect(output).toMatch(/\| INSERT autocommit, 8 clients \| [\d,]+ commits\/s/);
    // The per-chapter table: chapters 1–5 measured there, 6, 7 and 8 from the sequential suite.
    expect(output).toMatch(/\| 03-postgres-log \| a committed INSERT per step \| [\d,]+ \|/);
    // Write transactions per workflow are counted server-wide, and other test
    // files share this server: only check the column is there, not its value.
    expect(output).toMatch(/\| 04-transactions \|.*\| [\d.]+ \| [\d,]+ \| [\d.]+ \/ ([\d.]+|n\/a) \|$/m);
    for (const chapter of ['06-leasing-workers', '07-fast-path', '08-failures-and-time']) expect(output).toMatch(new RegExp(`^\\| ${chapter} \\| .+ \\| [\\d,]+ \\| ${n} ms \\|`, 'm'));

    // What chapter 7 buys: chapters 6 and 7 alone, a column each, then 7/6.
    expect(output).toMatch(/## What chapter 7 buys: chapter 6's figures beside it, same run/);
    expect(output).toMatch(row('sequential 3-step workflows/s', `${n}/s`, `${n}/s`, x));
    // Did chapter 8 keep chapter 7's figures: 7, 8, 8/7, 7 measured again, a verdict; then one sentence that says it.
    expect(output).toMatch(/## Did chapter 8 keep chapter 7's figures\?/);
    expect(output).toMatch(row('one step', `${n} ms`, `${n} ms`, x, `${n} ms`, String.raw`(kept|better by \d+ %|\*\*worse by \d+ %\*\*)`));
    expect(output).toMatch(row('sequential 3-step workflows/s', `${n}/s`, `${n}/s`, x, `${n}/s`, String.raw`(kept|better by \d+ %|\*\*worse by \d+ %\*\*)`));
    expect(output).toMatch(row(String.raw`drained by one worker × 8: workflows/s`, `${n}/s`, `${n}/s`, x, '—', String.raw`(kept|better by \d+ %|\*\*worse by \d+ %\*\*)`));
    expect(output).toMatch(/^\*\*Chapter 8 kept (chapter 7's figures: \d+ of \d+|\d+ of chapter 7's \d+ figures)/m);
    // The three side by side: a column each, then 7/6 and 8/7.
    expect(output).toMatch(new RegExp(String.raw`\*\*One step: ${n} ms in chapter 6 \(${n}× the commit\), ${n} ms in chapter 7 \(${n}× the commit\), ${n} ms in chapter 8 \(${n}× the commit\)\.\*\*`));
    expect(output).toMatch(row('', 'chapter 6', 'chapter 7', 'chapter 8', '7/6', '8/7')); // step overhead and sequential
    expect(output).toMatch(row(String.raw`\*\*workflows/s\*\*`, String.raw`\*\*${n}\*\*`, String.raw`\*\*${n}\*\*`, String.raw`\*\*${n}\*\*`, x, x)); // sequential
    for (const drainedBy of ['1 worker × 1', '1 worker × 8', '2 processes × 1']) expect(output).toMatch(row(drainedBy, n, n, n, x, x, n, n, n));
    for (const chapter of [6, 7, 8]) expect(output).toMatch(new RegExp(`### Throughput of chapter ${chapter} in detail`));
    expect(output).toMatch(row('worker process', 'LISTEN/NOTIFY .*', String.raw`\d+`, ...Array(9).fill(`${n} ms`), x, x));
    expect(output).toMatch(row('same process', '.*', String.raw`\d+`, ...Array(9).fill(`${n} ms`), x, x));
    // Chapter 6, the reference, skips the polling-only run.
    expect(output).toMatch(row('worker process', 'polling only .*', String.raw`\d+`, '— \\| — \\| —', ...Array(6).fill(`${n} ms`), '—', x));
    expect(output).toMatch(row(String.raw`\*\*measured in this run\*\* \(sequential suite\)`, ...Array(4).fill(String.raw`\*\*${n}\*\*`)));

    // Chapter 8 against the targets, chapters 6 and 7 beside it; the rest on chapter 8 alone.
    const met = '(✓ met|✗ not met)';
    expect(output).toMatch(new RegExp(String.raw`\| sequential ≥ 270 workflows\/s \| .* \| ${met} \| .* \| ${met} \| .* \| ${met} \|`));
    expect(output).toMatch(new RegExp(String.raw`\| takeover ≤ lease \+ 1 s \| .* \| ${met} \| — \(chapter 8 only\) \|`));
    expect(output).toMatch(new RegExp(String.raw`\| wake-up lateness p99 < 50 ms beyond the chapter’s polling \| p50 ${n} ms, p99 ${n} ms, max ${n} ms .* \| ${met} \| — \(chapter 8 only\) \|`));
    expect(output).toMatch(new RegExp(String.raw`\| 1,000 sleeping workflows hold no slot and leave the claim as fast .* \| held: 0 while idle, 0 sleepers in ${n} samples; .* \| ${met} \|`));
    expect(output).toMatch(/## Takeover \(chapter 8\)/);
    expect(output).toMatch(/Trials: [\d.,]+ ms/);
    expect(output).toMatch(/\| last third \| \d+ \| [\d.,]+ ms \|/);
    expect(output).toMatch(/\| workflows \| [\d,]+ \| [\d,]+ \|/);
    expect(output).toMatch(/resumed by an idle worker process .*\*\*\d+ round trips\*\*/);

    // Durable sleep: wake-up lateness on the database clock, its own worker and another one; the bare timer beside them.
    expect(output).toMatch(/## Durable sleep: how late a sleeping workflow wakes \(chapter 8\)/);
    expect(output).toMatch(row('yardstick: a bare `setTimeout`.*', String.raw`\d+`, `${n} ms`, `${n} ms`, `${n} ms`, `${n} ms`));
    expect(output).toMatch(row('the worker that put it to sleep .*', String.raw`\d+ of 50–500 ms`, `${n} ms`, String.raw`\*\*${n} ms\*\*`, `${n} ms`, `${n} ms`));
    expect(output).toMatch(row('another idle worker, the first gone .*', String.raw`\d+ of [\d,]+–[\d,]+ ms`, `${n} ms`, String.raw`\*\*${n} ms\*\*`, `${n} ms`, `${n} ms`));
    // 1,000 sleeping (10,000 in the full run): the others as fast, no slot held, no sleeper claimed.
    expect(output).toMatch(/## 1,000 sleeping workflows \(chapter 8\)/);
    expect(output).toMatch(row('a backlog drained by one worker × 8: workflows/s', String.raw`\*\*${n}/s\*\*`, String.raw`\*\*${n}/s\*\*`, x));
    expect(output).toMatch(row(String.raw`dispatch through a claim \(start\(\) → NOTIFY → claim → first step\): p50`, `${n} ms`, `${n} ms`, x));
    expect(output).toMatch(/\*\*No slot held:\*\* an idle worker beside them held at most 0 workflow\(s\) .* in [\d,]+ samples .* 0 was a sleeper, and no claim touched a sleeper's row \(0 with/);
    expect(output).toMatch(/## Where the time goes/);
  });

  it('runs a subset with --only, and refuses an unknown suite', { timeout: 60_000 }, () => {
    const env = { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' };
    const ok = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'steps'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    const output = `${ok.stdout}${ok.stderr}`;
    expect(ok.status, output).toBe(0);
    expect(output).toMatch(/\*\*One step: [\d.]+ ms in chapter 6 .*, [\d.]+ ms in chapter 7 .*, [\d.]+ ms in chapter 8 /);
    expect(output).not.toMatch(/## Throughput|## What durability costs, per chapter|## Takeover|## Durable sleep/);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'nope'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    expect(bad.status).not.toBe(0);
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/unknown suite nope/);
  });
});
