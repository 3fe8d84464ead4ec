/**
 * The benchmark's results as markdown: what `npm run bench` prints and
 * writes to docs/bench/report.md. The production chapters are shown side by
 * side — a column for each of chapters 6 to 9, then 7/6, 8/7 and 9/8 — with
 * "what chapter 7 buys" (6 against 7), "did the last chapter keep the figures
 * of the one before" (8 against 9, within the run's noise band), and the
 * last, judged against the targets, durable sleep's and events' among them.
 */
import { renderCharts } from './charts.ts';
import type { CommitRate } from './baseline.ts';
import { REFERENCE_CHAPTERS } from './chapter.ts';
import type { EventDelivery, Waiting } from './events.ts';
import type { FanOut } from './fanout.ts';
import type { Again, ChapterResults, Cost, Dispatch, ProductionResults, SleepingCondition, Sleeping, ThroughputRun, WakeUp } from './production.ts';
import { fmt, type Summary } from './stats.ts';

export interface ChapterCost {
  chapter: number;
  label: string;
  durability: string;
  workflows: number;
  workflowsPerSecond: number;
  latency: Summary;
  writeTransactionsPerWorkflow: number;
  walBytesPerWorkflow: number;
  nodeCpuSeconds: number;
  pgCpuSeconds: number | undefined;
}

export interface BenchResults {
  when: string;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    platform: string;
    /** 1, 5 and 15 minutes, when the run started, and when it ended: what else the machine was doing. */
    loadAverage: number[];
    loadAverageAtEnd?: number[];
  };
  server: { describe: string; version: string; fsync: string; synchronousCommit: string; embedded: boolean };
  quick: boolean;
  suites: string[];
  durationSeconds: number;
  /** Wall-clock seconds of each suite, in the order run. */
  suiteSeconds: Record<string, number>;
  flush?: { flushesPerSecond: number; latency: Summary };
  baseline?: { oneClient: CommitRate; eightClients: CommitRate };
  chapters: ChapterCost[];
  production: ProductionResults;
}

const MB = 2 ** 20;
const mb = (bytes: number) => `${fmt(bytes / MB, 1)} MB`;
const ms = (x: number) => `${fmt(x)} ms`;
const pgCpu = (x: number | undefined) => (x === undefined ? 'n/a' : fmt(x));

/** The issue's peers, measured on a 2-core machine like this one (not in this run). */
const PEERS = [
  '| one client, single-row INSERT autocommit | ~0.5 ms a commit, ~1,700 commits/s |',
  '| 8 clients, the same | ~6,300 commits/s |',
  '| DBOS Transact 5.3, sequential 3-step workflows | ~90 workflows/s (~2.6 ms a step) |',
  '| DBOS Transact 5.3, through its queue at concurrency 8 | ~180 workflows/s |',
  '| graphile-worker 0.17, drain | ~1,800 jobs/s |',
  '| graphile-worker 0.17, job added → started (p50) | ~4 ms |',
];

/** CPU per workflow, in ms: Node (all processes that ran it) / PostgreSQL. */
function cpuPerWorkflow(c: Cost): string {
  const per = (seconds: number) => fmt((seconds * 1000) / c.workflows);
  return `${per(c.nodeCpuSeconds)} / ${c.pgCpuSeconds === undefined ? 'n/a' : per(c.pgCpuSeconds)}`;
}

function costColumns(c: Cost): string {
  return `${fmt(c.commitsPerWorkflow, 1)} | ${fmt(c.roundTripsPerWorkflow, 1)} | ${fmt(c.walBytesPerWorkflow, 0)} | ${cpuPerWorkflow(c)}`;
}

// ── the production chapters, side by side ───────────────────────────────────

/** A reference chapter (chapter.ts) measured on fewer figures than the others in these results: the report says so. */
function reduced(c: ChapterResults, cs: ChapterResults[]): boolean {
  if (!REFERENCE_CHAPTERS.includes(c.chapter)) return false;
  const others = cs.filter((x) => x !== c);
  const runs = (x: ChapterResults) => x.throughput?.runs.length ?? 0;
  const polled = (x: ChapterResults) => (x.dispatch ?? []).some((d) => d.wake.startsWith('polling'));
  return others.some((x) => runs(x) > runs(c) || (polled(x) && !polled(c) && c.dispatch !== undefined));
}

/** 'a', 'a and b', 'a, b and c'. */
const listOf = (items: string[]) => (items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`);
const capital = (text: string) => `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
/** 'chapter 7' for '07-fast-path'. */
const chapterName = (dir: string) => `chapter ${Number.parseInt(dir, 10)}`;
const chapterNumber = (dir: string) => Number.parseInt(dir, 10);

/** What each production chapter does where the report explains a figure (keyed by its directory). */
const MECHANISM: Record<string, { local: string; notify: string }> = {
  '06-leasing-workers': {
    local: 'start() commits the row and wakes the local worker in-process; the worker claims it (a second commit) and loads its (empty) log, then the step runs',
    notify: 'start() commits the row; a separate NOTIFY follows up to 5 ms later (one per 5 ms); the worker hears it, claims (a commit) and loads the log, then the step runs',
  },
  '07-fast-path': {
    local: 'start() inserts the workflow already claimed for the idle local worker (token 1): one commit, then the step runs — no claim, no NOTIFY, no log to load',
    notify: "the window's first start() carries the NOTIFY in its own INSERT (one commit); the worker hears it and claims (a second commit), then the step runs — no log to load on token 1",
  },
  '08-failures-and-time': {
    local: "as chapter 7: start() inserts the workflow already claimed for the idle local worker (token 1, attempts 1): one commit, then the step runs",
    notify: "as chapter 7: the NOTIFY rides in the window's first start(); the worker claims (a second commit; the claim also counts attempts, in the same UPDATE), then the step runs — and, slots left over, asks nextWakeUp when the next waiting workflow is due (a read, no commit)",
  },
  '09-waiting-for-the-world': {
    local: 'as chapters 7 and 8: start() inserts the workflow already claimed for the idle local worker (token 1, attempts 1): one commit, then the step runs',
    notify: "as chapter 8: the NOTIFY rides in the window's first start(); the worker claims (a second commit; the same UPDATE counts attempts and reads a cancellation request), then the step runs; slots left over, it asks nextWakeUp",
  },
};

/** What each chapter adds to the one before it, for "did it keep the figures" (keyed by its directory): in short, and in detail. */
const ADDS: Record<string, [string, string]> = {
  '08-failures-and-time': ['failures and time', 'attempts counted by the claim, step retries and sleeps that wait in the database, deadlines, schedules'],
  '09-waiting-for-the-world': [
    'events, cancellation and child workflows',
    '`ctx.waitForEvent` parks a workflow holding nothing, `engine.send` wakes it, `engine.cancel` stops it, `ctx.startChild` starts a workflow whose end wakes its parent',
  ],
};

/** The production figures of a results.json written before chapter 6 split in two: one flat set, measured on what is now chapter 7. */
interface FlatProduction {
  stepOverhead?: ChapterResults['stepOverhead'];
  sequential?: ChapterResults['sequential'];
  throughput?: ChapterResults['throughput'];
  dispatch?: Dispatch[];
}

/** Fill in what an older results.json lacks, so that `--render` can read it: flat production figures become chapter 7's. */
export function normalizeResults(raw: BenchResults): BenchResults {
  const { stepOverhead, sequential, throughput, dispatch, ...production } = (raw.production ?? {}) as ProductionResults & FlatProduction;
  if (!production.compared && (stepOverhead || sequential || throughput || dispatch)) {
    production.compared = [
      { chapter: '07-fast-path', durability: 'one fenced INSERT … SELECT per step', stepOverhead, sequential, throughput, dispatch: dispatch?.filter((d) => d.mode !== 'yardstick') },
    ];
    production.dispatchYardstick ??= dispatch?.find((d) => d.mode === 'yardstick');
  }
  if (!production.last && (production.takeover || production.steady || production.history)) production.last = '07-fast-path';
  return { ...raw, suiteSeconds: raw.suiteSeconds ?? {}, chapters: raw.chapters ?? [], production };
}

/** `7/6`, `8/7`…: one ratio per chapter after the first, each over the one before it (two chapters: just `7/6`). */
function ratioHeaders(cs: ChapterResults[]): string[] {
  return cs.slice(1).map((c, i) => `${chapterNumber(c.chapter)}/${chapterNumber(cs[i]!.chapter)}`);
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || a === 0) return '—';
  return `${fmt(b / a, 2)}×`;
}

/** Each value over the one before it: the cells under ratioHeaders. */
function ratioCells(values: Array<number | undefined>): string[] {
  return values.slice(1).map((v, i) => ratio(values[i], v));
}

interface SideRow {
  label: string;
  value: (c: ChapterResults) => number | undefined;
  show: (x: number) => string;
  /** Show the ratios (default true). */
  ratio?: boolean;
  note?: string;
}

/** A table with one column per chapter, then each chapter over the one before (7/6, 8/7), then (if any row has one) a note. */
function sideTable(firstHeader: string, cs: ChapterResults[], rows: SideRow[], noteHeader?: string): string[] {
  const rh = ratioHeaders(cs);
  const notes = noteHeader !== undefined;
  const header = [firstHeader, ...cs.map((c) => chapterName(c.chapter)), ...rh, ...(notes ? [noteHeader] : [])];
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => {
      const values = cs.map(row.value);
      const cells = [
        row.label,
        ...values.map((v) => (v === undefined || !Number.isFinite(v) ? '—' : row.show(v))),
        ...(row.ratio === false ? rh.map(() => '') : ratioCells(values)),
        ...(notes ? [row.note ?? ''] : []),
      ];
      return `| ${cells.join(' | ')} |`;
    }),
  ];
}

const perWorkflowMs = (seconds: number | undefined, c: Cost | undefined) => (c === undefined || seconds === undefined ? undefined : (seconds * 1000) / c.workflows);
const throughputRun = (c: ChapterResults, mode: ThroughputRun['mode'], concurrency: number) => c.throughput?.runs.find((x) => x.mode === mode && x.concurrency === concurrency);
/** local (same process), notify (a worker process woken by NOTIFY), poll (a worker process polling). */
const wakeKind = (d: Dispatch) => (d.mode === 'same process' ? 'local' : d.wake.startsWith('LISTEN') ? 'notify' : d.wake.startsWith('polling') ? 'poll' : d.wake);
const dispatchOf = (c: ChapterResults, kind: string) => c.dispatch?.find((d) => wakeKind(d) === kind);

// ── targets ─────────────────────────────────────────────────────────────────

interface Verdict {
  /** The target, as the table says it: also what a chapter's row is matched by. */
  target: string;
  measured: string;
  met: boolean | undefined;
  why: string;
}

