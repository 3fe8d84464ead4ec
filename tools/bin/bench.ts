/**
 * `npm run bench` — what durability costs, measured against yardsticks taken
 * in the same run on the same server: each chapter's engine, and the four
 * production chapters side by side — chapter 6 (leasing workers, plain
 * statements), chapter 7 (the same engine made fast), chapter 8 (failures and
 * time, on top of 7) and chapter 9 (events and cancellation, on top of 8) —
 * with chapter 9, the last, against its targets and its peers, and whether it
 * kept chapter 8's figures.
 *
 *   npm run bench                          the full run (about 8 minutes on 2 cores); writes docs/bench/report.md,
 *                                          results.json and the charts (throughput.svg, dispatch.svg, chapters.svg, wakeup.svg)
 *   npm run bench -- --quick               tiny counts, no report files (what `npm test` runs so this cannot rot)
 *   npm run bench -- --only steps,dispatch some suites (the yardsticks always run: everything is compared with them)
 *   npm run bench -- --no-write            the full run, printed only
 *   npm run bench -- --render              report.md again from results.json, measuring nothing (after editing report.ts)
 *
 * Suites: chapters (chapters 1–5; 6 to 9 come from the sequential suite);
 * steps, sequential, throughput, dispatch (on chapters 6 to 9, one after the
 * other within each suite, so that all meet the same conditions — 6 and 7,
 * the references, on fewer throughput levels; steps and sequential then
 * measure chapter 8 again, the noise band for "did chapter 9 keep chapter 8's
 * figures"); takeover, steady, history (on the last chapter, 9); wakeup,
 * sleeping (durable sleep, on the last chapter); events, waiting, fanout
 * (events and child workflows, on the last chapter: tools/bench/events.ts,
 * fanout.ts). A benchmark, never a timed test:
 * nothing here passes or fails on speed. Uses the embedded server by default,
 * or DATABASE_URL (then PostgreSQL's CPU is not measured: its pid is unknown).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { projectRoot, startPostgres } from '../../shared/db/server.ts';
import { renderCharts } from '../bench/charts.ts';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { flushRate, insertCommits } from '../bench/baseline.ts';
import { LAST_CHAPTER, loadProductionChapter, PRODUCTION_CHAPTERS, timeApi, type ProductionChapter } from '../bench/chapter.ts';
import { chapterEngines } from '../bench/engines.ts';
import * as events from '../bench/events.ts';
import { fanOut } from '../bench/fanout.ts';
import * as production from '../bench/production.ts';
import { Probe, type Delta } from '../bench/probes.ts';
import { normalizeResults, renderReport, type BenchResults, type ChapterCost } from '../bench/report.ts';
import { countRoundTrips } from '../bench/roundtrips.ts';
import { fmt, msSince, summarize } from '../bench/stats.ts';

export type { BenchResults } from '../bench/report.ts';

const SUITES = ['chapters', 'steps', 'sequential', 'throughput', 'dispatch', 'takeover', 'steady', 'history', 'wakeup', 'sleeping', 'events', 'waiting', 'fanout'] as const;
type Suite = (typeof SUITES)[number];

function selectedSuites(argv: string[]): Suite[] {
  const at = argv.indexOf('--only');
  const inline = argv.find((a) => a.startsWith('--only='));
  const list = inline ? inline.slice('--only='.length) : at >= 0 ? argv[at + 1] : undefined;
  if (at >= 0 && !inline && (list === undefined || list.startsWith('--'))) throw new CourseError('--only needs a list of suites', `Suites: ${SUITES.join(', ')}`);
  if (list === undefined) return [...SUITES];
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !(SUITES as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) throw new CourseError(`--only ${list}: unknown suite ${unknown.join(', ')}`, `Suites: ${SUITES.join(', ')}`);
  return SUITES.filter((s) => names.includes(s));
}

/** The report's SVG charts (charts.ts), beside it. */
function writeCharts(out: string, results: BenchResults): void {
  for (const chart of renderCharts(results)) fs.writeFileSync(path.join(out, chart.file), chart.svg);
}

/** `--render`: write report.md again from results.json, without measuring (after a change to the report's text). */
function renderOnly(): void {
  const out = path.join(projectRoot, 'docs', 'bench');
  const file = path.join(out, 'results.json');
  if (!fs.existsSync(file)) throw new CourseError('docs/bench/results.json does not exist yet', 'Run `npm run bench` first.');
  const results = normalizeResults(JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults);
  const report = renderReport(results);
  writeCharts(out, results);
  fs.writeFileSync(path.join(out, 'report.md'), `${report}\n`);
  console.log(report);
  console.error(paint.dim('\nWrote docs/bench/report.md from docs/bench/results.json (nothing measured)'));
}

