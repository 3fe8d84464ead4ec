/**
 * The production chapters — 6 (leasing workers, plain statements), 7 (the
 * same engine made fast) and 8 (failures and time, on top of 7) — measured
 * through their public API (index.ts): step overhead, sequential workflows,
 * throughput in one process and across processes, dispatch latency (each of
 * these on the chapter it is given: bench.ts runs them on all three, side by
 * side), takeover after kill -9, a steady open-loop load, memory and a
 * 10,000-step history (on the last chapter); and, on a chapter with durable
 * sleep, how late a sleeping workflow wakes and what 10,000 sleeping ones cost
 * the others.
 *
 * Every suite takes the chapter (chapter.ts) as a parameter; its worker
 * processes load the same chapter (CHAPTER=<dir>, worker.ts). Each suite gets
 * a database of its own and drops it. Write transactions and WAL bytes are
 * server-wide (probes.ts): nothing else should run meanwhile.
 */
import pg from 'pg';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { REFERENCE_CHAPTERS, type ProductionChapter, type ProductionEngine, type TimeApi, type TimeEngine, type TimeWorker } from './chapter.ts';
import { WorkerProcess, type WorkerStats } from './children.ts';
import type { EventDelivery, Waiting } from './events.ts';
import type { FanOut } from './fanout.ts';
import { Probe, type Snapshot } from './probes.ts';
import { roundTrips } from './roundtrips.ts';
import { msSince, summarize, type Summary } from './stats.ts';
import { benchWorkflows, LONG_STEPS, timeWorkflows, wallMs, type BenchWorkflows } from './workflows.ts';

export interface SuiteContext {
  serverUrl: string;
  probe: Probe;
  quick: boolean;
  log: (line: string) => void;
  /** The 1-client baseline commit, for ratios (ms). */
  baselineCommitMs?: number;
}

/** What a measured stretch cost, per workflow. */
export interface Cost {
  workflows: number;
  seconds: number;
  workflowsPerSecond: number;
  commitsPerWorkflow: number;
  walBytesPerWorkflow: number;
  roundTripsPerWorkflow: number;
  /** Node's CPU: this process, plus the worker processes where they ran the workflows. */
  nodeCpuSeconds: number;
  /** PostgreSQL's CPU; undefined on an external server (DATABASE_URL: its pid is unknown). */
  pgCpuSeconds: number | undefined;
}

export interface StepOverhead {
  steps: number;
  zeroStep: Summary;
  manySteps: Summary;
  perStepMs: number;
  ratioToCommit: number | undefined;
  commitsPerStep: number;
  roundTripsPerStep: number;
  walBytesPerStep: number;
}

export interface Sequential extends Cost {
  latency: Summary;
}

export interface ThroughputRun extends Cost {
  mode: 'in-process' | 'processes';
  concurrency: number;
  /** Peak RSS of a worker during the run: this (the benchmark's own) process sampled every 20 ms, or the largest worker process's VmHWM. */
  peakRssBytes: number;
}

export interface Throughput {
  workflows: number;
  /** engine.start() from 8 concurrent callers, before the drain. */
  startsPerSecond: number;
  runs: ThroughputRun[];
}

export interface Dispatch {
  /** 'yardstick' (a bare commit, no engine), 'same process' or 'worker process'. */
  mode: string;
  /** What wakes the worker: what the rows of the two chapters are matched by. */
  wake: string;
  pollMs: number;
  latency: Summary;
}

export interface Takeover {
  leaseMs: number;
  pollMs: number;
  trialsMs: number[];
  latency: Summary;
}

export interface Steady {
  targetRate: number;
  achievedRate: number;
  seconds: number;
  workflows: number;
  thirds: Summary[];
  /** autovacuum_naptime: autovacuum looks at each database this often, so a shorter run may see none. */
  autovacuumNaptime: string;
  tables: Array<{ table: string; liveTuples: number; deadTuples: number; autovacuums: number; tableBytes: number; indexBytes: number }>;
  cost: Cost;
  /** The worker's retention: finished workflows older than this are deleted, checked this often. */
  retention: { olderThanMs: number; everyMs: number };
  /** Rows in workflows at each third's end: finished ones (what retention bounds) and running ones (the backlog, if the engine falls behind). */
  rowsAtThirds: Array<{ finished: number; running: number }>;
}

export interface History {
  steps: number;
  insertSeconds: number;
  resumeMs: number;
  extraRssBytes: number;
  roundTrips: number;
  idleRssBytes: number;
}

/** The suites run on every production chapter, for one of them. */
export interface ChapterResults {
  /** Its directory, e.g. '06-leasing-workers'. */
  chapter: string;
  /** What "recorded" means there (the per-chapter durability table). */
  durability: string;
  stepOverhead?: StepOverhead;
  sequential?: Sequential;
  throughput?: Throughput;
  /** Same process, worker process with LISTEN/NOTIFY, worker process polling (the yardstick is the run's, below). */
  dispatch?: Dispatch[];
}

/** How late sleeping workflows woke: one way of waking them. */
export interface WakeUpCase {
  /** Who woke them, and how it knew when. */
  wake: string;
  /** Workflows measured (each slept once). */
  workflows: number;
  /** Their sleeps, ms: the shortest and the longest asked for. */
  sleepMs: [number, number];
  /** actual − due, ms, both on the database clock: due is the sleep's recorded end, actual when the step after it ran. */
  lateness: Summary;
  /** Every sample (ms, sorted, to 0.01 ms): the chart's distribution. */
  samplesMs: number[];
}

export interface WakeUp {
  /** The chapter it ran on. */
  chapter: string;
  concurrency: number;
  pollMs: number;
  /** The yardstick: how late a bare setTimeout of the same lengths fired in this process, meanwhile — no database. */
  timer?: Summary;
  /** The worker that put them to sleep is idle, and wakes them itself: its alarm is the database's own figure. */
  alarm: WakeUpCase;
  /** That worker is gone; another idle worker, which learnt the next due time from nextWakeUp after its last claim, wakes them. */
  handoff?: WakeUpCase;
}

