/**
 * Exercise 9's tests: the lost wake-up. The sender (engine.send, and a
 * child's end) and the waiter (a turn's waits, flushed) each lock the
 * workflow's row FIRST, then look; an event is kept once per key; a send
 * ends a wait — in the log, the earliest of its name — only of a workflow
 * parked for events, and wakes it only when that was its last missing wait:
 * claimed for a worker of the sender's own engine with a free slot, or
 * runnable with a NOTIFY. The woken run replays the wait. Both orders of
 * the race are replayed statement by statement — the test holding one side's
 * transaction open while the code under test plays the other — so they pass
 * or fail the same way every time. With real
 * processes: a webhook sent while the waiting order's worker is dead, and
 * sent again after its sender was killed right after its commit.
 *
 * Each test gets a fresh schema of the run's database. The engine, the
 * worker and the migrations are chapter 9's own; the exercise's files are
 * imported through exercises/ for the type checker, and the grading config
 * swaps them for the implementation under test — in chapter 9's engine too,
 * which runs the send, the run and the queries under test. Points:
 * exercises/09-lost-wake-up/points.json.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startChild, type Attempt, type ChildRun } from '../../../shared/crash/runner.ts';
import {
  ChildWorkflowError,
  createEngine,
  migrate,
  NoSuchWorkflowError,
  WorkflowNotRunningError,
  type Context,
  type Engine,
  type RunEndEvent,
  type Worker,
  type WorkerOptions,
  type Workflows,
} from '../../../chapters/09-waiting-for-the-world/index.ts';
import { claimWorkflows, lockForWait, parkForEvents, takeEvents } from '../../../exercises/09-lost-wake-up/queries.ts';
import { sleep, until } from '../../../shared/testing/waiting.ts';
import { childTimeoutMs, crashTest, runLog, scratchSchema, type ScratchSchema } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/09-lost-wake-up.ts';

let schema: ScratchSchema | undefined;
const pools: pg.Pool[] = [];
const workers: Worker[] = [];
const clients: pg.PoolClient[] = [];
const children: ChildRun[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    child.signal('SIGKILL'); // a test that failed half-way may leave one running
    await child.done.catch(() => {});
  }
  // A transaction a failed test left open holds a row lock: roll it back before anything waits on it.
  for (const client of clients.splice(0)) {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
  await Promise.all(workers.splice(0).map((worker) => worker.stop({ graceMs: 0 }).catch(() => {})));
  await Promise.all(pools.splice(0).map((pool) => pool.end().catch(() => {})));
  await schema?.drop();
  schema = undefined;
});

/** A fresh schema with the engine's tables, and a pool on it (closed after the test). */
async function freshSchema(): Promise<pg.Pool> {
  schema = await scratchSchema('ex09');
  const pool = new pg.Pool({ connectionString: schema.url, max: 12 });
  pool.on('error', () => {});
  pools.push(pool);
  await migrate(pool);
  return pool;
}

/** A connection of the test's own, for a transaction it holds open (rolled back after the test if still open). */
async function connection(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  client.on('error', () => {});
  clients.push(client);
  return client;
}

/** Give back a connection whose transaction the test has ended. */
function done(client: pg.PoolClient): void {
  clients.splice(clients.indexOf(client), 1);
  client.release();
}


/** An engine on `pool`, and a started worker of it (stopped after the test). */
async function startWorker<W extends Workflows>(pool: pg.Pool, workflows: W, options: WorkerOptions = {}) {
  const log = runLog<RunEndEvent>();
  const engine: Engine<W> = createEngine({ db: pool, workflows });
  const worker = engine.createWorker({ concurrency: 4, leaseMs: 30_000, pollMs: 100, ...options, onRunEnd: log.onRunEnd });
  workers.push(worker);
  await worker.start();
  return { engine, worker, log };
}

/** An engine on `pool` with no worker of its own, and a way to run everything runnable now (a drain), counting the runs. */
function drainer<W extends Workflows>(pool: pg.Pool, workflows: W) {
  const log = runLog<RunEndEvent>();
  const engine: Engine<W> = createEngine({ db: pool, workflows });
  return { engine, log, drain: () => engine.createWorker({ concurrency: 8, leaseMs: 30_000, onRunEnd: log.onRunEnd }).drain() };
}

/** A sender in "another process": an engine of its own, with no workflows and no worker. */
const senderOn = (pool: pg.Pool) => createEngine({ db: pool, workflows: {} });


/** A promise the test resolves: a workflow's code waits on it to stand still where the test wants it. */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** A flag the workflow's code raises (`reached()`), and the test waits for. */
function flag() {
  let raised = false;
  return { reached: () => void (raised = true), until: (what: string) => until(what, () => raised, { timeoutMs: 10_000, everyMs: 10 }) };
}

/** Wait for a run's result, at most `ms`. */
const within = (ms: number) => ({ signal: AbortSignal.timeout(ms) });

/** A workflow's row as the wait/wake protocol sees it. */
async function rowOf(pool: pg.Pool, id: string) {
  const { rows } = await pool.query<{ waitsMissing: number | null; owner: string | null; token: number; expires: string; runnable: boolean; status: string }>(
    `SELECT waits_missing AS "waitsMissing", lease_owner AS owner, fencing_token AS token, lease_expires_at::text AS expires,
            lease_expires_at <= now() AS runnable, status
       FROM workflows WHERE id = $1`,
    [id],
  );
  if (!rows[0]) throw new Error(`workflow ${id} is not in the log`);
  return rows[0];
}