/** Chapter `c` against the targets; `last`: the chapter the single-chapter suites (takeover, history) ran on. */
function verdicts(r: BenchResults, c: ChapterResults, last: boolean): Verdict[] {
  const p = r.production;
  const base = r.baseline?.oneClient.latency.meanMs;
  const eight = r.baseline?.eightClients.commitsPerSecond;
  const out: Verdict[] = [];
  const cores = r.machine.cpus;
  /** What the CPU alone allows: all cores busy, each workflow costing what it cost here (Node + PostgreSQL). */
  const cpuCeiling = (x: Cost) =>
    x.pgCpuSeconds === undefined ? '' : ` — ${fmt(((x.nodeCpuSeconds + x.pgCpuSeconds) * 1000) / x.workflows)} ms of CPU a workflow, so ${cores} cores allow at most ${fmt((cores * x.workflows) / (x.nodeCpuSeconds + x.pgCpuSeconds), 0)} workflows/s`;
  const cpuNote = (x: Cost) =>
    `CPU ${fmt(x.nodeCpuSeconds)} s Node + ${pgCpu(x.pgCpuSeconds)} s PostgreSQL in ${fmt(x.seconds)} s on ${cores} cores` +
    (x.pgCpuSeconds !== undefined ? ` (${fmt(((x.nodeCpuSeconds + x.pgCpuSeconds) / (x.seconds * cores)) * 100, 0)} % of the machine)` : '') +
    cpuCeiling(x);
  if (c.stepOverhead) {
    const s = c.stepOverhead;
    const ratio = s.ratioToCommit;
    out.push({
      target: 'step overhead ≤ 1.2× the baseline commit',
      measured: `${ms(s.perStepMs)} a step = ${ratio === undefined ? 'n/a' : `${fmt(ratio, 2)}×`} the commit (${base === undefined ? 'n/a' : ms(base)})`,
      met: ratio === undefined ? undefined : ratio <= 1.2,
      why:
        `a step is ${fmt(s.roundTripsPerStep, 1)} round trips and ${fmt(s.commitsPerStep, 2)} commits (the fenced INSERT … SELECT … FOR KEY SHARE, alone: it commits as a transaction of its own), ` +
        `${fmt(s.walBytesPerStep, 0)} WAL bytes; what is left over the bare INSERT is the fence's join, its row lock (WAL-logged) and the foreign-key check — work inside the same commit, not another one`,
    });
  }
  if (c.sequential) {
    const s = c.sequential;
    out.push({
      target: 'sequential ≥ 270 workflows/s',
      measured: `${fmt(s.workflowsPerSecond, 0)} workflows/s (p50 ${ms(s.latency.p50Ms)}, p99 ${ms(s.latency.p99Ms)})`,
      met: s.workflowsPerSecond >= 270,
      why:
        `${fmt(s.commitsPerWorkflow, 1)} commits and ${fmt(s.roundTripsPerWorkflow, 1)} round trips a workflow` +
        (base !== undefined ? `: the commits alone take ${ms(s.commitsPerWorkflow * base)} at the baseline's ${ms(base)} each, a ceiling of ${fmt(1000 / (s.commitsPerWorkflow * base), 0)}/s` : '') +
        `; ${cpuNote(s)}`,
    });
  }
  for (const mode of ['in-process', 'processes'] as const) {
    const run = throughputRun(c, mode, 8);
    if (!run) continue;
    const allowance = eight === undefined ? undefined : eight / run.commitsPerWorkflow;
    const share = allowance === undefined ? undefined : run.workflowsPerSecond / allowance;
    const label = mode === 'in-process' ? 'one worker, concurrency 8' : '8 worker processes, concurrency 1 each';
    out.push({
      target: `8 concurrent (${label}) ≥ 900 workflows/s`,
      measured: `${fmt(run.workflowsPerSecond, 0)} workflows/s`,
      met: run.workflowsPerSecond >= 900,
      why: `${fmt(run.commitsPerWorkflow, 1)} commits, ${fmt(run.roundTripsPerWorkflow, 1)} round trips a workflow; ${cpuNote(run)}`,
    });
    out.push({
      target: `8 concurrent (${label}) ≥ 70 % of the 8-client commit allowance`,
      measured:
        allowance === undefined
          ? 'n/a (no baseline)'
          : `${fmt((share ?? 0) * 100, 0)} % of ${fmt(allowance, 0)} workflows/s (${fmt(eight!, 0)} commits/s ÷ ${fmt(run.commitsPerWorkflow, 1)} commits a workflow)`,
      met: share === undefined ? undefined : share >= 0.7,
      why:
        share !== undefined && share < 0.7
          ? mode === 'in-process'
            ? `the commit rate is not what limits it: a workflow's writes (claim, three records, completion) go one after another, and write-combining keeps one statement of each kind in flight, so commit latency bounds it — in exchange for ${fmt(run.commitsPerWorkflow, 1)} commits a workflow instead of 5; ${cpuNote(run)}`
            : `the commits are not what limits it — round trips and CPU are: ${fmt(run.roundTripsPerWorkflow, 1)} round trips a workflow; ${cpuNote(run)}`
          : cpuNote(run),
    });
  }
  const idle = p.dispatchYardstick;
  const idleNote = idle ? `; the yardstick, a bare INSERT commit after the same 15 ms idle, takes p50 ${ms(idle.latency.p50Ms)}` : '';
  for (const d of (c.dispatch ?? []).filter((x) => wakeKind(x) !== 'poll')) {
    const kind = wakeKind(d);
    out.push({
      target: `dispatch (${d.mode}, ${kind === 'local' ? 'in-process' : 'LISTEN/NOTIFY'}) p50 < 3 ms, p99 < 10 ms`,
      measured: `p50 ${ms(d.latency.p50Ms)}, p99 ${ms(d.latency.p99Ms)}`,
      met: d.latency.p50Ms < 3 && d.latency.p99Ms < 10,
      why: (MECHANISM[c.chapter]?.[kind === 'local' ? 'local' : 'notify'] ?? '') + idleNote,
    });
  }
  if (last && p.takeover) {
    const t = p.takeover;
    out.push({
      target: 'takeover ≤ lease + 1 s',
      measured: `max ${ms(t.latency.maxMs)}, mean ${ms(t.latency.meanMs)} over ${t.trialsMs.length} kill(s) (lease ${t.leaseMs} ms)`,
      met: t.latency.maxMs <= t.leaseMs + 1000,
      why: `the lease runs out lease/2…lease after the kill (renewed every lease/2), then the next poll (every ${t.pollMs} ms ±20 %) claims it`,
    });
  }
  const eights = c.throughput?.runs.filter((x) => x.concurrency === 8) ?? [];
  if (eights.length > 0) {
    const peak = Math.max(...eights.map((x) => x.peakRssBytes));
    out.push({
      target: 'peak RSS < 150 MB (8-way run)',
      measured: eights.map((x) => `${mb(x.peakRssBytes)} (${x.mode === 'in-process' ? 'the benchmark process itself, worker inside' : 'largest worker process'})`).join('; '),
      met: peak < 150 * MB,
      why: 'the in-process figure includes the benchmark harness and tsx; a worker process is Node + tsx + pg',
    });
  }
  if (last && p.history) {
    const h = p.history;
    out.push({
      target: `resume a ${fmt(h.steps, 0)}-step history < 1 s and < 100 MB extra`,
      measured: `${ms(h.resumeMs)}, ${mb(h.extraRssBytes)} extra, ${h.roundTrips} round trips`,
      met: h.resumeMs < 1000 && h.extraRssBytes < 100 * MB,
      why: `one SELECT of all ${fmt(h.steps, 0)} rows (loadSteps), then replay in memory; measured from making it runnable to its end, in a worker process idle at ${mb(h.idleRssBytes)}`,
    });
  }
  if (last && p.wakeUp) {
    const w = p.wakeUp;
    for (const k of [w.alarm, w.handoff]) {
      if (!k) continue;
      const own = k === w.alarm;
      out.push({
        target: own ? WAKE_TARGET : `${WAKE_TARGET}, the worker that put it to sleep gone`,
        measured: `p50 ${ms(k.lateness.p50Ms)}, p99 ${ms(k.lateness.p99Ms)}, max ${ms(k.lateness.maxMs)} (${k.workflows} sleeps of ${fmt(k.sleepMs[0], 0)}–${fmt(k.sleepMs[1], 0)} ms)`,
        met: k.lateness.p99Ms < 50,
        why:
          (own
            ? `no polling to add: the run that goes to sleep gets how long until its end from the database (dueInMs, from its own now()), and its worker sets the claim loop's alarm from that figure (wakeAt) — it does not wait for the next poll (every ${w.pollMs} ms ±20 %)`
            : `the other worker learnt the due time from nextWakeUp after its last claim (it polls every ${w.pollMs} ms ±20 % and asks after each claim that leaves a slot free); a sleep due sooner than that after its worker died waits for that poll`) +
          (k.samplesMs.some((x) => x > 50)
            ? `; where not met: ${k.samplesMs.filter((x) => x > 50).length} of ${k.workflows} woke more than 50 ms late (${k.workflows < 100 ? `with ${k.workflows} sleeps the p99 is the worst one; ` : ''}see "The tail" under Durable sleep)`
            : ''),
      });
    }
  }
  if (last && p.sleeping) {
    const s = p.sleeping;
    const drain = s.sleeping.drain.workflowsPerSecond / s.none.drain.workflowsPerSecond;
    const dispatch = s.sleeping.dispatch.p50Ms / s.none.dispatch.p50Ms;
    out.push({
      target: SLEEPING_TARGET(s.sleepers),
      measured: `held: ${s.idleHeldMax} while idle, ${s.sleepersHeld} sleepers in ${fmt(s.heldSamples, 0)} samples; drain ${fmt(drain, 2)}×, dispatch p50 ${fmt(dispatch, 2)}× the figure with none asleep`,
      met: s.idleHeldMax === 0 && s.sleepersHeld === 0 && s.sleepersClaimed === 0 && drain >= 1 - NOISE_FLOOR && dispatch <= 1 + NOISE_FLOOR,
      why: "a sleeper is a row whose lease_expires_at is ahead with no owner: in the claim's index it sits to the right of now(), which the claim (`lease_expires_at <= now()`) never reads, and nextWakeUp reads one entry there",
    });
  }
  if (last && p.events) {
    const y = p.events.yardstick ?? p.dispatchYardstick;
    for (const k of p.events.cases) {
      out.push({
        target: `event delivery (${k.wake === 'in-memory' ? 'sender and worker in one engine: in memory' : k.clock === 'database' ? 'worker in another process: NOTIFY' : 'another engine, same process: NOTIFY'}) p50 < 3 ms, p99 < 10 ms`,
        measured: `p50 ${ms(k.latency.p50Ms)}, p99 ${ms(k.latency.p99Ms)}, max ${ms(k.latency.maxMs)} (${k.workflows} events, ${k.clock === 'database' ? 'database clock' : 'same-process clock'})`,
        met: k.latency.p50Ms < 3 && k.latency.p99Ms < 10,
        why:
          `${fmt(k.commitsPerEvent, 1)} commit(s) one after another before the step starts — ` +
          (k.wake === 'in-memory'
            ? "the send's transaction (the row's lock; the event, the wait's end recorded in the log, the workflow claimed for this process's idle worker), then the log loaded and the wait replayed"
            : "the send's transaction (the row's lock; the event, the wait's end recorded in the log, the workflow runnable + NOTIFY), then the woken worker's claim, the log loaded and the wait replayed") +
          (k.roundTripsPerEvent !== undefined ? `, ${fmt(k.roundTripsPerEvent, 1)} round trips in all (${fmt(k.sendRoundTrips, 1)} of them send()'s)` : `; send() itself ${fmt(k.sendRoundTrips, 1)} round trips`) +
          (y ? `; the yardstick, one bare INSERT commit after the same 15 ms idle, takes p50 ${ms(y.latency.p50Ms)}` : ''),
      });
    }
  }
  if (last && p.waiting) {
    const w = p.waiting;
    const drain = w.waiting.drain.workflowsPerSecond / w.none.drain.workflowsPerSecond;
    const dispatch = w.waiting.dispatch.p50Ms / w.none.dispatch.p50Ms;
    out.push({
      target: WAITING_TARGET(w.waiters),
      measured: `held: ${w.idleHeldMax} while idle, ${w.waitersHeld} waiters in ${fmt(w.heldSamples, 0)} samples; drain ${fmt(drain, 2)}×, dispatch p50 ${fmt(dispatch, 2)}× the figure with none waiting`,
      met: w.idleHeldMax === 0 && w.waitersHeld === 0 && w.waitersClaimed === 0 && drain >= 1 - NOISE_FLOOR && dispatch <= 1 + NOISE_FLOOR,
      why: "a parked workflow is a row released until year 9999 with no owner (its wait a row in `waits`, `waits_missing` 1): in the claim's index it sits at the far right, which the claim (`lease_expires_at <= now()`) never reads; the send that fills its last wait makes it runnable (or hands it, claimed, to a worker of its own process)",
    });
  }
  if (last && p.fanOut) {
    const f = p.fanOut;
    const runs = f.trials.map((t) => t.parentRuns.length);
    out.push({
      target: FANOUT_TARGET(f.children),
      measured: `ran ${listOf([...new Set(runs)].map(String))} time${runs.every((x) => x === 1) ? '' : 's'} in each of ${f.trials.length} fan-out${f.trials.length === 1 ? '' : 's'}; ${fmt(f.total.seconds / f.trials.length, 2)} s a fan-out, ${fmt(f.total.commitsPerWorkflow, 2)} commits a child`,
      met: runs.every((x) => x === 2),
      why: "the children start in one transaction (Promise.all over startChild), the parent parks once for all their ends (Promise.all over result()); each child's end counts the parent's missing waits down, and only the last makes it runnable",
    });
  }
  return out;
}

