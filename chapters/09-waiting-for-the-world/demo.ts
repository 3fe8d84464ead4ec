/**
 * `npm run chapter 9` — a workflow that waits for the world:
 *
 *   1. order-1 charges the card, then waits for the payment provider's
 *      webhook saying the charge settled. Its worker is killed while it
 *      waits; the webhook arrives while no worker runs at all (another
 *      process sends it, ending the wait in the log); a new worker replays it
 *      and finishes the order.
 *   2. The provider delivers the webhook again, as providers do: the same
 *      key is the same event, kept once.
 *   3. order-2 is cancelled by its customer during its cooling-off: its
 *      worker hears of it, and the saga's undo puts the stock back — a step
 *      that runs although the workflow is cancelled — before it ends cancelled.
 *   4. A batch of 12 orders, each a child workflow: started in one
 *      transaction, waited for together; the batch holds no worker while its
 *      orders run, and resumes once, when the last has ended.
 */
import { startChild, type ChildRun } from '../../shared/crash/runner.ts';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';

const main = 'chapters/09-waiting-for-the-world/main.ts';

demo(9, async ({ world, ledger }) => {
  const colour = paint.bold('x') === 'x' ? '0' : '1';
  const env = { ...world.env, AWAIT_SETTLEMENT: '1', LEASE_MS: '1500', FORCE_COLOR: colour };
  let count = 0;
  /** A process of this chapter's main.ts, its output shown as it comes. */
  function process(args: string[], extra: Record<string, string> = {}, show: (line: string) => boolean = () => true): ChildRun {
    count++;
    say.process(count, `main.ts ${args.join(' ')}`);
    return startChild({ script: main, args, env: { ...env, ...extra }, timeoutMs: 60_000, onLine: (line) => line.trim() && show(line) && say.line(`${paint.blue('│')} ${line}`) });
  }
  async function ended(child: ChildRun): Promise<void> {
    const done = await child.done;
    if (done.signal) say.line(paint.red(`└ 💥 killed with ${done.signal}`));
    else say.exited(done.exitCode);
  }

  say.title('1. An order waits for a webhook; its worker dies; the webhook comes anyway');
  say.explain(
    'After the charge, order-1 waits for the event "settled": ctx.waitForEvent(\'settled\'). Waiting, it holds no worker\n' +
      'slot and no connection — the workflow is parked in the database. We kill its process while it waits.',
  );
  const a = process(['start', 'order-1'], { WORKER_NAME: 'A' });
  await a.waitForLine(/waits for "settled"/);
  a.signal('SIGKILL');
  await ended(a);

  say.explain('\nNo worker runs now. The payment provider calls our webhook handler, which sends the event:');
  await ended(process(['send', 'order-1', 'settled', '--payload', '{"chargeId":"ch_1"}', '--key', 'evt_psp_001']));
  say.explain(
    'The event is a row: sent before anyone waits for it, it would be kept just the same. The send locked the\n' +
      'workflow\'s row first — as the waiter does — so it cannot slip in between a waiter\'s look and its park.\n' +
      'It found order-1 parked for it, so it ended the wait itself: the event is in order-1\'s log at the wait\'s position.',
  );

  say.explain('\nA new worker starts. The workflow is runnable (the send woke it); the worker claims it, replays the charge\nand the wait — its event already in the log — and goes on.');
  const b = process(['worker'], { WORKER_NAME: 'B' });
  await b.waitForLine(/step #3 send_email recorded/);

  say.title('2. The provider delivers the webhook again');
  await ended(process(['send', 'order-1', 'settled', '--payload', '{"chargeId":"ch_1"}', '--key', 'evt_psp_001']));
  say.explain('Same key, same event: delivered once, taken once — even though order-1 has finished meanwhile.');
  b.signal('SIGTERM');
  await ended(b);

  const once = await ledger(['order-1']);
  say.verdict(once, once ? 'Charged once, emailed once: the wait survived a kill, and the event was not lost while no worker ran.' : 'Not exactly once — that should not happen here.');

  say.title('3. A customer cancels during the cooling-off: the saga puts the stock back');
  say.explain(
    'order-2 has a cooling-off period before its email (a durable sleep). The customer cancels while it sleeps.\n' +
      'The workflow catches the cancellation and runs its undo in ctx.nonCancellable: a step that still starts.',
  );
  const c = process(['start', 'order-2'], { AWAIT_SETTLEMENT: '0', COOLING_OFF_MS: '600000', WORKER_NAME: 'C' });
  await c.waitForLine(/sleeps until/);
  await ended(process(['cancel', 'order-2', '--reason', 'customer changed their mind']));
  await ended(c);
  const world2 = await world.ledger();
  const order2 = world2.byOrder('order-2');
  const undone = order2.stockDecrements === 1 && world2.stockReleases('order-2') === 1 && order2.emails === 0;
  say.verdict(
    undone,
    undone
      ? 'Stock taken once and put back once, no email: cancelled, and compensated. (This payment provider has no refunds; a real saga refunds the charge the same way.)'
      : `Not what the saga promises: ${JSON.stringify({ ...order2, stockReleases: world2.stockReleases('order-2') })}`,
  );

  say.title('4. A batch of 12 orders, each a child workflow');
  say.explain(
    'The batch starts its orders with ctx.startChild — ids batch-1/0 … batch-1/11, derived from its own id and\n' +
      'position, so a replay finds them — and waits for all with Promise.all. Waits made together park it once.\n' +
      'Only the batch\'s own lines are shown:',
  );
  await ended(process(['batch', 'batch-1', '12'], { AWAIT_SETTLEMENT: '0', WORKER_NAME: 'D' }, (line) => /batch-1(?![-/])|batch-1\/0 …/.test(line)));
  const batch = await world.ledger();
  const all = Array.from({ length: 12 }, (_, i) => batch.byOrder(`batch-1-${i + 1}`)).every((e) => e.charges === 1 && e.stockDecrements === 1 && e.emails === 1);
  say.verdict(all, all ? '12 orders, each charged once; the batch parked once and was woken once — by the last order to end.' : 'An order of the batch is not exactly once — that should not happen here.');
});
