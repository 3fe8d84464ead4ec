/**
 * `npm run chapter 9` — a workflow that waits for the world:
 *
 *   1. order-1 charges the card, then waits for the payment provider's
 *      webhook saying the charge settled. Its worker is killed while it
 *      waits; the webhook arrives while no worker runs at all (another
 *      process sends it); a new worker takes the event and finishes the order.
 *   2. The provider delivers the webhook again, as providers do: the same
 *      key is the same event, kept once.
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
  function process(args: string[], extra: Record<string, string> = {}): ChildRun {
    count++;
    say.process(count, `main.ts ${args.join(' ')}`);
    return startChild({ script: main, args, env: { ...env, ...extra }, timeoutMs: 60_000, onLine: (line) => line.trim() && say.line(`${paint.blue('│')} ${line}`) });
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
      'workflow\'s row first — as the waiter does — so it cannot slip in between a waiter\'s look and its park.',
  );

  say.explain('\nA new worker starts. The workflow is runnable (the send woke it); the worker claims it, replays the charge,\nand takes the event at the wait’s position.');
  const b = process(['worker'], { WORKER_NAME: 'B' });
  await b.waitForLine(/step #3 send_email recorded/);

  say.title('2. The provider delivers the webhook again');
  await ended(process(['send', 'order-1', 'settled', '--payload', '{"chargeId":"ch_1"}', '--key', 'evt_psp_001']));
  say.explain('Same key, same event: delivered once, taken once — even though order-1 has finished meanwhile.');
  b.signal('SIGTERM');
  await ended(b);

  const once = await ledger(['order-1']);
  say.verdict(once, once ? 'Charged once, emailed once: the wait survived a kill, and the event was not lost while no worker ran.' : 'Not exactly once — that should not happen here.');
});