runMain(async () => {
  if (process.argv.includes('--render')) return renderOnly();
  const began = process.hrtime.bigint();
  const quick = process.argv.includes('--quick');
  const suites = selectedSuites(process.argv);
  // A partial run must not overwrite the full report.
  const write = !quick && !process.argv.includes('--no-write') && suites.length === SUITES.length;
  const run = (s: Suite) => suites.includes(s);
  // The engines' per-step trace lines would measure the terminal, not the engine.
  process.env.COURSE_TRACE = '0';
  countRoundTrips();
  const loadAverage = os.loadavg();

  const server = await startPostgres({ purpose: 'test', log: (line) => console.error(paint.dim(line)) });
  const databaseUrl = await createDatabase(server.url, 'bench');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'course-bench-'));
  const probe = await Probe.open(databaseUrl, server.embedded?.pid);
  const suiteSeconds: Record<string, number> = {};
  let current: { name: string; since: bigint } | undefined;
  /** A new section: the previous one's time is booked. */
  const section = (title: string, suite?: string) => {
    if (current) suiteSeconds[current.name] = (suiteSeconds[current.name] ?? 0) + msSince(current.since) / 1000;
    current = suite ? { name: suite, since: process.hrtime.bigint() } : undefined;
    if (title) console.error(paint.bold(`\n▸ ${title}`));
  };
  const log = (line: string) => console.error(paint.dim(line));
  try {
    const settings = await probe.query<{ version: string; fsync: string; sc: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc`,
    );
    const row = settings.rows[0]!;
    if (!server.embedded) log('  external server (DATABASE_URL): PostgreSQL CPU is not measured — its process id is unknown here');

    section('disk flush rate (fdatasync of 8 KiB)', 'yardsticks');
    const flushDir = server.embedded ? path.dirname(server.embedded.dataDir) : os.tmpdir();
    const flush = flushRate(flushDir, quick ? 20 : 500);

    section('baseline: single-row INSERT autocommit', 'yardsticks');
    const oneClient = await insertCommits(databaseUrl, 1, quick ? 50 : 3000);
    const eightClients = await insertCommits(databaseUrl, 8, quick ? 80 : 12000);
    log(`  1 client ${fmt(oneClient.commitsPerSecond, 0)} commits/s (${fmt(oneClient.latency.meanMs)} ms), 8 clients ${fmt(eightClients.commitsPerSecond, 0)} commits/s`);

    const chapters: ChapterCost[] = [];
    if (run('chapters')) {
      section('what durability costs, per chapter (3 no-op steps, one workflow after another)', 'chapters');
      for (const entry of chapterEngines()) {
        const count = quick ? 10 : entry.chapter === 1 ? 5000 : entry.chapter === 2 ? 300 : 1000;
        const dbUrl = await createDatabase(server.url, `bench_ch${entry.chapter}`);
        const dir = fs.mkdtempSync(path.join(scratch, `ch${entry.chapter}-`));
        const engine = await entry.open({ databaseUrl: dbUrl, dir });
        // Warm up (JIT, prepared plans, connections) outside the measurement.
        for (let i = 0; i < Math.min(20, count); i++) await engine.run(`warm-${i}`);
        const latencies: number[] = [];
        const before = await probe.snapshot();
        const loopStart = process.hrtime.bigint();
        for (let i = 0; i < count; i++) {
          const t = process.hrtime.bigint();
          await engine.run(`wf-${i}`);
          latencies.push(msSince(t));
        }
        const loopSeconds = msSince(loopStart) / 1000;
        const after = await probe.snapshot();
        await engine.close();
        await dropDatabase(dbUrl, server.url).catch(() => {});
        const d: Delta = Probe.delta(before, after);
        chapters.push({
          chapter: entry.chapter,
          label: entry.label,
          durability: entry.durability,
          workflows: count,
          workflowsPerSecond: count / loopSeconds,
          latency: summarize(latencies),
          writeTransactionsPerWorkflow: d.writeTransactions / count,
          walBytesPerWorkflow: d.walBytes / count,
          nodeCpuSeconds: d.nodeCpuSeconds,
          pgCpuSeconds: d.pgCpuSeconds,
        });
        log(`  ${entry.label}: ${fmt(count / loopSeconds, 0)} workflows/s`);
      }
    }

    const ctx: production.SuiteContext = { serverUrl: server.url, probe, quick, log, baselineCommitMs: oneClient.latency.meanMs };
    const p: production.ProductionResults = {};
    // The production chapters, side by side: each suite runs on chapter 6, then at once on chapter 7, then on 8.
    const compared: Array<{ chapter: ProductionChapter; results: production.ChapterResults }> = [];
    if (run('steps') || run('sequential') || run('throughput') || run('dispatch')) {
      for (const dir of PRODUCTION_CHAPTERS) {
        const chapter = await loadProductionChapter(dir);
        compared.push({ chapter, results: { chapter: chapter.dir, durability: chapter.durability } });
      }
      p.compared = compared.map((c) => c.results);
    }
    // The chapter before the last, measured again after the last in the two short suites: how far one engine's figures move within a run.
    const again = compared.length >= 3 ? compared[compared.length - 2]!.chapter : undefined;
    if (again && (run('steps') || run('sequential'))) p.again = { chapter: again.dir };
    if (run('steps')) {
      for (const { chapter, results } of compared) {
        section(`${chapter.name}: step overhead (20 no-op steps vs 0, one after another)`, 'steps');
        const s = (results.stepOverhead = await production.stepOverhead(ctx, chapter));
        log(`  ${fmt(s.perStepMs)} ms a step (${fmt(s.ratioToCommit ?? NaN)}× the commit)`);
      }
      if (again && p.again) {
        section(`${again.name} again: step overhead (the noise band)`, 'steps');
        const s = (p.again.stepOverhead = await production.stepOverhead(ctx, again));
        log(`  ${fmt(s.perStepMs)} ms a step (${fmt(s.ratioToCommit ?? NaN)}× the commit)`);
      }
    }
    if (run('sequential')) {
      for (const { chapter, results } of compared) {
        section(`${chapter.name}: sequential 3-step workflows`, 'sequential');
        const s = (results.sequential = await production.sequential(ctx, chapter));
        log(`  ${fmt(s.workflowsPerSecond, 0)} workflows/s, p50 ${fmt(s.latency.p50Ms)} ms`);
      }
      if (again && p.again) {
        section(`${again.name} again: sequential 3-step workflows (the noise band)`, 'sequential');
        const s = (p.again.sequential = await production.sequential(ctx, again));
        log(`  ${fmt(s.workflowsPerSecond, 0)} workflows/s, p50 ${fmt(s.latency.p50Ms)} ms`);
      }
    }
    if (run('throughput')) {
      for (const { chapter, results } of compared) {
        section(`${chapter.name}: throughput — started, then drained by 1, 2, 4, 8 (one worker; worker processes)`, 'throughput');
        results.throughput = await production.throughput(ctx, chapter);
      }
    }
    if (run('dispatch')) {
      section('dispatch latency: the yardstick (a bare INSERT commit after 15 ms idle)', 'dispatch');
      p.dispatchYardstick = await production.dispatchYardstick(ctx);
      log(`  p50 ${fmt(p.dispatchYardstick.latency.p50Ms)} ms, p99 ${fmt(p.dispatchYardstick.latency.p99Ms)} ms`);
      for (const { chapter, results } of compared) {
        section(`${chapter.name}: dispatch latency (idle worker → first step)`, 'dispatch');
        results.dispatch = await production.dispatch(ctx, chapter);
        for (const d of results.dispatch) log(`  ${d.mode}, ${d.wake}: p50 ${fmt(d.latency.p50Ms)} ms, p99 ${fmt(d.latency.p99Ms)} ms`);
      }
    }
    // The rest measure the last chapter only.
    if (run('takeover') || run('steady') || run('history') || run('wakeup') || run('sleeping') || run('events') || run('waiting') || run('fanout')) {
      const last = await loadProductionChapter(LAST_CHAPTER);
      p.last = last.dir;
      if (run('takeover')) {
        section(`${last.name}: takeover after kill -9`, 'takeover');
        p.takeover = await production.takeover(ctx, last);
      }
      if (run('steady')) {
        section(`${last.name}: steady open-loop load at half the maximum`, 'steady');
        const max = p.compared
          ?.find((c) => c.chapter === last.dir)
          ?.throughput?.runs.find((x) => x.mode === 'in-process' && x.concurrency === 8)?.workflowsPerSecond;
        p.steady = await production.steady(ctx, last, max);
        log(`  ${p.steady.workflows} workflows at ${fmt(p.steady.achievedRate, 0)}/s; last third p99 ${fmt(p.steady.thirds[2]!.p99Ms)} ms`);
      }
      if (run('history')) {
        section(`${last.name}: resuming a 10,000-step history`, 'history');
        p.history = await production.history(ctx, last);
        log(`  ${fmt(p.history.resumeMs)} ms, ${fmt(p.history.extraRssBytes / 2 ** 20, 1)} MB extra, ${p.history.roundTrips} round trips`);
      }
      // Durable sleep: on the last chapter, if it has it.
      const time = timeApi(last);
      if (run('wakeup') || run('sleeping')) {
        if (!time) log(`  ${last.name} has no durable sleep: the wakeup and sleeping suites are skipped`);
        if (time && run('wakeup')) {
          section(`${last.name}: wake-up lateness of sleeping workflows (idle worker, concurrency 8, pollMs 1000)`, 'wakeup');
          p.wakeUp = await production.wakeUp(ctx, last, time);
        }
        if (time && run('sleeping')) {
          section(`${last.name}: ${ctx.quick ? '1,000' : '10,000'} sleeping workflows beside the others`, 'sleeping');
          p.sleeping = await production.sleeping(ctx, last, time);
          const s = p.sleeping;
          log(
            `  dispatch p50 ${fmt(s.none.dispatch.p50Ms)} → ${fmt(s.sleeping.dispatch.p50Ms)} ms, drain ${fmt(s.none.drain.workflowsPerSecond, 0)} → ${fmt(s.sleeping.drain.workflowsPerSecond, 0)} workflows/s; ` +
              `held: idle max ${s.idleHeldMax}, sleepers ever held ${s.sleepersHeld}, claimed ${s.sleepersClaimed}`,
          );
        }
      }
      // Events: on the last chapter, if it has them.
      const withEvents = events.eventApi(last);
      if (run('events') || run('waiting') || run('fanout')) {
        if (!withEvents) log(`  ${last.name} has no events: the events, waiting and fanout suites are skipped`);
        if (withEvents && run('events')) {
          section(`${last.name}: event delivery latency (send → the step after the wait; idle worker, concurrency 1, pollMs 5000)`, 'events');
          // Beside the dispatch suite's yardstick (a bare INSERT commit after the same idle time), or one measured here without it.
          const yardstick = p.dispatchYardstick ?? (await production.dispatchYardstick(ctx));
          p.events = { ...(await events.eventDelivery(ctx, last, withEvents)), yardstick };
        }
        if (withEvents && run('waiting')) {
          section(`${last.name}: ${ctx.quick ? '1,000' : '10,000'} workflows waiting for an event beside the others`, 'waiting');
          p.waiting = await events.waiting(ctx, last, withEvents);
          const w = p.waiting;
          log(
            `  dispatch p50 ${fmt(w.none.dispatch.p50Ms)} → ${fmt(w.waiting.dispatch.p50Ms)} ms, drain ${fmt(w.none.drain.workflowsPerSecond, 0)} → ${fmt(w.waiting.drain.workflowsPerSecond, 0)} workflows/s; ` +
              `held: idle max ${w.idleHeldMax}, waiters ever held ${w.waitersHeld}, claimed ${w.waitersClaimed}`,
          );
        }
        if (withEvents && run('fanout')) {
          section(`${last.name}: fan-out — a parent and ${ctx.quick ? 20 : '1,000'} children (one worker, concurrency 8)`, 'fanout');
          p.fanOut = await fanOut(ctx, last, withEvents);
        }
      }
    }

    section('');
    const results: BenchResults = {
      when: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        loadAverage,
        loadAverageAtEnd: os.loadavg(),
      },
      server: { describe: server.describe, version: row.version, fsync: row.fsync, synchronousCommit: row.sc, embedded: Boolean(server.embedded) },
      quick,
      suites: ['yardsticks', ...suites],
      durationSeconds: msSince(began) / 1000,
      suiteSeconds,
      flush,
      baseline: { oneClient, eightClients },
      chapters,
      production: p,
    };

    const report = renderReport(results);
    console.log(`\n${report}`);
    if (write) {
      const out = path.join(projectRoot, 'docs', 'bench');
      fs.mkdirSync(out, { recursive: true });
      fs.writeFileSync(path.join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
      writeCharts(out, results);
      fs.writeFileSync(path.join(out, 'report.md'), `${report}\n`);
      console.error(paint.dim(`\nWrote docs/bench/report.md and docs/bench/results.json`));
    }
  } finally {
    await probe.close();
    await dropDatabase(databaseUrl, server.url).catch(() => {});
    fs.rmSync(scratch, { recursive: true, force: true });
    await server.stop();
  }
});