const WAKE_TARGET = 'wake-up lateness p99 < 50 ms beyond the chapter’s polling';
const SLEEPING_TARGET = (n: number) => `${fmt(n, 0)} sleeping workflows hold no slot and leave the claim as fast (within ${fmt(NOISE_FLOOR * 100, 0)} %)`;
const FANOUT_TARGET = (n: number) => `a fan-out of ${fmt(n, 0)} children: the parent runs twice (starts them and parks; gathers them)`;
const WAITING_TARGET = (n: number) => `${fmt(n, 0)} workflows waiting for an event hold no slot and leave the claim as fast (within ${fmt(NOISE_FLOOR * 100, 0)} %)`;

const metCell = (v: Verdict | undefined) => (v === undefined ? '' : v.met === undefined ? 'n/a' : v.met ? '✓ met' : '✗ not met');

/** The last chapter against the targets; the other chapters' figures beside it, same run. */
function targetsTable(r: BenchResults, cs: ChapterResults[], lastDir: string): string[] {
  const p = r.production;
  const last = cs.find((c) => c.chapter === lastDir) ?? ({ chapter: lastDir, durability: '' } satisfies ChapterResults);
  const others = cs.filter((c) => c !== last);
  const mine = verdicts(r, last, true);
  const theirs = others.map((c) => verdicts(r, c, false));
  if (mine.length === 0) return [];
  const name = chapterName(lastDir);
  return [
    `## ${capital(name)} against its targets${others.length ? `, ${others.length > 1 ? `chapters ${listOf(others.map((c) => String(chapterNumber(c.chapter))))}` : chapterName(others[0]!.chapter)} beside it` : ''}`,
    '',
    `The targets are the last chapter's${others.length ? `; ${listOf(others.map((c) => `${chapterName(c.chapter)}${c.chapter === '06-leasing-workers' ? ' (the engine before the fast path: what the fast path buys)' : c.chapter === '07-fast-path' ? ' (the fast path before failures and time: what they cost)' : c.chapter === '08-failures-and-time' && lastDir !== c.chapter ? ' (failures and time before events)' : ''}`))} ${others.length === 1 ? 'is' : 'are'} measured against them in the same run. ` : '; '}` +
      `${capital(listOf(['takeover', 'the long history', ...(p.wakeUp || p.sleeping ? ['durable sleep'] : []), ...(p.events || p.waiting ? ['events'] : []), ...(p.fanOut ? ['the fan-out'] : [])]))} are measured on ${name} only.`,
    '',
    `| target | ${name} | met | ${others.map((c) => `${chapterName(c.chapter)} (same run) | met`).join(' | ')}${others.length ? ' | ' : ''}why (${name}; where not met: the figures that explain it) |`,
    `|---|---|---|${others.map(() => '---|---|').join('')}---|`,
    ...mine.map((v) => {
      const beside = theirs.map((list) => {
        const o = list.find((x) => x.target === v.target);
        return o ? `${o.measured} | ${metCell(o)}` : `— (${name} only) | `;
      });
      return `| ${v.target} | ${v.measured} | ${metCell(v)} | ${beside.join(' | ')}${beside.length ? ' | ' : ''}${v.why} |`;
    }),
    '',
  ];
}

// ── the report ──────────────────────────────────────────────────────────────

