/**
 * `npm run chapter 8` — failures and time, each shown with a real process:
 *
 *   1. The payment provider is down for its next three calls. Chapter 7 would
 *      have retried at once, three times, and failed the order. Here each
 *      failed attempt is recorded and the workflow waits out a back-off in the
 *      database; the fourth attempt finds the provider back. Charged once.
 *   2. An order with a cooling-off sleep before its email; the process is
 *      killed the moment the sleep is recorded. A new process finds the order
 *      asleep, wakes it when the database's clock says so — not before — and
 *      sends the email once.
 *   3. A poison workflow: its step kills the worker that runs it (as the
 *      out-of-memory killer would). Chapter 7 would claim it again for ever,
 *      losing a worker every lease. Here the claims are counted; after three,
 *      the next worker fails it instead of running it, and stays up.
 */
import pg from 'pg';
import { startChild } from '../../shared/crash/runner.ts';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';
import { createEngine, migrate, type WorkflowInfo } from './index.ts';
import { orderWorkflow, poisonWorkflow } from './workflow.ts';

const time = (date: Date | number) => new Date(date).toISOString().slice(11, 23);

demo(8, async ({ world, run, ledger }) => {
  const db = new pg.Pool({ connectionString: world.databaseUrl, max: 4 });
  try {
    await migrate(db);
    const engine = createEngine({ db, workflows: { order: orderWorkflow(), poison: poisonWorkflow() } });
    const inspect = async (id: string) => (await engine.inspect(id)) as WorkflowInfo;

    // ── 1. an outage, ridden out ─────────────────────────────────────────────
    say.title('1. The payment provider is down for its next three calls');
    say.explain(
      'Chapter 7 retried a failing workflow at once, in memory, three times: a provider that is down for a few\n' +
        'seconds failed the order — and every order at once would have hammered it together. Here the charge step\n' +
        'has a retry policy (5 attempts, 200 ms doubling, jittered): each failed attempt is RECORDED, and the workflow\n' +
        'is released to wait out its back-off in the database — no worker slot, no connection held, a crash loses nothing.',
    );
    await world.failNext('payments', 3);
    await run({ orders: ['order-1'] });
    const first = await inspect('order-1');
    say.line(`\n${paint.bold('The failed attempts, as the log keeps them')} ${paint.dim('(step_failures; durable show order-1)')}`);
    for (const failure of first.failures) {
      const waited = failure.retryAt ? `${failure.retryAt.getTime() - failure.failedAt.getTime()} ms back-off` : 'no retry';
      say.line(`  #${failure.seq} ${failure.name} attempt ${failure.attempt}  ${time(failure.failedAt)}  ${failure.error.name}: ${failure.error.message.slice(0, 48)}…  ${paint.dim(waited)}`);
    }
    say.line(`  then attempt ${first.failures.length + 1} charged it: ${paint.green(first.steps[0]!.name + ' recorded')} at ${time(first.steps[0]!.recordedAt)}`);

    // ── 2. a sleep survives a kill ──────────────────────────────────────────
    say.title('2. A sleep survives a kill');
    say.explain(
      'order-2 waits 3 s before its confirmation email (a cooling-off period): ctx.sleep(3000). The sleep’s end is\n' +
        'recorded on the DATABASE clock and the workflow released until then. We kill the process right after.',
    );
    await run({ orders: ['order-2'], env: { COOLING_OFF_MS: '3000' }, faults: ['after-sleep-recorded'] });
    const slept = await inspect('order-2');
    const sleepIndex = slept.steps.findIndex((s) => s.kind === 'sleep');
    const until = Date.parse((slept.steps[sleepIndex]!.output as { until: string }).until);
    const email = slept.steps[sleepIndex + 1]!;
    say.line(`\n  sleep recorded at ${time(slept.steps[sleepIndex]!.recordedAt)}, until ${paint.bold(time(until))}`);
    say.line(`  send_email recorded at ${paint.bold(time(email.recordedAt))}: ${email.recordedAt.getTime() >= until ? paint.green(`${email.recordedAt.getTime() - until} ms after the sleep ended — never before`) : paint.red('BEFORE the sleep ended')}`);
    say.explain('  The second process’s worker asked the database when the next waiting workflow is due, and set its alarm for then.');

    // ── 3. a poison workflow ────────────────────────────────────────────────
    say.title('3. A poison workflow');
    say.explain(
      'poison-1’s second step kills the process that runs it, every time. Nothing in the dying process can count\n' +
        'that — so the CLAIM counts: each claim is an attempt, unless the previous run recorded a step. It was\n' +
        'started with maxAttempts 3. Workers are restarted as they die, as a supervisor (systemd, Kubernetes) would.',
    );
    await engine.start('poison', { size: 1 }, { id: 'poison-1', maxAttempts: 3 });
    const env = { ...world.env, LEASE_MS: '1000', POLL_MS: '100', FORCE_COLOR: paint.bold('x') === 'x' ? '0' : '1' };
    for (let n = 1; ; n++) {
      const name = `W${n}`;
      const worker = startChild({
        script: 'chapters/08-failures-and-time/main.ts',
        args: ['worker'],
        env: { ...env, WORKER_NAME: name },
        timeoutMs: 60_000,
        onLine: (line) => {
          if (/claimed|failed|ran|replayed/.test(line) && !/^\s*$/.test(line)) say.line(`${paint.blue('│')} ${name}: ${line.trim()}`);
        },
      });
      const failed = new Promise<'failed'>((resolve) => {
        const check = setInterval(async () => {
          if ((await engine.status(['poison-1']))['poison-1'] === 'failed') {
            clearInterval(check);
            resolve('failed');
          }
        }, 100);
        void worker.done.then(() => clearInterval(check));
      });
      const ended = await Promise.race([worker.done, failed]);
      if (ended === 'failed') {
        say.line(paint.green(`└ ${name} failed poison-1 instead of running it, and is still up`));
        worker.signal('SIGTERM');
        await worker.done;
        break;
      }
      say.line(paint.red(`└ 💥 ${name} killed by its own step (${ended.signal ?? `exit ${ended.exitCode}`})`));
      if (n > 6) throw new Error('poison-1 was not failed after 6 workers');
    }
    const poison = await inspect('poison-1');
    say.line(`\n  poison-1: ${paint.bold(poison.status)} — ${poison.error}`);
    say.explain(
      '  W1 recorded open_upload before it died: a claim whose run made progress does not count — a workflow that\n' +
        '  gets further each time is not the one killing its workers. The claims after it made none: 1, 2, 3, and the\n' +
        '  fourth found the count past maxAttempts.',
    );
    say.explain('  durable show poison-1 names the last step recorded (open_upload): what comes after it is where to look.');

    const once = await ledger(['order-1', 'order-2']);
    say.verdict(once, once ? 'Both orders exactly once: one charge after an outage, one email after a sleep and a kill.' : 'Not exactly once — that should not happen here.');
  } finally {
    await db.end();
  }
});
