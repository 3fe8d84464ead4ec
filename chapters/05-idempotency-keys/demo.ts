/**
 * `npm run chapter 5` — idempotency keys:
 *
 *   1. killed after the charge, before its record → the restart asks again
 *      with the same key, and the provider answers with the original charge:
 *      charged once ✓ (chapter 4: twice). Then we ask the provider ourselves,
 *      to see its side: `Idempotent-Replayed: true`, and a 400 for the same key
 *      with another amount.
 *   2. the same order id started twice → one run, the same receipt; with
 *      another amount → WorkflowIdConflictError
 *   3. two processes recovering at once both run the workflow: the keys keep
 *      the effects single, but the work is done twice ✗ (what chapter 6 is about)
 */
import { startChild, type Attempt, type ChildRun } from '../../shared/crash/runner.ts';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';
import { demoOrder } from '../../shared/world/services.ts';

/** The charge ids a process printed in its `▶ ran charge_card → {"id":"ch_…"…}` lines. */
function chargeIds(attempt: Attempt): string[] {
  const text = attempt.stdout.replace(/\x1b\[[0-9;]*m/g, '');
  return [...text.matchAll(/▶ ran\s+charge_card\s+→ \{"id":"(\w+)"/g)].map((m) => m[1] ?? '');
}

/** POST a charge to the payment provider by hand, the way chargeCard() does, and show its answer. */
async function askProvider(worldUrl: string, key: string, body: Record<string, unknown>): Promise<void> {
  say.line(`  ${paint.yellow('→')} POST /payments/charges  ${paint.bold(`Idempotency-Key: ${key}`)}  ${paint.dim(JSON.stringify(body))}`);
  const response = await fetch(new URL('/payments/charges', worldUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key },
    body: JSON.stringify(body),
  });
  const answer = (await response.json()) as { id?: string; error?: { type: string; message: string } };
  const replayed = response.headers.get('idempotent-replayed');
  if (answer.error) {
    say.line(`  ${paint.yellow('←')} ${paint.red(`${response.status} ${answer.error.type}`)}: ${answer.error.message}`);
  } else {
    say.line(`  ${paint.yellow('←')} ${paint.green(String(response.status))}  ${replayed ? paint.bold(`Idempotent-Replayed: ${replayed}`) : ''}  id ${paint.bold(answer.id ?? '?')}`);
  }
}

demo(5, async ({ chapter, world, run, ledger }) => {
  say.explain(
    'In chapter 4, the charge was the effect no transaction could hold: the payment provider is\n' +
      'another system, reached over HTTP. A crash after the charge and before its record, and the\n' +
      'restart charged again. Now the engine gives every step a key that is the same on every\n' +
      'replay of that step — the workflow id and the step’s position, order-1:0 for order-1’s charge —\n' +
      'and the workflow hands it to the provider as the Idempotency-Key header:\n' +
      '    ctx.step(\'charge_card\', ({ idempotencyKey }) => chargeCard(order, { idempotencyKey }))\n' +
      'The provider does at most one charge per key. The email does the same, with order-1:2.',
  );

  // ── 1. The crash chapter 4 could not survive ───────────────────────────────
  say.title('1. Crash after the charge, before its record');
  const crashed = await run({ orders: ['order-1'], faults: ['after-effect:charge_card'] });
  const [killedId, replayedId] = crashed.attempts.map((a) => chargeIds(a)[0]);
  say.line(
    `\nProcess #1 was charged ${paint.bold(killedId ?? '?')} and died before recording it.\n` +
      `Process #2 asked again with the same key and got ${paint.bold(replayedId ?? '?')} — ` +
      (killedId === replayedId ? paint.green('the same charge, replayed by the provider.') : paint.red('another charge!')),
  );

  say.line(`\n${paint.bold('The provider’s side')} ${paint.dim('(shared/world/server.ts: it saved the key, the request and its answer in one ledger line)')}`);
  say.explain('We send it the same request ourselves, then the same key with another amount:');
  const order = demoOrder('order-1');
  const request = { orderId: order.orderId, amountCents: order.amountCents, customer: order.customer };
  await askProvider(world.url, 'order-1:0', request);
  await askProvider(world.url, 'order-1:0', { ...request, amountCents: 9900 });
  say.explain('A replayed key returns the saved answer; a reused key with other parameters is a client bug, refused.');
  const once = await ledger(['order-1']);
  say.verdict(once, once ? 'order-1: charged once (chapter 4: twice). One charge, one stock decrement, one email.' : 'Not exactly once — that should not happen here.');

  // ── 2. The workflow id is the workflow's key ────────────────────────────────
  say.title('2. The same order id, started twice');
  say.explain(
    'start(name, input, { id }): the id names one run. Starting it again — a retried request, a\n' +
      'double click — is the same run: its result comes back, nothing runs again.',
  );
  await run({ orders: ['order-2'] });
  await run({ orders: ['order-2'] });
  say.explain('\nThe same id with another input is not the same run, and is refused (compared in SQL, as jsonb):');
  await run({ orders: ['order-2'], args: ['start', 'order-2', '--amount', '9900'] });
  const twice = await ledger(['order-2']);
  say.verdict(twice, twice ? 'order-2: one run — the second start got the first one’s receipt; the third was refused.' : 'Not exactly once — that should not happen here.');

  // ── 3. What keys cannot fix ─────────────────────────────────────────────────
  say.title('3. Two processes recovering at once');
  say.explain(
    'order-3’s first process dies before it does anything: the workflow is in the log, unfinished.\n' +
      'Two processes start up and both run `recover`. A charges, then stalls before recording the\n' +
      'charge (we freeze it: think GC pause, slow disk). B looks at the log, cannot tell a stalled\n' +
      'process from a dead one, and runs order-3 from the top. Then A carries on.',
  );
  await run({ orders: ['order-3'], faults: ['before-step:charge_card'], maxAttempts: 1 });
  const colour = { FORCE_COLOR: paint.bold('x') === 'x' ? '0' : '1' };
  const child = (label: string, env: Record<string, string>): ChildRun =>
    startChild({
      script: chapter.main,
      args: ['recover'],
      env: { ...world.env, ...colour, ...env },
      timeoutMs: 60_000,
      onLine: (line) => line.trim() && !line.startsWith('[pause-point]') && say.line(`${label} ${line}`),
    });
  say.line(`\n${paint.blue('A │')} ${paint.dim('main.ts recover (will stall after the charge)')}`);
  const a = child(paint.blue('A │'), { PAUSE_AT: 'after-effect:charge_card' });
  await a.waitForLine(/\[pause-point\]/);
  say.line(paint.yellow('A ⏸ stalled: charged, not recorded'));
  say.line(`${paint.magenta('B │')} ${paint.dim('main.ts recover')}`);
  const b = await child(paint.magenta('B │'), {}).done;
  say.line(paint.yellow('A ▶ carries on'));
  a.signal('SIGCONT');
  const aDone = await a.done;
  const [chargeA] = chargeIds(aDone);
  const [chargeB] = chargeIds(b);
  const safe = await ledger(['order-3']);
  say.verdict(
    safe && chargeA === chargeB,
    `order-3: every effect once — B’s charge came back as A’s (${chargeA ?? '?'}), and A’s record hit the primary key.`,
  );
  say.verdict(
    false,
    'But both processes ran order-3: charge_card’s code ran twice, two requests for one charge.\n' +
      '  The keys made the doubled work harmless here; they do not stop it. A step without a key, or a\n' +
      '  provider that ignores keys, would have done it twice — and the work itself (the CPU, the\n' +
      '  calls, the locks) is paid for twice.',
  );
  say.explain('\nChapter 6: a process leases a workflow before it runs it, so only one process at a time does.');
});