export function renderReport(raw: BenchResults): string {
  const r = normalizeResults(raw);
  const base = r.baseline?.oneClient.latency.meanMs;
  const eight = r.baseline?.eightClients.commitsPerSecond;
  const p = r.production;
  const cs = p.compared ?? [];
  const lastDir = p.last ?? cs[cs.length - 1]?.chapter ?? '07-fast-path';
  const lastName = chapterName(lastDir);
  const names = listOf(cs.map((c) => chapterName(c.chapter)));
  const lines: string[] = [
    '# Benchmark report',
    '',
    `Measured ${r.when.slice(0, 16).replace('T', ' ')} UTC on ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; ` +
      `PostgreSQL ${r.server.version} (${r.server.describe}), fsync=${r.server.fsync}, synchronous_commit=${r.server.synchronousCommit}. ` +
      `Load average at the start: ${r.machine.loadAverage.map((x) => x.toFixed(2)).join(', ')}${r.machine.loadAverageAtEnd ? `, at the end: ${r.machine.loadAverageAtEnd.map((x) => x.toFixed(2)).join(', ')}` : ''}` +
      `${Math.max(...r.machine.loadAverage.slice(0, 1), ...(r.machine.loadAverageAtEnd ?? []).slice(0, 1)) > r.machine.cpus ? ` (**busy**: a load above its ${r.machine.cpus} cores, so other work shared the machine — raw figures suffer, ratios within a suite less)` : ''}. The run took ${fmt(r.durationSeconds, 0)} s (${Object.entries(r.suiteSeconds).map(([k, v]) => `${k} ${fmt(v, 0)} s`).join(', ')}).` +
      (r.quick ? ' **Quick run: tiny counts, figures are not meaningful.**' : ''),
    '',
    'Reproduce: `npm run bench` (embedded server) or `DATABASE_URL=… npm run bench`; `-- --only throughput,dispatch` for some suites, `-- --quick` for a smoke run.' +
      (r.server.embedded ? '' : ' **External server: PostgreSQL CPU is n/a (its process id is unknown).**'),
    '',
    `What is measured on which engine: steps, sequential, throughput and dispatch on ${names || 'the production chapters'}, side by side (each suite runs on one chapter, then at once on the next, so that all meet the same machine` +
      `${cs.some((c) => reduced(c, cs)) ? `; ${listOf(cs.filter((c) => reduced(c, cs)).map((c) => chapterName(c.chapter)))}, the reference${cs.filter((c) => reduced(c, cs)).length > 1 ? 's' : ''}, on the figures the comparisons below quote` : ''}); ` +
      `takeover, steady state and the long history on ${lastName}, the last chapter` +
      `${p.wakeUp || p.sleeping || p.events || p.waiting || p.fanOut ? `, and so are ${listOf([...(p.wakeUp || p.sleeping ? ['durable sleep (how late a sleeper wakes, what sleeping workflows cost)'] : []), ...(p.events || p.waiting ? ['events (how fast a sent event starts its workflow again, what waiting workflows cost)'] : []), ...(p.fanOut ? ['a fan-out to 1,000 child workflows'] : [])])}` : ''}; ` +
      `the per-chapter table on chapters 1–5 (${cs.some((c) => c.sequential) ? `chapter${cs.filter((c) => c.sequential).length > 1 ? 's' : ''} ${listOf(cs.filter((c) => c.sequential).map((c) => String(chapterNumber(c.chapter))))}` : 'the production chapters'}: their sequential figures). ` +
      'Every figure is set against the yardsticks below, measured in the same run on the same server.',
    '',
  ];
  if (r.flush && r.baseline) {
    lines.push(
      '## Yardsticks (same run, same server)',
      '',
      '| measure | rate | mean | p50 | p99 |',
      '|---|---|---|---|---|',
      `| disk flush (fdatasync 8 KiB) | ${fmt(r.flush.flushesPerSecond, 0)}/s | ${ms(r.flush.latency.meanMs)} | ${ms(r.flush.latency.p50Ms)} | ${ms(r.flush.latency.p99Ms)} |`,
      `| INSERT autocommit, 1 client | ${fmt(r.baseline.oneClient.commitsPerSecond, 0)} commits/s | ${ms(r.baseline.oneClient.latency.meanMs)} | ${ms(r.baseline.oneClient.latency.p50Ms)} | ${ms(r.baseline.oneClient.latency.p99Ms)} |`,
      `| INSERT autocommit, 8 clients | ${fmt(r.baseline.eightClients.commitsPerSecond, 0)} commits/s | ${ms(r.baseline.eightClients.latency.meanMs)} | ${ms(r.baseline.eightClients.latency.p50Ms)} | ${ms(r.baseline.eightClients.latency.p99Ms)} |`,
      '',
    );
  }
  // Chapter 6 against 7 (what the fast path buys), then 7 against the last (did it keep the fast path).
  const fastPath = ['06-leasing-workers', '07-fast-path'].map((dir) => cs.find((c) => c.chapter === dir)).filter((c): c is ChapterResults => c !== undefined);
  lines.push(...whatTheFastPathBuys(r, fastPath));
  if (cs.length >= 3 || !fastPath.includes(cs[cs.length - 1]!)) lines.push(...keptFigures(r, cs));
  // The same figures as pictures (charts.ts writes the SVG files beside this report).
  const charts = renderCharts(r);
  if (charts.length > 0) lines.push(...charts.map((chart) => `![${chart.title}](${chart.file})`), '');
  lines.push(...targetsTable(r, cs, lastDir));

  const withSteps = cs.filter((c) => c.stepOverhead);
  if (withSteps.length > 0) {
    const s0 = withSteps[0]!.stepOverhead!;
    lines.push(
      '## Step overhead',
      '',
      `A workflow of ${s0.steps} no-op steps against one of 0 steps, ${s0.zeroStep.n} of each, one after another (start → result) on an in-process worker; the difference of the means divided by ${s0.steps}. ` +
        '"× commit": one step divided by the 1-client baseline commit of this run.',
      '',
      ...sideTable('', withSteps, [
        { label: '0 steps: mean', value: (c) => c.stepOverhead?.zeroStep.meanMs, show: ms },
        { label: '0 steps: p50', value: (c) => c.stepOverhead?.zeroStep.p50Ms, show: ms },
        { label: '0 steps: p99', value: (c) => c.stepOverhead?.zeroStep.p99Ms, show: ms },
        { label: `${s0.steps} steps: mean`, value: (c) => c.stepOverhead?.manySteps.meanMs, show: ms },
        { label: `${s0.steps} steps: p50`, value: (c) => c.stepOverhead?.manySteps.p50Ms, show: ms },
        { label: `${s0.steps} steps: p99`, value: (c) => c.stepOverhead?.manySteps.p99Ms, show: ms },
        { label: '**one step**', value: (c) => c.stepOverhead?.perStepMs, show: (x) => `**${ms(x)}**` },
        { label: '× commit', value: (c) => c.stepOverhead?.ratioToCommit, show: (x) => `${fmt(x, 2)}×` },
        { label: 'commits a step', value: (c) => c.stepOverhead?.commitsPerStep, show: (x) => fmt(x, 2) },
        { label: 'round trips a step', value: (c) => c.stepOverhead?.roundTripsPerStep, show: (x) => fmt(x, 1) },
        { label: 'WAL bytes a step', value: (c) => c.stepOverhead?.walBytesPerStep, show: (x) => fmt(x, 0) },
      ]),
      '',
      `**One step: ${withSteps
        .map((c) => `${ms(c.stepOverhead!.perStepMs)} in ${chapterName(c.chapter)} (${c.stepOverhead!.ratioToCommit === undefined ? 'n/a' : `${fmt(c.stepOverhead!.ratioToCommit, 2)}×`} the commit)`)
        .join(', ')}.**`,
      '',
    );
  }
  const withSeq = cs.filter((c) => c.sequential);
  if (withSeq.length > 0) {
    lines.push(
      '## Sequential workflows',
      '',
      `${withSeq[0]!.sequential!.workflows} workflows of 3 no-op steps, one after another (start → result), one in-process worker (concurrency 1). "× commit": a workflow's mean latency divided by the 1-client baseline commit.`,
      '',
      ...sideTable('', withSeq, [
        { label: '**workflows/s**', value: (c) => c.sequential?.workflowsPerSecond, show: (x) => `**${fmt(x, 0)}**` },
        { label: 'mean', value: (c) => c.sequential?.latency.meanMs, show: ms },
        { label: 'p50', value: (c) => c.sequential?.latency.p50Ms, show: ms },
        { label: 'p99', value: (c) => c.sequential?.latency.p99Ms, show: ms },
        { label: '× commit', value: (c) => (base === undefined ? undefined : c.sequential && c.sequential.latency.meanMs / base), show: (x) => `${fmt(x, 1)}×` },
        { label: 'commits / wf', value: (c) => c.sequential?.commitsPerWorkflow, show: (x) => fmt(x, 1) },
        { label: 'round trips / wf', value: (c) => c.sequential?.roundTripsPerWorkflow, show: (x) => fmt(x, 1) },
        { label: 'WAL bytes / wf', value: (c) => c.sequential?.walBytesPerWorkflow, show: (x) => fmt(x, 0) },
        { label: 'CPU ms / wf, Node', value: (c) => perWorkflowMs(c.sequential?.nodeCpuSeconds, c.sequential), show: fmt },
        { label: 'CPU ms / wf, PostgreSQL', value: (c) => perWorkflowMs(c.sequential?.pgCpuSeconds, c.sequential), show: fmt },
      ]),
      '',
    );
  }
  const withTp = cs.filter((c) => c.throughput);
  if (withTp.length > 0) {
    const t0 = withTp[0]!.throughput!;
    const rh = ratioHeaders(withTp);
    const drainedBy = (x: Pick<ThroughputRun, 'mode' | 'concurrency'>) => (x.mode === 'in-process' ? `1 worker × ${x.concurrency}` : `${x.concurrency} process${x.concurrency === 1 ? '' : 'es'} × 1`);
    const allowanceOf = (x: ThroughputRun | undefined) => (x === undefined || eight === undefined ? undefined : eight / x.commitsPerWorkflow);
    // Every (mode, concurrency) any chapter ran, in the order run.
    const keys: Array<Pick<ThroughputRun, 'mode' | 'concurrency'>> = [];
    for (const c of withTp) for (const x of c.throughput!.runs) if (!keys.some((k) => k.mode === x.mode && k.concurrency === x.concurrency)) keys.push({ mode: x.mode, concurrency: x.concurrency });
    const per = (label: string) => withTp.map((c) => `${chapterName(c.chapter)}: ${label}`);
    lines.push(
      '## Throughput',
      '',
      `${fmt(t0.workflows, 0)} workflows of 3 no-op steps started first (engine.start from 8 concurrent callers: ${withTp.map((c) => `${fmt(c.throughput!.startsPerSecond, 0)} starts/s in ${chapterName(c.chapter)}`).join(', ')}), then drained — by one worker in the benchmark's process with concurrency N, ` +
        "and by N worker processes (tools/bench/worker.ts, loading the same chapter's library) with concurrency 1 each, started and connected before the clock starts. " +
        'Commits, round trips and CPU count the drain only (claim, steps, completion; each start committed before the clock started). ' +
        "Allowance: the 8-client commit rate divided by the commits one workflow needs in the drain; share: the rate measured against it. Node CPU includes the worker processes' (from /proc). " +
        (r.quick
          ? ''
          : `(${fmt(t0.workflows, 0)} per run rather than the issue's 2,000: ${withTp.reduce((n, c) => n + c.throughput!.runs.length, 0)} runs — ${withTp.map((c) => `${c.throughput!.runs.length} on ${chapterName(c.chapter)}`).join(', ')} — each started then drained, must fit the full run's budget on 2 cores.` +
            (withTp.some((c) => reduced(c, withTp))
              ? ` ${capital(listOf(withTp.filter((c) => reduced(c, withTp)).map((c) => chapterName(c.chapter))))}, the reference${withTp.filter((c) => reduced(c, withTp)).length > 1 ? 's, are' : ', is'} drained at the ends only: the figures the comparisons quote.`
              : '') +
            ')'),
      '',
      `| drained by | ${per('workflows/s').join(' | ')} | ${rh.map((x) => `${x} | `).join('')}${per('commits / wf').join(' | ')} | ${per('share of allowance').join(' | ')} |`,
      `|---|${withTp.map(() => '---|').join('')}${rh.map(() => '---|').join('')}${withTp.map(() => '---|').join('')}${withTp.map(() => '---|').join('')}`,
      ...keys.map((k) => {
        const runs = withTp.map((c) => throughputRun(c, k.mode, k.concurrency));
        const cell = (x: ThroughputRun | undefined, f: (x: ThroughputRun) => string) => (x === undefined ? '—' : f(x));
        return (
          `| ${drainedBy(k)} | ${runs.map((x) => cell(x, (y) => fmt(y.workflowsPerSecond, 0))).join(' | ')} | ` +
          `${ratioCells(runs.map((x) => x?.workflowsPerSecond)).map((x) => `${x} | `).join('')}` +
          `${runs.map((x) => cell(x, (y) => fmt(y.commitsPerWorkflow, 1))).join(' | ')} | ` +
          `${runs.map((x) => cell(x, (y) => { const a = allowanceOf(y); return a === undefined ? 'n/a' : `${fmt((y.workflowsPerSecond / a) * 100, 0)} %`; })).join(' | ')} |`
        );
      }),
      '',
    );
    for (const c of withTp) {
      lines.push(
        `### Throughput of ${chapterName(c.chapter)} in detail`,
        '',
        '| drained by | workflows/s | commits / wf | allowance (8-client) | share | round trips / wf | WAL bytes / wf | CPU ms / wf, node / pg | peak RSS |',
        '|---|---|---|---|---|---|---|---|---|',
        ...c.throughput!.runs.map((x) => {
          const allowance = allowanceOf(x);
          return (
            `| ${drainedBy(x)} | ${fmt(x.workflowsPerSecond, 0)} | ${fmt(x.commitsPerWorkflow, 1)} | ` +
            `${allowance === undefined ? 'n/a' : fmt(allowance, 0)} | ${allowance === undefined ? 'n/a' : `${fmt((x.workflowsPerSecond / allowance) * 100, 0)} %`} | ` +
            `${fmt(x.roundTripsPerWorkflow, 1)} | ${fmt(x.walBytesPerWorkflow, 0)} | ${cpuPerWorkflow(x)} | ${mb(x.peakRssBytes)} |`
          );
        }),
        '',
      );
    }
  }
  const withDispatch = cs.filter((c) => c.dispatch);
  if (withDispatch.length > 0 || p.dispatchYardstick) {
    const y = p.dispatchYardstick;
    const rh = ratioHeaders(withDispatch);
    const kinds = ['local', 'notify', 'poll'].filter((k) => withDispatch.some((c) => dispatchOf(c, k)));
    const sample = (k: string) => withDispatch.map((c) => dispatchOf(c, k)).find((d) => d !== undefined)!;
    lines.push(
      '## Dispatch latency',
      '',
      'An idle worker; `start()` a workflow; the time from the call to start() until its first step runs (the step records the wall clock; same machine).' +
        (y ? ` The yardstick — ${y.wake} — takes p50 ${ms(y.latency.p50Ms)}, p99 ${ms(y.latency.p99Ms)}, max ${ms(y.latency.maxMs)} (${y.latency.n} runs): one commit is the least a durable start can cost.` : ''),
      '',
      `| worker | woken by | runs | ${withDispatch.map((c) => `${chapterName(c.chapter)}: p50 | p99 | max`).join(' | ')} | ${rh.map((x) => `${x} (p50) | `).join('')}${y ? `${lastName} p50 ÷ yardstick |` : ''}`,
      `|---|---|---|${withDispatch.map(() => '---|---|---|').join('')}${rh.map(() => '---|').join('')}${y ? '---|' : ''}`,
      ...kinds.map((k) => {
        const ds = withDispatch.map((c) => dispatchOf(c, k));
        const lastD = withDispatch.find((c) => c.chapter === lastDir) && dispatchOf(withDispatch.find((c) => c.chapter === lastDir)!, k);
        const s = sample(k);
        return (
          `| ${s.mode} | ${s.wake} | ${s.latency.n} | ${ds.map((d) => (d ? `${ms(d.latency.p50Ms)} | ${ms(d.latency.p99Ms)} | ${ms(d.latency.maxMs)}` : '— | — | —')).join(' | ')} | ` +
          `${ratioCells(ds.map((d) => d?.latency.p50Ms)).map((x) => `${x} | `).join('')}${y ? `${lastD ? `${fmt(lastD.latency.p50Ms / y.latency.p50Ms, 1)}×` : '—'} |` : ''}`
        );
      }),
      '',
      ...withDispatch.flatMap((c) =>
        MECHANISM[c.chapter] ? [`- **${chapterName(c.chapter)}**, same process: ${MECHANISM[c.chapter]!.local}. Worker process: ${MECHANISM[c.chapter]!.notify}.`] : [],
      ),
      ...(withDispatch.some((c) => MECHANISM[c.chapter]) ? [''] : []),
    );
  }
  if (p.takeover) {
    const t = p.takeover;
    lines.push(
      `## Takeover (${lastName})`,
      '',
      `A worker process holds a workflow (its step never returns) and is killed -9 at a random point of its heartbeat cycle; another worker process (lease ${t.leaseMs} ms, poll ${t.pollMs} ms, LISTEN on) is running. ` +
        'Time from the kill until the other worker runs the step.',
      '',
      `Trials: ${t.trialsMs.map((x) => ms(x)).join(', ')} — mean ${ms(t.latency.meanMs)}, max ${ms(t.latency.maxMs)}; lease ${t.leaseMs} ms (expected: lease/2 … lease + a poll interval).`,
      '',
    );
  }
  if (p.steady) {
    const s = p.steady;
    lines.push(
      `## Steady state (${lastName})`,
      '',
      `Open-loop load: 3-step workflows started at a fixed ${fmt(s.targetRate, 0)}/s (half ${lastName}'s 8-way in-process maximum) for ${s.seconds} s, an in-process worker with concurrency 8; ` +
        `${s.workflows} workflows (${fmt(s.achievedRate, 0)}/s achieved). Latency from when each was due to its result (so a stall counts against every workflow it delays).`,
      '',
      '| part of the run | n | p50 | p99 | max |',
      '|---|---|---|---|---|',
      ...s.thirds.map((x, i) => `| ${['first', 'middle', 'last'][i]} third | ${x.n} | ${ms(x.p50Ms)} | ${ms(x.p99Ms)} | ${ms(x.maxMs)} |`),
      '',
      `Per workflow: ${costColumns(s.cost).split(' | ').map((x, i) => `${x} ${['commits', 'round trips', 'WAL bytes', 'CPU ms node / pg'][i]}`).join(', ')}.`,
      '',
      ...(s.retention
        ? [
            `Retention on (the worker deletes finished workflows older than ${fmt(s.retention.olderThanMs / 1000, 1)} s, checked every ${fmt(s.retention.everyMs / 1000, 1)} s). Rows in \`workflows\` at the end of each third — finished: ${s.rowsAtThirds.map((r) => fmt(r.finished, 0)).join(', ')} ` +
              `(bounded by the finishing rate × the age, about ${fmt((s.achievedRate * s.retention.olderThanMs) / 1000, 0)}; without retention all ${fmt(s.workflows, 0)} would stay); running: ${s.rowsAtThirds.map((r) => fmt(r.running, 0)).join(', ')} (the backlog, never pruned: where it grows, the engine fell behind the offered load).`,
            '',
          ]
        : []),
      '| table | live tuples | dead tuples | autovacuums | table size | index size |',
      '|---|---|---|---|---|---|',
      ...s.tables.map((x) => `| ${x.table} | ${fmt(x.liveTuples, 0)} | ${fmt(x.deadTuples, 0)} | ${x.autovacuums} | ${mb(x.tableBytes)} | ${mb(x.indexBytes)} |`),
      '',
      `At the end of the run (autovacuum_naptime = ${s.autovacuumNaptime}: autovacuum visits a database that often, so a run shorter than that may see no autovacuum at all). ` +
        'Every workflow leaves dead tuples in `workflows` — its claim and its completion are UPDATEs of indexed columns, never HOT — while `steps` is append-only.',
      '',
    );
  }
  if (p.history) {
    const h = p.history;
    lines.push(
      `## Memory and history growth (${lastName})`,
      '',
      `A workflow whose ${fmt(h.steps, 0)} steps are already in the log (written with one INSERT … SELECT generate_series, ${fmt(h.insertSeconds, 2)} s), resumed by an idle worker process (RSS ${mb(h.idleRssBytes)}): ` +
        `**${ms(h.resumeMs)}** from making it runnable to its completion, **${mb(h.extraRssBytes)}** above the idle RSS at the peak, **${h.roundTrips} round trips**.`,
      '',
    );
  }
  lines.push(...wakeUpSection(p.wakeUp), ...sleepingSection(p.sleeping), ...eventsSection(p.events, p.events?.yardstick ?? p.dispatchYardstick, r.baseline?.oneClient), ...waitingSection(p.waiting), ...fanOutSection(p.fanOut));
  // The production chapters: their sequential figures, the same workflow run the same way.
  const production: ChapterCost[] = cs
    .filter((c) => c.sequential)
    .map((c) => ({
      chapter: chapterNumber(c.chapter),
      label: c.chapter,
      durability: c.durability,
      workflows: c.sequential!.workflows,
      workflowsPerSecond: c.sequential!.workflowsPerSecond,
      latency: c.sequential!.latency,
      writeTransactionsPerWorkflow: c.sequential!.commitsPerWorkflow,
      walBytesPerWorkflow: c.sequential!.walBytesPerWorkflow,
      nodeCpuSeconds: c.sequential!.nodeCpuSeconds,
      pgCpuSeconds: c.sequential!.pgCpuSeconds,
    }));
  const perChapter = [...r.chapters, ...production.filter((x) => !r.chapters.some((c) => c.chapter === x.chapter))].sort((a, b) => a.chapter - b.chapter);
  if (perChapter.length > 0) {
    lines.push(
      '## What durability costs, per chapter',
      '',
      `The same workflow — three steps that do nothing — run one after another on each chapter’s engine${production.length ? ` (${listOf(production.map((x) => `chapter ${x.chapter}`))}: the sequential figures above, one in-process worker of concurrency 1)` : ''}.`,
      '"× commit" is the workflow’s mean latency divided by one baseline commit (1 client).',
      '',
      '| chapter | "recorded" means | workflows/s | mean | p99 | × commit | write txns / wf | WAL bytes / wf | CPU node / pg (s) |',
      '|---|---|---|---|---|---|---|---|---|',
      ...perChapter.map(
        (c) =>
          `| ${c.label} | ${c.durability} | ${fmt(c.workflowsPerSecond, 0)} | ${ms(c.latency.meanMs)} | ${ms(c.latency.p99Ms)} | ${base === undefined ? 'n/a' : `${fmt(c.latency.meanMs / base, 1)}×`} | ${fmt(c.writeTransactionsPerWorkflow, 1)} | ${fmt(c.walBytesPerWorkflow, 0)} | ${fmt(c.nodeCpuSeconds)} / ${pgCpu(c.pgCpuSeconds)} |`,
      ),
      '',
    );
  }
  lines.push(
    '## Peers and targets (from the issue, measured on a 2-core machine like this one — not in this run)',
    '',
    '| what | figure |',
    '|---|---|',
    ...PEERS,
    '',
    `Targets for ${lastName}, the last chapter${cs.some((c) => c.chapter !== lastDir) ? ` (${listOf(cs.filter((c) => c.chapter !== lastDir).map((c) => chapterName(c.chapter)))} ${cs.filter((c) => c.chapter !== lastDir).length > 1 ? 'are' : 'is'} held to them only to show the difference)` : ''}: step overhead ≤ 1.2× the baseline commit; sequential ≥ 270 workflows/s (3× DBOS); 8 concurrent ≥ 900 workflows/s (5× DBOS's queue) and ≥ 70 % of what the 8-client commit rate allows; ` +
      'dispatch p50 < 3 ms, p99 < 10 ms (graphile: ~4 ms); takeover ≤ lease + 1 s; peak RSS < 150 MB; a 10,000-step resume < 1 s and < 100 MB extra' +
      (p.wakeUp || p.sleeping ? '; a sleeping workflow wakes with p99 < 50 ms of lateness beyond the polling the chapter chooses; 10,000 sleeping workflows hold no worker slot and leave the claim as fast' : '') +
      (p.events || p.waiting ? '; a sent event starts the step after its wait with p50 < 3 ms, p99 < 10 ms (in memory and by NOTIFY); 10,000 workflows waiting for an event hold no worker slot and leave the claim as fast' : '') +
      (p.fanOut ? '; a parent of 1,000 children runs twice (a claim to start them, one to gather them)' : '') +
      '.',
    '',
    ...whereTheTimeGoes(r, cs, lastDir),
  );
  return lines.join('\n');
}

