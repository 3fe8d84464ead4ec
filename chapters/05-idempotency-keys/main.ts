/**
 * Chapter 5 as a process — what the demo, the tests and the matrix start,
 * kill and restart:
 *
 *   main.ts start <orderId>… [--amount <cents>]   start these orders' workflows, once per id:
 *                                                 an id already in the log is that run (resumed,
 *                                                 or its result); --amount changes the demo order,
 *                                                 to show a reused id with another input refused
 *   main.ts recover             resume every workflow the log says is unfinished
 *   main.ts status <orderId>…   what the log knows: STATUS {"order-1":"completed",…}
 *
 * Reads DATABASE_URL (the world's database: the log's tables live beside the
 * inventory table) and WORLD_URL (payments, mail) from the environment.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CourseError, runMain } from '../../shared/errors.ts';
import { trace } from '../../shared/narrate.ts';
import { demoOrder, type Order } from '../../shared/world/services.ts';
import { createEngine } from './engine.ts';
import { createSchema } from './queries.ts';
import { orderWorkflow } from './workflow.ts';

const usage = 'usage: main.ts start <orderId>… [--amount <cents>] | recover | status <orderId>…';

runMain(async () => {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { amount: { type: 'string' } } });
  const [command, ...orderIds] = positionals;
  if (command !== 'start' && command !== 'recover' && command !== 'status') {
    throw new CourseError(`unknown command "${command ?? ''}"`, usage);
  }
  const amountCents = values.amount === undefined ? undefined : Number(values.amount);
  if (amountCents !== undefined && (command !== 'start' || !Number.isInteger(amountCents) || amountCents <= 0)) {
    throw new CourseError(`--amount ${values.amount}: only for start, and a positive whole number of cents`, usage);
  }
  const order = (orderId: string): Order => ({ ...demoOrder(orderId), ...(amountCents === undefined ? {} : { amountCents }) });
  if (!process.env.DATABASE_URL) {
    throw new CourseError('DATABASE_URL is not set: chapter 5 keeps its log in PostgreSQL.', 'Run it through the demo (npm run chapter 5) or the tests, which set it.');
  }
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    await createSchema(db);
    const engine = createEngine({ db, workflows: { order: orderWorkflow() } });

    if (command === 'start') {
      // Put every order in the log first, then run them one by one: if we
      // crash during the first, the others are already in the log, and
      // `recover` will find them too. The order id is the workflow id — the
      // workflow's idempotency key.
      for (const orderId of orderIds) {
        const created = await engine.create('order', order(orderId), { id: orderId });
        if (!created) trace.info(`workflow ${orderId} is already in the log: this start is the same run, not a new one`);
      }
      for (const orderId of orderIds) {
        const receipt = await engine.start('order', order(orderId), { id: orderId });
        console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
      }
    } else if (command === 'recover') {
      const resumed = await engine.recover();
      console.log(`recovered ${resumed.length} unfinished workflow(s)${resumed.length ? `: ${resumed.join(', ')}` : ''}`);
    } else {
      console.log(`STATUS ${JSON.stringify(await engine.status(orderIds))}`);
    }
  } finally {
    await db.end();
  }
});
