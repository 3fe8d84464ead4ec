/**
 * `npm run chapter 6` — leasing workers, watched live:
 *
 *   three worker processes (W1, W2, W3) share nine orders. A table refreshed
 *   every 200 ms from the `workflows` table shows who holds what: the worker,
 *   the fencing token, the lease left. W2 is killed with SIGKILL mid-workflow;
 *   its leases run out (2 s), W1 and W3 take its orders over under new tokens
 *   and replay what W2 had recorded. Then the ledger: every order once.
 */
import pg from 'pg';
import { startChild, type ChildRun } from '../../shared/crash/runner.ts';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { createEngine, migrate } from './index.ts';
import { viewLeases, type LeaseView } from './queries.ts';
import { orderWorkflow } from './workflow.ts';

const LEASE_MS = 2000;
const orders = Array.from({ length: 9 }, (_, i) => `order-${i + 1}`);
const names = ['W1', 'W2', 'W3'];
const colourOf: Record<string, (text: string) => string> = { W1: paint.cyan, W2: paint.magenta, W3: paint.yellow };

/** The live view as lines of text. Pad before colouring: escape codes would throw the columns off. */
function render(rows: LeaseView[], events: string[], elapsedMs: number): string[] {
  const header = paint.dim(`  ${'workflow'.padEnd(10)} ${'status'.padEnd(10)} ${'worker'.padEnd(7)} ${'token'.padEnd(6)} ${'lease left'.padEnd(22)} steps`);
  const lines = rows.map((row) => {
    const owner = row.leaseOwner ?? '—';
    const held = row.status === 'running' && row.leaseMsLeft > 0;
    const bar = held ? '█'.repeat(Math.ceil((row.leaseMsLeft / LEASE_MS) * 10)).padEnd(10) : ''.padEnd(10);
    const left = row.status !== 'running' ? ''.padEnd(22) : held ? `${bar} ${(row.leaseMsLeft / 1000).toFixed(1)} s`.padEnd(22) : paint.dim('runnable'.padEnd(22));
    const status = row.status === 'completed' ? paint.green(row.status.padEnd(10)) : row.status.padEnd(10);
    const who = (colourOf[owner] ?? paint.dim)(owner.padEnd(7));
    const token = row.fencingToken > 1 ? paint.bold(String(row.fencingToken).padEnd(6)) : String(row.fencingToken).padEnd(6);
    return `  ${row.id.padEnd(10)} ${status} ${who} ${token} ${left} ${'●'.repeat(row.steps)}${paint.dim('○'.repeat(3 - Math.min(3, row.steps)))}`;
  });
  return [paint.dim(`  t = ${(elapsedMs / 1000).toFixed(1)} s`), header, ...lines, '', ...events.map((e) => `  ${e}`)];
}

