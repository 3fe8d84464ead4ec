/**
 * Events (chapter 9 on): what `ctx.waitForEvent` and `engine.send` cost.
 *
 *   events    delivery latency — an idle worker, a workflow parked in
 *             `ctx.waitForEvent('go')`; `engine.send(id, 'go')`; the time until
 *             the step after the wait starts. Three senders: the engine whose
 *             worker parked it (send() hands it over, claimed), another engine in this
 *             process with no worker (its NOTIFY, on its own connection), and
 *             this process with the worker in another process (events-worker.ts:
 *             NOTIFY across processes).
 *   waiting   10,000 workflows parked in a wait for an event that never comes,
 *             beside the others: they hold no slot, and the claim is as fast —
 *             the same measurements in a database with none and one with them,
 *             interleaved (as the sleeping suite does for sleeps, production.ts).
 *
 * Typed against the little of a chapter's engine these use (EventApi); tsc
 * checks below that chapter 9's public entry fits. The workflows here are
 * registered in the benchmark process and in the worker process under the
 * same names.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import pg from 'pg';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { projectRoot } from '../../shared/db/server.ts';
import type { BenchRun, BenchWorkerOptions, ProductionChapter, TimeWorker } from './chapter.ts';
import { besideTheCrowd, sumCosts, type Dispatch, type SleepingCondition, type SuiteContext } from './production.ts';
import { roundTrips } from './roundtrips.ts';
import { msSince, summarize, type Summary } from './stats.ts';
import { timeWorkflows, wallMs, type NapInput, type SleepContext } from './workflows.ts';

// ── the workflows, and what they use of a chapter ───────────────────────────

/** What a workflow that waits for an event uses of a chapter's `Context` (chapter 9 on). */
export interface EventContext extends SleepContext {
  waitForEvent<T = unknown>(name: string, options?: { timeoutMs?: number }): Promise<T | undefined>;
}

/** What a workflow that starts children uses of a chapter's `Context` (chapter 9 on). */
export interface FanOutContext extends EventContext {
  startChild<Output = unknown, Input = unknown>(name: string, input: Input): Promise<{ id: string; result(): Promise<Output> }>;
}

/** The input of `fanOut`: how many children it starts. */
export interface FanOutInput {
  children: number;
}

/** The input of `child`: its position among its siblings. */
export interface ChildInput {
  i: number;
}

/**
 * When the step after the wait started: its process's wall clock (wallMs) and
 * round trips so far (roundtrips.ts), first thing; then the database's clock
 * and next transaction id, read right after (one query later).
 */
export interface Woke {
  wall: number;
  trips: number;
  db: number;
  xid: number;
}

/** The database's clock and transaction counter, in one read. */
export interface DbMoment {
  /** Epoch ms on the database's clock (clock_timestamp(): the moment the statement runs, not its transaction's start). */
  ms: number;
  /** The next transaction id: one is taken by each write transaction (probes.ts), so a difference counts commits. */
  xid: number;
}

export const DB_MOMENT_SQL = `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms, pg_snapshot_xmax(pg_current_snapshot())::text AS xid`;

/** Read the database's moment on `db` (a pool, or a client). */
export async function readMoment(db: Pick<pg.Pool, 'query'>): Promise<DbMoment> {
  const row = (await db.query<{ ms: number; xid: string }>({ text: DB_MOMENT_SQL })).rows[0]!;
  return { ms: row.ms, xid: Number(row.xid) };
}

/**
 * The workflows of the events and waiting suites, beside the others (`nap`
 * reads the database's clock from `moment` too):
 *
 *   awaitGo  waits for the event `go`, then one step that records when it
 *            started (Woke): wallMs() and the round trips first thing, then
 *            the database's clock and transaction counter (one query later,
 *            so that clock runs a little late: conservative).
 *   parked   waits for the event `never`, which nobody sends.
 *   fanOut   starts `children` children in one turn (Promise.all over
 *            ctx.startChild: one transaction starts them all), then waits for
 *            all their results in one turn (Promise.all over result(): the
 *            parent parks once); returns how many it heard from.
 *   child    one step that returns its position (as a child, or on its own:
 *            the fan-out suite's yardstick starts the same workflow with start()).
 */