/** What the other workflows got, with or without the sleepers beside them. */
export interface SleepingCondition {
  /** Workflows asleep in this database meanwhile. */
  sleeping: number;
  /** start() from an engine with no worker → NOTIFY → an idle worker (concurrency 8) claims → first step: the claim's latency as felt. */
  dispatch: Summary;
  /** A backlog of 3-step workflows drained by one worker of concurrency 8: claims of several, one after another. */
  drain: Cost;
}

export interface Sleeping {
  chapter: string;
  /** Workflows asleep (for about an hour and more) in the second database. */
  sleepers: number;
  /** Writing them: one started and run to its sleep by the engine, the rest copies of its rows (INSERT … SELECT). */
  insertSeconds: number;
  /** The same measurements in a database where nothing sleeps, and in one with the sleepers, interleaved (ABBA). */
  none: SleepingCondition;
  sleeping: SleepingCondition;
  /** The workers' `held`, sampled every 5 ms while they ran beside the sleepers (idle, dispatching, draining). */
  heldSamples: number;
  /** The most an idle worker held, beside the sleepers, over `idleMs` (at least one poll and its nextWakeUp). */
  idleHeldMax: number;
  idleMs: number;
  /** Sleepers ever seen in a worker's `held` (any sample), and sleepers whose row a claim touched: both 0 when sleeping costs nothing. */
  sleepersHeld: number;
  sleepersClaimed: number;
  /** The claim's index (workflows_runnable) with the sleepers in it, and without. */
  indexBytes: { none: number; sleeping: number };
}

/** A chapter measured a second time in the same suite, after the last one: how far one engine's figures move within a run. */
export interface Again {
  chapter: string;
  stepOverhead?: StepOverhead;
  sequential?: Sequential;
}

export interface ProductionResults {
  /** Steps, sequential, throughput and dispatch on each production chapter, in chapter order (6, 7, 8). */
  compared?: ChapterResults[];
  /** The chapter before the last measured again, after the last, in the steps and sequential suites: the noise band. */
  again?: Again;
  /** Dispatch's yardstick: a bare INSERT commit after the same idle time, measured once for both chapters. */
  dispatchYardstick?: Dispatch;
  /** The chapter the suites below ran on: the last one. */
  last?: string;
  takeover?: Takeover;
  steady?: Steady;
  history?: History;
  /** Wake-up lateness of sleeping workflows (a chapter with durable sleep). */
  wakeUp?: WakeUp;
  /** 10,000 sleeping workflows beside the others (a chapter with durable sleep). */
  sleeping?: Sleeping;
  /** Event delivery latency: send → the step after the wait (a chapter with events: events.ts). */
  events?: EventDelivery;
  /** 10,000 workflows waiting for an event beside the others (a chapter with events: events.ts). */
  waiting?: Waiting;
  /** A parent and 1,000 children (a chapter with child workflows: fanout.ts). */
  fanOut?: FanOut;
}

// ── plumbing ─────────────────────────────────────────────────────────────────

interface Opened {
  url: string;
  db: pg.Pool;
  engine: ProductionEngine;
  close(): Promise<void>;
}

