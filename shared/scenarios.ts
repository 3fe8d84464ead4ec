/**
 * The course's crash scenarios, each runnable against any chapter's engine.
 *
 * A scenario builds a fresh world (its own database, its own payment and mail
 * server), runs the chapter's `main.ts` in real child processes, kills them
 * where the scenario says, restarts them, and then reads the ledger: was every
 * order charged once, its stock decremented once, one email sent?
 *
 * Chapter tests use these ("fixes" here, "still broken" there), and
 * `npm run matrix` runs all of them against all chapters.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createDatabase, dropDatabase } from './db/databases.ts';
import { projectRoot } from './db/server.ts';
import { runUntilDone, startChild, type Attempt, type Fault, type RunResult } from './crash/runner.ts';
import { startWorld, type World } from './world/world.ts';
import type { Ledger } from './world/ledger.ts';

export type Verdict =
  | 'exactly-once'
  | 'charged-twice'
  | 'stock-twice'
  | 'emailed-twice'
  | 'work-twice'
  | 'lost'
  | 'torn'
  | 'gave-up'
  | 'loops'
  | 'stopped'
  | 'early'
  | 'no-wait'
  | 'event-twice'
  | 'cancelled'
  | 'not-cancelled'
  | 'ran-after-cancel'
  | 'deadlock'
  | 'released-twice'
  | 'not-applicable';

export const VERDICT_LABEL: Record<Verdict, string> = {
  'exactly-once': '✓ exactly once',
  'charged-twice': '✗ charged twice',
  'stock-twice': '✗ stock twice',
  'emailed-twice': '✗ emailed twice',
  'work-twice': '✗ ran twice',
  lost: '✗ lost',
  torn: '✗ torn',
  'gave-up': '✗ gave up',
  loops: '✗ loops for ever',
  stopped: '✓ failed after max attempts',
  early: '✗ woke early',
  'no-wait': '✗ did not wait',
  'event-twice': '✗ event twice',
  cancelled: '✓ cancelled',
  'not-cancelled': '✗ not cancelled',
  'ran-after-cancel': '✗ ran on after cancel',
  deadlock: '✗ deadlock',
  'released-twice': '✗ stock put back twice',
  'not-applicable': '–',
};

export interface Outcome {
  scenario: string;
  chapter: string;
  verdict: Verdict;
  /** One sentence: what happened. */
  detail: string;
  ledger?: Ledger;
  runs: RunResult[];
}

export interface Chapter {
  number: number;
  /** Folder name, e.g. `03-postgres-log`. */
  slug: string;
  dir: string;
  main: string;
}

/** Every chapter folder, in order. */
export function listChapters(): Chapter[] {
  const root = path.join(projectRoot, 'chapters');
  return fs
    .readdirSync(root)
    .filter((name) => /^\d\d-/.test(name) && fs.existsSync(path.join(root, name, 'main.ts')))
    .sort()
    .map((slug) => ({ number: Number(slug.slice(0, 2)), slug, dir: path.join(root, slug), main: `chapters/${slug}/main.ts` }));
}

export function findChapter(which: string | number): Chapter {
  const n = typeof which === 'number' ? which : /^\d+$/.test(which) ? Number(which) : NaN;
  const chapter = listChapters().find((c) => c.slug === which || c.number === n);
  if (!chapter) throw new Error(`no chapter "${which}" (there are: ${listChapters().map((c) => c.number).join(', ')})`);
  return chapter;
}

export interface Scenario {
  id: string;
  /** How the matrix row reads. */
  title: string;
  run(chapter: Chapter, world: World): Promise<Omit<Outcome, 'scenario' | 'chapter'>>;
}

/** Start orders, kill attempt i at faults[i], restart with the same command until done. */
async function crashAndRestart(chapter: Chapter, world: World, orders: string[], faults: Fault[]) {
  const run = await runUntilDone({ script: chapter.main, args: ['start', ...orders], env: world.env, faults, timeoutMs: 30_000 });
  return run;
}

/** The crash point never fired: the engine has no such place (e.g. no log to write yet). */
function neverReached(run: RunResult, fault: string): boolean {
  return !run.attempts.some((a: Attempt) => a.crashedAt?.startsWith(fault));
}

