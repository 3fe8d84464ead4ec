/**
 * Round trips to PostgreSQL, counted by wrapping `pg.Client.prototype.query`
 * (a pool's query goes through it too). One call is one round trip: the
 * engine sends multi-statement strings (`BEGIN; SET LOCAL …`) as one query.
 */
import fs from 'node:fs';
import pg from 'pg';

let count = 0;
let installed = false;

/** Start counting in this process (idempotent). */
export function countRoundTrips(): void {
  if (installed) return;
  installed = true;
  const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  (pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    count++;
    return original.apply(this, args);
  };
}

/** Round trips so far in this process. */
export function roundTrips(): number {
  return count;
}

/** CPU (user + system) of process `pid` in ms, from /proc; undefined off Linux or when it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/** Peak resident set size of this process so far (VmHWM), in bytes; falls back to the current RSS. */
export function peakRssBytes(): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.memoryUsage.rss();
}