export const eventWorkflows = (moment: () => Promise<DbMoment>) => ({
  ...timeWorkflows(async () => (await moment()).ms),
  awaitGo: async (ctx: EventContext): Promise<Woke> => {
    await ctx.waitForEvent('go');
    return ctx.step('woke', async () => {
      const wall = wallMs();
      const trips = roundTrips();
      const at = await moment();
      return { wall, trips, db: at.ms, xid: at.xid };
    });
  },
  parked: async (ctx: EventContext) => {
    await ctx.waitForEvent('never');
    return 'sent after all';
  },
  fanOut: async (ctx: FanOutContext, input: FanOutInput) => {
    const handles = await Promise.all(Array.from({ length: input.children }, (_, i) => ctx.startChild<number, ChildInput>('child', { i })));
    const outputs = await Promise.all(handles.map((handle) => handle.result()));
    return outputs.length;
  },
  child: async (ctx: EventContext, input: ChildInput) => ctx.step('one', async () => input.i),
});

export type EventWorkflows = ReturnType<typeof eventWorkflows>;

/** What the events and waiting suites use of a chapter with events. */
export interface EventEngine {
  start(name: keyof EventWorkflows & string, input: NapInput | FanOutInput | ChildInput | Record<string, never>, options: { id: string }): Promise<BenchRun>;
  send(workflowId: string, name: string, payload: unknown, options?: { key?: string }): Promise<{ delivered: boolean; woke: boolean }>;
  createWorker(options?: BenchWorkerOptions): TimeWorker;
}

/** The part of a chapter with events (9 on) that these suites use. */
export interface EventApi {
  migrate(db: pg.Pool): Promise<unknown>;
  createEngine(options: { db: pg.Pool; workflows: EventWorkflows; resultPollMs?: number }): EventEngine;
}

// Chapter 9's public entry must fit EventApi: `npx tsc --noEmit` fails here if it stops fitting.
type EventFits<T extends EventApi> = T;
export type Chapter9EventFits = EventFits<typeof import('../../chapters/09-waiting-for-the-world/index.ts')>;

/** The first chapter whose workflows can wait for an event. */
export const FIRST_EVENT_CHAPTER = 9;

/** The chapter's engine with events, or undefined for a chapter before them. */
export function eventApi(chapter: ProductionChapter): EventApi | undefined {
  return chapter.number >= FIRST_EVENT_CHAPTER ? (chapter.api as unknown as EventApi) : undefined;
}

// ── plumbing ─────────────────────────────────────────────────────────────────

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface OpenedEvents {
  url: string;
  db: pg.Pool;
  /** A new engine on this database (each has its own local workers, and its own NOTIFY tag). */
  engine(): EventEngine;
  close(): Promise<void>;
}

/** A fresh database for a chapter with events, migrated; engines on it register the events suites' workflows. */
export async function openEvents(ctx: SuiteContext, chapter: ProductionChapter, api: EventApi, label: string, poolMax = 24): Promise<OpenedEvents> {
  const url = await createDatabase(ctx.serverUrl, `bench_ch${chapter.number}_${label}`);
  const db = new pg.Pool({ connectionString: url, max: poolMax });
  db.on('error', () => {});
  await api.migrate(db);
  const workflows = eventWorkflows(() => readMoment(db));
  return {
    url,
    db,
    engine: () => api.createEngine({ db, workflows, resultPollMs: 10 }),
    async close() {
      await db.end();
      await dropDatabase(url, ctx.serverUrl).catch(() => {});
    },
  };
}

/** Runs that ended, by id, and a way to wait for one: fed by a worker's onRunEnd, or a worker process's `end` lines. */
export class RunEnds {
  private readonly seen = new Map<string, string>();
  private readonly waiters = new Map<string, (outcome: string) => void>();

  ended(id: string, outcome: string): void {
    const waiter = this.waiters.get(id);
    if (waiter) {
      this.waiters.delete(id);
      waiter(outcome);
    } else this.seen.set(id, outcome);
  }