/** A fresh database for `chapter`, migrated, and its engine on it. */
async function open(ctx: SuiteContext, chapter: ProductionChapter, label: string, poolMax = 12): Promise<Opened> {
  const url = await createDatabase(ctx.serverUrl, `bench_ch${chapter.number}_${label}`);
  const db = new pg.Pool({ connectionString: url, max: poolMax });
  db.on('error', () => {});
  await chapter.api.migrate(db);
  const engine = chapter.api.createEngine({ db, workflows: benchWorkflows(), resultPollMs: 10 });
  return {
    url,
    db,
    engine,
    async close() {
      await db.end();
      await dropDatabase(url, ctx.serverUrl).catch(() => {});
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A worker process (worker.ts) running `chapter`'s engine. */
function spawnWorker(chapter: ProductionChapter, env: Record<string, string>): WorkerProcess {
  return WorkerProcess.spawn({ ...env, CHAPTER: chapter.dir });
}

/** Wait until `child` is ready, and make sure it loaded `chapter`: a figure must never be booked to the wrong chapter. */
async function readyOn(child: WorkerProcess, chapter: ProductionChapter): Promise<void> {
  const ready = await child.ready();
  if (ready.chapter !== chapter.dir) throw new Error(`worker ${child.pid} loaded ${String(ready.chapter)}, not ${chapter.dir}`);
}

/** Measure `body` (which runs `workflows` workflows): commits, WAL, round trips, CPU. */
export async function measure(ctx: SuiteContext, count: number | (() => number), body: () => Promise<{ extraCpuMs?: number; extraRoundTrips?: number } | void>): Promise<Cost> {
  const before: Snapshot = await ctx.probe.snapshot();
  const trips = roundTrips();
  const started = process.hrtime.bigint();
  const extra = (await body()) ?? {};
  const seconds = msSince(started) / 1000;
  const tripsAfter = roundTrips();
  const after = await ctx.probe.snapshot();
  const d = Probe.delta(before, after);
  const workflows = typeof count === 'number' ? count : count();
  return {
    workflows,
    seconds,
    workflowsPerSecond: workflows / seconds,
    commitsPerWorkflow: d.writeTransactions / workflows,
    walBytesPerWorkflow: d.walBytes / workflows,
    // The probe's own snapshot query (1) is not the engine's.
    roundTripsPerWorkflow: (tripsAfter - trips - 1 + (extra.extraRoundTrips ?? 0)) / workflows,
    nodeCpuSeconds: d.nodeCpuSeconds + (extra.extraCpuMs ?? 0) / 1000,
    pgCpuSeconds: d.pgCpuSeconds,
  };
}

/** start → result, one after another. */
async function sequentially(engine: ProductionEngine, name: keyof BenchWorkflows & string, count: number, prefix: string): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = process.hrtime.bigint();
    const run = await engine.start(name, {}, { id: `${prefix}-${i}` });
    await run.result();
    latencies.push(msSince(t));
  }
  return latencies;
}

/** Start `count` workflows from 8 concurrent callers; starts per second. */
export async function startMany(engine: Pick<ProductionEngine, 'start'>, name: keyof BenchWorkflows & string, count: number, prefix: string): Promise<number> {
  let next = 0;
  const t = process.hrtime.bigint();
  await Promise.all(
    [...Array(8)].map(async () => {
      while (next < count) await engine.start(name, {}, { id: `${prefix}-${next++}` });
    }),
  );
  return count / (msSince(t) / 1000);
}

// ── 2. step overhead ─────────────────────────────────────────────────────────

export async function stepOverhead(ctx: SuiteContext, chapter: ProductionChapter): Promise<StepOverhead> {
  const o = await open(ctx, chapter, 'steps');
  const worker = o.engine.createWorker({ concurrency: 1, pollMs: 1000 });
  await worker.start();
  try {
    const count = ctx.quick ? 5 : 200;
    await sequentially(o.engine, 'noop0', 10, 'warm0');
    await sequentially(o.engine, 'noop20', ctx.quick ? 2 : 10, 'warm20');
    let zero: number[] = [];
    let many: number[] = [];
    const zeroCost = await measure(ctx, count, async () => void (zero = await sequentially(o.engine, 'noop0', count, 'zero')));
    const manyCost = await measure(ctx, count, async () => void (many = await sequentially(o.engine, 'noop20', count, 'twenty')));
    const zeroStep = summarize(zero);
    const manySteps = summarize(many);
    const perStepMs = (manySteps.meanMs - zeroStep.meanMs) / 20;
    return {
      steps: 20,
      zeroStep,
      manySteps,
      perStepMs,
      ratioToCommit: ctx.baselineCommitMs ? perStepMs / ctx.baselineCommitMs : undefined,
      commitsPerStep: (manyCost.commitsPerWorkflow - zeroCost.commitsPerWorkflow) / 20,
      roundTripsPerStep: (manyCost.roundTripsPerWorkflow - zeroCost.roundTripsPerWorkflow) / 20,
      walBytesPerStep: (manyCost.walBytesPerWorkflow - zeroCost.walBytesPerWorkflow) / 20,
    };
  } finally {
    await worker.stop();
    await o.close();
  }
}

// ── 3. sequential workflows ──────────────────────────────────────────────────

export async function sequential(ctx: SuiteContext, chapter: ProductionChapter): Promise<Sequential> {
  const o = await open(ctx, chapter, 'seq');
  const worker = o.engine.createWorker({ concurrency: 1, pollMs: 1000 });
  await worker.start();
  try {
    const count = ctx.quick ? 10 : 1000;
    await sequentially(o.engine, 'noop3', Math.min(20, count), 'warm');
    let latencies: number[] = [];
    const cost = await measure(ctx, count, async () => void (latencies = await sequentially(o.engine, 'noop3', count, 'wf')));
    return { ...cost, latency: summarize(latencies) };
  } finally {
    await worker.stop();
    await o.close();
  }
}

// ── 4. throughput ────────────────────────────────────────────────────────────

export async function throughput(ctx: SuiteContext, chapter: ProductionChapter): Promise<Throughput> {
  // 1,500 rather than the 2,000: eight drains, each after its starts, fit the 5-minute budget on 2 cores.
  const count = ctx.quick ? 16 : 1500;
  // Quick: the two ends in-process, and two worker processes — each worker process costs a Node start
  // (about a second of CPU), and the quick run does this for both chapters inside `npm test`.
  // A reference chapter (6: the figures "what chapter 7 buys" quotes) is drained at the ends only.
  const reference = REFERENCE_CHAPTERS.includes(chapter.dir);
  const levels = { 'in-process': ctx.quick || reference ? [1, 8] : [1, 2, 4, 8], processes: ctx.quick ? [2] : reference ? [8] : [1, 2, 4, 8] };
  const runs: ThroughputRun[] = [];
  let startsPerSecond = 0;
  for (const mode of ['in-process', 'processes'] as const) {
    for (const concurrency of levels[mode]) {
      const o = await open(ctx, chapter, `tp_${mode === 'in-process' ? 'in' : 'proc'}_${concurrency}`, concurrency + 8);
      const children: WorkerProcess[] = [];
      try {
        // Warm-up, outside the measurement: each process's JIT, connections and prepared paths; the
        // worker processes then pause (stop claiming, stay alive) while the measured workflows are started.
        // A worker process gets ~150 workflows of its own first: a service's workers run for days, and
        // a process measured while V8 is still compiling its hot paths pays ~0.5 s of CPU for that alone.
        const warm = ctx.quick ? 2 * concurrency : mode === 'processes' ? 150 * concurrency : Math.max(20, 10 * concurrency);
        await startMany(o.engine, 'noop3', warm, 'warm');
        if (mode === 'processes') {
          for (let i = 0; i < concurrency; i++) children.push(spawnWorker(chapter, { DATABASE_URL: o.url, CONCURRENCY: '1', GATE: '1', POLL_MS: '1000' }));
          await Promise.all(children.map((c) => readyOn(c, chapter)));
          for (const c of children) c.send('go');
          await waitUntilDrained(o.db);
          const paused = children.map((c) => c.waitFor((e) => e.event === 'paused', 30_000));
          for (const c of children) c.send('pause');
          await Promise.all(paused);
        } else {
          await o.engine.createWorker({ concurrency, pollMs: 1000 }).drain();
        }
        const rate = await startMany(o.engine, 'noop3', count, 'wf');
        if (mode === 'in-process' && concurrency === 8) startsPerSecond = rate;
        let peakRss = 0;
        const cost = await measure(ctx, count, async () => {
          if (mode === 'in-process') {
            const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
            try {
              await o.engine.createWorker({ concurrency, pollMs: 1000 }).drain();
            } finally {
              clearInterval(sampler);
            }
            peakRss = Math.max(peakRss, process.memoryUsage.rss());
            return;
          }
          const before: WorkerStats[] = await Promise.all(children.map((c) => c.stats('reset-peak')));
          const trips = roundTrips();
          for (const c of children) c.send('go');
          await waitUntilDrained(o.db);
          const pollTrips = roundTrips() - trips;
          const after: WorkerStats[] = await Promise.all(children.map((c) => c.stats()));
          peakRss = Math.max(...after.map((s) => s.peakRss));
          let cpuMs = 0;
          let childTrips = 0;
          after.forEach((s, i) => {
            cpuMs += (s.cpuMs ?? 0) - (before[i]!.cpuMs ?? 0);
            childTrips += s.roundTrips - before[i]!.roundTrips;
          });
          // The completion poll is the benchmark's, not the engine's: its round trips are taken out.
          return { extraCpuMs: cpuMs, extraRoundTrips: childTrips - pollTrips };
        });
        runs.push({ ...cost, mode, concurrency, peakRssBytes: peakRss });
        ctx.log(`  ${chapter.name}, ${mode}, ${concurrency} at once: ${Math.round(cost.workflowsPerSecond)} workflows/s`);
      } finally {
        await Promise.all(children.map((c) => c.stop()));
        await o.close();
      }
    }
  }
  return { workflows: count, startsPerSecond, runs };
}

/** Poll (every 10 ms) until no workflow is left running. */
async function waitUntilDrained(db: pg.Pool): Promise<void> {
  for (;;) {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE status = 'running'`);
    if (rows[0]!.n === 0) return;
    await sleep(10);
  }
}

// ── 5. dispatch latency ──────────────────────────────────────────────────────

async function stampRuns(engine: ProductionEngine, count: number, prefix: string): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    await sleep(15); // the worker is idle: asleep in its claim loop
    const t0 = wallMs();
    const run = await engine.start('stamp', {}, { id: `${prefix}-${i}` });
    const ranAt = (await run.result()) as number;
    latencies.push(ranAt - t0);
  }
  return latencies;
}

/**
 * The yardstick for dispatch: a bare single-row INSERT commit, sent on a
 * connection that sat idle as long as stampRuns waits. An idle backend and
 * an idle Node wake slower than a hot loop's (~0.5 ms on this machine); one
 * commit is the least a durable start can cost.
 */
async function idleCommits(url: string, count: number): Promise<number[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS bench_idle (id bigserial PRIMARY KEY, v int NOT NULL)`);
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      await sleep(15);
      const t = process.hrtime.bigint();
      await client.query({ name: 'bench_idle_insert', text: 'INSERT INTO bench_idle (v) VALUES ($1)', values: [i] });
      latencies.push(msSince(t));
    }
    return latencies;
  } finally {
    await client.end();
  }
}

