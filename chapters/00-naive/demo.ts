/**
 * `npm run chapter 0` — the naive version charges a customer twice.
 */
import { demo } from '../../shared/demo.ts';
import { say } from '../../shared/narrate.ts';

demo(0, async ({ run, ledger }) => {
  say.explain('A workflow is just a function: charge the card, reserve the stock, send the email.');
  say.explain('Nothing is written down. We start order-1 and kill the process (SIGKILL, like a power cut)');
  say.explain('the moment the card is charged. Then we start it again, as a supervisor or a job queue would.');

  await run({ orders: ['order-1'], faults: ['after-effect:charge_card'] });

  const ok = await ledger(['order-1']);
  say.verdict(
    ok,
    ok
      ? 'Exactly once (unexpected for chapter 0!)'
      : 'order-1 was charged twice: the restart could not know the card was already charged.',
  );
  say.explain('\nChapter 1 writes each step’s result into a log before moving on.');
});