  /** The outcome of `id`'s next run end (or one already seen), within `timeoutMs`. */
  next(id: string, timeoutMs = 30_000): Promise<string> {
    const outcome = this.seen.get(id);
    if (outcome !== undefined) {
      this.seen.delete(id);
      return Promise.resolve(outcome);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`no run of ${id} ended within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(id, (o) => {
        clearTimeout(timer);
        resolve(o);
      });
    });
  }
}

/** A worker process running events-worker.ts: its run ends feed `ends`. */
class EventWorkerProcess {
  readonly ends = new RunEnds();
  private readonly child: ChildProcess;
  private ready: Promise<Record<string, unknown>>;
  private stderr = '';
  private exited: Promise<void>;

  constructor(chapter: ProductionChapter, env: Record<string, string>) {
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'tools', 'bench', 'events-worker.ts')], {
      cwd: projectRoot,
      env: { ...process.env, COURSE_TRACE: '0', CHAPTER: chapter.dir, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`events worker: not started within 60 s; stderr: ${this.stderr}`)), 60_000);
      void this.exited.then(() => reject(new Error(`events worker exited before it started; stderr: ${this.stderr}`)));
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (event.event === 'started') {
          clearTimeout(timer);
          resolve(event);
        } else if (event.event === 'end') this.ends.ended(String(event.id), String(event.outcome));
      });
    });
    void this.ready.catch(() => {});
  }

  /** Started (migrated, claiming), and on `chapter`: a figure is never booked to the wrong chapter. */
  async started(chapter: ProductionChapter): Promise<void> {
    const event = await this.ready;
    if (event.chapter !== chapter.dir) throw new Error(`events worker loaded ${String(event.chapter)}, not ${chapter.dir}`);
  }

  async stop(timeoutMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin!.write('stop\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

// ── events: delivery latency ─────────────────────────────────────────────────

/** One way of sending the event, measured. */
export interface EventDeliveryCase {
  /** Who sends, and what wakes the worker. */
  sender: string;
  wake: 'in-memory' | 'NOTIFY';
  /** The clock `latency` is read on. */
  clock: 'same process' | 'database';
  workflows: number;
  /** send() called → the step after the wait starts: on `clock`. */
  latency: Summary;
  /** The same on the database's clock: read just before send(), and in the step right after its start (both cases run it: how the two clocks compare). */
  dbClock: Summary;
  /** send()'s own call, in the sender's process: its transaction (lock, insert, wake, commit). */
  send: Summary;
  /** Write transactions from just before send() to the step after the wait (the send's; the claim's, unless send() handed it over): the mean per event. */
  commitsPerEvent: number;
  /** Round trips from send() to the step after the wait, when sender and worker share this process (counted here); undefined otherwise. */
  roundTripsPerEvent: number | undefined;
  /** …of which send() itself. */
  sendRoundTrips: number;
}

export interface EventDelivery {
  chapter: string;
  concurrency: number;
  pollMs: number;
  /** How long the worker sat idle before each send (ms). */
  idleMs: number;
  cases: EventDeliveryCase[];
  /** The yardstick: a bare INSERT commit after the same idle time (the dispatch suite's, or measured here when it did not run). */
  yardstick?: Dispatch;
}

/** A client that reads the database's moment for the sender, just before each send (not the engine's pool). */
async function clockReader(url: string): Promise<{ read(): Promise<DbMoment>; end(): Promise<void> }> {
  const client = new pg.Client(url);
  await client.connect();
  return { read: () => readMoment(client), end: () => client.end() };
}

interface DeliveryRound {
  /** Start the workflow `id` (by an engine of the worker's, or one without a worker). */
  start(id: string): Promise<BenchRun>;
  /** Resolves with the outcome of `id`'s next run end: the run that parked it, then the one that finished it. */
  ended(id: string): Promise<string>;
  send: EventEngine['send'];
}

/** `count` workflows, one after another: start, wait until parked, `idleMs` idle, send, wait for the step after the wait. */
async function deliveries(url: string, round: DeliveryRound, count: number, idleMs: number, prefix: string) {
  const clock = await clockReader(url);
  const wall: number[] = [];
  const db: number[] = [];
  const send: number[] = [];
  const commits: number[] = [];
  const trips: number[] = [];
  const sendTrips: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const id = `${prefix}-${i}`;
      const run = await round.start(id);
      const outcome = await round.ended(id);
      if (outcome !== 'waiting') throw new Error(`${id} did not park for its event: its run ended ${outcome}`);
      await sleep(idleMs); // the worker is idle: asleep in its claim loop
      const before = await clock.read();
      const trips0 = roundTrips();
      const t0 = wallMs();
      const sent = await round.send(id, 'go', null, { key: `${id}-go` });
      send.push(wallMs() - t0);
      sendTrips.push(roundTrips() - trips0);
      if (!sent.woke) throw new Error(`the send to ${id} woke nothing (${JSON.stringify(sent)}): was it parked?`);
      // The run's end first, then its result: result()'s polling (the harness's, not the engine's) stays out of the measured stretch.
      const finished = await round.ended(id);
      if (finished !== 'completed') throw new Error(`${id}: the run after its event ended ${finished}`);
      const woke = (await run.result()) as Woke;
      wall.push(woke.wall - t0);
      db.push(woke.db - before.ms);
      commits.push(woke.xid - before.xid);
      trips.push(woke.trips - trips0);
    }
  } finally {
    await clock.end();
  }
  return { wall, db, send, commits, trips, sendTrips };
}

/**
 * Event delivery latency with an idle worker (concurrency 1, pollMs 5000, so
 * that a wake-up missed would show as seconds): for each workflow, start it,
 * wait until it parks in waitForEvent('go'), leave the worker idle 15 ms,
 * send, and time until the step after the wait starts. Three senders:
 *
 *   1. the engine whose worker parked it: send() hands the workflow to that worker, claimed in its own statement;
 *   2. another engine in this process, with no worker: its NOTIFY (another
 *      connection) wakes the worker — timed on the same clock as 1;
 *   3. this process, the worker in another process (events-worker.ts): the
 *      NOTIFY crosses processes — timed on the database's clock (read just
 *      before send(), and in the step), the only clock both sides share.
 */
export async function eventDelivery(ctx: SuiteContext, chapter: ProductionChapter, api: EventApi): Promise<EventDelivery> {
  const count = ctx.quick ? 5 : 300;
  const warm = ctx.quick ? 2 : 10;
  const idleMs = 15;
  const concurrency = 1;
  const pollMs = 5000;
  const cases: EventDeliveryCase[] = [];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const book = (c: Pick<EventDeliveryCase, 'sender' | 'wake' | 'clock'>, r: Awaited<ReturnType<typeof deliveries>>) => {
    const latency = summarize(c.clock === 'database' ? r.db : r.wall);
    const send = summarize(r.send);
    cases.push({
      ...c,
      workflows: latency.n,
      latency,
      dbClock: summarize(r.db),
      send,
      commitsPerEvent: mean(r.commits),
      // In another process the worker's round trips are its own: counted there, not here.
      roundTripsPerEvent: c.clock === 'database' ? undefined : mean(r.trips),
      sendRoundTrips: mean(r.sendTrips),
    });
    ctx.log(`  ${c.sender}: p50 ${latency.p50Ms.toFixed(2)} ms, p99 ${latency.p99Ms.toFixed(2)} ms, max ${latency.maxMs.toFixed(2)} ms (${c.clock} clock); send() itself p50 ${send.p50Ms.toFixed(2)} ms`);
  };
  // 1 and 2: the worker in this process.
  {
    const o = await openEvents(ctx, chapter, api, 'events_in');
    const ends = new RunEnds();
    const engine = o.engine();
    const worker = engine.createWorker({ concurrency, pollMs, name: 'bench-events', onRunEnd: (e) => ends.ended(e.workflowId, e.outcome) });
    await worker.start();
    try {
      const other = o.engine(); // no worker: its send() wakes nobody in memory, its NOTIFY carries its own tag
      const same: DeliveryRound = { start: (id) => engine.start('awaitGo', {}, { id }), ended: (id) => ends.next(id), send: (...a) => engine.send(...a) };
      const notify: DeliveryRound = { ...same, send: (...a) => other.send(...a) };
      await deliveries(o.url, same, warm, idleMs, 'warm-same');
      await deliveries(o.url, notify, warm, idleMs, 'warm-other');
      book({ sender: 'the engine whose worker parked it (send() hands it over in memory, claimed)', wake: 'in-memory', clock: 'same process' }, await deliveries(o.url, same, count, idleMs, 'same'));
      book({ sender: 'another engine in this process, no worker (its NOTIFY, another connection)', wake: 'NOTIFY', clock: 'same process' }, await deliveries(o.url, notify, count, idleMs, 'other'));
    } finally {
      await worker.stop();
      await o.close();
    }
  }
  // 3: the worker in another process.
  {
    const o = await openEvents(ctx, chapter, api, 'events_proc');
    const child = new EventWorkerProcess(chapter, { DATABASE_URL: o.url, CONCURRENCY: String(concurrency), POLL_MS: String(pollMs) });
    try {
      await child.started(chapter);
      const sender = o.engine(); // no worker: start() writes the row unclaimed with a NOTIFY, the worker process claims it
      const round: DeliveryRound = { start: (id) => sender.start('awaitGo', {}, { id }), ended: (id) => child.ends.next(id), send: (...a) => sender.send(...a) };
      await deliveries(o.url, round, warm, idleMs, 'warm-proc');
      book({ sender: 'this process, the worker in another (NOTIFY across processes)', wake: 'NOTIFY', clock: 'database' }, await deliveries(o.url, round, count, idleMs, 'proc'));
    } finally {
      await child.stop();
      await o.close();
    }
  }
  return { chapter: chapter.dir, concurrency, pollMs, idleMs, cases };
}

// ── waiting: 10,000 workflows parked for an event ────────────────────────────

export interface Waiting {
  chapter: string;
  /** Workflows parked in waitForEvent('never') in the second database. */
  waiters: number;
  /** Writing them: one started and run to its wait by the engine, the rest copies of its row (INSERT … SELECT). */
  insertSeconds: number;
  /** The same measurements where nothing waits, and beside the waiters, interleaved (none, waiting, waiting, none). */
  none: SleepingCondition;
  waiting: SleepingCondition;
  /** The workers' `held`, sampled every 5 ms while they ran beside the waiters (idle, dispatching, draining). */
  heldSamples: number;
  /** The most an idle worker held beside the waiters over `idleMs` (at least one poll and its nextWakeUp). */
  idleHeldMax: number;
  idleMs: number;
  /** Waiters ever seen in a worker's `held`, and waiters whose row a claim touched: both 0 when waiting costs nothing. */
  waitersHeld: number;
  waitersClaimed: number;
  /** The claim's index (workflows_runnable) without the waiters, and with them. */
  indexBytes: { none: number; waiting: number };
}

/**
 * 10,000 workflows parked in `ctx.waitForEvent('never')`, beside other work:
 * one started and run to its wait by the engine, 9,999 copies of its rows
 * (every column as the engine wrote it — the workflow released until year
 * 9999 with one wait missing, the wait's row in `waits` — only the id changed). Then, in that database and in one where
 * nothing waits, interleaved (none, waiting, waiting, none): dispatch through
 * a claim (start() from an engine without a worker, NOTIFY, an idle worker of
 * concurrency 8 claims and asks nextWakeUp) and a backlog drained by a worker
 * of concurrency 8 — the workers' `held` sampled all along. The sleeping
 * suite's twin (production.ts), for the wait that has no end.
 */
export async function waiting(ctx: SuiteContext, chapter: ProductionChapter, api: EventApi): Promise<Waiting> {
  const waiters = ctx.quick ? 1000 : 10_000;
  const stamps = ctx.quick ? 5 : 80;
  const backlog = ctx.quick ? 16 : 600;
  const dbs = { none: await openEvents(ctx, chapter, api, 'unparked'), waiting: await openEvents(ctx, chapter, api, 'parked') };
  try {
    const t = process.hrtime.bigint();
    const o = dbs.waiting;
    {
      const engine = o.engine();
      const worker = engine.createWorker({ concurrency: 8, name: 'bench-template' });
      await worker.start();
      await engine.start('parked', {}, { id: 'waiter-0' });
      for (;;) {
        const { rows } = await o.db.query(`SELECT 1 FROM workflows WHERE id = 'waiter-0' AND waits_missing = 1 AND lease_owner IS NULL`);
        if (rows.length === 1) break;
        await sleep(5);
      }
      await worker.stop();
    }
    // The template's rows with the id replaced, every other column as the engine wrote it: the workflow, its wait, its steps (none before this wait).
    await o.db.query(
      `WITH copies AS (
         SELECT 'waiter-' || i AS id FROM generate_series(1, $1::int - 1) AS i
       ), wf AS (
         INSERT INTO workflows SELECT (jsonb_populate_record(w, jsonb_build_object('id', c.id))).*
           FROM workflows w, copies c WHERE w.id = 'waiter-0'
       ), wt AS (
         INSERT INTO waits SELECT (jsonb_populate_record(x, jsonb_build_object('workflow_id', c.id))).*
           FROM waits x, copies c WHERE x.workflow_id = 'waiter-0'
       )
       INSERT INTO steps SELECT (jsonb_populate_record(s, jsonb_build_object('workflow_id', c.id))).*
         FROM steps s, copies c WHERE s.workflow_id = 'waiter-0'`,
      [waiters],
    );
    await o.db.query('ANALYZE workflows; ANALYZE waits; ANALYZE steps');
    await dbs.none.db.query('ANALYZE workflows; ANALYZE waits; ANALYZE steps');
    const insertSeconds = msSince(t) / 1000;
    const parkedCount = (
      await o.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM workflows w WHERE id LIKE 'waiter-%' AND waits_missing = 1 AND lease_owner IS NULL
            AND EXISTS (SELECT 1 FROM waits x WHERE x.workflow_id = w.id AND x.name = 'never')`,
      )
    ).rows[0]!.n;
    if (parkedCount !== waiters) throw new Error(`${parkedCount} of ${waiters} waiters are parked`);
    const template = (await o.db.query<{ token: number }>(`SELECT fencing_token AS token FROM workflows WHERE id = 'waiter-0'`)).rows[0]!.token;