/** Dispatch's yardstick, measured once a run: a bare INSERT commit after the same idle time as stampRuns. */
export async function dispatchYardstick(ctx: SuiteContext): Promise<Dispatch> {
  const count = ctx.quick ? 5 : 200;
  const url = await createDatabase(ctx.serverUrl, 'bench_dispatch_yardstick');
  try {
    return { mode: 'yardstick', wake: 'none: a bare INSERT autocommit, sent after 15 ms idle', pollMs: 0, latency: summarize(await idleCommits(url, count)) };
  } finally {
    await dropDatabase(url, ctx.serverUrl).catch(() => {});
  }
}

/** The wake-ups dispatch measures, the same for every chapter (what each chapter does on them, report.ts says). */
export const DISPATCH_WAKES = {
  local: 'in-process (start() tells the local worker)',
  notify: 'LISTEN/NOTIFY (poll every 5 s as fallback)',
  poll: (pollMs: number) => `polling only (every ${pollMs} ms ±20 %)`,
};

export async function dispatch(ctx: SuiteContext, chapter: ProductionChapter): Promise<Dispatch[]> {
  const count = ctx.quick ? 5 : 200;
  const results: Dispatch[] = [];
  {
    const o = await open(ctx, chapter, 'dispatch_in');
    const worker = o.engine.createWorker({ concurrency: 1, pollMs: 5000 });
    await worker.start();
    try {
      await stampRuns(o.engine, 5, 'warm');
      results.push({ mode: 'same process', wake: DISPATCH_WAKES.local, pollMs: 5000, latency: summarize(await stampRuns(o.engine, count, 'd')) });
    } finally {
      await worker.stop();
      await o.close();
    }
  }
  // Polling is the same in every chapter: a reference chapter skips it.
  const wakes = [[true, 5000, count] as const, ...(REFERENCE_CHAPTERS.includes(chapter.dir) ? [] : [[false, 200, ctx.quick ? 3 : 50] as const])];
  for (const [listen, pollMs, runs] of wakes) {
    const o = await open(ctx, chapter, `dispatch_${listen ? 'listen' : 'poll'}`);
    const child = spawnWorker(chapter, { DATABASE_URL: o.url, CONCURRENCY: '1', POLL_MS: String(pollMs), LISTEN: listen ? '1' : '0' });
    try {
      await readyOn(child, chapter);
      await child.waitFor((e) => e.event === 'started', 60_000);
      await stampRuns(o.engine, ctx.quick ? 1 : 3, 'warm');
      results.push({
        mode: 'worker process',
        wake: listen ? DISPATCH_WAKES.notify : DISPATCH_WAKES.poll(pollMs),
        pollMs,
        latency: summarize(await stampRuns(o.engine, runs, 'd')),
      });
    } finally {
      await child.stop();
      await o.close();
    }
  }
  return results;
}

// ── 6. takeover ──────────────────────────────────────────────────────────────

export async function takeover(ctx: SuiteContext, chapter: ProductionChapter): Promise<Takeover> {
  const leaseMs = 1500;
  const pollMs = 200;
  const trials = ctx.quick ? 1 : 3;
  const o = await open(ctx, chapter, 'takeover');
  const env = { DATABASE_URL: o.url, CONCURRENCY: '1', LEASE_MS: String(leaseMs), POLL_MS: String(pollMs) };
  const trialsMs: number[] = [];
  try {
    for (let i = 0; i < trials; i++) {
      const victim = spawnWorker(chapter, { ...env, ROLE: 'victim' });
      const rescuer = spawnWorker(chapter, { ...env, GATE: '1' });
      try {
        await victim.waitFor((e) => e.event === 'started', 60_000);
        const run = await o.engine.start('hold', {}, { id: `hold-${i}` });
        for (;;) {
          const info = await o.engine.inspect(run.id);
          if (info?.leaseOwner === `bench-${victim.pid}`) break;
          await sleep(10);
        }
        await readyOn(rescuer, chapter);
        rescuer.send('go');
        await rescuer.waitFor((e) => e.event === 'started');
        // Kill at a random point of the heartbeat cycle (renewals every lease/2).
        await sleep(Math.random() * (leaseMs / 2));
        const killedAt = wallMs();
        victim.kill9();
        const ranAt = (await run.result()) as number;
        trialsMs.push(ranAt - killedAt);
        ctx.log(`  trial ${i + 1}: resumed ${Math.round(ranAt - killedAt)} ms after kill -9 (lease ${leaseMs} ms)`);
      } finally {
        victim.kill9();
        await rescuer.stop();
      }
    }
  } finally {
    await o.close();
  }
  return { leaseMs, pollMs, trialsMs, latency: summarize(trialsMs) };
}