/** The workflow's row, once it is sure the workflow still runs: one that failed says why, rather than "waits_missing null". */
async function runningRow(engine: Pick<Engine<Workflows>, 'inspect'>, pool: pg.Pool, id: string) {
  const info = await engine.inspect(id);
  if (info?.status !== 'running') throw new Error(`${id} was to be running (waiting); it is ${info?.status}${info?.error ? `: ${info.error}` : ''}`);
  return rowOf(pool, id);
}

/** Poll until the workflow waits (`reason`: 'event' or 'sleep'); fail at once, saying why, if it ended instead. */
async function untilWaiting(engine: Pick<Engine<Workflows>, 'inspect'>, id: string, reason: 'event' | 'sleep', timeoutMs = 5000): Promise<void> {
  await until(
    `${id} to wait (${reason === 'event' ? 'parked for events' : 'asleep'})`,
    async () => {
      const info = await engine.inspect(id);
      if (info && info.status !== 'running') throw new Error(`${id} was to wait (${reason}); it is ${info.status}${info.error ? `: ${info.error}` : ''}`);
      return info?.waiting?.reason === reason;
    },
    { timeoutMs, everyMs: 10 },
  );
}

/** The events sent to a workflow, in the order they arrived. */
async function eventsOf(pool: pg.Pool, id: string) {
  const { rows } = await pool.query<{ name: string; key: string; payload: unknown; takenAtSeq: number | null }>(
    `SELECT name, key, payload, taken_at_seq AS "takenAtSeq" FROM events WHERE workflow_id = $1 ORDER BY arrival`,
    [id],
  );
  return rows;
}

/** The workflow's log: each entry's position, kind, name and output. */
async function entriesOf(engine: Pick<Engine<Workflows>, 'inspect'>, id: string) {
  const info = await engine.inspect(id);
  if (!info) throw new Error(`workflow ${id} is not in the log`);
  return info.steps.map((s) => ({ seq: s.seq, kind: s.kind, name: s.name, output: s.output }));
}

/** Count the claims (claimWorkflows' statement, `claim-workflows`) that go through `pool` from now on. */
function countClaims(pool: pg.Pool): { count: number } {
  const counted = { count: 0 };
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: unknown }).query = (config: unknown, ...rest: unknown[]) => {
    if ((config as { name?: string } | null)?.name === 'claim-workflows') counted.count++;
    return query(config, ...rest);
  };
  return counted;
}

/** An event put in the table by hand, as a send's INSERT would (no lock, no wake): for tests of the waiter alone. */
async function insertEventByHand(db: pg.Pool | pg.PoolClient, id: string, name: string, key: string, payload: unknown) {
  await db.query(`INSERT INTO events (workflow_id, name, key, payload) VALUES ($1, $2, $3, $4::jsonb)`, [id, name, key, JSON.stringify(payload)]);
}

/** The promise's rejection (or a failure if it fulfilled). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    const value = await promise;
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (thrown) {
    return thrown;
  }
}

/** An order that waits for its payment webhook, then ships. */
const paid = async (ctx: Context) => {
  const payment = await ctx.waitForEvent<{ amount: number }>('payment');
  return ctx.step('ship', async () => `shipped, paid ${payment?.amount}`);
};

