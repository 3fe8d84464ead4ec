/**
 * The benchmark's smoke run: tiny counts, no thresholds — only that every
 * part still runs and reports, so `npm run bench` cannot rot between runs.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../db/server.ts';

describe('npm run bench -- --quick', () => {
  it('measures the yardsticks and every chapter, and prints the report', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'shared/bench/main.ts', '--quick'], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: inject('adminDatabaseUrl'), FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.status, output).toBe(0);
    expect(output).toMatch(/\| INSERT autocommit, 1 client \| [\d,]+ commits\/s/);
    expect(output).toMatch(/\| INSERT autocommit, 8 clients \| [\d,]+ commits\/s/);
    expect(output).toMatch(/\| 03-postgres-log \| a committed INSERT per step \| [\d,]+ \|/);
    // Write transactions per workflow are counted server-wide, and other test
    // files share this server: only check the column is there, not its value.
    expect(output).toMatch(/\| 04-transactions \|.*\| [\d.]+ \| [\d,]+ \| [\d.]+ \/ ([\d.]+|n\/a) \|$/m);
  });
});