// ── 8. steady state ──────────────────────────────────────────────────────────

export async function steady(ctx: SuiteContext, chapter: ProductionChapter, maxRate: number | undefined): Promise<Steady> {
  const o = await open(ctx, chapter, 'steady', 16);
  // Retention on, as a service that runs for months would have it: the tables must stay bounded.
  const retention = { olderThanMs: ctx.quick ? 500 : 5000, everyMs: ctx.quick ? 200 : 1000 };
  const worker = o.engine.createWorker({ concurrency: 8, pollMs: 1000, retention });
  try {
    if (maxRate === undefined) {
      // No throughput figure from this run: a short 8-way drain to find one.
      const n = ctx.quick ? 16 : 400;
      await startMany(o.engine, 'noop3', n, 'probe');
      const t = process.hrtime.bigint();
      await o.engine.createWorker({ concurrency: 8, pollMs: 1000 }).drain();
      maxRate = n / (msSince(t) / 1000);
    }
    const targetRate = Math.max(1, maxRate / 2);
    const seconds = ctx.quick ? 2 : 40;
    await worker.start();
    await sequentially(o.engine, 'noop3', 20, 'warm'); // the worker's code paths warm before the clock starts
    const samples: Array<{ at: number; ms: number }> = [];
    const inFlight = new Set<Promise<void>>();
    let issued = 0;
    const rowsAtThirds: Array<{ finished: number; running: number }> = [];
    const countRows = async () =>
      (
        await o.db.query<{ finished: number; running: number }>(
          `SELECT count(*) FILTER (WHERE status <> 'running')::int AS finished, count(*) FILTER (WHERE status = 'running')::int AS running FROM workflows`,
        )
      ).rows[0]!;
    const counting = [1, 2, 3].map((k) => sleep((k * seconds * 1000) / 3 - 50).then(async () => void (rowsAtThirds[k - 1] = await countRows())));
    const cost = await measure(ctx, () => samples.length, async () => {
      const t0 = performance.now();
      while (performance.now() - t0 < seconds * 1000) {
        const due = Math.floor(((performance.now() - t0) / 1000) * targetRate);
        while (issued < due) {
          // Open loop: latency counts from when the workflow was due, not from when we got round to it.
          const dueAt = t0 + (issued / targetRate) * 1000;
          const id = `steady-${issued++}`;
          const p = o.engine
            .start('noop3', {}, { id })
            .then((run) => run.result())
            .then(() => void samples.push({ at: dueAt - t0, ms: performance.now() - dueAt }));
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        }
        await sleep(2);
      }
      await Promise.all([...inFlight]);
      await Promise.all(counting);
    });
    const n = samples.length;
    samples.sort((a, b) => a.at - b.at);
    const third = (k: number) => summarize(samples.filter((s) => s.at >= (k * seconds * 1000) / 3 && s.at < ((k + 1) * seconds * 1000) / 3).map((s) => s.ms));
    await worker.stop();
    // Statistics reach pg_stat_* from each backend at most once a second.
    await sleep(1500);
    const { rows } = await o.db.query<Steady['tables'][number]>(
      `SELECT relname AS "table", n_live_tup::int AS "liveTuples", n_dead_tup::int AS "deadTuples", autovacuum_count::int AS autovacuums,
              pg_table_size(relid)::bigint::float8 AS "tableBytes", pg_indexes_size(relid)::bigint::float8 AS "indexBytes"
         FROM pg_stat_user_tables WHERE relname IN ('workflows', 'steps') ORDER BY relname DESC`,
    );
    const naptime = await o.db.query<{ v: string }>(`SELECT current_setting('autovacuum_naptime') AS v`);
    return { targetRate, achievedRate: n / seconds, seconds, workflows: n, thirds: [third(0), third(1), third(2)], autovacuumNaptime: naptime.rows[0]!.v, tables: rows, cost, retention, rowsAtThirds };
  } finally {
    await worker.stop();
    await o.close();
  }
}

// ── 9. a 10,000-step history ─────────────────────────────────────────────────

export async function history(ctx: SuiteContext, chapter: ProductionChapter): Promise<History> {
  const o = await open(ctx, chapter, 'history');
  const child = spawnWorker(chapter, { DATABASE_URL: o.url, CONCURRENCY: '1', POLL_MS: '5000' });
  try {
    await readyOn(child, chapter);
    await child.waitFor((e) => e.event === 'started', 60_000);
    // Warm the worker's code paths (claim, replay, complete) on a small workflow first.
    await (await o.engine.start('noop3', {}, { id: 'warm' })).result();
    await sleep(200);
    const id = 'long-1';
    const t = process.hrtime.bigint();
    // Not runnable (lease_expires_at in the future) until its history is in. Written as a run claimed
    // with token 1 would have left it: a workflow with a history is never at token 0 (chapter 7's
    // migration 003), and a first claim (token 1) loads no log — chapter 8 fails a workflow whose
    // first run finds its steps already recorded.
    await o.db.query(`INSERT INTO workflows (id, name, input, fencing_token, lease_expires_at) VALUES ($1, 'long', '{}'::jsonb, 1, now() + interval '1 hour')`, [id]);
    await o.db.query(
      `INSERT INTO steps (workflow_id, seq, name, output, fencing_token)
       SELECT $1, i, 's' || i, to_jsonb(i), 1 FROM generate_series(0, $2::int - 1) AS i`,
      [id, LONG_STEPS],
    );
    const insertSeconds = msSince(t) / 1000;
    const before = await child.stats('reset-peak');
    const t0 = wallMs();
    await o.db.query(`UPDATE workflows SET lease_expires_at = now() WHERE id = $1`, [id]);
    await o.db.query(`SELECT pg_notify('durable_workflows', '')`);
    const end = await child.waitFor((e) => e.event === 'end' && e.id === id, 120_000);
    if (end.outcome !== 'completed') throw new Error(`the ${LONG_STEPS}-step workflow did not complete: ${String(end.outcome)}`);
    return {
      steps: LONG_STEPS,
      insertSeconds,
      resumeMs: (end.at as number) - t0,
      extraRssBytes: (end.peakRss as number) - before.rss,
      roundTrips: (end.roundTrips as number) - before.roundTrips,
      idleRssBytes: before.rss,
    };
  } finally {
    await child.stop();
    await o.close();
  }
}