/** Judge the world after a run: the first thing that is not exactly once, or ✓. */
export function judge(ledger: Ledger, orders: string[], runs: RunResult[]): { verdict: Verdict; detail: string } {
  const last = runs[runs.length - 1];
  if (last?.error && /corrupt|torn|unexpected end|json/i.test(last.error)) {
    return { verdict: 'torn', detail: `the log could not be read: ${firstLine(last.error)}` };
  }
  for (const id of orders) {
    const e = ledger.byOrder(id);
    if (e.charges > 1) return { verdict: 'charged-twice', detail: `${id} was charged ${e.charges} times` };
  }
  for (const id of orders) {
    const e = ledger.byOrder(id);
    if (e.stockDecrements > 1) return { verdict: 'stock-twice', detail: `${id}'s stock was decremented ${e.stockDecrements} times` };
  }
  for (const id of orders) {
    const e = ledger.byOrder(id);
    if (e.emails > 1) return { verdict: 'emailed-twice', detail: `${id} got ${e.emails} emails` };
  }
  for (const id of orders) {
    const e = ledger.byOrder(id);
    if (e.charges === 0 || e.stockDecrements === 0 || e.emails === 0) {
      return { verdict: 'lost', detail: `${id} never finished (charges ${e.charges}, stock ${e.stockDecrements}, emails ${e.emails})` };
    }
  }
  if (runs.some((r) => !r.finished)) {
    return { verdict: 'lost', detail: `a process did not finish: ${firstLine(runs.find((r) => !r.finished)?.error ?? '')}` };
  }
  return { verdict: 'exactly-once', detail: `${orders.length === 1 ? 'the order' : `all ${orders.length} orders`}: one charge, one stock decrement, one email` };
}

function firstLine(text: string): string {
  return text.split('\n').find((l) => l.trim() && !l.startsWith('[crash-point]'))?.trim() ?? text.trim();
}

/** A scenario that arms one crash point in the first process, then restarts. */
function crashAt(id: string, title: string, point: string): Scenario {
  return {
    id,
    title,
    async run(chapter, world) {
      const orders = ['order-1'];
      const run = await crashAndRestart(chapter, world, orders, [point]);
      const ledger = await world.ledger();
      if (neverReached(run, point)) {
        return { verdict: 'not-applicable', detail: `this engine has no crash point ${point}`, ledger, runs: [run] };
      }
      return { ...judge(ledger, orders, [run]), ledger, runs: [run] };
    },
  };
}

