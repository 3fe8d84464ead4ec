/**
 * The yardsticks every engine figure is compared with, measured in the same
 * run on the same server:
 *   - the disk's flush rate (what one durable commit costs at the bottom);
 *   - one client doing single-row INSERT autocommits, one after another;
 *   - eight clients doing the same at once (group commit shares flushes).
 * Durability settings stay at PostgreSQL's defaults (fsync and
 * synchronous_commit on): nothing here is faster than the disk allows.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { msSince, summarize, type Summary } from './stats.ts';

export interface CommitRate {
  clients: number;
  commits: number;
  commitsPerSecond: number;
  latency: Summary;
}

const CREATE = `CREATE TABLE IF NOT EXISTS bench_baseline (id bigserial PRIMARY KEY, v int NOT NULL, at timestamptz NOT NULL DEFAULT now())`;

/** `clients` connections, each doing INSERT-autocommit in a loop, for `count` commits in all. */
export async function insertCommits(url: string, clients: number, count: number): Promise<CommitRate> {
  const pool = [...Array(clients)].map(() => new pg.Client(url));
  await Promise.all(pool.map((c) => c.connect()));
  await pool[0]!.query(CREATE);
  const latencies: number[] = [];
  let remaining = count;
  const started = process.hrtime.bigint();
  await Promise.all(
    pool.map(async (client, i) => {
      while (remaining > 0) {
        remaining--;
        const t = process.hrtime.bigint();
        // A named (prepared) statement: parsed once per connection, like a tuned engine would.
        await client.query({ name: 'bench_insert', text: 'INSERT INTO bench_baseline (v) VALUES ($1)', values: [i] });
        latencies.push(msSince(t));
      }
    }),
  );
  const seconds = msSince(started) / 1000;
  await Promise.all(pool.map((c) => c.end()));
  return { clients, commits: latencies.length, commitsPerSecond: latencies.length / seconds, latency: summarize(latencies) };
}

/** fdatasync() of an 8 KiB write, `count` times, in `dir`: the disk's flush rate. */
export function flushRate(dir: string, count: number): { flushesPerSecond: number; latency: Summary } {
  const file = path.join(dir, `.bench-fsync-${process.pid}`);
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(8192, 1);
  const latencies: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t = process.hrtime.bigint();
      fs.writeSync(fd, block, 0, block.length, 0);
      fs.fdatasyncSync(fd);
      latencies.push(msSince(t));
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  const total = latencies.reduce((a, b) => a + b, 0) / 1000;
  return { flushesPerSecond: count / total, latency: summarize(latencies) };
}