// ── 10. durable sleep: wake-up lateness ──────────────────────────────────────

interface OpenedTime {
  url: string;
  db: pg.Pool;
  api: TimeApi;
  /** A new engine on this database (each has its own local workers: start() hands work to its own only). */
  engine(): TimeEngine;
  close(): Promise<void>;
}

/** A fresh database for a chapter with durable sleep, migrated; engines on it register the sleeping workflows too. */
async function openTime(ctx: SuiteContext, chapter: ProductionChapter, api: TimeApi, label: string, poolMax = 24): Promise<OpenedTime> {
  const url = await createDatabase(ctx.serverUrl, `bench_ch${chapter.number}_${label}`);
  const db = new pg.Pool({ connectionString: url, max: poolMax });
  db.on('error', () => {});
  await api.migrate(db);
  const workflows = timeWorkflows(async () => (await db.query<{ ms: number }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`)).rows[0]!.ms);
  return {
    url,
    db,
    api,
    engine: () => api.createEngine({ db, workflows, resultPollMs: 10 }),
    async close() {
      await db.end();
      await dropDatabase(url, ctx.serverUrl).catch(() => {});
    },
  };
}

/** A run's result, awaited later: a failure is kept (and thrown by `settle`), never an unhandled rejection meanwhile. */
function later(result: Promise<unknown>): Promise<unknown> {
  return result.then(
    () => undefined,
    (error: unknown) => error ?? new Error('run failed'),
  );
}

/** Wait for results taken with `later`; throw the first failure. */
async function settle(results: Array<Promise<unknown>>): Promise<void> {
  const failure = (await Promise.all(results)).find((x) => x !== undefined);
  if (failure !== undefined) throw failure;
}

/** Sleep lengths spread evenly over [lo, hi], in a fixed order that is not sorted (the golden ratio's steps): the same every run. */
const spread = (i: number, lo: number, hi: number) => Math.round(lo + ((i * 0.6180339887) % 1) * (hi - lo));

/** The yardstick of wake-up lateness: how late a bare setTimeout(ms) fires in this process, meanwhile (performance.now()). */
function timerLateness(ms: number): Promise<number> {
  const due = performance.now() + ms;
  return new Promise((resolve) => setTimeout(() => resolve(performance.now() - due), ms));
}

/** actual − due of each `nap` workflow whose id starts with `prefix`, in ms on the database clock. */
async function lateness(db: pg.Pool, prefix: string, only?: Set<string>): Promise<number[]> {
  const { rows } = await db.query<{ id: string; due: number; woke: number }>(
    `SELECT w.id, (extract(epoch FROM (s.output->>'until')::timestamptz) * 1000)::float8 AS due, (k.output #>> '{}')::float8 AS woke
       FROM workflows w
       JOIN steps s ON s.workflow_id = w.id AND s.kind = 'sleep'
       JOIN steps k ON k.workflow_id = w.id AND k.name = 'woke'
      WHERE w.id LIKE $1 || '%' AND w.status = 'completed'`,
    [prefix],
  );
  return rows.filter((r) => !only || only.has(r.id)).map((r) => r.woke - r.due);
}

function wakeUpCase(wake: string, samples: number[], sleepMs: [number, number]): WakeUpCase {
  return { wake, workflows: samples.length, sleepMs, lateness: summarize(samples), samplesMs: [...samples].sort((a, b) => a - b).map((x) => Math.round(x * 100) / 100) };
}

/**
 * How late a sleeping workflow wakes: many `nap` workflows, each sleeping
 * 50–500 ms, started one every 16 ms on an in-process worker of concurrency 8
 * (default pollMs, 1000); lateness = when the step after the sleep ran −
 * the sleep's recorded end, both read from the database's clock. Then the
 * same with the worker that put them to sleep stopped before they are due,
 * and another idle worker (another engine, so start() never hands it work)
 * waking them: it knows when from nextWakeUp after its last claim.
 */
export async function wakeUp(ctx: SuiteContext, chapter: ProductionChapter, api: TimeApi): Promise<WakeUp> {
  const concurrency = 8;
  const pollMs = 1000;
  const o = await openTime(ctx, chapter, api, 'wakeup');
  try {
    // 1. The worker that put them to sleep wakes them; beside them, bare timers (the yardstick).
    let alarm: WakeUpCase;
    let timer: Summary;
    {
      const engine = o.engine();
      const worker = engine.createWorker({ concurrency, pollMs, name: 'bench-sleeper' });
      await worker.start();
      try {
        const warm = await Promise.all([0, 1, 2].map((i) => engine.start('nap', { ms: 20 }, { id: `warm-${i}` })));
        await Promise.all(warm.map((run) => run.result()));
        const count = ctx.quick ? 10 : 250;
        const [lo, hi] = [50, 500];
        const runs: Array<Promise<unknown>> = [];
        const timers: Array<Promise<number>> = [];
        for (let i = 0; i < count; i++) {
          const run = await engine.start('nap', { ms: spread(i, lo, hi) }, { id: `nap-${i}` });
          runs.push(later(run.result()));
          timers.push(timerLateness(spread(i + 0.5, lo, hi)));
          await sleep(16);
        }
        await settle(runs);
        timer = summarize(await Promise.all(timers));
        alarm = wakeUpCase('the worker that put it to sleep (its alarm: the database’s dueInMs)', await lateness(o.db, 'nap-'), [lo, hi]);
        ctx.log(`  its own worker: p50 ${alarm.lateness.p50Ms.toFixed(2)} ms, p99 ${alarm.lateness.p99Ms.toFixed(2)} ms, max ${alarm.lateness.maxMs.toFixed(2)} ms late`);
      } finally {
        await worker.stop();
      }
    }
    // 2. That worker is gone; another idle worker wakes them.
    let handoff: WakeUpCase;
    {
      const finder = o.engine().createWorker({ concurrency, pollMs, name: 'bench-finder' });
      await finder.start();
      const engine = o.engine();
      const sleptHere = new Set<string>();
      const sleeper = engine.createWorker({ concurrency, pollMs, name: 'bench-gone', onRunEnd: (e) => void (e.outcome === 'waiting' && sleptHere.add(e.workflowId)) });
      await sleeper.start();
      try {
        const count = ctx.quick ? 4 : 40;
        // Longer than the finder's poll (pollMs +20 %): it has claimed — and asked nextWakeUp — since they went to sleep.
        const [lo, hi] = ctx.quick ? [1300, 1600] : [1500, 3000];
        const runs: Array<Promise<unknown>> = [];
        for (let i = 0; i < count; i++) runs.push(later((await engine.start('nap', { ms: spread(i, lo, hi) }, { id: `handoff-${i}` })).result()));
        const giveUp = performance.now() + lo / 2;
        while (sleptHere.size < count && performance.now() < giveUp) await sleep(5);
        await sleeper.stop(); // gone before any is due
        await settle(runs);
        const { rows } = await o.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id LIKE 'handoff-%' AND lease_owner <> 'bench-finder'`);
        if (rows[0]!.n > 0) throw new Error(`${rows[0]!.n} handoff workflow(s) were not woken by the other worker`);
        handoff = wakeUpCase('another idle worker, the first gone (nextWakeUp after its last claim)', await lateness(o.db, 'handoff-', sleptHere), [lo, hi]);
        ctx.log(`  another worker: p50 ${handoff.lateness.p50Ms.toFixed(2)} ms, p99 ${handoff.lateness.p99Ms.toFixed(2)} ms, max ${handoff.lateness.maxMs.toFixed(2)} ms late`);
      } finally {
        await sleeper.stop();
        await finder.stop();
      }
    }
    return { chapter: chapter.dir, concurrency, pollMs, timer, alarm, handoff };
  } finally {
    await o.close();
  }
}