demo(6, async ({ world, ledger }) => {
  say.explain(
    'Chapter 5 could not say who owns a workflow: two processes recovering at once both ran it.\n' +
      'Now a workflow is run by whoever holds its LEASE. Workers claim runnable workflows with one query\n' +
      '(FOR UPDATE SKIP LOCKED); a claim sets lease_expires_at = now() + 2 s on the database clock and a new\n' +
      'FENCING TOKEN. The holder renews it every 0.7 to 1 s (a third to a half of the lease, at random).\n' +
      'Every write of its run checks, in its own transaction, that the token is still the workflow’s and\n' +
      'the lease has not run out.\n' +
      'Kill a worker and its leases run out: another worker’s next claim takes the workflow over.',
  );

  const db = new pg.Pool({ connectionString: world.databaseUrl, max: 3 });
  const workers = new Map<string, ChildRun>();
  try {
    await migrate(db);
    await world.setLatency(600); // every payment and email takes 0.6 s: slow enough to watch
    const engine = createEngine({ db, workflows: { order: orderWorkflow() } });

    say.title('Three workers, nine orders');
    const events: string[] = [];
    const started = Date.now();
    const event = (text: string) => events.push(`${paint.dim(`${((Date.now() - started) / 1000).toFixed(1)} s`)}  ${text}`);
    for (const name of names) {
      const child = startChild({
        script: 'chapters/06-leasing-workers/main.ts',
        args: ['worker'],
        env: { ...world.env, WORKER_NAME: name, LEASE_MS: String(LEASE_MS), CONCURRENCY: '2', POLL_MS: '200', FORCE_COLOR: '0' },
        timeoutMs: 60_000,
        onLine: (line) => {
          const claimed = /claimed (\S+) \(fencing token (\d+)/.exec(line);
          if (claimed && Number(claimed[2]) > 1) event(`${(colourOf[name] ?? paint.dim)(name)} took over ${claimed[1]} under fencing token ${claimed[2]}`);
          if (/replaying/.test(line)) event(`${(colourOf[name] ?? paint.dim)(name)} ${line.trim().replace(/^workflow /, '')}`);
        },
      });
      workers.set(name, child);
    }
    await Promise.all([...workers.values()].map((w) => w.waitForLine(/running \(concurrency/)));
    event('W1, W2, W3 running: concurrency 2 each, lease 2 s');
    for (const id of orders) await engine.start('order', demoOrder(id), { id });
    event('9 orders started');

    // The live view. On a terminal it redraws in place; in a log, a frame per change.
    const live = Boolean(process.stdout.isTTY);
    let drawn = 0;
    let lastShape = '';
    let logged = 0; // events already printed (log mode)
    let killed = false;
    for (;;) {
      const rows = await viewLeases(db, orders);
      const shape = JSON.stringify([rows.map((r) => [r.status, r.leaseOwner, r.fencingToken, r.steps]), events.length]);
      if (live) {
        const lines = render(rows, events.slice(-6), Date.now() - started);
        if (drawn > 0) process.stdout.write(`\x1b[${drawn}A\x1b[J`);
        process.stdout.write(`${lines.join('\n')}\n`);
        drawn = lines.length;
      } else if (shape !== lastShape) {
        say.line(`${render(rows, events.slice(logged), Date.now() - started).join('\n')}\n`);
        logged = events.length;
      }
      lastShape = shape;

      // Kill W2 once it is in the middle of an order: a step recorded, more to go.
      if (!killed && rows.some((r) => r.leaseOwner === 'W2' && r.status === 'running' && r.steps >= 1)) {
        killed = true;
        workers.get('W2')?.signal('SIGKILL');
        const held = rows.filter((r) => r.leaseOwner === 'W2' && r.status === 'running').map((r) => r.id);
        event(`${paint.red('💥 W2 killed with SIGKILL')} holding ${held.join(', ')}: nobody renews those leases now; they run out within 2 s`);
      }
      if (rows.length === orders.length && rows.every((r) => r.status === 'completed')) break;
      if (Date.now() - started > 45_000) throw new Error('the orders did not finish within 45 s');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    say.line();
    say.explain('All nine completed. SIGTERM to W1 and W3: they stop claiming, finish what they hold (nothing) and exit 0.');
    for (const name of ['W1', 'W3']) workers.get(name)?.signal('SIGTERM');
    for (const name of ['W1', 'W3']) {
      const done = await workers.get(name)!.done;
      say.line(`  ${name}: ${done.exitCode === 0 ? paint.green('exited 0') : paint.red(`exit ${done.exitCode ?? done.signal}`)}`);
    }

    // Who wrote what: the fencing token on every step.
    const takenOver = (await Promise.all(orders.map((id) => engine.inspect(id)))).filter((info) => info && info.fencingToken > 1);
    say.line(`\n${paint.bold('Who recorded each step')} ${paint.dim('(steps.fencing_token: the claim whose run wrote it)')}`);
    for (const info of takenOver) {
      const steps = info!.steps.map((s) => `${s.name} ${paint.dim(`token ${s.fencingToken}`)}`).join(', ');
      say.line(`  ${info!.id.padEnd(9)} ${steps}  ${paint.dim(`→ completed by ${info!.leaseOwner}`)}`);
    }
    if (takenOver.length === 0) say.explain('  (W2 held nothing when it died this time: no takeover to show.)');

    const once = await ledger(orders);
    say.verdict(
      once,
      once
        ? 'Every order exactly once. W2’s orders were finished by the others from W2’s log: what W2 had recorded was\n  replayed, not redone; a call W2 had made but not recorded was made again under the same idempotency key,\n  and the provider answered with the original.'
        : 'Not exactly once — that should not happen here.',
    );
    say.explain(
      '\nWhat a lease cannot do: tell a frozen worker from a dead one. A worker paused past its lease is taken over\n' +
        'all the same — and when it wakes, its fencing token is stale and every write it tries is refused\n' +
        '(npx vitest run chapters/06-leasing-workers -t "paused past its lease").',
    );
  } finally {
    for (const child of workers.values()) child.signal('SIGKILL');
    await db.end();
  }
});