export const scenarios: Scenario[] = [
  {
    id: 'retry-after-error',
    title: 'a step fails once (no crash); the process retries the workflow',
    async run(chapter, world) {
      const orders = ['order-1'];
      await world.failNext('mail', 1);
      const run = await crashAndRestart(chapter, world, orders, []);
      const ledger = await world.ledger();
      return { ...judge(ledger, orders, [run]), ledger, runs: [run] };
    },
  },
  {
    id: 'provider-outage',
    title: 'the payment provider is down for its next 4 calls',
    async run(chapter, world) {
      // An outage of a few seconds: a retry at once meets it again; a back-off rides it out.
      const orders = ['order-1'];
      await world.failNext('payments', 4);
      const run = await crashAndRestart(chapter, world, orders, []);
      const ledger = await world.ledger();
      const verdict = judge(ledger, orders, [run]);
      if (verdict.verdict === 'lost' && ledger.byOrder('order-1').charges === 0) {
        return { verdict: 'gave-up', detail: `the order failed while the provider was down: ${firstLine(run.error ?? verdict.detail)}`, ledger, runs: [run] };
      }
      return { ...verdict, ledger, runs: [run] };
    },
  },
  {
    id: 'poison-workflow',
    title: 'every run of the workflow kills its process (a poison workflow)',
    async run(chapter, world) {
      // The same step kills its process every time (out of memory, a segfault, process.exit in a library).
      const orders = ['order-1'];
      const kills = 8;
      const run = await runUntilDone({
        script: chapter.main,
        args: ['start', ...orders],
        env: world.env,
        faults: Array.from({ length: kills }, () => 'before-step:charge_card'),
        maxAttempts: kills,
        timeoutMs: 30_000,
      });
      const ledger = await world.ledger();
      const status = (await readStatus(chapter, world, orders))?.['order-1'];
      if (status === 'failed' && !run.finished) {
        return { verdict: 'stopped', detail: `failed after ${run.crashes} processes were killed: ${firstLine(run.error ?? '')}`, ledger, runs: [run] };
      }
      if (run.crashes === kills) return { verdict: 'loops', detail: `${kills} processes killed, one after another, and the workflow is still ${status ?? 'unfinished'}`, ledger, runs: [run] };
      return { ...judge(ledger, orders, [run]), ledger, runs: [run] };
    },
  },
  {
    id: 'kill-while-sleeping',
    title: 'a process is killed while its workflow sleeps',
    async run(chapter, world) {
      // The order's cooling-off sleep (COOLING_OFF_MS, chapter 8 on), killed the moment it is recorded.
      const orders = ['order-1'];
      const env = { ...world.env, COOLING_OFF_MS: '1500' };
      const run = await runUntilDone({ script: chapter.main, args: ['start', ...orders], env, faults: ['after-sleep-recorded'], timeoutMs: 30_000 });
      const ledger = await world.ledger();
      if (neverReached(run, 'after-sleep-recorded')) return { verdict: 'not-applicable', detail: 'this engine has no durable sleep', ledger, runs: [run] };
      const verdict = judge(ledger, orders, [run]);
      if (verdict.verdict !== 'exactly-once') return { ...verdict, ledger, runs: [run] };
      // Never early: the email's record comes after the sleep's end, both by the database clock.
      const early = await sleptTooLittle(world.databaseUrl, 'order-1');
      if (early) return { verdict: 'early', detail: early, ledger, runs: [run] };
      return { ...verdict, ledger, runs: [run] };
    },
  },
  {
    id: 'event-while-worker-dead',
    title: 'the payment webhook arrives while the waiting order’s worker is dead',
    async run(chapter, world) {
      // The order waits for "settled" after its charge (AWAIT_SETTLEMENT, chapter 9 on); its worker is killed the moment it parks.
      const orders = ['order-1'];
      const cannot = await cannotSendEvents(chapter, world);
      if (cannot) return { verdict: 'not-applicable', detail: cannot, runs: [] };
      const env = { ...world.env, AWAIT_SETTLEMENT: '1' };
      const killed = asRun(await startChild({ script: chapter.main, args: ['start', ...orders], env, fault: 'after-park:settled', timeoutMs: 30_000 }).done);
      if (neverReached(killed, 'after-park:settled')) {
        return { verdict: 'no-wait', detail: 'the order never parked to wait for "settled"', ledger: await world.ledger(), runs: [killed] };
      }
      const before = (await world.ledger()).byOrder('order-1');
      if (before.emails > 0 || before.stockDecrements > 0) {
        return { verdict: 'no-wait', detail: `the order went on before its event was sent (${before.stockDecrements} stock, ${before.emails} emails)`, ledger: await world.ledger(), runs: [killed] };
      }
      // The webhook handler: another process, while no worker is alive.
      const sent = await sendSettled(chapter, world, 'order-1');
      if (sent.exitCode !== 0) return { verdict: 'lost', detail: `the event could not be sent: ${firstLine(sent.stderr)}`, ledger: await world.ledger(), runs: [killed, asRun(sent)] };
      // A worker comes back (a restart, a deploy) and finishes the order.
      const again = await runUntilDone({ script: chapter.main, args: ['start', ...orders], env, timeoutMs: 30_000 });
      const ledger = await world.ledger();
      const runs = [killed, asRun(sent), again];
      const verdict = judge(ledger, orders, [again]);
      if (verdict.verdict !== 'exactly-once') return { ...verdict, ledger, runs };
      const taken = await eventsTaken(world.databaseUrl, 'order-1', 'settled');
      if (taken !== 1) return { verdict: taken > 1 ? 'event-twice' : 'lost', detail: `the log records "settled" taken ${times(taken)}`, ledger, runs };
      return { ...verdict, detail: `${verdict.detail}; "settled" taken once`, ledger, runs };
    },
  },
  {
    id: 'event-delivered-twice',
    title: 'the payment webhook is delivered twice (its sender killed after the first)',
    async run(chapter, world) {
      // A webhook handler killed after its event committed never answered the provider: the provider sends it again, same key.
      const orders = ['order-1'];
      const cannot = await cannotSendEvents(chapter, world);
      if (cannot) return { verdict: 'not-applicable', detail: cannot, runs: [] };
      const env = { ...world.env, AWAIT_SETTLEMENT: '1', FORCE_COLOR: '0' };
      const worker = startChild({ script: chapter.main, args: ['start', ...orders], env, timeoutMs: 30_000 });
      try {
        await worker.waitForLine(/waits for "settled"/);
      } catch {
        const run = asRun(await worker.done);
        return { verdict: 'no-wait', detail: 'the order never waited for "settled"', ledger: await world.ledger(), runs: [run] };
      }
      const first = await sendSettled(chapter, world, 'order-1', { CRASH_AT: 'after-event-sent' });
      const second = await sendSettled(chapter, world, 'order-1');
      const run = asRun(await worker.done);
      const again = await runUntilDone({ script: chapter.main, args: ['start', ...orders], env, timeoutMs: 30_000 });
      const ledger = await world.ledger();
      const runs = [run, asRun(first), asRun(second), again];
      if (first.crashedAt === undefined) return { verdict: 'lost', detail: `the first delivery was not killed after its event committed: ${firstLine(first.stderr)}`, ledger, runs };
      const verdict = judge(ledger, orders, [run, again]);
      if (verdict.verdict !== 'exactly-once') return { ...verdict, ledger, runs };
      const taken = await eventsTaken(world.databaseUrl, 'order-1', 'settled');
      const redelivered = /SENT \{"delivered":false/.test(second.stdout);
      if (taken > 1 || !redelivered) {
        // Stored as a second event (a wait after this one would take it), or refused as news: not the same event.
        return { verdict: 'event-twice', detail: `"settled" taken ${times(taken)}; the second delivery, same key, was not the same event: ${firstLine(second.stdout || second.stderr)}`, ledger, runs };
      }
      return { ...verdict, detail: `${verdict.detail}; the second delivery was the same event, taken once`, ledger, runs };
    },
  },
  cancelWhileWaiting('cancel-while-waiting', 'an order waiting for its webhook is cancelled, its worker dead', 'event'),
  cancelWhileWaiting('cancel-while-sleeping', 'a sleeping order is cancelled, its worker dead', 'sleep'),
  {
    id: 'parent-waits-on-children-one-slot',
    title: 'a parent waits for its child orders on a worker with one slot, killed while it waits',
    async run(chapter, world) {
      // A batch of 3 orders, each a child workflow of the batch (main.ts batch, chapter 9 on). One slot
      // (CONCURRENCY=1): a parent that held it while it waited would leave none for its children.
      if (!(await knowsCommand(chapter, world, 'batch', []))) return { verdict: 'not-applicable', detail: 'this engine has no child workflows: its main.ts has no batch', runs: [] };
      const batch = 'batch-1';
      const orders = [1, 2, 3].map((i) => `${batch}-${i}`);
      const point = `after-park:durable:child:${batch}/0`;
      const env = { ...world.env, CONCURRENCY: '1' };
      // The one-slot worker is killed the moment the parent parks; a one-slot worker comes back.
      const run = await runUntilDone({ script: chapter.main, args: ['batch', batch, String(orders.length)], env, faults: [point], maxAttempts: 2, timeoutMs: 30_000 });
      const ledger = await world.ledger();
      if (neverReached(run, point)) return { verdict: 'no-wait', detail: `the batch never parked to wait for its children: ${firstLine(run.error ?? '')}`, ledger, runs: [run] };
      const status = (await readStatus(chapter, world, [batch, ...orders.map((_, i) => `${batch}/${i}`)])) ?? {};
      if (run.attempts.at(-1)?.timedOut) {
        return { verdict: 'deadlock', detail: `the restarted worker did not finish the batch in 30 s: ${JSON.stringify(status)}`, ledger, runs: [run] };
      }
      const verdict = judge(ledger, orders, [run]);
      if (verdict.verdict !== 'exactly-once') return { ...verdict, ledger, runs: [run] };
      if (status[batch] !== 'completed') return { verdict: 'lost', detail: `the batch is ${status[batch] ?? 'not in the log'}`, ledger, runs: [run] };
      return { ...verdict, detail: `the batch completed on one slot, its parent holding none while it waited; ${verdict.detail}`, ledger, runs: [run] };
    },
  },
  crashAt('crash-after-charge-recorded', 'crash after the charge is recorded', 'after-record:charge_card'),
  crashAt('crash-while-recording', 'crash half-way through writing the log', 'during-record:complete'),
  crashAt('crash-after-charge-before-record', 'crash after the charge, before its record', 'after-effect:charge_card'),
  crashAt('crash-after-reserve-before-record', 'crash after the stock update, before its record', 'after-effect:reserve_inventory'),
  {
    id: 'two-processes-one-log',
    title: 'two processes share one log, then restart',
    async run(chapter, world) {
      if ((await readStatus(chapter, world, [])) === null) {
        return { verdict: 'not-applicable', detail: 'this engine keeps no log that processes could share', runs: [] };
      }
      // The two processes must overlap, or there is nothing to race. Left to
      // chance, one can finish before the other starts on a busy machine. So:
      // A starts and goes to work; we freeze it (SIGSTOP) until B is at work
      // too, then let A go on. Both have now read whatever log there is.
      const a = ['order-a1', 'order-a2', 'order-a3', 'order-a4'];
      const b = ['order-b1', 'order-b2', 'order-b3', 'order-b4'];
      const atWork = /ran.*charge_card/;
      const processA = startChild({ script: chapter.main, args: ['start', ...a], env: world.env, timeoutMs: 30_000 });
      await processA.waitForLine(atWork);
      processA.signal('SIGSTOP');
      const processB = startChild({ script: chapter.main, args: ['start', ...b], env: world.env, timeoutMs: 30_000 });
      try {
        await processB.waitForLine(atWork);
      } finally {
        processA.signal('SIGCONT');
      }
      const [attemptA, attemptB] = await Promise.all([processA.done, processB.done]);
      const runA = asRun(attemptA);
      const runB = asRun(attemptB);
      const status = (await readStatus(chapter, world, [...a, ...b])) ?? {};
      const missing = Object.entries(status).filter(([, s]) => s !== 'completed').map(([id]) => id);
      // A restart (a deploy, a crash) runs every order again; a correct log makes that a no-op.
      const again = await runUntilDone({ script: chapter.main, args: ['start', ...a, ...b], env: world.env, timeoutMs: 30_000 });
      const ledger = await world.ledger();
      if (missing.length > 0) {
        return {
          verdict: 'lost',
          detail: `the log lost ${missing.length} of 8 finished workflows (${missing.join(', ')}); restarting ran them again`,
          ledger,
          runs: [runA, runB, again],
        };
      }
      return { ...judge(ledger, [...a, ...b], [runA, runB, again]), ledger, runs: [runA, runB, again] };
    },
  },
  twoProcessesOneOrder(
    'race-on-the-stock-step',
    'two processes race on the same stock update',
    'after-effect:reserve_inventory',
    ['charges', 'stock'],
  ),
  twoProcessesOneOrder(
    'two-executors-one-workflow',
    'two processes run the same workflow at once',
    'after-effect:send_email',
    ['charges', 'stock', 'emails'],
  ),
  {
    id: 'two-recoveries-at-once',
    title: 'two processes recover at once; one stalls mid-step',
    async run(chapter, world) {
      const probe = await startChild({ script: chapter.main, args: ['recover'], env: world.env, timeoutMs: 30_000 }).done;
      if (probe.exitCode !== 0) {
        return { verdict: 'not-applicable', detail: 'this engine has no log to recover from', runs: [asRun(probe)] };
      }
      // order-1 is in the log, unfinished: its first process died before doing anything.
      const order = 'order-1';
      const crashed = await startChild({ script: chapter.main, args: ['start', order], env: world.env, fault: 'before-step:charge_card', timeoutMs: 30_000 }).done;
      // An engine with leases (chapter 6 on) lets nobody take the order until the dead process's lease runs out.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      // A charges and stalls before recording (a GC pause, a slow disk) — well within its lease:
      // LEASE_MS (read by chapters 6 and later only) is long, so even a slow machine's B starts inside it.
      const live = { ...world.env, LEASE_MS: '15000' };
      const a = startChild({ script: chapter.main, args: ['recover'], env: { ...live, PAUSE_AT: 'after-effect:charge_card' }, timeoutMs: 30_000 });
      await a.waitForLine(/\[pause-point\]/);
      const b = await startChild({ script: chapter.main, args: ['recover'], env: live, timeoutMs: 30_000 }).done;
      a.signal('SIGCONT');
      const aDone = await a.done;
      const again = await runUntilDone({ script: chapter.main, args: ['start', order], env: world.env, timeoutMs: 30_000 });
      const ledger = await world.ledger();
      const runs = [asRun(crashed), asRun(aDone), asRun(b), again];
      const verdict = judge(ledger, [order], [again]);
      if (verdict.verdict !== 'exactly-once') return { ...verdict, ledger, runs };
      // Effects exactly once. But did the step's code run in both processes?
      const ranIn = [aDone, b].filter((p) => /ran\s+charge_card/.test(p.stdout)).length;
      if (ranIn > 1) {
        return { verdict: 'work-twice', detail: 'both processes ran charge_card’s code; the idempotency key saved the effect', ledger, runs };
      }
      return { ...verdict, ledger, runs };
    },
  },
];

/**
 * Process A runs an order and stops itself at `pausePoint` (a pause point,
 * not a crash: it is frozen, alive, holding whatever it holds). Process B is
 * started on the same order meanwhile — as a second recovering process, or a
 * retried request, would. Once B is at work (or blocked behind A), A goes on.
 * Then a clean restart finishes anything left, and the ledger is judged on
 * the effects named in `judged`.
 */
function twoProcessesOneOrder(id: string, title: string, pausePoint: string, judged: Array<'charges' | 'stock' | 'emails'>): Scenario {
  return {
    id,
    title,
    async run(chapter, world) {
      const orders = ['order-1'];
      const processA = startChild({ script: chapter.main, args: ['start', ...orders], env: { ...world.env, PAUSE_AT: pausePoint }, timeoutMs: 30_000 });
      await processA.waitForLine(/\[pause-point\]/);
      const processB = startChild({ script: chapter.main, args: ['start', ...orders], env: world.env, timeoutMs: 30_000 });
      try {
        await processB.waitForLine(/charge_card/);
        // B is running ahead, or blocked behind A's transaction; either way, release A.
        await new Promise((resolve) => setTimeout(resolve, 300));
      } finally {
        processA.signal('SIGCONT');
      }
      const runs = (await Promise.all([processA.done, processB.done])).map(asRun);
      // One of the two may lose a race and stop with an error: finishing the order is what counts.
      const again = await runUntilDone({ script: chapter.main, args: ['start', ...orders], env: world.env, timeoutMs: 30_000 });
      const ledger = await world.ledger();
      const seen: Ledger = {
        ...ledger,
        orders: ledger.orders,
        byOrder: (orderId) => {
          const e = ledger.byOrder(orderId);
          return {
            ...e,
            charges: judged.includes('charges') ? e.charges : 1,
            stockDecrements: judged.includes('stock') ? e.stockDecrements : 1,
            emails: judged.includes('emails') ? e.emails : 1,
          };
        },
      };
      return { ...judge(seen, orders, [again]), ledger, runs: [...runs, again] };
    },
  };
}

/**
 * The order parks — waiting for its "settled" webhook, or in its cooling-off
 * sleep — and its worker is killed there. It is cancelled from another
 * process (`main.ts cancel`: the customer changed their mind), and a worker
 * comes back. The order must end cancelled, and nothing may happen after the
 * cancel: no new charge, stock decrement or email in the ledger. What the
 * workflow undoes on its way out (chapter 9's saga puts the stock back) is
 * its own business — but never more than it took.
 */
function cancelWhileWaiting(id: string, title: string, waitingFor: 'event' | 'sleep'): Scenario {
  return {
    id,
    title,
    async run(chapter, world) {
      const orders = ['order-1'];
      const cannot = (waitingFor === 'event' ? await cannotSendEvents(chapter, world) : null) ?? (await cannotCancel(chapter, world));
      if (cannot) return { verdict: 'not-applicable', detail: cannot, runs: [] };
      const [env, point] =
        waitingFor === 'event' ? [{ ...world.env, AWAIT_SETTLEMENT: '1' }, 'after-park:settled'] : [{ ...world.env, COOLING_OFF_MS: '60000' }, 'after-sleep-recorded'];
      const killed = asRun(await startChild({ script: chapter.main, args: ['start', ...orders], env, fault: point, timeoutMs: 30_000 }).done);
      if (neverReached(killed, point)) return { verdict: 'no-wait', detail: `the order never ${waitingFor === 'event' ? 'waited for its event' : 'slept'}`, ledger: await world.ledger(), runs: [killed] };
      const atCancel = (await world.ledger()).byOrder('order-1');
      const cancel = await startChild({ script: chapter.main, args: ['cancel', 'order-1', '--reason', 'the customer changed their mind'], env: world.env, timeoutMs: 30_000 }).done;
      // A worker comes back, runs what is runnable, and stops.
      const recover = await startChild({ script: chapter.main, args: ['recover'], env, timeoutMs: 30_000 }).done;
      const ledger = await world.ledger();
      const runs = [killed, asRun(cancel), asRun(recover)];
      if (cancel.exitCode !== 0) return { verdict: 'not-cancelled', detail: `main.ts cancel failed: ${firstLine(cancel.stderr)}`, ledger, runs };
      const after = ledger.byOrder('order-1');
      if (after.charges > atCancel.charges || after.stockDecrements > atCancel.stockDecrements || after.emails > atCancel.emails) {
        return {
          verdict: 'ran-after-cancel',
          detail: `after the cancel: charges ${atCancel.charges}→${after.charges}, stock ${atCancel.stockDecrements}→${after.stockDecrements}, emails ${atCancel.emails}→${after.emails}`,
          ledger,
          runs,
        };
      }
      const released = ledger.stockReleases('order-1');
      if (released > after.stockDecrements) return { verdict: 'released-twice', detail: `stock taken ${times(after.stockDecrements)}, put back ${times(released)}`, ledger, runs };
      const status = (await readStatus(chapter, world, orders))?.['order-1'];
      if (status !== 'cancelled') return { verdict: 'not-cancelled', detail: `the order is ${status ?? 'not in the log'} after the cancel and a worker's run`, ledger, runs };
      const undone = released > 0 ? `; its stock put back ${times(released)}` : '';
      return {
        verdict: 'cancelled',
        detail: `cancelled while it ${waitingFor === 'event' ? 'waited for its webhook' : 'slept'}; nothing charged, reserved or emailed after the cancel (charges ${after.charges}, stock ${after.stockDecrements}, emails ${after.emails})${undone}`,
        ledger,
        runs,
      };
    },
  };
}

function times(n: number): string {
  return n === 1 ? 'once' : n === 2 ? 'twice' : `${n} times`;
}

/** Whether this chapter's main.ts knows `command` (asked with `args`: it answers 'unknown command' or not). */
async function knowsCommand(chapter: Chapter, world: World, command: string, args: string[]): Promise<boolean> {
  const probe = await startChild({ script: chapter.main, args: [command, ...args], env: world.env, timeoutMs: 30_000 }).done;
  return !probe.stderr.includes(`unknown command "${command}"`);
}

/** Why this chapter cannot send a workflow an event (its main.ts has no `send`), or null when it can. */
async function cannotSendEvents(chapter: Chapter, world: World): Promise<string | null> {
  return (await knowsCommand(chapter, world, 'send', ['no-such-order', 'settled'])) ? null : 'this engine cannot wait for an event: its main.ts has no send';
}

/** Why this chapter cannot cancel a workflow (its main.ts has no `cancel`), or null when it can. */
async function cannotCancel(chapter: Chapter, world: World): Promise<string | null> {
  return (await knowsCommand(chapter, world, 'cancel', ['no-such-order'])) ? null : 'this engine cannot cancel a workflow: its main.ts has no cancel';
}

/** `main.ts send <id> settled`, as the payment provider's webhook handler would run it: one key per order. */
function sendSettled(chapter: Chapter, world: World, id: string, env: Record<string, string> = {}): Promise<Attempt> {
  const args = ['send', id, 'settled', '--payload', JSON.stringify({ chargeId: `settlement-of-${id}` }), '--key', `settled:${id}`];
  return startChild({ script: chapter.main, args, env: { ...world.env, ...env }, timeoutMs: 30_000 }).done;
}

/** How many times workflow `id`'s log records the event `name` taken (chapter 9's log: entries of kind 'event'). */
async function eventsTaken(databaseUrl: string, id: string, name: string): Promise<number> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const result = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM steps WHERE workflow_id = $1 AND kind = 'event' AND name = $2`, [id, name]);
    return result.rows[0]!.n;
  } finally {
    await db.end();
  }
}

/** A sentence if workflow `id`'s step after its sleep was recorded before the sleep's end; null if not (chapter 8's log). */
async function sleptTooLittle(databaseUrl: string, id: string): Promise<string | null> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const result = await db.query<{ until: string; after: Date | null }>(
      `SELECT s.output->>'until' AS until, (SELECT min(n.created_at) FROM steps n WHERE n.workflow_id = s.workflow_id AND n.seq > s.seq) AS after
         FROM steps s WHERE s.workflow_id = $1 AND s.kind = 'sleep'`,
      [id],
    );
    for (const row of result.rows) {
      if (row.after && row.after.getTime() < Date.parse(row.until)) return `the step after the sleep was recorded at ${row.after.toISOString()}, before the sleep's end ${row.until}`;
    }
    return result.rows.length === 0 ? 'no sleep in the log' : null;
  } finally {
    await db.end();
  }
}