    // An idle worker beside them (it claims nothing, asks nextWakeUp — year 9999 —, polls again), dispatch and a drain.
    const beside = await besideTheCrowd(ctx, { empty: dbs.none, crowded: dbs.waiting }, 'waiter-', { stamps, backlog });

    const claimed = await o.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM workflows
        WHERE id LIKE 'waiter-%' AND (fencing_token <> $1 OR lease_owner IS NOT NULL OR status <> 'running' OR lease_expires_at <= now() OR waits_missing IS DISTINCT FROM 1)`,
      [template],
    );
    const indexBytes = async (d: OpenedEvents) => (await d.db.query<{ b: number }>(`SELECT pg_relation_size('workflows_runnable')::float8 AS b`)).rows[0]!.b;
    const condition = (cond: 'empty' | 'crowded'): SleepingCondition => ({
      sleeping: cond === 'empty' ? 0 : waiters,
      dispatch: summarize(beside[cond].dispatch),
      drain: sumCosts(beside[cond].drains),
    });
    return {
      chapter: chapter.dir,
      waiters,
      insertSeconds,
      none: condition('empty'),
      waiting: condition('crowded'),
      heldSamples: beside.heldSamples,
      idleHeldMax: beside.idleHeldMax,
      idleMs: beside.idleMs,
      waitersHeld: beside.crowdHeld,
      waitersClaimed: claimed.rows[0]!.n,
      indexBytes: { none: await indexBytes(dbs.none), waiting: await indexBytes(dbs.waiting) },
    };
  } finally {
    await dbs.none.close();
    await dbs.waiting.close();
  }
}
