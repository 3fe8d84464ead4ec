/**
 * Exercise 2's tests, as a process they can kill and restart: the order
 * workflow on the implementation under test (IMPL_ROOT), with its three
 * effects written to a file of their own — so a test can count how many
 * times each really happened, across crashes.
 *
 *   02-jsonl-log.ts start <dir> <orderId>    run (or resume) the order; log: <dir>/workflow-log.jsonl
 *   02-jsonl-log.ts status <dir> <orderId>   STATUS {"<orderId>":"completed"|"running"|"missing"}
 *
 * Course-owned: a submission's own copy of this file, if it has one, is never run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CourseError, runMain } from '../../../shared/errors.ts';
import { importImpl } from '../impl.ts';

type Engine = typeof import('../../../exercises/02-jsonl-log/engine.ts');

/** An effect that happened: one fsynced line per call, like a payment provider's ledger. */
function effect(dir: string, what: string, orderId: string): { id: string } {
  const file = path.join(dir, 'effects.log');
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, `${what} ${orderId}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const count = fs.readFileSync(file, 'utf8').split('\n').filter((line) => line === `${what} ${orderId}`).length;
  return { id: `${what}_${count}` };
}

runMain(async () => {
  const [command, dirArgument, orderId] = process.argv.slice(2);
  if ((command !== 'start' && command !== 'status') || !dirArgument || !orderId) {
    throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, 'usage: 02-jsonl-log.ts start|status <dir> <orderId>');
  }
  const dir = path.resolve(dirArgument); // before the chdir below
  const logFile = path.join(dir, 'workflow-log.jsonl');
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  const { openLog, runWorkflow } = await importImpl<Engine>('02-jsonl-log', 'engine.ts');

  const log = openLog(logFile);
  try {
    if (command === 'status') {
      console.log(`STATUS ${JSON.stringify({ [orderId]: log.statusOf(orderId) })}`);
      return;
    }
    const receipt = await runWorkflow(log, orderId, async (ctx) => {
      const charge = await ctx.step('charge_card', async () => effect(dir, 'charge_card', orderId));
      const stock = await ctx.step('reserve_inventory', async () => effect(dir, 'reserve_inventory', orderId));
      const email = await ctx.step('send_email', async () => effect(dir, 'send_email', orderId));
      return { chargeId: charge.id, reservationId: stock.id, emailId: email.id };
    }, null);
    console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
  } finally {
    log.close();
  }
});
