/**
 * Exercise 9's tests, as processes a test can kill: chapter 9's engine,
 * running the exercise's send (events.ts), run.ts and queries.ts — the
 * implementation under test (IMPL_ROOT) — with one workflow, `paid`: an order
 * that waits for its payment webhook, then ships.
 *
 *   09-lost-wake-up.ts worker                 print `worker <name> running`, then claim and run;
 *                                             on SIGTERM stop, exit 0
 *   09-lost-wake-up.ts send <id> <key> <amount>
 *                                             the webhook handler: engine.send(id, 'payment',
 *                                             { amount }, { key }); print its answer as JSON
 *
 * The worker prints `<name>: <id> <outcome>` when a run ends and
 * `<name>: shipping <id>, paid <amount>` when the ship step runs; the sender
 * prints `sent: {"delivered":…,"woke":…}` (the tests read them). A crash test
 * arms `after-event-sent` (CRASH_AT, through the crash harness) to kill the
 * sender right after its transaction committed, as a webhook handler killed
 * before it could answer the provider — which then delivers it again.
 *
 * Environment: DATABASE_URL (the test's schema), and
 *   WORKER_NAME   the lease_owner (default worker-<pid>)
 *   LEASE_MS      the worker's lease (default 2000)
 *   POLL_MS       how often an idle worker looks for runnable work (default 100)
 *
 * Course-owned: a submission's own copy of this file, if it has one, is never run.
 */
import { crashPoint } from '../../../shared/crash/failpoints.ts';
import { CourseError, runMain } from '../../../shared/errors.ts';
import { importImpl } from '../impl.ts';
import { driverPool, exitSoon, fromEnv, runUntil, sigterm } from './worker-process.ts';

type Engine = typeof import('../../../chapters/09-waiting-for-the-world/engine.ts');
type Migrate = typeof import('../../../chapters/09-waiting-for-the-world/migrate.ts');
type Context = import('../../../chapters/09-waiting-for-the-world/types.ts').Context;

const usage = 'usage: 09-lost-wake-up.ts worker | send <id> <key> <amount>';

const DRIVER = '09-lost-wake-up.ts';

runMain(async () => {
  const terminated = sigterm();
  const [command, ...args] = process.argv.slice(2);
  if (command !== 'worker' && command !== 'send') throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, usage);
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  // Chapter 9's engine and migrations: the exercise does not change them. The
  // engine imports the send, the run and the queries under test (importImpl sees to it).
  const { createEngine } = await importImpl<Engine>('09-lost-wake-up', 'engine.ts');
  const { migrate } = await importImpl<Migrate>('09-lost-wake-up', 'migrate.ts');
  const name = process.env.WORKER_NAME || `worker-${process.pid}`;

  const db = driverPool();
  try {
    await migrate(db);
    const engine = createEngine({
      db,
      crashPoint,
      workflows: {
        paid: async (ctx: Context) => {
          const payment = await ctx.waitForEvent<{ amount: number }>('payment');
          return ctx.step('ship', async () => {
            console.log(`${name}: shipping ${ctx.workflowId}, paid ${payment?.amount}`);
            return `shipped, paid ${payment?.amount}`;
          });
        },
      },
    });
    if (command === 'send') {
      const [id, key, amount] = args;
      if (!id || !key || amount === undefined || !Number.isFinite(Number(amount))) throw new CourseError(`bad arguments: send ${args.join(' ')}`, usage);
      const answer = await engine.send(id, 'payment', { amount: Number(amount) }, { key });
      console.log(`sent: ${JSON.stringify(answer)}`);
      return;
    }
    const worker = engine.createWorker({
      name,
      concurrency: 2,
      leaseMs: fromEnv('LEASE_MS', 2000, DRIVER),
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