// ── 11. 10,000 sleeping workflows ────────────────────────────────────────────

/** stampRuns, started from an engine with no worker: the row goes in unclaimed with a NOTIFY, and the idle worker claims it. */
export async function claimedStamps(starter: TimeEngine, count: number, prefix: string): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    await sleep(15);
    const t0 = wallMs();
    const run = await starter.start('stamp', {}, { id: `${prefix}-${i}` });
    latencies.push(((await run.result()) as number) - t0);
  }
  return latencies;
}

/** What {@link besideTheCrowd} measured, per database: with none of the crowd (`empty`), and with it (`crowded`). */
export interface BesideTheCrowd {
  empty: { dispatch: number[]; drains: Cost[] };
  crowded: { dispatch: number[]; drains: Cost[] };
  /** The workers' `held`, sampled every 5 ms while they ran beside the crowd; and members of the crowd ever seen in it. */
  heldSamples: number;
  crowdHeld: number;
  /** The most an idle worker held, beside the crowd, over `idleMs` (at least one poll and its nextWakeUp). */
  idleHeldMax: number;
  idleMs: number;
}

/**
 * What the sleeping and the waiting suites measure beside a crowd of parked
 * workflows (ids starting with `prefix`, already written into `crowded`):
 * an idle worker's `held`; then, in `crowded` and in `empty`, interleaved
 * (empty, crowded, crowded, empty), dispatch through a claim (start() from
 * an engine without a worker, NOTIFY, an idle worker of concurrency 8 claims
 * and asks nextWakeUp) and a backlog drained by a worker of concurrency 8 —
 * every worker's `held` beside the crowd sampled for members of it.
 */
export async function besideTheCrowd(
  ctx: SuiteContext,
  dbs: { empty: { engine(): TimeEngine }; crowded: { engine(): TimeEngine } },
  prefix: string,
  { stamps, backlog }: { stamps: number; backlog: number },
): Promise<BesideTheCrowd> {
  const result: BesideTheCrowd = { empty: { dispatch: [], drains: [] }, crowded: { dispatch: [], drains: [] }, heldSamples: 0, crowdHeld: 0, idleHeldMax: 0, idleMs: ctx.quick ? 300 : 1500 };
  const watch = (workers: () => TimeWorker[]) => {
    const timer = setInterval(() => {
      for (const w of workers()) {
        result.heldSamples++;
        result.crowdHeld += w.held.filter((id) => id.startsWith(prefix)).length;
      }
    }, 5);
    return () => clearInterval(timer);
  };
  {
    const worker = dbs.crowded.engine().createWorker({ concurrency: 8, name: 'bench-idle' });
    await worker.start();
    const stop = watch(() => [worker]);
    const until = performance.now() + result.idleMs;
    while (performance.now() < until) {
      result.idleHeldMax = Math.max(result.idleHeldMax, worker.held.length);
      await sleep(5);
    }
    stop();
    await worker.stop();
  }
  const round = async (cond: 'empty' | 'crowded', r: number) => {
    const d = dbs[cond];
    const starter = d.engine(); // no worker of its own: its starts go out with a NOTIFY
    const engine = d.engine();
    const worker = engine.createWorker({ concurrency: 8, name: `bench-claimer-${r}` });
    await worker.start();
    const stopWatching = cond === 'crowded' ? watch(() => [worker]) : () => {};
    try {
      await claimedStamps(starter, 3, `warm-${r}`);
      result[cond].dispatch.push(...(await claimedStamps(starter, stamps, `stamp-${r}`)));
    } finally {
      stopWatching();
      await worker.stop();
    }
    await startMany(starter, 'noop3', backlog, `backlog-${r}`);
    const drainer = engine.createWorker({ concurrency: 8, pollMs: 1000, name: `bench-drainer-${r}` });
    const stop = cond === 'crowded' ? watch(() => [drainer]) : () => {};
    try {
      result[cond].drains.push(await measure(ctx, backlog, () => drainer.drain()));
    } finally {
      stop();
    }
  };
  const order: Array<'empty' | 'crowded'> = ctx.quick ? ['empty', 'crowded'] : ['empty', 'crowded', 'crowded', 'empty'];
  for (const [r, cond] of order.entries()) await round(cond, r);
  return result;
}