/**
 * Chapter 7's "failure it fixes" is cost: the chapter-6 figures it beats,
 * measured in the same run, with what does it.
 */
function whatTheFastPathBuys(r: BenchResults, cs: ChapterResults[]): string[] {
  if (cs.length < 2) return [];
  const first = chapterName(cs[0]!.chapter);
  const last = chapterName(cs[cs.length - 1]!.chapter);
  const all: SideRow[] = [
    { label: 'one step (× the 1-client commit)', value: (c) => c.stepOverhead?.ratioToCommit, show: (x) => `${fmt(x, 2)}×`, note: "a step's record is one fenced INSERT … SELECT instead of BEGIN + SET LOCAL, INSERT, COMMIT; prepared statements" },
    { label: 'one step: round trips', value: (c) => c.stepOverhead?.roundTripsPerStep, show: (x) => fmt(x, 1) },
    { label: 'sequential 3-step workflows/s', value: (c) => c.sequential?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, note: 'the same for the completion; start() writes the workflow already claimed for the local worker (no claim, no NOTIFY); no log to load on token 1; no result() poll for a local run' },
    { label: 'sequential: commits a workflow', value: (c) => c.sequential?.commitsPerWorkflow, show: (x) => fmt(x, 1) },
    { label: 'sequential: round trips a workflow', value: (c) => c.sequential?.roundTripsPerWorkflow, show: (x) => fmt(x, 1) },
    { label: '8 concurrent, one worker: workflows/s', value: (c) => throughputRun(c, 'in-process', 8)?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, note: 'all of the above; write-combining (batcher.ts: concurrent runs share one multi-row fenced statement); after a full claim, claim again once a quarter of the slots are free (claims of two or more)' },
    { label: '8 concurrent, one worker: commits a workflow', value: (c) => throughputRun(c, 'in-process', 8)?.commitsPerWorkflow, show: (x) => fmt(x, 1) },
    { label: '8 worker processes × 1: workflows/s', value: (c) => throughputRun(c, 'processes', 8)?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, note: 'the one-statement writes; each process still writes alone (nothing to combine at concurrency 1)' },
    { label: 'dispatch, same process: p50', value: (c) => dispatchOf(c, 'local')?.latency.p50Ms, show: ms, note: 'start() hands the workflow to the idle local worker in its INSERT: one commit, no claim' },
    { label: 'dispatch, LISTEN/NOTIFY: p50', value: (c) => dispatchOf(c, 'notify')?.latency.p50Ms, show: ms, note: "the window's first start() carries the NOTIFY in its own INSERT (chapter 6: a separate statement up to 5 ms later)" },
  ];
  const rows = all.filter((row) => cs.some((c) => row.value(c) !== undefined));
  if (rows.length === 0) return [];
  return [
    `## What ${last} buys: ${first}'s figures beside it, same run`,
    '',
    `${capital(last)} is ${first}'s engine — the same leases, fences and guarantees — made fast; the failure it fixes is cost. ` +
      `${ratioHeaders(cs)[0]}: ${last}'s figure divided by ${first}'s (above 1× is more for a rate, below 1× is less for a time or a count).`,
    '',
    ...sideTable('measure', cs, rows, `what ${last} changes`),
    '',
    `Figures move by ±20 % between runs on a shared virtual machine (the 8-client baseline itself has read 5,400–6,900 commits/s in one session), so compare ratios within a run — ${last} against ${first}, each against the yardsticks — not raw rates across runs.`,
    '',
  ];
}

