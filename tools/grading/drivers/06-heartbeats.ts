/**
 * Exercise 6's tests, as processes they can freeze and kill: a worker of the
 * implementation under test (IMPL_ROOT), running the order workflow of
 * 06-heartbeats-order.ts against the demo world, until SIGTERM.
 *
 *   06-heartbeats.ts worker    print `worker <name> running`, then claim and run
 *                              orders; on SIGTERM stop (finish or release), exit 0
 *
 * Environment: DATABASE_URL and WORLD_URL (world.env), and
 *   WORKER_NAME   the lease_owner (default worker-<pid>)
 *   LEASE_MS      the worker's lease (default 1000)
 *   POLL_MS       how often it looks for runnable work (default 100)
 *   PACK_MS       how long this process's pack step takes (default 2500)
 *
 * Course-owned: a submission's own copy of this file, if it has one, is never run.
 */
import { CourseError, runMain } from '../../../shared/errors.ts';
import { importImpl } from '../impl.ts';
import { orderWorkflow } from './06-heartbeats-order.ts';
import { driverPool, exitSoon, fromEnv, runUntil, sigterm } from './worker-process.ts';

type Engine = typeof import('../../../chapters/06-leasing-workers/engine.ts');
type Migrate = typeof import('../../../chapters/06-leasing-workers/migrate.ts');

const DRIVER = '06-heartbeats.ts';

runMain(async () => {
  const terminated = sigterm();
  const [command] = process.argv.slice(2);
  if (command !== 'worker') throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, 'usage: 06-heartbeats.ts worker');
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  // Chapter 6's engine and migrations: the exercise does not change them. Its
  // engine imports the worker and the queries under test (importImpl sees to it).
  const { createEngine } = await importImpl<Engine>('06-heartbeats', 'engine.ts');
  const { migrate } = await importImpl<Migrate>('06-heartbeats', 'migrate.ts');
  const name = process.env.WORKER_NAME || `worker-${process.pid}`;

  const db = driverPool();
  try {
    await migrate(db);
    const workflow = orderWorkflow({ packMs: fromEnv('PACK_MS', 2500, DRIVER), say: (line) => console.log(`${name}: ${line}`) });
    const engine = createEngine({ db, workflows: { order: workflow } });
    const worker = engine.createWorker({
      name,
      concurrency: 2,
      leaseMs: fromEnv('LEASE_MS', 1000, DRIVER),
      pollMs: fromEnv('POLL_MS', 100, DRIVER),
      shutdownGraceMs: 2000,
    });
    await runUntil(terminated, worker, name);
  } finally {
    await db.end();
  }
  exitSoon();
});
