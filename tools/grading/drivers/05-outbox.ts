/**
 * Exercise 5's tests, as a process they can kill and restart: the order
 * workflow (the implementation's workflow.ts, with its outbox) and its relay,
 * from the implementation under test (IMPL_ROOT), on chapter 5's engine,
 * against the demo world.
 *
 *   05-outbox.ts start <orderId>   run (or resume) the order, then relay the outbox:
 *                                  `workflow <id> completed: …`, then `relayed <n>`
 *   05-outbox.ts relay             relay the outbox only: `relayed <n>`
 *
 * The relay's send is the world's real mail service, under the key the
 * relay passes, followed by the crash point `after-send:outbox`: the email is
 * sent and the relay has not marked it yet. The crash point is here, in
 * course code, so it fires whatever the implementation does.
 *
 * Reads DATABASE_URL and WORLD_URL (world.env). Course-owned: a submission's
 * own copy of this file, if it has one, is never run.
 */
import pg from 'pg';
import { crashPoint } from '../../../shared/crash/failpoints.ts';
import { CourseError, runMain } from '../../../shared/errors.ts';
import { demoOrder, sendEmail } from '../../../shared/world/services.ts';
import { importImpl } from '../impl.ts';

type Engine = typeof import('../../../chapters/05-idempotency-keys/engine.ts');
type Queries = typeof import('../../../chapters/05-idempotency-keys/queries.ts');
type Outbox = typeof import('../../../exercises/05-outbox/outbox.ts');
type OrderWorkflow = typeof import('../../../exercises/05-outbox/workflow.ts');

runMain(async () => {
  const [command, orderId] = process.argv.slice(2);
  if (!((command === 'start' && orderId) || command === 'relay')) {
    throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, 'usage: 05-outbox.ts start <orderId> | relay');
  }
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  const { createEngine } = await importImpl<Engine>('05-outbox', 'engine.ts');
  const { createSchema } = await importImpl<Queries>('05-outbox', 'queries.ts');
  const { createOutbox, relayOutbox } = await importImpl<Outbox>('05-outbox', 'outbox.ts');
  const { orderWorkflow } = await importImpl<OrderWorkflow>('05-outbox', 'workflow.ts');

  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    await createSchema(db);
    await createOutbox(db);
    if (command === 'start') {
      const engine = createEngine({ db, workflows: { order: orderWorkflow() } });
      const receipt = await engine.start('order', demoOrder(orderId!), { id: orderId! });
      console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
    }
    const relayed = await relayOutbox(db, async (order, options) => {
      const email = await sendEmail(order, options);
      crashPoint('after-send:outbox'); // sent; the outbox row is not marked yet
      return email;
    });
    console.log(`relayed ${relayed}`);
  } finally {
    await db.end();
  }
});