/** Durable sleep: how late a sleeping workflow wakes, on the database clock. */
function wakeUpSection(w: WakeUp | undefined): string[] {
  if (!w) return [];
  const name = chapterName(w.chapter);
  const cases = [w.alarm, ...(w.handoff ? [w.handoff] : [])];
  const lowest = Math.min(...cases.map((k) => k.samplesMs[0] ?? NaN));
  const late = cases.map((k) => ({ k, over: k.samplesMs.filter((x) => x > 50).length })).filter((x) => x.over > 0);
  return [
    `## Durable sleep: how late a sleeping workflow wakes (${name})`,
    '',
    `\`nap\` workflows, each \`ctx.sleep(d)\` then one step, run by an in-process worker of concurrency ${w.concurrency} with the default pollMs (${w.pollMs} ms) and nothing else to do: ` +
      `${w.alarm.workflows} started one every 16 ms, each sleeping ${fmt(w.alarm.sleepMs[0], 0)}–${fmt(w.alarm.sleepMs[1], 0)} ms (spread evenly), so that a few are asleep at any time. ` +
      'Lateness = when the step after the sleep ran (its own `SELECT clock_timestamp()`) − the end of the sleep the log records (`steps.output.until`, kind `sleep`, written as now() + d on the database clock): both read from the database\'s clock, so no skew between this process\'s clock and the server\'s enters.' +
      (w.handoff
        ? ` Then ${w.handoff.workflows} more, sleeping ${fmt(w.handoff.sleepMs[0], 0)}–${fmt(w.handoff.sleepMs[1], 0)} ms, put to sleep by a worker that is stopped before any is due; another idle worker (another engine: start() never handed it work) wakes them — it knows when from \`nextWakeUp\` after its last claim.`
        : ''),
    '',
    '| woken by | sleeps | p50 | p99 | max | mean |',
    '|---|---|---|---|---|---|',
    ...(w.timer
      ? [`| yardstick: a bare \`setTimeout\` of the same lengths in this process, meanwhile (no database; performance.now()) | ${w.timer.n} | ${ms(w.timer.p50Ms)} | ${ms(w.timer.p99Ms)} | ${ms(w.timer.maxMs)} | ${ms(w.timer.meanMs)} |`]
      : []),
    ...cases.map((k) => `| ${k.wake} | ${k.workflows} of ${fmt(k.sleepMs[0], 0)}–${fmt(k.sleepMs[1], 0)} ms | ${ms(k.lateness.p50Ms)} | **${ms(k.lateness.p99Ms)}** | ${ms(k.lateness.maxMs)} | ${ms(k.lateness.meanMs)} |`),
    '',
    `Target: p99 < 50 ms beyond the polling the chapter chooses — and for a sleep ${name} chooses none. The statement that records the sleep also answers how long until its end (\`dueInMs\`, counted from the database's own now() and rounded up to the millisecond), and the worker sets its claim loop's alarm from that figure (\`wakeAt\`); an idle worker that did not put it to sleep gets the same figure from \`nextWakeUp\` (the first entry in the claim's index past the moment the claim was sent) after each claim that leaves a slot free. ` +
      `Either way the wake-up does not wait for a poll: polling alone (every ${w.pollMs} ms ±20 %) would make a wake-up 0–${fmt(w.pollMs * 1.2, 0)} ms late, about ${fmt(w.pollMs / 2, 0)} ms on average. ` +
      `What is left is the timer's own lateness (the yardstick${w.timer ? `: p50 ${ms(w.timer.p50Ms)}, p99 ${ms(w.timer.p99Ms)} in this run` : ''}), the claim (a commit), loading the log and replaying the sleep, and the queue when several fall due together. ` +
      `Never early: a timer set from the database's figure when its answer arrives cannot fire before the time has come on the database's clock, and the claim tests \`lease_expires_at <= now()\` on that clock again (smallest lateness measured: ${ms(lowest)}).`,
    '',
    ...(late.length > 0
      ? [
          `**The tail:** ${late.map((k) => `${k.over} of ${k.k.workflows} (${k.k === w.alarm ? 'its own worker' : 'another worker'})`).join(', ')} woke more than 50 ms late` +
            (w.timer ? ` (a bare timer's worst, beside its own worker: ${ms(w.timer.maxMs)})` : '') +
            '. This suite found a race here before: a sleep that ended between a claim and the nextWakeUp right after it was in neither answer — the claim looked just before its end, nextWakeUp counted only what was still in the future — and waited for the next wake-up, up to a poll (p99 of 158 ms for its own worker, on a busy machine). ' +
            "nextWakeUp now looks from when the claim was sent (chapter 8's queries.ts); what is left over 50 ms was not traced — on a busy machine a claim, a log load or a step's round trip alone can take that long.",
          '',
        ]
      : []),
  ];
}

/** 10,000 workflows asleep beside the others: what they cost a worker and the claim. */
/** The table of what parked workflows (asleep, or waiting for an event) cost the others: the same figures without them and beside them. */
function besideParkedTable(what: string, none: SleepingCondition, parked: SleepingCondition, indexBytes: { none: number; parked: number }): string[] {
  const rows: Array<[string, number, number, (x: number) => string]> = [
    ['dispatch through a claim (start() → NOTIFY → claim → first step): p50', none.dispatch.p50Ms, parked.dispatch.p50Ms, ms],
    ['… p99', none.dispatch.p99Ms, parked.dispatch.p99Ms, ms],
    ['a backlog drained by one worker × 8: workflows/s', none.drain.workflowsPerSecond, parked.drain.workflowsPerSecond, (x) => `**${fmt(x, 0)}/s**`],
    ['… commits a workflow', none.drain.commitsPerWorkflow, parked.drain.commitsPerWorkflow, (x) => fmt(x, 2)],
    ['… round trips a workflow', none.drain.roundTripsPerWorkflow, parked.drain.roundTripsPerWorkflow, (x) => fmt(x, 2)],
    ['… CPU ms a workflow (Node + PostgreSQL)', cpuMsPerWorkflow(none.drain) ?? NaN, cpuMsPerWorkflow(parked.drain) ?? NaN, (x) => fmt(x)],
    ["the claim's index (workflows_runnable)", indexBytes.none, indexBytes.parked, (x) => `${fmt(x / 1024, 0)} kB`],
  ];
  return [
    `| measure | nothing ${what} | ${fmt(parked.sleeping, 0)} ${what} | ${what} / none |`,
    '|---|---|---|---|',
    ...rows.map(([label, a, b, show]) => `| ${label} | ${Number.isFinite(a) ? show(a) : 'n/a'} | ${Number.isFinite(b) ? show(b) : 'n/a'} | ${ratio(a, b)} |`),
  ];
}

function sleepingSection(s: Sleeping | undefined): string[] {
  if (!s) return [];
  const name = chapterName(s.chapter);
  return [
    `## ${fmt(s.sleepers, 0)} sleeping workflows (${name})`,
    '',
    `${fmt(s.sleepers, 0)} workflows asleep for an hour and more: one started and run to its \`ctx.sleep\` by the engine, the rest copies of the rows it wrote (every column as written, ids and ends of sleep spread over the next hour; ${fmt(s.insertSeconds, 1)} s in all). ` +
      `Beside them, and in a database where nothing sleeps, interleaved (none, asleep, asleep, none): dispatch through a claim — start() from an engine with no worker of its own, so the row goes in unclaimed with a NOTIFY and an idle worker of concurrency 8 claims it (then, slots left, asks \`nextWakeUp\`) — ${s.none.dispatch.n} runs each; ` +
      `and a backlog of 3-step workflows drained by a worker of concurrency 8 (claims of several), ${fmt(s.none.drain.workflows, 0)} each.`,
    '',
    ...besideParkedTable('asleep', s.none, s.sleeping, { none: s.indexBytes.none, parked: s.indexBytes.sleeping }),
    '',
    `**No slot held:** an idle worker beside them held at most ${s.idleHeldMax} workflow(s) over ${fmt(s.idleMs / 1000, 1)} s (its claims and nextWakeUp's answers included); ` +
      `in ${fmt(s.heldSamples, 0)} samples of the workers' \`held\` (every 5 ms, idle, dispatching and draining) ${s.sleepersHeld} was a sleeper, and no claim touched a sleeper's row (${s.sleepersClaimed} with its fencing token, owner or lease changed). ` +
      'A sleeping workflow is a row whose `lease_expires_at` is ahead and whose `lease_owner` is NULL: nobody holds it, no connection waits for it, no timer in any worker stands for it. ' +
      "In the claim's index — `workflows_runnable (lease_expires_at) WHERE status = 'running'` — it sits to the right of now(), where the claim's `lease_expires_at <= now()` never reads; `nextWakeUp` reads the first entry there, one probe however many wait. What the sleepers cost is their rows and their index entries.",
    '',
  ];
}