describe('the sender: engine.send locks the row first, keeps an event once per key, and ends the wait of a parked workflow — waking it at the last', () => {
  it('refuses what it cannot carry before it sends a statement — a bad name, key or payload — as chapter 9 does (given)', async () => {
    const pool = await freshSchema();
    const engine = createEngine({ db: pool, workflows: { paid } });
    await engine.start('paid', {}, { id: 'refuse-1' });
    await expect(engine.send('refuse-1', '', {})).rejects.toThrow('an event name is 1–200 characters, not blank');
    await expect(engine.send('refuse-1', 'durable:child:x', {})).rejects.toThrow('are the engine');
    await expect(engine.send('refuse-1', 'payment', {}, { key: '' })).rejects.toThrow('an event key is a non-empty string');
    await expect(engine.send('refuse-1', 'payment', undefined)).rejects.toThrow('send null, or a value');
    await expect(engine.send('refuse-1', 'payment', { at: new Date() })).rejects.toThrow(/JSON cannot record/);
    expect(await eventsOf(pool, 'refuse-1')).toEqual([]);
  });

  it('an event sent before the workflow waits is kept, untaken — no wait to end yet — and taken the moment it comes to wait: in its log at the wait’s position, with its payload and key', async () => {
    const pool = await freshSchema();
    const { engine, log, drain } = drainer(pool, { paid });
    await engine.start('paid', {}, { id: 'early-1' });
    expect(await senderOn(pool).send('early-1', 'payment', { amount: 7 }, { key: 'psp-1' }), 'nothing waits yet: kept, nobody to wake').toEqual({ delivered: true, woke: false });
    expect(await eventsOf(pool, 'early-1')).toEqual([{ name: 'payment', key: 'psp-1', payload: { amount: 7 }, takenAtSeq: null }]);
    await drain();
    expect(await engine.result('early-1', within(5000))).toBe('shipped, paid 7');
    expect(log.outcomes('early-1'), 'it found its event when it came to wait: it never parked').toEqual(['completed']);
    expect((await entriesOf(engine, 'early-1'))[0]).toEqual({ seq: 0, kind: 'event', name: 'payment', output: { payload: { amount: 7 }, key: 'psp-1' } });
    expect(await eventsOf(pool, 'early-1'), 'taken by the wait at position 0').toEqual([{ name: 'payment', key: 'psp-1', payload: { amount: 7 }, takenAtSeq: 0 }]);
  });

  it('sent while the workflow waits, it ends the wait and wakes it: a worker of another engine, idle and polling only every 10 s, claims it at once (a NOTIFY) and its run replays the wait; while it waited it held no slot', async () => {
    const pool = await freshSchema();
    const quick = async (ctx: Context) => ctx.step('noop', async () => 'done');
    const { engine, worker, log } = await startWorker(pool, { paid, quick }, { concurrency: 1, pollMs: 10_000 });
    await engine.start('paid', {}, { id: 'woken-1' });
    await untilWaiting(engine, 'woken-1', 'event');
    await until('the run of woken-1 to end and free its slot', () => log.outcomes('woken-1').length > 0 && worker.held.length === 0, { timeoutMs: 5000, everyMs: 10 });
    expect(log.outcomes('woken-1')).toEqual(['waiting']);
    expect(worker.held, 'parked: its worker holds no slot for it').toEqual([]);
    expect(await (await engine.start('quick', {}, { id: 'woken-1-other' })).result(within(5000)), 'the one slot runs another workflow meanwhile').toBe('done');
    expect(await senderOn(pool).send('woken-1', 'payment', { amount: 42 }, { key: 'psp-42' })).toEqual({ delivered: true, woke: true });
    const result = await engine.result('woken-1', within(3000)).catch((thrown: unknown) => thrown);
    expect(result, 'claimed within 3 s of the send, by a worker that polls every 10 s: only a NOTIFY (pg_notify at COMMIT) tells it that soon').toBe('shipped, paid 42');
    expect(log.outcomes('woken-1')).toEqual(['waiting', 'completed']);
    expect((await entriesOf(engine, 'woken-1'))[0], 'the wait’s end, at its position').toEqual({ seq: 0, kind: 'event', name: 'payment', output: { payload: { amount: 42 }, key: 'psp-42' } });
  });

  it('sent by an engine whose own worker has a free slot, the send hands the workflow it wakes to that worker, claimed in the send’s own transaction: the worker claims nothing, and its run replays the wait', async () => {
    const pool = await freshSchema();
    const claims = countClaims(pool);
    const { engine, worker, log } = await startWorker(pool, { paid }, { concurrency: 1, pollMs: 60_000 });
    await engine.start('paid', {}, { id: 'handover-1' });
    await untilWaiting(engine, 'handover-1', 'event');
    await until('the run of handover-1 to end and free its slot', () => log.outcomes('handover-1').length > 0 && worker.held.length === 0, { timeoutMs: 5000, everyMs: 10 });
    const before = claims.count;
    expect(await engine.send('handover-1', 'payment', { amount: 11 }, { key: 'psp-11' })).toEqual({ delivered: true, woke: true });
    expect(await engine.result('handover-1', within(5000))).toBe('shipped, paid 11');
    expect(log.outcomes('handover-1')).toEqual(['waiting', 'completed']);
    expect(
      claims.count - before,
      'the worker claimed it (claimWorkflows): the send did not hand it over — given claimFor, deliverEvent claims the workflow it wakes for that worker (a new token, its lease) and answers the claim',
    ).toBe(0);
    expect((await entriesOf(engine, 'handover-1'))[0]).toEqual({ seq: 0, kind: 'event', name: 'payment', output: { payload: { amount: 11 }, key: 'psp-11' } });
  });

  it('the same key again is the same event: delivered false and no error, no second row, the first payload kept — sent again while the workflow waits for the next one, it fills no wait and wakes nothing', async () => {
    const pool = await freshSchema();
    const ticks = async (ctx: Context) => {
      const first = await ctx.waitForEvent<string>('tick');
      const second = await ctx.waitForEvent<string>('tick');
      return [first, second];
    };
    const { engine, log, drain } = drainer(pool, { ticks });
    await engine.start('ticks', {}, { id: 'dedupe-1' });
    await drain();
    const sender = senderOn(pool);
    expect(await sender.send('dedupe-1', 'tick', 'first', { key: 'k1' }), 'the first tick ends the first wait').toEqual({ delivered: true, woke: true });
    await drain(); // replays the first wait, and parks for the second
    expect(await runningRow(engine, pool, 'dedupe-1'), 'parked for the second tick').toMatchObject({ waitsMissing: 1, owner: null, runnable: false });
    const before = await rowOf(pool, 'dedupe-1');
    const again = await sender.send('dedupe-1', 'tick', 'redelivered', { key: 'k1' }).catch((thrown: unknown) => thrown);
    expect(again, 'the webhook delivered again under its key: the same event, already delivered').toEqual({ delivered: false, woke: false });
    expect(await eventsOf(pool, 'dedupe-1'), 'one row for the key, with the first payload').toEqual([{ name: 'tick', key: 'k1', payload: 'first', takenAtSeq: 0 }]);
    const after = await rowOf(pool, 'dedupe-1');
    expect(
      { waitsMissing: after.waitsMissing, expires: after.expires },
      'the redelivery changed nothing on the row: it filled no second wait, so it could not wake the workflow with that wait still empty',
    ).toEqual({ waitsMissing: before.waitsMissing, expires: before.expires });
    expect((await entriesOf(engine, 'dedupe-1')).map((e) => e.seq), 'the second wait has not ended').toEqual([0]);
    expect(await sender.send('dedupe-1', 'tick', 'second', { key: 'k2' }), 'a second event').toEqual({ delivered: true, woke: true });
    await drain();
    expect(await engine.result('dedupe-1', within(5000))).toEqual(['first', 'second']);
    expect(log.outcomes('dedupe-1')).toEqual(['waiting', 'waiting', 'completed']);
  });

  it('a redelivery to a workflow that has finished is delivered: false, not an error; any other event for it is refused (WorkflowNotRunningError), and one for no workflow (NoSuchWorkflowError) — writing nothing', async () => {
    const pool = await freshSchema();
    const { engine, drain } = drainer(pool, { paid });
    await engine.start('paid', {}, { id: 'over-1' });
    expect(await engine.send('over-1', 'payment', { amount: 5 }, { key: 'psp-5' })).toEqual({ delivered: true, woke: false });
    await drain();
    expect(await engine.result('over-1', within(5000))).toBe('shipped, paid 5');
    const redelivered = await engine.send('over-1', 'payment', { amount: 5 }, { key: 'psp-5' }).catch((thrown: unknown) => thrown);
    expect(redelivered, 'the provider delivers the webhook again after the order shipped').toEqual({ delivered: false, woke: false });
    const late = await rejectionOf(engine.send('over-1', 'payment', { amount: 6 }, { key: 'psp-6' }));
    expect(late).toBeInstanceOf(WorkflowNotRunningError);
    expect((late as Error).message).toContain('over-1');
    expect(await rejectionOf(engine.send('nobody', 'payment', { amount: 1 }))).toBeInstanceOf(NoSuchWorkflowError);
    expect(await eventsOf(pool, 'over-1')).toEqual([{ name: 'payment', key: 'psp-5', payload: { amount: 5 }, takenAtSeq: 0 }]);
    expect((await pool.query(`SELECT count(*)::int AS n FROM events`)).rows[0].n).toBe(1);
  });

  it('the sender locks the row first: while a waiter holds it — locked, looked, not parked yet — the send waits; once the waiter has parked and committed, the send finds it parked, ends its wait in the log and wakes it, and the next run replays the wait', async () => {
    const pool = await freshSchema();
    const { engine, drain } = drainer(pool, { paid });
    await engine.start('paid', {}, { id: 'race-send-1' });
    // The test is the waiter: a run holding the workflow, in the middle of its flush.
    const [claim] = (await claimWorkflows(pool, { worker: 'test', limit: 10, leaseMs: 30_000 })).filter((c) => c.id === 'race-send-1');
    const fence = { workflowId: 'race-send-1', fencingToken: claim!.fencingToken };
    const waiter = await connection(pool);
    await waiter.query('BEGIN');
    expect(await lockForWait(waiter, fence), '1. the waiter locks the row').not.toBeNull();
    expect((await takeEvents(waiter, fence.workflowId, [{ seq: 0, name: 'payment' }])).size, '2. the waiter looks: no event yet').toBe(0);
    // 3. The webhook arrives now, between the waiter's look and its park.
    let settled: { failed?: unknown } | undefined;
    const sent = senderOn(pool)
      .send(fence.workflowId, 'payment', { amount: 2 }, { key: 'psp-2' })
      .then(
        (answer) => ((settled = {}), answer),
        (thrown: unknown) => ((settled = { failed: thrown }), Promise.reject(thrown)),
      );
    sent.catch(() => {});
    await sleep(400);
    if (settled?.failed) throw settled.failed;
    expect(
      settled !== undefined,
      'the send finished while a waiter held the row between its look and its park: it did not take the row’s lock first — its event landed after the look, and it found nothing parked to wake (the lost wake-up)',
    ).toBe(false);
    // 4. The waiter parks and commits; only then may the send go on.
    expect(await parkForEvents(waiter, fence, [{ seq: 0, name: 'payment', timeoutMs: null }])).toBeNull();
    await waiter.query('COMMIT');
    done(waiter);
    expect(await sent, 'it found the workflow parked for its event, and woke it').toEqual({ delivered: true, woke: true });
    expect(await rowOf(pool, 'race-send-1'), 'runnable now').toMatchObject({ runnable: true, waitsMissing: 0 });
    expect(await entriesOf(engine, 'race-send-1'), 'the send ended the wait itself, in the log, under the lock it held').toEqual([
      { seq: 0, kind: 'event', name: 'payment', output: { payload: { amount: 2 }, key: 'psp-2' } },
    ]);
    expect(await eventsOf(pool, 'race-send-1'), 'taken by the wait at position 0').toEqual([{ name: 'payment', key: 'psp-2', payload: { amount: 2 }, takenAtSeq: 0 }]);
    await drain();
    expect(await engine.result('race-send-1', within(5000))).toBe('shipped, paid 2');
  });

  it('a send ends only the wait of a workflow parked for events: one a worker holds keeps its lease and its log, even with a wait of its own left on the row; one that sleeps sleeps on — and each takes the event itself when it comes to wait', async () => {
    const pool = await freshSchema();
    const held = gate();
    const holding = flag();
    let runs = 0;
    const { engine, log } = await startWorker(pool, {
      // Parks for a payment with a timeout of 200 ms; claimed again when it passes, it stands still before its wait —
      // held by the worker, its wait's row still there — until the test lets it go on.
      impatient: async (ctx: Context) => {
        if (++runs === 2) {
          holding.reached();
          await held.opened;
        }
        const payment = await ctx.waitForEvent<{ amount: number }>('payment', { timeoutMs: 200 });
        return payment ? `paid ${payment.amount}` : 'timed out';
      },
      sleeper: async (ctx: Context) => {
        await ctx.sleep(1500);
        const payment = await ctx.waitForEvent<{ amount: number }>('payment');
        return `paid ${payment?.amount}`;
      },
    });
    const sender = senderOn(pool);

    await engine.start('impatient', {}, { id: 'held-1' });
    await holding.until('held-1 to be claimed again after its timeout, and to stand before its wait');
    const before = await rowOf(pool, 'held-1');
    expect(before, 'held by the worker, its wait still on the row').toMatchObject({ waitsMissing: 1, runnable: false });
    expect(before.owner).not.toBeNull();
    expect(await sender.send('held-1', 'payment', { amount: 8 }, { key: 'k' }), 'held: no wait to end, nothing to wake').toEqual({ delivered: true, woke: false });
    const after = await rowOf(pool, 'held-1');
    expect({ owner: after.owner, token: after.token, expires: after.expires }, 'the holder’s lease, untouched: a "wake" would have cut it short, and another worker would take the workflow over').toEqual({
      owner: before.owner,
      token: before.token,
      expires: before.expires,
    });
    expect(await entriesOf(engine, 'held-1'), 'nothing written behind its run’s back, in the log it is writing').toEqual([]);
    expect(await eventsOf(pool, 'held-1'), 'the event left untaken, for the run’s own wait').toEqual([{ name: 'payment', key: 'k', payload: { amount: 8 }, takenAtSeq: null }]);
    held.open();
    expect(await engine.result('held-1', within(5000)), 'its wait found the event (before its passed timeout)').toBe('paid 8');
    expect(log.outcomes('held-1')).toEqual(['waiting', 'completed']);

    await engine.start('sleeper', {}, { id: 'asleep-1' });
    await untilWaiting(engine, 'asleep-1', 'sleep');
    const sleeping = await rowOf(pool, 'asleep-1');
    const startedAt = performance.now();
    expect(await sender.send('asleep-1', 'payment', { amount: 9 }, { key: 'k' }), 'asleep, not parked for events: nothing to wake').toEqual({ delivered: true, woke: false });
    expect((await rowOf(pool, 'asleep-1')).expires, 'its sleep’s end, untouched').toBe(sleeping.expires);
    expect(await engine.result('asleep-1', within(6000))).toBe('paid 9');
    expect(performance.now() - startedAt, 'it slept on').toBeGreaterThan(900);
    expect(log.outcomes('asleep-1')).toEqual(['waiting', 'completed']);
  });

  it('a count-down, not a wake per event: parked for two payments and a shipment, each payment ends the earliest wait for one still open and wakes nothing, a third payment ends none, and the shipment — the last one missing — wakes it, once', async () => {
    const pool = await freshSchema();
    const order = async (ctx: Context) => {
      const [first, second, shipment] = await Promise.all([ctx.waitForEvent<string>('payment'), ctx.waitForEvent<string>('payment'), ctx.waitForEvent<string>('shipment')]);
      return `${first} + ${second} + ${shipment}`;
    };
    const { engine, log, drain } = drainer(pool, { order });
    await engine.start('order', {}, { id: 'count-1' });
    await drain();
    expect(await runningRow(engine, pool, 'count-1'), 'parked once, for all three').toMatchObject({ waitsMissing: 3, runnable: false });
    const sender = senderOn(pool);
    const ended = async () => (await entriesOf(engine, 'count-1')).map((e) => [e.seq, e.name, (e.output as { payload?: unknown } | null)?.payload]);
    expect(await sender.send('count-1', 'payment', 'half', { key: 'p1' }), 'the first payment: one wait ended, two still missing').toEqual({ delivered: true, woke: false });
    expect(await rowOf(pool, 'count-1')).toMatchObject({ waitsMissing: 2, runnable: false });
    expect(await ended(), 'it ended the earliest wait for a payment, in the log').toEqual([[0, 'payment', 'half']]);
    expect(await sender.send('count-1', 'payment', 'the rest', { key: 'p2' }), 'the second payment: the other wait for one').toEqual({ delivered: true, woke: false });
    expect(await rowOf(pool, 'count-1')).toMatchObject({ waitsMissing: 1, runnable: false });
    expect(await ended()).toEqual([
      [0, 'payment', 'half'],
      [1, 'payment', 'the rest'],
    ]);
    expect(await sender.send('count-1', 'payment', 'too much', { key: 'p3' }), 'a third payment: kept, but no wait is left for it').toEqual({ delivered: true, woke: false });
    expect(await rowOf(pool, 'count-1'), 'the shipment is still missing').toMatchObject({ waitsMissing: 1, runnable: false });
    expect(await sender.send('count-1', 'shipment', 'shipped', { key: 's1' }), 'the last missing wait ended').toEqual({ delivered: true, woke: true });
    expect(await rowOf(pool, 'count-1')).toMatchObject({ waitsMissing: 0, runnable: true });
    await drain();
    expect(await engine.result('count-1', within(5000))).toBe('half + the rest + shipped');
    expect(log.outcomes('count-1'), 'parked once, woken once').toEqual(['waiting', 'completed']);
    expect((await eventsOf(pool, 'count-1')).map((e) => [e.key, e.takenAtSeq])).toEqual([
      ['p1', 0],
      ['p2', 1],
      ['p3', null],
      ['s1', 2],
    ]);
  });
});