/**
 * 10,000 workflows asleep for an hour and more, beside other work: one
 * started and run to its sleep by the engine, 9,999 copies of its rows (every
 * column as the engine wrote it; ids and ends of sleep spread over the next
 * hour). Then, in that database and in one where nothing sleeps, interleaved
 * (none, sleeping, sleeping, none): dispatch through a claim (start() from an
 * engine without a worker, NOTIFY, an idle worker of concurrency 8 claims and
 * asks nextWakeUp), and a backlog drained by a worker of concurrency 8 —
 * the workers' `held` sampled all along.
 */
export async function sleeping(ctx: SuiteContext, chapter: ProductionChapter, api: TimeApi): Promise<Sleeping> {
  const sleepers = ctx.quick ? 1000 : 10_000;
  const stamps = ctx.quick ? 5 : 80;
  const backlog = ctx.quick ? 16 : 600;
  const dbs = { none: await openTime(ctx, chapter, api, 'awake'), sleeping: await openTime(ctx, chapter, api, 'asleep') };
  try {
    // The sleepers: one the engine puts to sleep, then copies of its rows.
    const t = process.hrtime.bigint();
    const o = dbs.sleeping;
    {
      const engine = o.engine();
      const worker = engine.createWorker({ concurrency: 8, name: 'bench-template' });
      await worker.start();
      await engine.start('nap', { ms: 3_600_000 }, { id: 'sleeper-0' });
      for (;;) {
        const { rows } = await o.db.query(`SELECT 1 FROM workflows WHERE id = 'sleeper-0' AND lease_owner IS NULL AND lease_expires_at > now() + interval '59 minutes'`);
        if (rows.length === 1) break;
        await sleep(5);
      }
      await worker.stop();
    }
    // jsonb_populate_record: the template's row with the id and the end of the sleep replaced, every other column as the engine wrote it.
    await o.db.query(
      `WITH copies AS (
         SELECT i, 'sleeper-' || i AS id, date_trunc('milliseconds', w.lease_expires_at + i * interval '360 milliseconds') AS until
           FROM workflows w, generate_series(1, $1::int - 1) AS i WHERE w.id = 'sleeper-0'
       ), wf AS (
         INSERT INTO workflows SELECT (jsonb_populate_record(w, jsonb_build_object('id', c.id, 'lease_expires_at', c.until))).*
           FROM workflows w, copies c WHERE w.id = 'sleeper-0'
       )
       INSERT INTO steps SELECT (jsonb_populate_record(s, jsonb_build_object('workflow_id', c.id, 'output', jsonb_build_object('until', c.until)))).*
         FROM steps s, copies c WHERE s.workflow_id = 'sleeper-0'`,
      [sleepers],
    );
    await o.db.query('ANALYZE workflows; ANALYZE steps');
    await dbs.none.db.query('ANALYZE workflows; ANALYZE steps');
    const insertSeconds = msSince(t) / 1000;
    const template = (await o.db.query<{ token: number }>(`SELECT fencing_token AS token FROM workflows WHERE id = 'sleeper-0'`)).rows[0]!.token;

    // An idle worker beside them (it claims nothing, asks nextWakeUp — an hour —, polls again), dispatch and a drain.
    const beside = await besideTheCrowd(ctx, { empty: dbs.none, crowded: dbs.sleeping }, 'sleeper-', { stamps, backlog });

    const claimed = await o.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM workflows WHERE id LIKE 'sleeper-%' AND (fencing_token <> $1 OR lease_owner IS NOT NULL OR status <> 'running' OR lease_expires_at <= now())`,
      [template],
    );
    const indexBytes = async (d: OpenedTime) => (await d.db.query<{ b: number }>(`SELECT pg_relation_size('workflows_runnable')::float8 AS b`)).rows[0]!.b;
    const condition = (cond: 'empty' | 'crowded'): SleepingCondition => ({
      sleeping: cond === 'empty' ? 0 : sleepers,
      dispatch: summarize(beside[cond].dispatch),
      drain: sumCosts(beside[cond].drains),
    });
    return {
      chapter: chapter.dir,
      sleepers,
      insertSeconds,
      none: condition('empty'),
      sleeping: condition('crowded'),
      heldSamples: beside.heldSamples,
      idleHeldMax: beside.idleHeldMax,
      idleMs: beside.idleMs,
      sleepersHeld: beside.crowdHeld,
      sleepersClaimed: claimed.rows[0]!.n,
      indexBytes: { none: await indexBytes(dbs.none), sleeping: await indexBytes(dbs.sleeping) },
    };
  } finally {
    await dbs.none.close();
    await dbs.sleeping.close();
  }
}

/** Several measured stretches as one: totals, and the rates they make. */
export function sumCosts(costs: Cost[]): Cost {
  const workflows = costs.reduce((n, c) => n + c.workflows, 0);
  const seconds = costs.reduce((n, c) => n + c.seconds, 0);
  const per = (f: (c: Cost) => number) => costs.reduce((n, c) => n + f(c) * c.workflows, 0) / workflows;
  const pg = costs.every((c) => c.pgCpuSeconds !== undefined) ? costs.reduce((n, c) => n + c.pgCpuSeconds!, 0) : undefined;
  return {
    workflows,
    seconds,
    workflowsPerSecond: workflows / seconds,
    commitsPerWorkflow: per((c) => c.commitsPerWorkflow),
    walBytesPerWorkflow: per((c) => c.walBytesPerWorkflow),
    roundTripsPerWorkflow: per((c) => c.roundTripsPerWorkflow),
    nodeCpuSeconds: costs.reduce((n, c) => n + c.nodeCpuSeconds, 0),
    pgCpuSeconds: pg,
  };
}