/** Events: how fast a sent event starts the step after its wait. */
function eventsSection(e: EventDelivery | undefined, yardstick: Dispatch | undefined, oneClient: CommitRate | undefined): string[] {
  if (!e) return [];
  const name = chapterName(e.chapter);
  const y = yardstick?.latency;
  const inMemory = e.cases.find((k) => k.wake === 'in-memory');
  const commits = e.cases.map((k) => k.commitsPerEvent);
  const meanCommits = Math.round(commits.reduce((x, c) => x + c, 0) / commits.length);
  const met = e.cases.filter((k) => k.latency.p50Ms < 3 && k.latency.p99Ms < 10);
  return [
    `## Events: from send() to the step after the wait (${name})`,
    '',
    `\`awaitGo\` workflows — \`ctx.waitForEvent('go')\`, then one step — on an idle worker (concurrency ${e.concurrency}, pollMs ${fmt(e.pollMs, 0)}: a wake-up missed would cost seconds, not milliseconds). ` +
      `For each, one after another: start it, wait until its run ends \`waiting\` (parked: nobody holds it), leave the worker idle ${e.idleMs} ms, then \`engine.send(id, 'go', null)\`; ` +
      "the latency runs from the call to send() until the step after the wait starts (the step's first statement records the time). " +
      `**Clocks:** the two senders in the worker's process are timed on that process's own clock (performance.timeOrigin + performance.now(), read before send() and first thing in the step); ` +
      "the worker in another process on the database's clock (clock_timestamp(), read by the sender just before send(), and by the step right after its first statement — one query later, so that figure runs a little long: conservative). " +
      'Each case shows the database-clock figure too: the two clocks, side by side.',
    '',
    `| sender | wakes the worker by | clock | events | p50 | p99 | max | p50, database clock | send() itself: p50 | commits / event | round trips / event | p50 ÷ yardstick |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...(y ? [`| yardstick: a bare INSERT autocommit after ${e.idleMs} ms idle (no engine) | — | same process | ${y.n} | ${ms(y.p50Ms)} | ${ms(y.p99Ms)} | ${ms(y.maxMs)} | — | — | 1 | 1 | 1× |`] : []),
    ...e.cases.map(
      (k) =>
        `| ${k.sender} | ${k.wake === 'in-memory' ? 'in memory' : 'NOTIFY'} | ${k.clock} | ${k.workflows} | **${ms(k.latency.p50Ms)}** | **${ms(k.latency.p99Ms)}** | ${ms(k.latency.maxMs)} | ${ms(k.dbClock.p50Ms)} | ${ms(k.send.p50Ms)} | ${fmt(k.commitsPerEvent, 2)} | ` +
        `${k.roundTripsPerEvent === undefined ? `${fmt(k.sendRoundTrips, 1)} + the worker's (not counted here)` : fmt(k.roundTripsPerEvent, 1)} | ${y ? `${fmt(k.latency.p50Ms / y.p50Ms, 1)}×` : '—'} |`,
    ),
    '',
    `Target: p50 < 3 ms, p99 < 10 ms — ${met.length === e.cases.length ? `**met in all ${e.cases.length} cases**` : met.length === 0 ? '**not met in any case**' : `**met in ${met.length} of ${e.cases.length}** (${listOf(met.map((k) => (k.wake === 'in-memory' ? 'in memory' : k.clock === 'database' ? 'across processes' : 'NOTIFY in one process')))})`}. ` +
      `What stands between the send and the step is ${fmt(Math.min(...commits), 0) === fmt(Math.max(...commits), 0) ? fmt(commits[0]!, 0) : `${fmt(Math.min(...commits), 1)}–${fmt(Math.max(...commits), 1)}`} commits one after another, each waiting for the one before — ` +
      "(1) send()'s transaction: `BEGIN`, lock the workflow's row, then one statement (`deliverEvent`) that inserts the event and — the workflow parked waiting for that name — ends the wait right there: the event taken, the wait's end recorded in the log, its missing waits counted down and, at none, the workflow woken: " +
      "claimed for an idle worker of the sending process (a new fencing token and a lease, as start() hands a workflow over), or else made runnable with a NOTIFY at COMMIT; `COMMIT`; " +
      '(2) on the NOTIFY path only, the claim, by the worker that was woken; ' +
      "(3) the log loaded (one read), in which the resumed run finds its wait's end and replays it like any step — and the step starts" +
      (inMemory?.roundTripsPerEvent !== undefined ? ` (${fmt(inMemory.roundTripsPerEvent, 1)} round trips in all in the in-memory case, ${fmt(inMemory.sendRoundTrips, 1)} of them send()'s)` : '') +
      '. ' +
      (y
        ? `At the yardstick's ${ms(y.p50Ms)} a commit after idling, ${fmt(meanCommits, 0)} commit${meanCommits === 1 ? '' : 's'} alone come${meanCommits === 1 ? 's' : ''} to about ${ms(meanCommits * y.p50Ms)}`
        : oneClient
          ? `At the baseline's ${ms(oneClient.latency.p50Ms)} a commit, ${fmt(meanCommits, 0)} come to ${ms(meanCommits * oneClient.latency.p50Ms)}`
          : '') +
      ". What the NOTIFY path keeps is the claim's commit: a worker in another process must claim the workflow before its run may write, and the claim must be durable first " +
      '(an asynchronous commit of a claim lost in a crash would let two runs hold the same fencing token). And send() keeps its lock as a statement of its own: ' +
      "a statement's snapshot is taken before it waits for a lock, so a one-statement send could miss a park committed while it waited — the lost wake-up (queries.ts, \"events\").",
    '',
  ];
}

/** 10,000 workflows waiting for an event beside the others: what they cost a worker and the claim. */
function waitingSection(w: Waiting | undefined): string[] {
  if (!w) return [];
  const name = chapterName(w.chapter);
  return [
    `## ${fmt(w.waiters, 0)} workflows waiting for an event (${name})`,
    '',
    `${fmt(w.waiters, 0)} workflows parked in \`ctx.waitForEvent('never')\` (no timeout): one started and run to its wait by the engine, the rest copies of the rows it wrote (every column as written — the workflow released until year 9999 with \`waits_missing\` 1, its wait's row in \`waits\` — only the id changed; ${fmt(w.insertSeconds, 1)} s in all). ` +
      `Beside them, and in a database where nothing waits, interleaved (none, waiting, waiting, none): dispatch through a claim — start() from an engine with no worker of its own, the row in unclaimed with a NOTIFY, an idle worker of concurrency 8 claims it (then, slots left, asks \`nextWakeUp\`) — ${w.none.dispatch.n} runs each; ` +
      `and a backlog of 3-step workflows drained by a worker of concurrency 8, ${fmt(w.none.drain.workflows, 0)} each. The sleeping suite's measurement, for the wait that has no end.`,
    '',
    ...besideParkedTable('waiting', w.none, w.waiting, { none: w.indexBytes.none, parked: w.indexBytes.waiting }),
    '',
    `**No slot held:** an idle worker beside them held at most ${w.idleHeldMax} workflow(s) over ${fmt(w.idleMs / 1000, 1)} s (its claims and nextWakeUp's answers included); ` +
      `in ${fmt(w.heldSamples, 0)} samples of the workers' \`held\` (every 5 ms, idle, dispatching and draining) ${w.waitersHeld} was a waiting workflow, and no claim touched a waiting workflow's row (${w.waitersClaimed} with its fencing token, owner, lease or wait changed). ` +
      "A workflow waiting for an event is a row with no owner, `waits_missing` 1 and `lease_expires_at` set to the last day of year 9999, and its wait a row in `waits`: nobody holds it, no connection or timer stands for it, and in the claim's index it sits at the far right, where `lease_expires_at <= now()` never reads. " +
      "`nextWakeUp` finds year 9999 there when nothing else waits, and the worker's alarm stays its poll interval. The send that fills its wait records the wait's end and makes the row runnable (`lease_expires_at = now()`) or hands it, claimed, to a worker of its own process; what the waiters cost until then is their rows and their index entries.",
    '',
  ];
}

/** A parent and its 1,000 children: wall time, commits a child, how often the parent ran. */
function fanOutSection(f: FanOut | undefined): string[] {
  if (!f) return [];
  const name = chapterName(f.chapter);
  const perChild = (c: Cost) => [fmt(c.workflowsPerSecond, 0), fmt(c.commitsPerWorkflow, 2), fmt(c.roundTripsPerWorkflow, 2), fmt(cpuMsPerWorkflow(c) ?? NaN)];
  const a = f.alone;
  return [
    `## Fan-out: a parent and ${fmt(f.children, 0)} children (${name})`,
    '',
    `A parent starts ${fmt(f.children, 0)} children in one turn (\`Promise.all\` over \`ctx.startChild('child', { i })\`: the engine starts them in one transaction, each with its log entry) and waits for them in one turn (\`Promise.all\` over their \`result()\`: it parks once); each child is one step. ` +
      `One worker in this process, concurrency ${f.concurrency}; ${f.trials.length} fan-out${f.trials.length === 1 ? '' : 's'}, each timed from \`start()\` of the parent to its run ending \`completed\` (heard from the worker, not polled). ` +
      "Commits are write transactions counted on the server (transaction ids handed out, as every commit figure in this report), round trips and CPU over the whole stretch, divided by the children — the parent's share included. " +
      `Interleaved with them, the same ${fmt(f.children, 0)} one-step \`child\` workflows started on their own by \`start()\` from 8 callers, on the same worker: what the children cost without a parent.`,
    '',
    '| run | wall | children/s | commits / child | round trips / child | CPU ms / child (Node + PostgreSQL) | the parent ran | its runs ended | its fencing token |',
    '|---|---|---|---|---|---|---|---|---|',
    ...f.trials.map((t, i) => `| fan-out ${i + 1} | **${fmt(t.seconds, 2)} s** | ${perChild(t.cost).join(' | ')} | **${t.parentRuns.length}** | ${t.parentRuns.join(', ')} | ${t.parentFencingToken} |`),
    `| all fan-outs | ${fmt(f.total.seconds, 2)} s | ${perChild(f.total).join(' | ')} | | | |`,
    `| the same children on their own (start(), 8 callers), all runs | ${fmt(a.seconds, 2)} s | ${perChild(a).join(' | ')} | — | — | — |`,
    `| fan-out / on their own | ${ratio(a.seconds, f.total.seconds)} | ${ratio(a.workflowsPerSecond, f.total.workflowsPerSecond)} | ${ratio(a.commitsPerWorkflow, f.total.commitsPerWorkflow)} | ${ratio(a.roundTripsPerWorkflow, f.total.roundTripsPerWorkflow)} | ${ratio(cpuMsPerWorkflow(a), cpuMsPerWorkflow(f.total))} | | | |`,
    '',
    `**The parent ran ${listOf([...new Set(f.trials.map((t) => String(t.parentRuns.length)))])} time(s) a fan-out**: a run (start()'s claim for the local worker) that starts the children and parks, and one claim when the last child's end made it runnable — ` +
      "each child's end, in the transaction that records it, locks the parent's row, adds its event and counts the parent's missing waits down; only the one that reaches none sets the parent runnable and NOTIFYs. " +
      `The fencing token counts more than the claims: every release, a park included, moves the token on too (so the run that parked can write nothing after) — ${listOf([...new Set(f.trials.map((t) => `${t.parentFencingToken} for ${t.parentRuns.length} runs`))])} here. ` +
      "What a child costs over one on its own is that end: the parent's row locked and updated, the event inserted, in the same transaction as the child's completion — and every child's end waits for the parent's row lock in turn.",
    '',
  ];
}

/** The least band within which a figure counts as kept: what back-to-back measurements of one engine move by on this machine, at the least. */
const NOISE_FLOOR = 0.1;

interface KeptRow {
  label: string;
  value: (c: ChapterResults) => number | undefined;
  /** The same figure in the chapter measured again (steps and sequential only). */
  again?: (a: Again) => number | undefined;
  show: (x: number) => string;
  /** Is a larger figure better (a rate) or worse (a time, a count)? */
  higherIsBetter: boolean;
}

/** The rows "did chapter 8 keep chapter 7's figures" compares: the headline figures of each suite the two share. */
const KEPT_ROWS: KeptRow[] = [
  { label: 'one step', value: (c) => c.stepOverhead?.perStepMs, again: (a) => a.stepOverhead?.perStepMs, show: ms, higherIsBetter: false },
  { label: 'one step: round trips', value: (c) => c.stepOverhead?.roundTripsPerStep, again: (a) => a.stepOverhead?.roundTripsPerStep, show: (x) => fmt(x, 2), higherIsBetter: false },
  { label: 'sequential 3-step workflows/s', value: (c) => c.sequential?.workflowsPerSecond, again: (a) => a.sequential?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, higherIsBetter: true },
  { label: 'sequential: p50', value: (c) => c.sequential?.latency.p50Ms, again: (a) => a.sequential?.latency.p50Ms, show: ms, higherIsBetter: false },
  { label: 'sequential: commits a workflow', value: (c) => c.sequential?.commitsPerWorkflow, again: (a) => a.sequential?.commitsPerWorkflow, show: (x) => fmt(x, 2), higherIsBetter: false },
  { label: 'sequential: round trips a workflow', value: (c) => c.sequential?.roundTripsPerWorkflow, again: (a) => a.sequential?.roundTripsPerWorkflow, show: (x) => fmt(x, 2), higherIsBetter: false },
  { label: 'sequential: CPU ms a workflow (Node + PostgreSQL)', value: (c) => cpuMsPerWorkflow(c.sequential), again: (a) => cpuMsPerWorkflow(a.sequential), show: (x) => fmt(x), higherIsBetter: false },
  { label: 'drained by one worker × 1: workflows/s', value: (c) => throughputRun(c, 'in-process', 1)?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, higherIsBetter: true },
  { label: 'drained by one worker × 8: workflows/s', value: (c) => throughputRun(c, 'in-process', 8)?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, higherIsBetter: true },
  { label: 'drained by one worker × 8: commits a workflow', value: (c) => throughputRun(c, 'in-process', 8)?.commitsPerWorkflow, show: (x) => fmt(x, 2), higherIsBetter: false },
  { label: 'drained by 8 worker processes × 1: workflows/s', value: (c) => throughputRun(c, 'processes', 8)?.workflowsPerSecond, show: (x) => `${fmt(x, 0)}/s`, higherIsBetter: true },
  { label: 'dispatch, same process: p50', value: (c) => dispatchOf(c, 'local')?.latency.p50Ms, show: ms, higherIsBetter: false },
  { label: 'dispatch, LISTEN/NOTIFY: p50', value: (c) => dispatchOf(c, 'notify')?.latency.p50Ms, show: ms, higherIsBetter: false },
];

function cpuMsPerWorkflow(c: Cost | undefined): number | undefined {
  return c === undefined || c.pgCpuSeconds === undefined ? undefined : ((c.nodeCpuSeconds + c.pgCpuSeconds) * 1000) / c.workflows;
}

/** |b/a − 1|, or undefined when either is missing. */
function gap(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || a === 0 ? undefined : Math.abs(b / a - 1);
}

/**
 * Did the last chapter keep the figures of the one before it? Each headline
 * figure of the suites they share, side by side, with the noise band: the
 * larger of NOISE_FLOOR and the widest gap between the chapter before and
 * itself measured again after the last (steps, sequential).
 */
function keptFigures(r: BenchResults, cs: ChapterResults[]): string[] {
  if (cs.length < 2) return [];
  const prev = cs[cs.length - 2]!;
  const last = cs[cs.length - 1]!;
  const again = r.production.again?.chapter === prev.chapter ? r.production.again : undefined;
  const rows = KEPT_ROWS.filter((row) => row.value(prev) !== undefined && row.value(last) !== undefined);
  if (rows.length === 0) return [];
  const [pn, ln] = [chapterName(prev.chapter), chapterName(last.chapter)];
  const spreads = again ? rows.map((row) => gap(row.value(prev), row.again?.(again))).filter((x): x is number => x !== undefined) : [];
  const band = Math.max(NOISE_FLOOR, ...spreads);
  const pct = (x: number) => `${fmt(x * 100, 0)} %`;
  const verdictOf = (row: KeptRow) => {
    const a = row.value(prev)!;
    const b = row.value(last)!;
    const change = b / a - 1;
    if (!Number.isFinite(change)) return { kept: undefined, text: '—' };
    if (Math.abs(change) <= band) return { kept: true, text: 'kept' };
    const better = row.higherIsBetter ? change > 0 : change < 0;
    return better ? { kept: true, text: `better by ${pct(Math.abs(change))}` } : { kept: false, text: `**worse by ${pct(Math.abs(change))}**` };
  };
  const verdicts = rows.map(verdictOf);
  const worse = rows.filter((_, i) => verdicts[i]!.kept === false);
  const rh = `${chapterNumber(last.chapter)}/${chapterNumber(prev.chapter)}`;
  return [
    `## Did ${ln} keep ${pn}'s figures?`,
    '',
    `${capital(ln)} adds ${ADDS[last.chapter] ? `${ADDS[last.chapter]![0]} to ${pn}'s engine — ${ADDS[last.chapter]![1]} —` : `its features to ${pn}'s engine,`} and must not give back the fast path. ` +
      `Each suite below ran ${pn} and ${ln} one after the other; ${rh}: ${ln}'s figure over ${pn}'s. ` +
      `Noise band ±${pct(band)}: the larger of ${pct(NOISE_FLOOR)} and the widest gap between ${pn} and ${pn} measured again after ${ln} in the same suite` +
      (spreads.length > 0 ? ` (step overhead and sequential: ${pct(Math.max(...spreads))} here)` : ' (not measured in this run)') +
      ' — what one engine\'s figures move by within a run on this machine.',
    '',
    `| measure | ${pn} | ${ln} | ${rh} | ${again ? `${pn} again | ` : ''}kept? |`,
    `|---|---|---|---|${again ? '---|' : ''}---|`,
    ...rows.map((row, i) => {
      const a = row.value(prev)!;
      const b = row.value(last)!;
      const x = again && row.again?.(again);
      return `| ${row.label} | ${row.show(a)} | ${row.show(b)} | ${ratio(a, b)} | ${again ? `${x === undefined ? '—' : row.show(x)} | ` : ''}${verdicts[i]!.text} |`;
    }),
    '',
    (worse.length === 0
      ? `**${capital(ln)} kept ${pn}'s figures: ${rows.length} of ${rows.length} within the ±${pct(band)} band or better.**`
      : `**${capital(ln)} kept ${rows.length - worse.length} of ${pn}'s ${rows.length} figures; beyond the ±${pct(band)} band and worse: ${worse.map((row) => row.label).join('; ')}.**`) +
      (band > 0.25 ? ` A band this wide cannot tell a small change from noise: this run's machine was busy (compare again on a quiet one).` : ''),
    '',
  ];
}

/** "Where the time goes": what the figures say, and what is left to change in the last chapter. */
function whereTheTimeGoes(r: BenchResults, cs: ChapterResults[], lastDir: string): string[] {
  const p = r.production;
  const lastC = cs.find((c) => c.chapter === lastDir);
  const lastName = chapterName(lastDir);
  const seq = lastC?.sequential;
  const step = lastC?.stepOverhead;
  const t8 = lastC && throughputRun(lastC, 'in-process', 8);
  const p8 = lastC && throughputRun(lastC, 'processes', 8);
  const facts: string[] = [];
  if (seq) facts.push(`a 3-step workflow costs ${fmt(seq.commitsPerWorkflow, 1)} commits and ${fmt(seq.roundTripsPerWorkflow, 1)} round trips when run alone`);
  if (step) facts.push(`a step ${fmt(step.commitsPerStep, 2)} commits and ${fmt(step.roundTripsPerStep, 1)} round trips`);
  const perWf = (c: Cost) => (c.pgCpuSeconds === undefined ? undefined : ((c.nodeCpuSeconds + c.pgCpuSeconds) * 1000) / c.workflows);
  if (t8) {
    const cpu = perWf(t8);
    facts.push(
      `at concurrency 8, ${fmt(t8.commitsPerWorkflow, 1)} commits and ${fmt(t8.roundTripsPerWorkflow, 1)} round trips a workflow, ` +
        `CPU ${fmt((t8.nodeCpuSeconds * 1000) / t8.workflows)} ms Node + ${t8.pgCpuSeconds === undefined ? 'n/a' : fmt((t8.pgCpuSeconds * 1000) / t8.workflows)} ms PostgreSQL a workflow` +
        (cpu === undefined ? '' : ` — on ${r.machine.cpus} cores the CPU alone allows ${fmt((r.machine.cpus * 1000) / cpu, 0)} workflows/s, and 900/s needs ≤ ${fmt((r.machine.cpus * 1000) / 900)} ms a workflow`),
    );
  }
  const p8cpu = p8 && perWf(p8);
  const t8cpu = t8 && perWf(t8);
  if (p8 && p8cpu !== undefined && t8cpu !== undefined) {
    facts.push(
      `8 worker processes of concurrency 1 spend ${fmt(p8cpu)} ms of CPU a workflow against ${fmt(t8cpu)} ms for one process of concurrency 8: ` +
        'more processes than cores, each woken for each of its round trips, pay in context switches and cold caches — on 2 cores, run one worker process per core with a higher concurrency',
    );
  }
  const six = cs.find((c) => c.chapter === '06-leasing-workers');
  const seven = cs.find((c) => c.chapter === '07-fast-path');
  const later = cs.filter((c) => chapterNumber(c.chapter) > 7 && c.sequential);
  const measured = (c: ChapterResults | undefined) =>
    c?.sequential ? [`**${fmt(c.sequential.roundTripsPerWorkflow, 1)}**`, `**${fmt(c.sequential.commitsPerWorkflow, 1)}**`] : ['—', '—'];
  return [
    '## Where the time goes',
    '',
    `Measured on ${lastName}: ${facts.join('; ') || `run the ${lastName} suites to fill this in`}.`,
    '',
    'The path of one 3-step workflow started in a process whose worker has a free slot (the sequential case), statement by statement as each chapter sends them:',
    '',
    '| what | chapter 6: round trips | commits | chapter 7: round trips | commits |',
    '|---|---|---|---|---|',
    '| start(): INSERT … ON CONFLICT DO NOTHING (chapter 7: the row inserted already claimed for the local worker, token 1, a lease) | 1 | 1 | 1 | 1 |',
    "| NOTIFY for other processes' workers (chapter 6: a separate `SELECT pg_notify`, at most one per 5 ms; chapter 7: none — a local worker took it) | 1 | 1 | 0 | 0 |",
    '| claim: UPDATE … FOR UPDATE SKIP LOCKED, one workflow (chapter 7: none) | 1 | 1 | 0 | 0 |',
    '| load the log (chapter 7: none on token 1, a first run) | 1 | 0 | 0 | 0 |',
    '| 3 steps × the fenced record: chapter 6 `BEGIN; SET LOCAL`, the fenced INSERT, `COMMIT`; chapter 7 the fenced INSERT … SELECT … FOR KEY SHARE, alone | 9 | 3 | 3 | 3 |',
    '| completion: chapter 6 `BEGIN; SET LOCAL`, the fenced UPDATE, `COMMIT`; chapter 7 the fenced UPDATE, alone | 3 | 1 | 1 | 1 |',
    "| result(): chapter 6 reads the workflow's status once before the local run answers it; chapter 7 none | 1 | 0 | 0 | 0 |",
    '| **as the code sends them** | **17** | **7** | **5** | **5** |',
    `| **measured in this run** (sequential suite) | ${measured(six).join(' | ')} | ${measured(seven).join(' | ')} |`,
    '',
    ...(later.length
      ? [
          `${capital(listOf(later.map((c) => chapterName(c.chapter))))} ${later.length === 1 ? 'sends' : 'send'} chapter 7's statements on this path — the claim also counts attempts, in the same UPDATE; a sleep, a retry's back-off or a failed attempt is a statement of its own, only where the code sleeps or a step fails — ` +
            `measured: ${later.map((c) => `${chapterName(c.chapter)} ${fmt(c.sequential!.roundTripsPerWorkflow, 1)} round trips and ${fmt(c.sequential!.commitsPerWorkflow, 1)} commits a workflow`).join('; ')}.`,
          '',
        ]
      : []),
    "Chapter 6's heartbeat (a renewal per held lease every lease/3 to lease/2, 30 s by default) does not show in a workflow this short. " +
      'Drained from a backlog, a workflow adds its share of a claim. In chapter 7 at concurrency 8 the runs that write at the same moment share one multi-row fenced statement ' +
      '(`batcher.ts`: while one is in flight the next ones wait, then go out together), which is why commits and round trips a workflow fall below one per write.',
    '',
    `### What is left in ${lastName}, and what it would take`,
    '',
    '1. **8 worker processes of concurrency 1 are CPU-bound in Node** (see the throughput table): each process pays the whole per-statement cost — a wake-up of the event loop, the protocol, promise chains — for every write, with no neighbour to share a statement with. Node CPU per workflow falls several-fold from concurrency 1 to concurrency 8 in one process. On 2 cores: one worker process per core, each with a higher concurrency.',
    '2. **The last step and the completion in one statement.** Not knowable in advance (a step does not know it is the last); deferring a step\'s record until the next durable action would save a commit a workflow but weaken "recorded before the code moves on" — the course keeps the rule.',
    '3. **Fewer dead tuples per workflow.** Each workflow\'s row is updated by the claim and the completion, and both change indexed columns (`lease_expires_at`, and `status` in the partial index\'s predicate), so neither is a HOT update' +
      (p.steady ? ` (steady state: ${fmt(p.steady.tables.find((x) => x.table === 'workflows')?.deadTuples ?? NaN, 0)} dead tuples in workflows after ${fmt(p.steady.workflows, 0)} workflows)` : '') +
      '. ' +
      'A migration setting `autovacuum_vacuum_scale_factor = 0.01` on `workflows`, or moving finished workflows out of the hot table, is the next step for a long-running service.',
    '4. **Long histories** are not the problem: a 10,000-step resume is one SELECT and a replay in memory (above). A workflow that grows without bound should still `continueAsNew` — a later chapter.',
  ];
}
