/**
 * The benchmark's smoke run: tiny counts, no thresholds — only that every
 * part still runs and reports, so `npm run bench` cannot rot between runs.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../../shared/db/server.ts';

describe('npm run bench -- --quick', () => {
  it('measures the yardsticks, every chapter and every chapter 6 suite, and prints the report', { timeout: 180_000 }, () => {
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
    expect(output).toMatch(/\| 03-postgres-log \| a committed INSERT per step \| [\d,]+ \|/);
    // Write transactions per workflow are counted server-wide, and other test
    // files share this server: only check the column is there, not its value.
    expect(output).toMatch(/\| 04-transactions \|.*\| [\d.]+ \| [\d,]+ \| [\d.]+ \/ ([\d.]+|n\/a) \|$/m);
    // Chapter 6: every suite reports, and the targets table judges each.
    expect(output).toMatch(/\*\*One step: [\d.]+ ms\*\*/);
    expect(output).toMatch(/^\| [\d,]+ \| [\d.,]+ ms \| [\d.,]+ ms \|/m); // sequential
    for (const row of ['1 worker × 1', '1 worker × 8', '1 process × 1', '8 processes × 1']) {
      expect(output).toMatch(new RegExp(`^\\| ${row} \\| [\\d,]+ \\|`, 'm'));
    }
    expect(output).toMatch(/\| worker process \| LISTEN\/NOTIFY .*\| \d+ \| [\d.,]+ ms \|/);
    expect(output).toMatch(/Trials: [\d.,]+ ms/);
    expect(output).toMatch(/\| last third \| \d+ \| [\d.,]+ ms \|/);
    expect(output).toMatch(/\| workflows \| [\d,]+ \| [\d,]+ \|/);
    expect(output).toMatch(/resumed by an idle worker process .*\*\*\d+ round trips\*\*/);
    expect(output).toMatch(/\| takeover ≤ lease \+ 1 s \| .* \| (✓ met|✗ not met) \|/);
    expect(output).toMatch(/## Where the time goes/);
  });

  it('runs a subset with --only, and refuses an unknown suite', { timeout: 60_000 }, () => {
    const env = { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' };
    const ok = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'steps'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    const output = `${ok.stdout}${ok.stderr}`;
    expect(ok.status, output).toBe(0);
    expect(output).toMatch(/\*\*One step: [\d.]+ ms\*\*/);
    expect(output).not.toMatch(/## Throughput|## What durability costs, per chapter/);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'tools/bin/bench.ts', '--quick', '--only', 'nope'], { cwd: projectRoot, env, encoding: 'utf8', timeout: 55_000 });
    expect(bad.status).not.toBe(0);
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/unknown suite nope/);
  });
});
