/**
 * Chapter 9 as a process — what the demo, the tests and the matrix start,
 * kill, freeze and restart:
 *
 *   main.ts start <orderId>… [--amount <cents>]   run a worker here, put these orders in the log (once per
 *                                                 id; the worker takes them at once), until all are finished
 *   main.ts recover             run a worker until nothing is runnable and nothing is held here
 *   main.ts worker              run a worker until SIGTERM or SIGINT
 *   main.ts status <orderId>…   what the log knows: STATUS {"order-1":"completed",…}
 *   main.ts send <workflowId> <event> [--payload <json>] [--key <key>]
 *                               send a workflow an event (the payment provider's webhook, say), then exit
 *   main.ts cancel <workflowId> [--reason <text>]
 *                               cancel a workflow (a customer changed their mind), then exit
 *   main.ts batch <batchId> <count>
 *                               run a worker here, start a batch of <count> orders (<batchId>-1, …), each
 *                               a child workflow of the batch, until the batch is finished
 *
 * Every command migrates the schema first. SIGTERM (or SIGINT) makes a worker
 * stop claiming, finish what it holds (up to SHUTDOWN_GRACE_MS), release the
 * rest, and exit with code 0.
 *
 * Environment: DATABASE_URL (the world's database: the log's tables live
 * beside the inventory table), WORLD_URL (payments, mail), and
 *   LEASE_MS           default 1500. The library's default is 30 s; the course's
 *                      processes use a short lease because every crash test waits
 *                      one out: a restart after a SIGKILL can only take the order
 *                      over once the dead process's lease has run out. 1.5 s
 *                      renews every 750 ms — room for a busy two-core machine's
 *                      stalls — and keeps each takeover under two seconds.
 *   CONCURRENCY        default 4: workflows run at once by this process
 *   POLL_MS            default 200 (library: 1000): how soon expired leases are noticed
 *   SHUTDOWN_GRACE_MS  default 5000
 *   STEP_TIMEOUT_MS    default none: every step's timeoutMs (a hung call fails its attempt)
 *   WORKER_NAME        default worker-<pid>: the lease_owner the demo shows
 *   COOLING_OFF_MS     default 0: the order's durable sleep before its email (0: no sleep at all)
 *   AWAIT_SETTLEMENT   default 0; 1: after the charge, the order waits for the event "settled"
 *   MAX_ATTEMPTS       default 5: claims in a row with no word from their run before an order is failed
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { redact } from '../../shared/db/server.ts';
import { CourseError, DatabaseUnavailableError, runMain, toError } from '../../shared/errors.ts';
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { narrateEngineLog, trace } from '../../shared/narrate.ts';
import { demoOrder, type Order } from '../../shared/world/services.ts';
import { checkConnectionString, createEngine, isConnectionFailure, migrate, WorkflowCancelledError, WorkflowFailedError, type RunEndEvent } from './index.ts';
import { batchWorkflow, orderWorkflow, poisonWorkflow } from './workflow.ts';

const usage = 'usage: main.ts start <orderId>… [--amount <cents>] | recover | worker | status <orderId>… | send <workflowId> <event> [--payload <json>] [--key <key>] | cancel <workflowId> [--reason <text>] | batch <batchId> <count>';

/**
 * Run `action`, and while the database cannot be reached (it is starting, or
 * restarting) try again, backing off from 250 ms to 5 s, for as long as it
 * takes — saying so once. A worker started together with its database, or by
 * a supervisor while the database was down, should wait for it, not
 * crash-loop. What waiting cannot fix (a wrong password, a missing database)
 * fails at once.
 */
async function whenDatabaseAnswers<T>(url: string, action: () => Promise<T>): Promise<T> {
  const since = Date.now();
  for (let tries = 0; ; tries++) {
    try {
      const result = await action();
      if (tries > 0) console.error(`the database answers (after ${((Date.now() - since) / 1000).toFixed(1)} s); going on`);
      return result;
    } catch (thrown) {
      if (!isConnectionFailure(thrown)) {
        throw new DatabaseUnavailableError(
          `DATABASE_URL ${redact(url)}: ${toError(thrown).message}`,
          'Check the user, password and database name in DATABASE_URL: waiting would not change this answer.',
          { cause: thrown },
        );
      }
      // stderr, not the trace: an operator must see this even with COURSE_TRACE=0.
      if (tries === 0) console.error(`the database at ${redact(url)} is not answering (${toError(thrown).message}); waiting for it, retrying with back-off`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** tries)));
    }
  }
}

