/**
 * What explains a benchmark's speed, measured around it: how many write
 * transactions the server committed, how many WAL bytes it wrote, and how
 * much CPU Node and PostgreSQL each used (they share two cores, so a fast
 * engine on a CPU-bound server is a different story from a slow one).
 */
import fs from 'node:fs';
import pg from 'pg';

export interface Snapshot {
  at: bigint;
  /** Transaction ids handed out so far: one per write transaction. */
  nextXid: bigint;
  walLsnBytes: bigint;
  nodeCpuMicros: number;
  /** PostgreSQL's CPU (postmaster + every backend, alive or exited), when we know its pid. */
  pgCpuMs: number | undefined;
}

export interface Delta {
  seconds: number;
  writeTransactions: number;
  walBytes: number;
  nodeCpuSeconds: number;
  pgCpuSeconds: number | undefined;
}

export class Probe {
  private constructor(
    private readonly client: pg.Client,
    private readonly postmasterPid: number | undefined,
  ) {}

  static async open(url: string, postmasterPid?: number): Promise<Probe> {
    const client = new pg.Client(url);
    await client.connect();
    return new Probe(client, postmasterPid);
  }

  async snapshot(): Promise<Snapshot> {
    // pg_snapshot_xmax(pg_current_snapshot()) is the next xid, read without taking one.
    const { rows } = await this.client.query<{ xid: string; lsn: string }>(
      `SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid,
              pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint::text AS lsn`,
    );
    const usage = process.cpuUsage();
    return {
      at: process.hrtime.bigint(),
      nextXid: BigInt(rows[0]!.xid),
      walLsnBytes: BigInt(rows[0]!.lsn),
      nodeCpuMicros: usage.user + usage.system,
      pgCpuMs: this.postmasterPid ? postgresCpuMs(this.postmasterPid) : undefined,
    };
  }

  static delta(a: Snapshot, b: Snapshot): Delta {
    return {
      seconds: Number(b.at - a.at) / 1e9,
      writeTransactions: Number(b.nextXid - a.nextXid),
      walBytes: Number(b.walLsnBytes - a.walLsnBytes),
      nodeCpuSeconds: (b.nodeCpuMicros - a.nodeCpuMicros) / 1e6,
      pgCpuSeconds: a.pgCpuMs !== undefined && b.pgCpuMs !== undefined ? (b.pgCpuMs - a.pgCpuMs) / 1000 : undefined,
    };
  }

  /** A one-off query on the probe's connection (server settings, say). */
  query<R extends pg.QueryResultRow>(text: string): Promise<pg.QueryResult<R>> {
    return this.client.query<R>(text);
  }

  async close(): Promise<void> {
    await this.client.end();
  }
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * CPU of the postmaster and all its backends, in ms. Exited backends are
 * counted in the postmaster's cutime/cstime once reaped; live ones we add.
 * Linux only (reads /proc); undefined elsewhere.
 */
export function postgresCpuMs(postmasterPid: number): number | undefined {
  const read = (pid: number) => {
    try {
      const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may contain spaces) — see proc(5).
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(fields[1]), utime: Number(fields[11]), stime: Number(fields[12]), cutime: Number(fields[13]), cstime: Number(fields[14]) };
    } catch {
      return undefined;
    }
  };
  const master = read(postmasterPid);
  if (!master) return undefined;
  let ticks = master.utime + master.stime + master.cutime + master.cstime;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = read(Number(name));
    if (stat?.ppid === postmasterPid) ticks += stat.utime + stat.stime;
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}
