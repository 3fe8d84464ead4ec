/**
 * The production chapters — 6 (leasing workers, plain statements) and 7 (the
 * same engine made fast) — measured through their public API (index.ts): step
 * overhead, sequential workflows, throughput in one process and across
 * processes, dispatch latency (each of these on the chapter it is given:
 * bench.ts runs them on both, side by side), takeover after kill -9, a steady
 * open-loop load, memory and a 10,000-step history (on the last chapter).
 *
 * Every suite takes the chapter (chapter.ts) as a parameter; its worker
 * processes load the same chapter (CHAPTER=<dir>, worker.ts). Each suite gets
 * a database of its own and drops it. Write transactions and WAL bytes are
 * server-wide (probes.ts): nothing else should run meanwhile.
 */
import pg from 'pg';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import type { ProductionChapter, ProductionEngine } from './chapter.ts';
import { WorkerProcess, type WorkerStats } from './children.ts';
import { Probe, type Snapshot } from './probes.ts';
import { roundTrips } from './roundtrips.ts';
import { msSince, summarize, type Summary } from './stats.ts';
import { benchWorkflows, LONG_STEPS, wallMs, type BenchWorkflows } from './workflows.ts';

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

export interface ProductionResults {
  /** Steps, sequential, throughput and dispatch on each production chapter, in chapter order (6, then 7). */
  compared?: ChapterResults[];
  /** Dispatch's yardstick: a bare INSERT commit after the same idle time, measured once for both chapters. */
  dispatchYardstick?: Dispatch;
  /** The chapter the suites below ran on: the last one. */
  last?: string;
  takeover?: Takeover;
  steady?: Steady;
  history?: History;
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
async function measure(ctx: SuiteContext, count: number | (() => number), body: () => Promise<{ extraCpuMs?: number; extraRoundTrips?: number } | void>): Promise<Cost> {
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
async function startMany(engine: ProductionEngine, name: keyof BenchWorkflows & string, count: number, prefix: string): Promise<number> {
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
  const levels = { 'in-process': ctx.quick ? [1, 8] : [1, 2, 4, 8], processes: ctx.quick ? [2] : [1, 2, 4, 8] };
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
  for (const [listen, pollMs, runs] of [
    [true, 5000, count],
    [false, 200, ctx.quick ? 3 : 50],
  ] as const) {
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
