/**
 * A worker process for the events suite (events.ts): a chapter with events
 * (chapters/<CHAPTER>/index.ts), the events suite's workflows, and a line
 * protocol — the benchmark's own worker process (worker.ts) registers only
 * workflows every production chapter can run.
 *
 *   stdout, one JSON object a line:
 *     {"event":"started", chapter, pid}       migrated, connected, claiming
 *     {"event":"end", id, outcome}            a run ended (outcome "waiting": parked in a wait)
 *   stdin:  stop
 *
 * Environment: DATABASE_URL, CHAPTER (default the last chapter), CONCURRENCY
 * (1), POLL_MS (5000), LISTEN (1).
 */
import readline from 'node:readline';
import pg from 'pg';
import { LAST_CHAPTER, loadProductionChapter } from './chapter.ts';
import { eventApi, eventWorkflows, readMoment } from './events.ts';
import { countRoundTrips } from './roundtrips.ts';

process.env.COURSE_TRACE = '0';
countRoundTrips();
const say = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);

const chapter = await loadProductionChapter(process.env.CHAPTER || LAST_CHAPTER);
const api = eventApi(chapter);
if (!api) throw new Error(`${chapter.name} has no events (ctx.waitForEvent)`);
const concurrency = env('CONCURRENCY', 1);
const db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: concurrency + 4 });
db.on('error', () => {});
await api.migrate(db);
const engine = api.createEngine({ db, workflows: eventWorkflows(() => readMoment(db)), resultPollMs: 10 });
const worker = engine.createWorker({
  concurrency,
  pollMs: env('POLL_MS', 5000),
  listen: process.env.LISTEN !== '0',
  name: `bench-events-${process.pid}`,
  onRunEnd: (event) => say('end', { id: event.workflowId, outcome: event.outcome }),
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await worker.stop({ graceMs: 1000 });
  await db.end();
  process.exit(0);
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stop') void stop();
}).on('close', () => void stop()); // the benchmark went away: so do we
process.once('SIGTERM', () => void stop());

await worker.start();
say('started', { chapter: chapter.dir, pid: process.pid });