/** One attempt seen as a whole run (for processes started with startChild). */
function asRun(attempt: Attempt): RunResult {
  const failed = attempt.exitCode !== 0 && attempt.signal === null;
  return { attempts: [attempt], finished: attempt.exitCode === 0, crashes: attempt.signal ? 1 : 0, error: failed ? attempt.stderr.trim() : undefined };
}

/** Ask a chapter's `main.ts status` what its log says: null when it keeps no log. */
async function readStatus(chapter: Chapter, world: World, orders: string[]): Promise<Record<string, string> | null> {
  const attempt = await startChild({ script: chapter.main, args: ['status', ...orders], env: world.env, timeoutMs: 30_000 }).done;
  const line = attempt.stdout.split('\n').find((l) => l.startsWith('STATUS '));
  if (!line) throw new Error(`${chapter.slug}/main.ts status printed no STATUS line:\n${attempt.stdout}${attempt.stderr}`);
  return JSON.parse(line.slice('STATUS '.length)) as Record<string, string> | null;
}

export function findScenario(id: string): Scenario {
  const scenario = scenarios.find((s) => s.id === id);
  if (!scenario) throw new Error(`no scenario "${id}" (there are: ${scenarios.map((s) => s.id).join(', ')})`);
  return scenario;
}

/** Run one scenario against one chapter in a fresh database and world, and clean up after. */
export async function runScenario(chapter: string | number, scenarioId: string, options: { adminUrl: string }): Promise<Outcome> {
  const ch = findChapter(chapter);
  const scenario = findScenario(scenarioId);
  const databaseUrl = await createDatabase(options.adminUrl, `${scenario.id}_${ch.number}`);
  const world = await startWorld({ databaseUrl });
  try {
    const outcome = await scenario.run(ch, world);
    return { scenario: scenario.id, chapter: ch.slug, ...outcome };
  } finally {
    await world.stop();
    await dropDatabase(databaseUrl, options.adminUrl).catch(() => {});
    fs.rmSync(world.dir, { recursive: true, force: true });
  }
}