describe('the waiter: a turn’s waits, flushed under the lock', () => {
  it('the waiter locks the row first: an event a sender committed while it held the row, as the waiter came to look, is taken at once — the run never parks, nothing is stranded', async () => {
    const pool = await freshSchema();
    const go = gate();
    const arrived = flag();
    const { engine, log } = await startWorker(pool, {
      gated: async (ctx: Context) => {
        arrived.reached();
        await go.opened;
        const payment = await ctx.waitForEvent<{ amount: number }>('payment');
        return `paid ${payment?.amount}`;
      },
    });
    await engine.start('gated', {}, { id: 'race-wait-1' });
    await arrived.until('race-wait-1 to run');
    // A sender, mid-transaction: it has locked the row and inserted its event, and not committed yet.
    const sender = await connection(pool);
    await sender.query('BEGIN');
    await sender.query(`SELECT 1 FROM workflows WHERE id = 'race-wait-1' FOR NO KEY UPDATE`);
    await insertEventByHand(sender, 'race-wait-1', 'payment', 'psp-3', { amount: 3 });
    // (It sees a workflow held by a worker, not parked: a sender wakes nothing there.)
    go.open(); // the workflow comes to wait now
    await sleep(400);
    expect(log.outcomes('race-wait-1'), 'the run waits for the sender’s lock; it has not ended').toEqual([]);
    await sender.query('COMMIT');
    done(sender);
    const result = await engine.result('race-wait-1', within(5000)).catch((thrown: unknown) => thrown);
    if (result !== 'paid 3') {
      const row = await rowOf(pool, 'race-wait-1');
      const events = await eventsOf(pool, 'race-wait-1');
      const stranded = row.status === 'running' && (row.waitsMissing ?? 0) > 0 && !row.runnable && events.some((e) => e.takenAtSeq === null);
      throw new Error(
        `expected 'paid 3', got ${String(result)}. The workflow: ${row.status}, waits_missing ${row.waitsMissing}, runnable ${row.runnable}; its events: ${JSON.stringify(events)}.` +
          (stranded
            ? ' Parked, with its event in the table untaken: the lost wake-up. The waiter looked before it had the row’s lock, missed the event not yet committed, then parked — and its sender had found nothing parked to wake.'
            : ''),
      );
    }
    expect(log.outcomes('race-wait-1'), 'taken at once: it never parked').toEqual(['completed']);
    expect((await eventsOf(pool, 'race-wait-1'))[0]?.takenAtSeq).toBe(0);
  });

  it('a run whose lease is gone cannot take an event: its fenced lock is refused, the run ends lease-lost, and the event stays for the workflow’s new holder — while a run that holds its lease takes its event', async () => {
    const pool = await freshSchema();
    const go = gate();
    const arrived = new Map<string, () => void>();
    const { engine, log } = await startWorker(pool, {
      gated: async (ctx: Context) => {
        arrived.get(ctx.workflowId)?.();
        await go.opened;
        const payment = await ctx.waitForEvent<{ amount: number }>('payment');
        return `paid ${payment?.amount}`;
      },
    });
    const both = ['zombie-1', 'live-1'].map((id) => {
      const reached = flag();
      arrived.set(id, reached.reached);
      return reached;
    });
    await engine.start('gated', {}, { id: 'zombie-1' });
    await engine.start('gated', {}, { id: 'live-1' });
    await both[0]!.until('zombie-1 to run');
    await both[1]!.until('live-1 to run');
    // Another worker takes zombie-1 over under its run's feet (as after a freeze past the lease).
    const takeover = await pool.query<{ token: number; expires: string }>(
      `UPDATE workflows SET fencing_token = fencing_token + 1, lease_owner = 'B', lease_expires_at = now() + interval '30 seconds'
        WHERE id = 'zombie-1' RETURNING fencing_token AS token, lease_expires_at::text AS expires`,
    );
    await insertEventByHand(pool, 'zombie-1', 'payment', 'psp-z', { amount: 4 });
    await insertEventByHand(pool, 'live-1', 'payment', 'psp-l', { amount: 5 });
    go.open(); // both come to wait now
    expect(await engine.result('live-1', within(5000)), 'the run that holds its lease takes its event').toBe('paid 5');
    await until('the run of zombie-1 to end', () => log.outcomes('zombie-1').length > 0, { timeoutMs: 5000, everyMs: 10 });
    expect(log.outcomes('zombie-1'), 'its lock, fenced, was refused: the lease is lost').toEqual(['lease-lost']);
    expect(await eventsOf(pool, 'zombie-1'), 'the event, untaken: it is the new holder’s').toEqual([{ name: 'payment', key: 'psp-z', payload: { amount: 4 }, takenAtSeq: null }]);
    expect((await engine.inspect('zombie-1'))!.steps, 'nothing in its log').toEqual([]);
    expect(await rowOf(pool, 'zombie-1'), 'B’s lease, as B took it').toMatchObject({ token: takeover.rows[0]!.token, owner: 'B', expires: takeover.rows[0]!.expires, waitsMissing: null });
  });

  it('waits that find some events and not others: those that ended are recorded at once, the workflow parks once for the rest — their timeouts kept across replays, and a wait ended by its timeout is recorded as such', async () => {
    const pool = await freshSchema();
    const log = runLog<RunEndEvent>();
    const engine = createEngine({
      db: pool,
      workflows: {
        three: async (ctx: Context) => {
          const [a, b, c] = await Promise.all([ctx.waitForEvent<string>('a'), ctx.waitForEvent<string>('b'), ctx.waitForEvent<string>('c', { timeoutMs: 1500 })]);
          return [a, b, c ?? 'c timed out'];
        },
      },
    });
    await engine.start('three', {}, { id: 'partial-1' }); // no worker yet: in the log, not claimed
    await insertEventByHand(pool, 'partial-1', 'a', 'ka', 'A'); // "a" is there before the first run
    const worker = engine.createWorker({ concurrency: 4, leaseMs: 30_000, pollMs: 100, onRunEnd: log.onRunEnd });
    workers.push(worker);
    await worker.start();

    await until('the first run of partial-1 to end', () => log.outcomes('partial-1').length >= 1, { timeoutMs: 5000, everyMs: 10 });
    expect(log.outcomes('partial-1')).toEqual(['waiting']);
    const entries = async () => (await engine.inspect('partial-1'))!.steps.map((s) => [s.seq, s.kind, s.name, s.output]);
    expect(await entries(), '"a" found its event: recorded at its position in the same transaction as the park').toEqual([[0, 'event', 'a', { payload: 'A', key: 'ka' }]]);
    const waitsRows = async () =>
      (await pool.query<{ seq: number; name: string; until: string | null }>(`SELECT seq, name, until::text AS until FROM waits WHERE workflow_id = 'partial-1' ORDER BY seq`)).rows;
    const parked = await waitsRows();
    expect(parked.map((w) => [w.seq, w.name, w.until === null ? 'no timeout' : 'a timeout']), 'parked once, for the two left').toEqual([
      [1, 'b', 'no timeout'],
      [2, 'c', 'a timeout'],
    ]);
    expect(await runningRow(engine, pool, 'partial-1')).toMatchObject({ waitsMissing: 2, runnable: false });

    // The timeout of "c" passes: claimed again, replayed; "c" ends by its timeout, "b" is parked for again.
    await until('the second run of partial-1 to end', () => log.outcomes('partial-1').length >= 2, { timeoutMs: 6000, everyMs: 10 });
    expect(log.outcomes('partial-1')).toEqual(['waiting', 'waiting']);
    expect(await entries()).toEqual([
      [0, 'event', 'a', { payload: 'A', key: 'ka' }],
      [2, 'event', 'c', { timedOut: true }],
    ]);
    expect((await waitsRows()).map((w) => [w.seq, w.name]), 'parked again, for "b" alone').toEqual([[1, 'b']]);
    expect(await rowOf(pool, 'partial-1')).toMatchObject({ waitsMissing: 1, runnable: false });

    // "b" comes while the workflow is runnable (put in by hand, untaken, as a send leaves an event for a workflow
    // not parked): the third run's flush takes it, and it completes.
    await insertEventByHand(pool, 'partial-1', 'b', 'kb', 'B');
    await pool.query(`UPDATE workflows SET lease_expires_at = now() WHERE id = 'partial-1'`);
    expect(await engine.result('partial-1', within(5000))).toEqual(['A', 'B', 'c timed out']);
    expect(log.outcomes('partial-1')).toEqual(['waiting', 'waiting', 'completed']);
  });
});

