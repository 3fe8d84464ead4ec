/**
 * Exercise 8's tests, as processes a workflow can kill: a worker of the
 * implementation under test (IMPL_ROOT) — chapter 8's engine, running the
 * exercise's run.ts and queries.ts — with one workflow, `poison`, whose only
 * step SIGKILLs the process that runs it, as the kernel's out-of-memory
 * killer does to a step that loads too much: no exception, no `finally`,
 * nothing reported back. Only the next claim can count the attempt.
 *
 *   08-retries.ts worker    print `worker <name> running`, then claim and run;
 *                           on SIGTERM stop (finish or release), exit 0
 *
 * It prints `<name>: poison step started: <id>` before the kill, and
 * `<name>: <id> <outcome>` when a run ends (the tests read both).
 *
 * Environment: DATABASE_URL (the test's schema), and
 *   WORKER_NAME   the lease_owner (default worker-<pid>)
 *   LEASE_MS      the worker's lease (default 1000): a dead worker's claim is taken over this long after
 *   POLL_MS       how often it looks for runnable work (default 100)
 *
 * Course-owned: a submission's own copy of this file, if it has one, is never run.
 */
import { CourseError, runMain } from '../../../shared/errors.ts';
import { importImpl } from '../impl.ts';
import { driverPool, exitSoon, fromEnv, runUntil, sigterm } from './worker-process.ts';

type Engine = typeof import('../../../chapters/08-failures-and-time/engine.ts');
type Migrate = typeof import('../../../chapters/08-failures-and-time/migrate.ts');

const DRIVER = '08-retries.ts';

runMain(async () => {
  const terminated = sigterm();
  const [command] = process.argv.slice(2);
  if (command !== 'worker') throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, 'usage: 08-retries.ts worker');
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  // Chapter 8's engine and migrations: the exercise does not change them. Its
  // engine imports the run and the queries under test (importImpl sees to it).
  const { createEngine } = await importImpl<Engine>('08-retries', 'engine.ts');
  const { migrate } = await importImpl<Migrate>('08-retries', 'migrate.ts');
  const name = process.env.WORKER_NAME || `worker-${process.pid}`;

  const db = driverPool();
  try {
    await migrate(db);
    const engine = createEngine({
      db,
      workflows: {
        poison: async (ctx) =>
          ctx.step('load_whole_file', async () => {
            console.log(`${name}: poison step started: ${ctx.workflowId}`);
            process.kill(process.pid, 'SIGKILL'); // no exception, no cleanup: the process is gone
            return new Promise<never>(() => {});
          }),
      },
    });
    const worker = engine.createWorker({
      name,
      concurrency: 2,
      leaseMs: fromEnv('LEASE_MS', 1000, DRIVER),
      pollMs: fromEnv('POLL_MS', 100, DRIVER),
      shutdownGraceMs: 2000,
      onRunEnd: (event) => console.log(`${name}: ${event.workflowId} ${event.outcome}${event.error ? `: ${event.error.message}` : ''}`),
    });
    await runUntil(terminated, worker, name);
  } finally {
    await db.end();
  }
  exitSoon();
});
