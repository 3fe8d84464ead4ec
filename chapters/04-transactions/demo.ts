/**
 * `npm run chapter 4` — a step's writes and its record in one transaction:
 *
 *   1. killed after the stock update, before its record → the transaction
 *      never committed: stock decremented once ✓ (chapter 3: twice)
 *   2. two processes on the same order: the second one's record hits the
 *      primary key, and its stock update rolls back with it ✓ — but the
 *      email, sent outside the database, can go out twice ✗
 *   3. killed after the charge, before its record → charged twice ✗
 *      (what chapter 5 is about)
 */
import { startChild } from '../../shared/crash/runner.ts';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';

demo(4, async ({ chapter, world, run, ledger }) => {
  say.explain(
    'In chapter 3, reserve_inventory committed its stock UPDATE, and then the engine committed the\n' +
      'step’s record: two commits, and a crash between them decremented the stock twice.\n' +
      'Now the step gets a transaction:  ctx.transaction(\'reserve_inventory\', (tx) => reserveInventory(tx, order))\n' +
      'and the engine writes the step’s record in that same transaction before COMMIT.',
  );

  say.title('1. Crash after the stock update, before its record');
  await run({ orders: ['order-1'], faults: ['after-effect:reserve_inventory'] });
  const once = await ledger(['order-1']);
  say.verdict(once, once ? 'order-1: stock decremented once. The killed transaction never committed; the restart ran the step for real, once.' : 'Not exactly once — that should not happen here.');

  say.title('2. Two processes run the same order');
  say.explain(
    'Process A stops itself right after its stock UPDATE (inside the transaction, not yet committed).\n' +
      'Process B starts on the same order meanwhile. Then A carries on.',
  );
  const a = startChild({ script: chapter.main, args: ['start', 'order-2'], env: { ...world.env, PAUSE_AT: 'after-effect:reserve_inventory' }, onLine: (l) => l.trim() && say.line(`${paint.blue('A │')} ${l}`) });
  await a.waitForLine(/\[pause-point\]/);
  say.line(paint.yellow('A ⏸ paused inside its transaction'));
  const b = startChild({ script: chapter.main, args: ['start', 'order-2'], env: world.env, onLine: (l) => l.trim() && say.line(`${paint.magenta('B │')} ${l}`) });
  await b.waitForLine(/charge_card/);
  await new Promise((resolve) => setTimeout(resolve, 300));
  say.line(paint.yellow('A ▶ continues (B is waiting on A’s row lock)'));
  a.signal('SIGCONT');
  await Promise.all([a.done, b.done]);
  await ledger(['order-2']);
  const effects = (await world.ledger()).byOrder('order-2');
  say.verdict(
    effects.stockDecrements === 1,
    effects.stockDecrements === 1
      ? 'order-2: the stock was taken once — B’s INSERT of the step record hit the primary key, and its UPDATE rolled back with it.'
      : `order-2: the stock was taken ${effects.stockDecrements} times — that should not happen in this chapter.`,
  );
  if (effects.emails > 1) say.verdict(false, 'But both processes sent the email: the database can only protect what is in it.');
  else say.explain('(This time B reached send_email after A had recorded it. Run it again: often both send it — the database can only protect what is in it.)');

  say.title('3. Crash after the charge, before its record');
  await run({ orders: ['order-3'], faults: ['after-effect:charge_card'] });
  const charged = await ledger(['order-3']);
  say.verdict(charged, charged ? 'order-3: charged once — unexpected here.' : 'order-3 was charged twice: the payment provider is an HTTP call, and no transaction of ours can include it.');
  say.explain('\nChapter 5 gives every step a key the provider can recognise: the same key, the same charge.');
});