describe('children: a child’s end is a send to its parent', () => {
  it('a parent waiting for five children is woken once, by the last: as they end one by one its missing waits count down 5, 4, 3, 2, 1 with the parent parked throughout, and it runs twice in all', async () => {
    const pool = await freshSchema();
    const { engine, log, drain } = drainer(pool, {
      child: async (ctx: Context, i: number) => {
        await ctx.waitForEvent('go');
        return i * 10;
      },
      parent: async (ctx: Context) => {
        const children = await Promise.all([0, 1, 2, 3, 4].map((i) => ctx.startChild<number>('child', i)));
        const outputs = await Promise.all(children.map((child) => child.result()));
        return outputs.reduce((sum, x) => sum + x, 0);
      },
    });
    await engine.start('parent', {}, { id: 'family-1' });
    await drain(); // the parent starts its children and parks; each child parks for its "go"
    expect(await runningRow(engine, pool, 'family-1'), 'parked once, for five ends').toMatchObject({ waitsMissing: 5, runnable: false });
    expect(log.outcomes('family-1')).toEqual(['waiting']);
    for (let i = 0; i < 5; i++) {
      const child = `family-1/${i}`;
      expect(await engine.send(child, 'go', null), `${child}'s go`).toEqual({ delivered: true, woke: true });
      await drain();
      expect(await engine.status([child]), `${child} ended`).toEqual({ [child]: 'completed' });
      if (i < 4) {
        expect(await rowOf(pool, 'family-1'), `after ${i + 1} of 5 children ended`).toMatchObject({ waitsMissing: 4 - i, runnable: false });
        expect(log.outcomes('family-1'), `after ${i + 1} of 5 children ended, the parent has not run again`).toEqual(['waiting']);
      }
    }
    expect(await engine.result('family-1', within(5000))).toBe(100);
    expect(log.outcomes('family-1'), 'the parent ran twice: to start its children and park, and, woken by the last end, to finish').toEqual(['waiting', 'completed']);
  });

  it('a child’s end locks its parent before its own row — the order cancel() takes them in: while the parent’s row is held, the child’s row stays free; then the parent hears the failure as a ChildWorkflowError it can catch', async () => {
    const pool = await freshSchema();
    const fail = gate();
    const arrived = flag();
    const { engine, log } = await startWorker(pool, {
      failing: async () => {
        arrived.reached();
        await fail.opened;
        throw new Error('out of stock');
      },
      careful: async (ctx: Context) => {
        const child = await ctx.startChild('failing', {});
        try {
          await child.result();
          return 'shipped';
        } catch (error) {
          if (!(error instanceof ChildWorkflowError)) throw error;
          return ctx.step('refund', async () => `refunded: child ${error.childId} ${error.status}`);
        }
      },
    });
    await engine.start('careful', {}, { id: 'careful-1' });
    await arrived.until('the child careful-1/0 to run');
    await untilWaiting(engine, 'careful-1', 'event');
    // Hold the parent's row, as cancel() or a send would: the child's end must wait for it before it touches its own row.
    const holder = await connection(pool);
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM workflows WHERE id = 'careful-1' FOR NO KEY UPDATE`);
    fail.open();
    await sleep(400);
    expect(log.outcomes('careful-1/0'), 'the child’s end waits for its parent’s row').toEqual([]);
    // As cancel() goes on: parent, then child. The child's row must be free.
    const other = await connection(pool);
    await other.query('BEGIN');
    await other.query(`SET LOCAL lock_timeout = '1s'`);
    const childRow = await other.query(`SELECT 1 FROM workflows WHERE id = 'careful-1/0' FOR NO KEY UPDATE`).catch((thrown: unknown) => thrown);
    expect(
      childRow instanceof Error ? childRow.message : 'free',
      'the child’s end held its own row while it waited for its parent’s: a cancel of the family, which locks the parent and then its children, would deadlock with it',
    ).toBe('free');
    await other.query('ROLLBACK');
    done(other);
    await holder.query('COMMIT');
    done(holder);
    expect(await engine.result('careful-1', within(5000))).toBe('refunded: child careful-1/0 failed');
    expect(log.outcomes('careful-1/0')).toEqual(['failed']);
    expect(log.outcomes('careful-1')).toEqual(['waiting', 'completed']);
  });
});

describe('with real processes', () => {
  const output = (attempt: Attempt) => `${attempt.stdout}${attempt.stderr}`;

  /** A process of the implementation under test (the driver). */
  function driverProcess(args: string[], env: Record<string, string> = {}, fault?: string): ChildRun {
    const child = startChild({ script: driver, args, env: { DATABASE_URL: schema!.url, FORCE_COLOR: '0', LEASE_MS: '2000', POLL_MS: '100', ...env }, fault, timeoutMs: childTimeoutMs() });
    children.push(child);
    return child;
  }

  crashTest('the payment webhook arrives while the waiting order’s worker is dead, and again after its sender was SIGKILLed right after its commit: one event, and a new worker ships the order once, paid as first sent', async () => {
    const pool = await freshSchema();
    const engine = createEngine({ db: pool, workflows: { paid } }); // to start it: the driver has the code
    await engine.start('paid', {}, { id: 'order-1' });

    const first = driverProcess(['worker'], { WORKER_NAME: 'W1' });
    await untilWaiting(engine, 'order-1', 'event', 20_000);
    first.signal('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');

    // The webhook, while no worker lives: its handler is killed right after its transaction committed.
    const killed = await driverProcess(['send', 'order-1', 'psp-evt-1', '42'], {}, 'after-event-sent').done;
    expect(killed.signal, `the sender was to be killed at after-event-sent; it ended otherwise:\n${output(killed)}`).toBe('SIGKILL');
    expect(killed.crashedAt).toBe('after-event-sent@1');
    expect(await eventsOf(pool, 'order-1'), 'committed before the kill, and taken by the wait it ended').toEqual([{ name: 'payment', key: 'psp-evt-1', payload: { amount: 42 }, takenAtSeq: 0 }]);
    expect(await entriesOf(engine, 'order-1'), 'the wait’s end, in the log').toEqual([{ seq: 0, kind: 'event', name: 'payment', output: { payload: { amount: 42 }, key: 'psp-evt-1' } }]);
    expect(await rowOf(pool, 'order-1'), 'woken: runnable, though no worker is up').toMatchObject({ runnable: true, waitsMissing: 0 });

    // Never answered, the provider delivers it again (another amount, to see which one counts).
    const again = await driverProcess(['send', 'order-1', 'psp-evt-1', '999']).done;
    expect(again.exitCode, output(again)).toBe(0);
    expect(again.stdout).toContain('sent: {"delivered":false,"woke":false}');
    expect(await eventsOf(pool, 'order-1')).toHaveLength(1);

    const second = driverProcess(['worker'], { WORKER_NAME: 'W2' });
    expect(await engine.result('order-1', within(20_000))).toBe('shipped, paid 42');
    second.signal('SIGTERM');
    const last = await second.done;
    expect(last.exitCode, output(last)).toBe(0);
    expect(last.stdout).toContain('W2: order-1 completed');
    expect(last.stdout.match(/shipping order-1/g), 'shipped once').toHaveLength(1);
    expect(await eventsOf(pool, 'order-1')).toEqual([{ name: 'payment', key: 'psp-evt-1', payload: { amount: 42 }, takenAtSeq: 0 }]);
  });
});
