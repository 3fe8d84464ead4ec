/**
 * What the drivers that run a worker of the implementation under test share
 * (06-heartbeats.ts, 08-retries.ts, 09-lost-wake-up.ts): the environment's
 * numbers, a pool that survives the server ending its connections, and the
 * worker's life — `worker <name> running`, until SIGTERM, then stopped.
 *
 * Course-owned, like the drivers: a submission's own copy is never run.
 */
import pg from 'pg';
import { CourseError } from '../../../shared/errors.ts';

/** A whole number from the environment, or its default; `driver` is named in the error. */
export function fromEnv(name: string, fallback: number, driver: string): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new CourseError(`${name}=${text}: expected a whole number`, `See the header of tools/grading/drivers/${driver}.`);
  return value;
}

/** Resolves at the first SIGTERM. Call it first thing: a SIGTERM sent while the driver loads is not lost. */
export function sigterm(): Promise<void> {
  return new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
}

/**
 * A pool on DATABASE_URL. An idle connection PostgreSQL ends (a frozen
 * worker's idle-in-transaction timeout, a test's pg_terminate_backend) must
 * not crash the process before or after the worker listens.
 */
export function driverPool(): pg.Pool {
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 8 });
  db.on('error', () => {});
  db.on('connect', (client) => client.on('error', () => {}));
  return db;
}

/** Start `worker`, say so (the tests wait for the line), run until `terminated`, stop it. */
export async function runUntil(terminated: Promise<void>, worker: { start(): Promise<void>; stop(): Promise<unknown> }, name: string): Promise<void> {
  await worker.start();
  console.log(`worker ${name} running`);
  await terminated;
  await worker.stop();
  console.log(`worker ${name} stopped`);
}

/** Exit soon after main returns: a step abandoned after its lease was lost must not hold the exit up (none of it can be recorded). */
export function exitSoon(): void {
  setTimeout(() => process.exit(0), 1000).unref();
}
