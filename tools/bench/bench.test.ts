/**
 * The benchmark's smoke run: tiny counts, no thresholds — only that every
 * part still runs and reports, for both production chapters side by side, so
 * `npm run bench` cannot rot between runs.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../../shared/db/server.ts';

const n = String.raw`[\d.,]+`; // a figure
const x = String.raw`(?:[\d.,]+×|—)`; // a ratio (— when a figure is 0)
const row = (...cells: string[]) => new RegExp(String.raw`^\| ${cells.join(' \\| ')} \|`, 'm');

describe('npm run bench -- --quick', () => {
  it('measures the yardsticks, every chapter, chapters 6 and 7 side by side and chapter 7 alone, and prints the report', { timeout: 180_000 }, () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick'], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 170_000,
    });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.status, output).toBe(0);
    expect(output).toMatch(/\| INSERT autocommit, 1 client \| [\d,]+ commits\/s/);
    expect(output).toMatch(/\| INSERT autocommit, 8 clients \| [\d,]+ commits\/s/);
    // The per-chapter table: chapters 1–5 measured there, 6 and 7 from the sequential suite.
    expect(output).toMatch(/\| 03-postgres-log \| a committed INSERT per step \| [\d,]+ \|/);
    // Write transactions per workflow are counted server-wide, and other test
    // files share this server: only check the column is there, not its value.
    expect(output).toMatch(/\| 04-transactions \|.*\| [\d.]+ \| [\d,]+ \| [\d.]+ \/ ([\d.]+|n\/a) \|$/m);
    for (const chapter of ['06-leasing-workers', '07-fast-path']) expect(output).toMatch(new RegExp(`^\\| ${chapter} \\| .+ \\| [\\d,]+ \\| ${n} ms \\|`, 'm'));

    // Chapters 6 and 7 side by side: a column each, then 7/6.
    expect(output).toMatch(/## What chapter 7 buys: chapter 6's figures beside it, same run/);
    expect(output).toMatch(row('sequential 3-step workflows/s', `${n}/s`, `${n}/s`, x));
    expect(output).toMatch(new RegExp(String.raw`\*\*One step: ${n} ms in chapter 6 \(${n}× the commit\), ${n} ms in chapter 7 \(${n}× the commit\)\.\*\*`));
    expect(output).toMatch(row('', 'chapter 6', 'chapter 7', '7/6')); // step overhead and sequential
    expect(output).toMatch(row(String.raw`\*\*workflows/s\*\*`, String.raw`\*\*${n}\*\*`, String.raw`\*\*${n}\*\*`, x)); // sequential
    for (const drainedBy of ['1 worker × 1', '1 worker × 8', '2 processes × 1']) expect(output).toMatch(row(drainedBy, n, n, x, n, n));
    expect(output).toMatch(/### Throughput of chapter 6 in detail/);
    expect(output).toMatch(/### Throughput of chapter 7 in detail/);
    expect(output).toMatch(row('worker process', 'LISTEN/NOTIFY .*', String.raw`\d+`, ...Array(6).fill(`${n} ms`), x));
    expect(output).toMatch(row('same process', '.*', String.raw`\d+`, ...Array(6).fill(`${n} ms`), x));
    expect(output).toMatch(row(String.raw`\*\*measured in this run\*\* \(sequential suite\)`, ...Array(4).fill(String.raw`\*\*${n}\*\*`)));

    // Chapter 7 against the targets, chapter 6 beside it; the rest on chapter 7 alone.
    expect(output).toMatch(/\| sequential ≥ 270 workflows\/s \| .* \| (✓ met|✗ not met) \| .* \| (✓ met|✗ not met) \|/);
    expect(output).toMatch(/\| takeover ≤ lease \+ 1 s \| .* \| (✓ met|✗ not met) \| — \(chapter 7 only\) \|/);
    expect(output).toMatch(/## Takeover \(chapter 7\)/);
    expect(output).toMatch(/Trials: [\d.,]+ ms/);
    expect(output).toMatch(/\| last third \| \d+ \| [\d.,]+ ms \|/);
    expect(output).toMatch(/\| workflows \| [\d,]+ \| [\d,]+ \|/);
    expect(output).toMatch(/resumed by an idle worker process .*\*\*\d+ round trips\*\*/);
    expect(output).toMatch(/## Where the time goes/);
  });

  it('runs a subset with --only, and refuses an unknown suite', { timeout: 60_000 }, () => {
    const env = { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' };
    const ok = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'steps'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    const output = `${ok.stdout}${ok.stderr}`;
    expect(ok.status, output).toBe(0);
    expect(output).toMatch(/\*\*One step: [\d.]+ ms in chapter 6 .*, [\d.]+ ms in chapter 7 /);
    expect(output).not.toMatch(/## Throughput|## What durability costs, per chapter|## Takeover/);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'nope'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    expect(bad.status).not.toBe(0);
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/unknown suite nope/);
  });
});