/** DATABASE_URL as pg would read it, or a clear error: pg itself takes `localhost:5432` for a socket path and fails obscurely. */
function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) {
    throw new CourseError('DATABASE_URL is not set: chapter 8 keeps its log in PostgreSQL.', 'Run it through the demo (npm run chapter 8) or the tests, which set it.');
  }
  checkConnectionString(url, 'DATABASE_URL');
  return url;
}

/** A whole number from the environment, or its default. */
function fromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new CourseError(`${name}=${text}: expected a whole number of milliseconds (or a count)`, usage);
  return value;
}

runMain(async () => {
  // SIGTERM: a deploy, a scale-down. From here on it means: stop claiming, finish or release, exit 0.
  const terminated = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { amount: { type: 'string' }, payload: { type: 'string' }, key: { type: 'string' }, reason: { type: 'string' } } });
  const [command, ...orderIds] = positionals;
  if (command !== 'start' && command !== 'recover' && command !== 'worker' && command !== 'status' && command !== 'send' && command !== 'cancel' && command !== 'batch') {
    throw new CourseError(`unknown command "${command ?? ''}"`, usage);
  }
  const amountCents = values.amount === undefined ? undefined : Number(values.amount);
  if (amountCents !== undefined && (command !== 'start' || !Number.isInteger(amountCents) || amountCents <= 0)) {
    throw new CourseError(`--amount ${values.amount}: only for start, and a positive whole number of cents`, usage);
  }
  const order = (orderId: string): Order => ({ ...demoOrder(orderId), ...(amountCents === undefined ? {} : { amountCents }) });
  const url = databaseUrl();
  const concurrency = fromEnv('CONCURRENCY', 4);
  const stepTimeoutMs = fromEnv('STEP_TIMEOUT_MS', 0) || undefined;
  const db = new pg.Pool({
    connectionString: url,
    // One per workflow run at once, three for the worker (LISTEN; claims and
    // heartbeats; result polling), one for this process's own start() calls.
    max: concurrency + 4,
    // A server that vanished without closing its sockets (a failover, a cut
    // network) must still fail our queries: TCP keepalives find the dead peer,
    // and a connection attempt gives up instead of hanging.
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
  });
  // An idle pooled connection that the server ends must not crash the process
  // before the worker (which listens too) is running: the pool replaces it.
  db.on('error', () => {});
  // Likewise a connection handed to a waiting caller, before the caller's
  // listener is on it (see onNewConnection in worker.ts): from the first one on.
  db.on('connect', (client) => client.on('error', () => {}));
  try {
    await whenDatabaseAnswers(url, () => migrate(db));
    // The engine prints nothing and crashes nowhere on its own: the course gives it its trace lines and its crash points.
    // The order, and a poison workflow (workflow.ts) for the demo and the torture run to start.
    const workflows = { order: orderWorkflow({ coolingOffMs: fromEnv('COOLING_OFF_MS', 0), awaitSettlement: fromEnv('AWAIT_SETTLEMENT', 0) === 1 }), batch: batchWorkflow(), poison: poisonWorkflow() };
    const engine = createEngine({ db, workflows, maxAttempts: fromEnv('MAX_ATTEMPTS', 5) || 5, stepTimeoutMs, log: narrateEngineLog, crashPoint });
    if (command === 'status') {
      console.log(`STATUS ${JSON.stringify(await engine.status(orderIds))}`);
      return;
    }
    if (command === 'send') {
      // A webhook handler would do this: the event, once per key, to whichever process runs the workflow.
      const [workflowId, name] = orderIds;
      if (!workflowId || !name) throw new CourseError('send: which workflow, and which event?', usage);
      let payload: unknown = null;
      try {
        payload = values.payload === undefined ? null : JSON.parse(values.payload);
      } catch (thrown) {
        throw new CourseError(`--payload ${values.payload}: not JSON (${toError(thrown).message})`, usage);
      }
      const sent = await engine.send(workflowId, name, payload, { key: values.key });
      trace.info(`event "${name}" ${sent.delivered ? 'sent to' : 'was already sent (same key) to'} ${workflowId}${sent.woke ? ': it was waiting, and is woken' : ''}`);
      console.log(`SENT ${JSON.stringify(sent)}`);
      return;
    }

    if (command === 'cancel') {
      const [workflowId] = orderIds;
      if (!workflowId) throw new CourseError('cancel: which workflow?', usage);
      const asked = await engine.cancel(workflowId, { reason: values.reason });
      trace.info(`workflow ${workflowId}: cancel ${asked.outcome === 'requested' ? 'requested; its worker stops it' : asked.outcome === 'already' ? 'was already requested' : `not needed: it is ${asked.status}`}`);
      console.log(`CANCEL ${JSON.stringify(asked)}`);
      return;
    }

    const failures: string[] = [];
    const worker = engine.createWorker({
      concurrency,
      leaseMs: fromEnv('LEASE_MS', 1500),
      pollMs: fromEnv('POLL_MS', 200),
      shutdownGraceMs: fromEnv('SHUTDOWN_GRACE_MS', 5000),
      name: process.env.WORKER_NAME || `worker-${process.pid}`,
      onRunEnd: (event: RunEndEvent) => {
        if (event.outcome !== 'completed' && event.outcome !== 'waiting' && event.outcome !== 'lease-lost') failures.push(`${event.workflowId}: ${event.error.message}`);
      },
    });

    if (command === 'start') {
      // The worker first: then start() hands each new order straight to it
      // while it has free slots (inserted already claimed, as a production
      // service would run it), and the rest wait in the log for a free slot
      // or another process's worker. From the moment start() returns, a crash
      // cannot lose the order. The order id is the workflow's idempotency key.
      await worker.start();
      const runs = [];
      for (const orderId of orderIds) {
        const run = await engine.start('order', order(orderId), { id: orderId });
        if (!run.created) trace.info(`workflow ${orderId} is already in the log: this start is the same run, not a new one`);
        runs.push(run);
      }
      const finished = Promise.allSettled(
        runs.map((run) =>
          run.result().then(
            (receipt) => console.log(`workflow ${run.id} completed: ${JSON.stringify(receipt)}`),
            // Cancelled on request is an outcome, not this process's failure.
            (thrown: unknown) => {
              if (!(thrown instanceof WorkflowCancelledError)) throw thrown;
              console.log(`workflow ${run.id} cancelled: ${thrown.reason ?? '(no reason given)'}`);
            },
          ),
        ),
      );
      const signal = await Promise.race([finished.then(() => undefined), terminated]);
      if (signal) trace.info(`${signal}: stopping before all orders finished; the rest stay in the log for other workers`);
      await worker.stop();
      const failed = (await Promise.race([finished, Promise.resolve([])])).filter((r) => r.status === 'rejected');
      if (failed.length > 0) {
        const reasons = failed.map((r) => toError((r as PromiseRejectedResult).reason));
        throw reasons.length === 1 ? reasons[0] : new WorkflowFailedError(`${reasons.length} orders failed:\n  ${reasons.map((e) => e.message).join('\n  ')}`);
      }
    } else if (command === 'batch') {
      const [batchId, countText] = orderIds;
      const count = Number(countText);
      if (!batchId || !Number.isInteger(count) || count < 1 || count > 10_000) throw new CourseError('batch: which batch id, and how many orders (1–10,000)?', usage);
      await worker.start();
      const orders = Array.from({ length: count }, (_, i) => order(`${batchId}-${i + 1}`));
      const run = await engine.start('batch', { orders }, { id: batchId });
      if (!run.created) trace.info(`batch ${batchId} is already in the log: this start is the same run, not a new one`);
      const done = run.result().then((outcome) => console.log(`workflow ${batchId} completed: ${JSON.stringify(outcome)}`));
      const signal = await Promise.race([done.then(() => undefined), terminated]);
      if (signal) trace.info(`${signal}: stopping before the batch finished; it stays in the log for other workers`);
      await worker.stop();
      if (!signal) await done;
    } else if (command === 'recover') {
      const signal = await Promise.race([worker.drain().then(() => undefined), terminated]);
      if (signal) await worker.stop();
      if (failures.length > 0) {
        throw new CourseError(`recover: ${failures.length} workflow(s) did not finish:\n  ${failures.join('\n  ')}`, 'Fix the cause; the workflows stay in the log, and a worker takes them up again.');
      }
      console.log('recover: nothing runnable is left');
    } else {
      await worker.start();
      trace.info(`worker ${worker.name} running (concurrency ${concurrency}); SIGTERM to stop`);
      const signal = await terminated;
      trace.info(`${signal}: worker ${worker.name} stopping`);
      await worker.stop();
      trace.info(`worker ${worker.name} stopped`);
    }
  } finally {
    await db.end();
  }
  // Done, cleanly. Step code abandoned after its lease was lost (an HTTP call
  // still waiting for its answer) must not hold the exit up: none of it can be recorded.
  setTimeout(() => process.exit(0), 1000).unref();
});
