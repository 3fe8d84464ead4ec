/**
 * A worker process the benchmark starts, kills and measures: a production
 * chapter's library (chapters/<CHAPTER>/index.ts), the benchmark's workflows
 * (workflows.ts), and a line protocol on stdin/stdout instead of a narrated demo.
 *
 *   stdout, one JSON object a line:
 *     {"event":"ready", chapter, rss, …}   migrated, connected, engine created (not yet claiming, when GATE=1)
 *     {"event":"started"}           the worker claims from now on
 *     {"event":"end", id, outcome, at, rss, peakRss, roundTrips}   a run ended
 *     {"event":"stats", cpuMs, rss, peakRss, roundTrips}            answer to "stats"
 *   stdin, one command a line:  go (start the worker, with GATE=1) · pause (stop claiming, keep the process; then {"event":"paused"}) · stats · reset-peak (then stats) · stop
 *
 * Environment: DATABASE_URL, CHAPTER (the chapter's directory, e.g.
 * 06-leasing-workers; default the last chapter, 07-fast-path), CONCURRENCY
 * (1), LEASE_MS (30000), POLL_MS (1000), LISTEN (1), GATE (0), ROLE (worker |
 * victim: the "hold" step never returns, for the takeover measurement).
 * COURSE_TRACE=0 is set here.
 *
 *   CHAPTER=06-leasing-workers DATABASE_URL=… node --import tsx tools/bench/worker.ts
 *   DATABASE_URL=… node --import tsx tools/bench/worker.ts 06-leasing-workers    (the same: an argument wins over CHAPTER)
 */
import fs from 'node:fs';
import readline from 'node:readline';
import pg from 'pg';
import { LAST_CHAPTER, loadProductionChapter } from './chapter.ts';
import { countRoundTrips, peakRssBytes, processCpuMs, roundTrips } from './roundtrips.ts';
import { benchWorkflows, wallMs } from './workflows.ts';

process.env.COURSE_TRACE = '0';
countRoundTrips();

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const say = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);

const chapter = await loadProductionChapter(process.argv[2] || process.env.CHAPTER || LAST_CHAPTER);
const concurrency = env('CONCURRENCY', 1);
const db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: concurrency + 4 });
db.on('error', () => {});
await chapter.api.migrate(db);
const engine = chapter.api.createEngine({ db, workflows: benchWorkflows(process.env.ROLE === 'victim' ? 'victim' : 'worker'), resultPollMs: 10 });
const makeWorker = () =>
  engine.createWorker({
    concurrency,
    leaseMs: env('LEASE_MS', 30_000),
    pollMs: env('POLL_MS', 1000),
    listen: process.env.LISTEN !== '0',
    name: `bench-${process.pid}`,
    onRunEnd: (event) =>
      say('end', { id: event.workflowId, outcome: event.outcome, at: wallMs(), rss: process.memoryUsage.rss(), peakRss: peakRssBytes(), roundTrips: roundTrips() }),
  });
let worker = makeWorker();

let state: 'gated' | 'running' | 'paused' = 'gated';
async function go(): Promise<void> {
  if (state === 'running') return;
  if (state === 'paused') worker = makeWorker(); // a stopped worker cannot start again: a new one, same process (its code stays warm)
  state = 'running';
  await worker.start();
  say('started');
}

/** Stop claiming and finish what is held, keeping the process (and its warmed-up code) for a later `go`. */
async function pause(): Promise<void> {
  if (state !== 'running') return;
  state = 'paused';
  await worker.stop({ graceMs: 5000 });
  say('paused');
}

async function stop(): Promise<void> {
  await worker.stop({ graceMs: 1000 });
  await db.end();
  process.exit(0);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = line.trim();
  if (command === 'go') void go();
  else if (command === 'pause') void pause();
  else if (command === 'stats') say('stats', { cpuMs: processCpuMs(process.pid), rss: process.memoryUsage.rss(), peakRss: peakRssBytes(), roundTrips: roundTrips() });
  else if (command === 'reset-peak') {
    // Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS.
    try {
      fs.writeFileSync('/proc/self/clear_refs', '5');
    } catch {
      // elsewhere the peak stays the lifetime peak
    }
    say('stats', { cpuMs: processCpuMs(process.pid), rss: process.memoryUsage.rss(), peakRss: peakRssBytes(), roundTrips: roundTrips() });
  } else if (command === 'stop') void stop();
}).on('close', () => void stop()); // the benchmark went away: so do we
process.once('SIGTERM', () => void stop());

say('ready', { chapter: chapter.dir, pid: process.pid, rss: process.memoryUsage.rss(), peakRss: peakRssBytes(), roundTrips: roundTrips() });
if (process.env.GATE !== '1') await go();
