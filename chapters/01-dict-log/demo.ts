/**
 * `npm run chapter 1` — a log in a Map: retries stop repeating steps, crashes do not.
 */
import { demo } from '../../shared/demo.ts';
import { say } from '../../shared/narrate.ts';

demo(1, async ({ world, run, ledger }) => {
  say.explain('Each step now records its result in a Map before the workflow moves on.');
  say.explain('First: the mail service fails once. The workflow is retried in the same process —');
  say.explain('watch charge_card and reserve_inventory come back from the log instead of running again.');

  await world.failNext('mail', 1);
  await run({ orders: ['order-1'] });
  const retryOk = await ledger(['order-1']);
  say.verdict(retryOk, retryOk ? 'order-1: charged once, despite the retry.' : 'order-1 was charged twice.');

  say.explain('\nNow a real crash: order-2 is killed right after its charge was recorded in the Map.');
  await run({ orders: ['order-2'], faults: ['after-record:charge_card'] });
  const crashOk = await ledger(['order-2']);
  say.verdict(crashOk, crashOk ? 'order-2: charged once.' : 'order-2 was charged twice: the Map died with the process.');
  say.explain('\nChapter 2 keeps the log in a file, so it outlives the process.');
});
