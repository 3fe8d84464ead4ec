/**
 * `npm run chapter 7` — the fast path, counted, then watched under a kill:
 *
 *   1. One order, started in a process whose worker has a free slot, with
 *      every statement the engine sends listed as it goes: the workflow's
 *      INSERT (claimed in it), one statement per plain step, the transaction
 *      step's five, one for the end. Round trips and commits, counted.
 *   2. Chapter 6's scene, on this engine: three worker processes (W1, W2, W3)
 *      share nine orders; a table refreshed every 200 ms from `workflows`
 *      shows who holds what. W2 is killed with SIGKILL mid-workflow; its
 *      leases run out (2 s), W1 and W3 take its orders over under new tokens
 *      and replay what W2 had recorded. Then the ledger: every order once.
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

/** One statement the engine sent, as the demo lists it. */
interface Sent {
  label: string;
  /** It committed: a COMMIT, or a write sent outside BEGIN … COMMIT (a transaction of its own). */
  commit: boolean;
}

/** What each of the engine's prepared statements is, in words. */
const statementLabels: Record<string, string> = {
  'admit-workflow': 'INSERT INTO workflows …  the workflow, already claimed for this process’s worker (token 1)',
  'record-step': 'INSERT INTO steps … SELECT … FOR KEY SHARE  the step’s fenced record',
  'fence-transaction': 'SELECT 1 FROM workflows … FOR KEY SHARE  the transaction step’s fence, first',
  'complete-workflow': 'UPDATE workflows SET status = \'completed\' …  the fenced end',
};

/**
 * Record every statement sent on `pool`'s connections, in order — a round
 * trip each. (The engine sends all its SQL through the pool's connections.)
 */
function countStatements(pool: pg.Pool): Sent[] {
  const sent: Sent[] = [];
  pool.on('connect', (client) => {
    let inTransaction = false;
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args) => {
      const config = args[0] as string | { text: string; name?: string };
      const text = (typeof config === 'string' ? config : config.text).replace(/\s+/g, ' ').trim();
      const name = typeof config === 'string' ? undefined : config.name;
      const word = text.split(' ')[0]!.toUpperCase().replace(/;$/, '');
      let commit = false;
      if (word === 'BEGIN') inTransaction = true;
      else if (word === 'COMMIT' || word === 'ROLLBACK') [commit, inTransaction] = [word === 'COMMIT', false];
      else if (!inTransaction) commit = /^(INSERT|UPDATE|DELETE|WITH)$/.test(word);
      const control = word === 'BEGIN' || word === 'COMMIT' || word === 'ROLLBACK';
      const where = control ? '' : inTransaction ? paint.dim(' (in the transaction)') : commit ? paint.dim(' (alone)') : '';
      const label = (name && statementLabels[name]) ?? (text.length > 64 ? `${text.slice(0, 63)}…` : text);
      sent.push({ label: `${label}${where}`, commit });
      return query(...args);
    };
  });
  return sent;
}

demo(7, async ({ world, ledger }) => {
  say.explain(
    'Chapter 6 made a workflow belong to whoever holds its lease, with a fence in every write. It paid for that\n' +
      'in statements: BEGIN and COMMIT around every record, a claim and a look at the (empty) log before the\n' +
      'first step, a NOTIFY beside every start — about 17 round trips and 6 commits for this order.\n' +
      'Chapter 7 writes each durable fact in one statement, and keeps every guarantee. Counted first, then killed.',
  );

  // 1. One order, every statement: an engine in this process, on a pool that lists what it sends.
  {
    process.env.WORLD_URL = world.env.WORLD_URL; // the steps call the world's services from this process
    const counted = new pg.Pool({ connectionString: world.databaseUrl, max: 4 });
    const sent = countStatements(counted);
    try {
      await migrate(counted);
      const engine = createEngine({ db: counted, workflows: { order: orderWorkflow() } });
      // A worker here, with a free slot; no polls or heartbeats to count (a minute, half a minute away).
      const worker = engine.createWorker({ name: 'here', concurrency: 1, pollMs: 60_000, leaseMs: 30_000, listen: false });
      await worker.start();
      say.title('What one order costs');
      sent.length = 0; // from start() on
      const run = await engine.start('order', demoOrder('order-0'), { id: 'order-0' });
      await run.result();
      await worker.stop();
      say.line();
      sent.forEach((s, i) => say.line(`  ${String(i + 1).padStart(2)}  ${s.label}${s.commit ? `  ${paint.green('commit')}` : ''}`));
      const commits = sent.filter((s) => s.commit).length;
      say.line(`\n  ${paint.bold(`${sent.length} round trips, ${commits} commits`)} for charge_card, reserve_inventory (a transaction step) and send_email.`);
      say.explain(
        '  No claim (the INSERT claimed it), no look at the log (token 1: no run came before), no NOTIFY (the worker is here),\n' +
          '  no BEGIN/COMMIT around a plain step’s record or the end: a statement sent alone is a transaction of its own.\n' +
          '  The transaction step keeps its five: its fence must come first, and its SQL commits with its record.\n' +
          '  With many runs at once, their records share one statement (batcher.ts). npm run bench measures it all.',
      );
    } finally {
      await counted.end();
    }
  }

  const db = new pg.Pool({ connectionString: world.databaseUrl, max: 3 });
  const workers = new Map<string, ChildRun>();
  try {
    await migrate(db);
    await world.setLatency(600); // every payment and email takes 0.6 s: slow enough to watch
    const engine = createEngine({ db, workflows: { order: orderWorkflow() } });

    say.title('Three workers, nine orders, one kill');
    say.explain(
      'What chapter 6 guarantees, on the fast path: a claim is a LEASE on the database clock (2 s here), renewed\n' +
        'every 0.7 to 1 s, with a new FENCING TOKEN; every write of a run — now one statement each — checks that the\n' +
        'token is still the workflow’s and the lease has not run out. Kill a worker and its leases run out: another\n' +
        'worker’s next claim takes the workflow over.',
    );
    const events: string[] = [];
    const started = Date.now();
    const event = (text: string) => events.push(`${paint.dim(`${((Date.now() - started) / 1000).toFixed(1)} s`)}  ${text}`);
    for (const name of names) {
      const child = startChild({
        script: 'chapters/07-fast-path/main.ts',
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

    const once = await ledger(['order-0', ...orders]);
    say.verdict(
      once,
      once
        ? 'Every order exactly once. W2’s orders were finished by the others from W2’s log: what W2 had recorded was\n  replayed, not redone; a call W2 had made but not recorded was made again under the same idempotency key,\n  and the provider answered with the original.'
        : 'Not exactly once — that should not happen here.',
    );
    say.explain(
      '\nWhat a lease cannot do: tell a frozen worker from a dead one. A worker paused past its lease is taken over\n' +
        'all the same — and when it wakes, its fencing token is stale and every write it tries is refused\n' +
        '(npx vitest run chapters/07-fast-path -t "paused past its lease").',
    );
  } finally {
    for (const child of workers.values()) child.signal('SIGKILL');
    await db.end();
  }
});
