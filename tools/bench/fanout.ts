/**
 * Fan-out (chapter 9 on): a parent starts 1,000 child workflows in one turn
 * (Promise.all over ctx.startChild) and waits for all of them in one turn
 * (Promise.all over their result()): the wall time from start() to the
 * parent's end, the commits and round trips a child, and how many times the
 * parent ran — it should run twice, once to start the children and park,
 * once, woken by the last child's end, to gather them.
 *
 * Beside it, in the same database and interleaved (fan-out, yardstick, …):
 * the same 1,000 one-step `child` workflows started on their own by start()
 * from 8 callers, run by the same kind of worker — what the children cost
 * without a parent.
 */
import type { ProductionChapter } from './chapter.ts';
import { openEvents, RunEnds, type EventApi } from './events.ts';
import { measure, sumCosts, type Cost, type SuiteContext } from './production.ts';

/** One fan-out, measured. */
export interface FanOutTrial {
  /** start() of the parent → its run ended `completed` (heard from the worker, not polled). */
  seconds: number;
  /** Per child: commits, round trips, CPU of the whole stretch (the parent's share included), over `children`. */
  cost: Cost;
  /** How the parent's runs ended, in order: one run a claim (start()'s claim for the local worker included). */
  parentRuns: string[];
  /** The parent's fencing token at the end: its claims plus its parks (a park moves the token on, fencing out the run that parked). */
  parentFencingToken: number;
}

export interface FanOut {
  chapter: string;
  children: number;
  /** The worker's concurrency (one worker, in this process). */
  concurrency: number;
  trials: FanOutTrial[];
  /** All trials as one: totals and the rates they make (per child). */
  total: Cost;
  /** The same number of `child` workflows started by start() on their own (8 callers), one stretch per trial: what they cost without a parent. */
  alone: Cost;
}

/**
 * A parent of `children` children on an in-process worker of concurrency 8
 * (default pollMs): `trials` fan-outs, each beside a run of the same children
 * started on their own, interleaved.
 */
export async function fanOut(ctx: SuiteContext, chapter: ProductionChapter, api: EventApi): Promise<FanOut> {
  const children = ctx.quick ? 20 : 1000;
  const trials = ctx.quick ? 1 : 3;
  const concurrency = 8;
  const o = await openEvents(ctx, chapter, api, 'fanout', concurrency + 12);
  const ends = new RunEnds();
  let aloneLeft = 0;
  let aloneDone: (() => void) | undefined;
  const engine = o.engine();
  const worker = engine.createWorker({
    concurrency,
    name: 'bench-fanout',
    onRunEnd: (e) => {
      if (e.workflowId.startsWith('parent-')) ends.ended(e.workflowId, e.outcome);
      else if (e.workflowId.startsWith('alone-') && e.outcome === 'completed' && --aloneLeft === 0) aloneDone?.();
    },
  });
  await worker.start();
  try {
    /** One parent, to its end: the outcomes of its runs. */
    const parent = async (id: string, n: number): Promise<string[]> => {
      const run = await engine.start('fanOut', { children: n }, { id });
      const outcomes: string[] = [];
      for (;;) {
        const outcome = await ends.next(id, 600_000);
        outcomes.push(outcome);
        if (outcome !== 'waiting') break;
      }
      if (outcomes[outcomes.length - 1] !== 'completed') throw new Error(`${id}: its last run ended ${outcomes[outcomes.length - 1]}`);
      const heard = await run.result();
      if (heard !== n) throw new Error(`${id} heard from ${String(heard)} of its ${n} children`);
      return outcomes;
    };
    /** `n` children on their own: started by 8 callers, to their ends. */
    const alone = async (prefix: string, n: number): Promise<void> => {
      aloneLeft = n;
      const done = new Promise<void>((resolve) => (aloneDone = resolve));
      let next = 0;
      await Promise.all(
        [...Array(8)].map(async () => {
          while (next < n) {
            const i = next++;
            await engine.start('child', { i }, { id: `${prefix}-${i}` });
          }
        }),
      );
      await done;
    };
    // Warm-up: the code paths of a fan-out and of the children alone, outside the measurement.
    await parent('parent-warm', Math.min(20, children));
    await alone('alone-warm', Math.min(20, children));

    const measured: FanOutTrial[] = [];
    const aloneCosts: Cost[] = [];
    for (let t = 0; t < trials; t++) {
      const id = `parent-${t}`;
      let parentRuns: string[] = [];
      const cost = await measure(ctx, children, async () => void (parentRuns = await parent(id, children)));
      const token = (await o.db.query<{ token: number }>(`SELECT fencing_token AS token FROM workflows WHERE id = $1`, [id])).rows[0]!.token;
      measured.push({ seconds: cost.seconds, cost, parentRuns, parentFencingToken: token });
      ctx.log(`  ${children} children: ${cost.seconds.toFixed(2)} s, ${cost.commitsPerWorkflow.toFixed(2)} commits a child, the parent ran ${parentRuns.length} times (${parentRuns.join(', ')})`);
      const on = await measure(ctx, children, () => alone(`alone-${t}`, children));
      aloneCosts.push(on);
      ctx.log(`  the same ${children} on their own: ${on.seconds.toFixed(2)} s, ${on.commitsPerWorkflow.toFixed(2)} commits each`);
    }
    return { chapter: chapter.dir, children, concurrency, trials: measured, total: sumCosts(measured.map((x) => x.cost)), alone: sumCosts(aloneCosts) };
  } finally {
    await worker.stop();
    await o.close();
  }
}
