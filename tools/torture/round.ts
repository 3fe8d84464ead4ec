/**
 * One torture round: many orders, several real worker processes of the last
 * chapter's engine (chapter 8), and a seeded schedule of faults — workers
 * SIGKILLed at crash points or at random moments, workers frozen past their
 * lease and thawed (zombies), the PostgreSQL server itself killed -9 and
 * restarted on the same data, connections dropped; and, since chapter 8,
 * the payment provider or the mailbox down for a few calls (the steps' retries
 * back off, waiting in the database), the worker whose run put a workflow to
 * wait (a back-off, the order's cooling-off sleep) killed while it waits, and
 * poison workflows that SIGKILL every worker that claims them. When the faults
 * stop, the workers get time to recover, and the outcome is checked against
 * invariants (invariants.ts). The idea is Jepsen's and FoundationDB's: many
 * randomized faults and a checker, not a handful of hand-picked kill points.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { mulberry32 } from '../../shared/crash/failpoints.ts';
import { startChild, type Attempt, type ChildRun } from '../../shared/crash/runner.ts';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { projectRoot, type PostgresServer } from '../../shared/db/server.ts';
import { toError } from '../../shared/errors.ts';
import type { ServiceName } from '../../shared/world/protocol.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { startWorld } from '../../shared/world/world.ts';
import { checkInvariants, installWatches, type Disruptions, type Invariant, type Observed } from './invariants.ts';

export const ENGINE = 'chapters/08-failures-and-time';
type EngineModule = typeof import('../../chapters/08-failures-and-time/index.ts');
type WorkflowModule = typeof import('../../chapters/08-failures-and-time/workflow.ts');

export type FaultKind = 'crash-point' | 'kill-worker' | 'zombie' | 'kill-postgres' | 'drop-connections' | 'provider-outage' | 'kill-waiting' | 'poison';
export const FAULT_KINDS: FaultKind[] = ['crash-point', 'kill-worker', 'zombie', 'kill-postgres', 'drop-connections', 'provider-outage', 'kill-waiting', 'poison'];

/**
 * The engine's durability points a worker can be armed to die at. A plain
 * step's record and the completion are one statement each, so they have no
 * `during-record` point (it commits or it never happened); a `transaction`
 * step has one. A kill while such a statement is in flight is what the
 * kill-worker faults, at random moments, are for. Chapter 8 adds the moment
 * after a failed attempt is recorded and the workflow released for its
 * back-off, and the moment after a sleep is recorded and the workflow
 * released until it ends: the run is over, the workflow waits in the
 * database, and the process that put it there dies.
 */
const CRASH_POINTS = [
  'before-step:charge_card',
  'after-effect:charge_card',
  'after-record:charge_card',
  'after-retry-scheduled:charge_card',
  'before-step:reserve_inventory',
  'after-effect:reserve_inventory',
  'during-record:reserve_inventory',
  'after-record:reserve_inventory',
  'after-sleep-recorded',
  'after-effect:send_email',
  'after-record:send_email',
  'after-retry-scheduled:send_email',
  'after-record:complete',
];

/**
 * The order workflow's retry policy for its HTTP steps (`retry` in
 * chapters/08-failures-and-time/workflow.ts): five attempts. An outage is
 * sized so that no order can run out of them, whichever orders its 503s hit:
 * a new outage replaces what is left of the last one (the world's counter is
 * set, not added to), so from then on an order can fail no more attempts of
 * the step than it has recorded, plus one in flight (a run that got its 503
 * and has not recorded it yet; a zombie's record would be fenced off), plus
 * the new outage's. The outage is kept to what leaves the worst order short
 * of the fifth: an order that fails for a step's retries is a violation.
 */
const ORDER_STEP_ATTEMPTS = 5;

/** The steps each service's outage fails, for the trace. */
const STEP_OF: Record<ServiceName, string> = { payments: 'charge_card', mail: 'send_email' };

export interface FaultEvent {
  atMs: number;
  /** When, on this machine's clock (ISO): to set beside the claim watch's times and the workers' logs. */
  at: string;
  kind: FaultKind;
  detail: string;
}

export interface RoundOptions {
  seed: number;
  orders: number;
  workers: number;
  faults: number;
  leaseMs: number;
  adminUrl: string;
  /** The server, so kill-postgres can kill and restart it (only an embedded one). */
  server: PostgresServer;
  log?: (line: string) => void;
  /** Latency of every payment/mail call (default 10 ms), so the faults land on work in flight. */
  latencyMs?: number;
  /** The order's cooling-off sleep before its email (default 400 ms), so kills land while orders sleep. */
  coolingOffMs?: number;
  /** How long recovery may take after the last fault before a workflow counts as stuck. */
  recoveryTimeoutMs?: number;
}

export interface RoundResult {
  seed: number;
  orders: number;
  faults: FaultEvent[];
  skipped: string[];
  invariants: Invariant[];
  /** What the checker saw: sleeps and back-offs checked, orders failed (and explained), poison workflows, worker deaths. */
  observed: Observed & { workerDeaths: Record<string, number> };
  /**
   * For a violation that names worker processes (a claim no fault explains):
   * each one's log, every line stamped with this machine's clock, and the
   * claim watch's history of the workflows concerned — saved with the trace.
   */
  evidence?: { logs: Record<string, string[]>; claims: Array<Record<string, unknown>>; disruptions: Record<string, unknown> };
  /** Worker exits the harness did not cause (a crash loop after a database restart, say), nor a crash point or a poison. */
  unexpectedExits: string[];
  durationMs: number;
}

interface WorkerSlot {
  name: string;
  /** Processes started in this slot so far: each gets its own name, `w1.3`, which the claims record as their owner. */
  generation: number;
  child: ChildRun | undefined;
  /** The current process's name (its lease_owner). */
  process: string;
  paused: boolean;
  /** Stops the supervisor from respawning it (end of round). */
  retired: boolean;
}

/** How a worker process ended, as the harness saw it. */
interface Death {
  process: string;
  atMs: number;
  attempt: Attempt;
}

export async function runRound(options: RoundOptions): Promise<RoundResult> {
  const { seed, orders, leaseMs, adminUrl, server } = options;
  const coolingOffMs = options.coolingOffMs ?? 400;
  const log = options.log ?? (() => {});
  const random = mulberry32(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const started = Date.now();
  const faults: FaultEvent[] = [];
  const skipped: string[] = [];
  const unexpectedExits: string[] = [];
  /** When each process died or was frozen, and when the database went away (epoch ms): what may explain an order that failed. */
  const disruptions: Disruptions = { workers: new Map(), database: [] };
  const deaths: Death[] = [];
  /** Each worker process's output, by name, each line stamped with the time it arrived. */
  const logs = new Map<string, string[]>();
  let progress = '';
  const note = (kind: FaultKind, detail: string) => {
    faults.push({ atMs: Date.now() - started, at: new Date().toISOString(), kind, detail });
    log(`  ${String(Date.now() - started).padStart(6)} ms  ${kind.padEnd(16)} ${detail}${progress}`);
  };

  const databaseUrl = await createDatabase(adminUrl, `torture_${seed}`);
  const world = await startWorld({ databaseUrl, products: [{ sku: 'widget', onHand: orders * 2 }] });
  // A little latency in the outside world keeps work in flight while the faults land.
  await world.setLatency(options.latencyMs ?? 10);
  const db = new pg.Pool({ connectionString: databaseUrl, max: 4, connectionTimeoutMillis: 5000 });
  // The server may be killed under us: a dropped idle connection must not crash the harness.
  db.on('error', () => {});
  const ids = [...Array(orders)].map((_, i) => `order-${seed}-${i + 1}`);
  const poisons: Array<{ id: string; maxAttempts: number }> = [];

  const engineModule = (await import(pathToFileURL(path.join(projectRoot, ENGINE, 'index.ts')).href)) as EngineModule;
  const workflowModule = (await import(pathToFileURL(path.join(projectRoot, ENGINE, 'workflow.ts')).href)) as WorkflowModule;
  await engineModule.migrate(db);
  await installWatches(db);
  // This process only starts workflows (it has no worker): the workers run them. Orders get the engine's default maxAttempts (5).
  const engine = engineModule.createEngine({ db, workflows: { order: workflowModule.orderWorkflow({ coolingOffMs }), poison: workflowModule.poisonWorkflow() } });
  /** The harness's own statements, retried while the server comes back from a kill. */
  const retrying = async <T>(what: () => Promise<T>): Promise<T> => {
    for (let tries = 1; ; tries++) {
      try {
        return await what();
      } catch (thrown) {
        if (tries >= 20 || !engineModule.isConnectionFailure(thrown)) throw thrown;
        await sleep(250);
      }
    }
  };
  // The orders arrive over the first three quarters of the faults, not all at
  // once: with a cooling-off sleep and back-offs in every order, the faults
  // must keep meeting orders in every state — new, running, waiting — rather
  // than a log that finished in the first seconds.
  const waves = Math.max(1, Math.floor(options.faults * 0.75));
  const firstWave = options.faults === 0 ? ids.length : Math.ceil(ids.length / 4);
  const waveOf = (i: number) => (i < firstWave ? -1 : Math.floor(((i - firstWave) * waves) / Math.max(1, ids.length - firstWave)));
  const startOrders = async (wave: number) => {
    for (const [i, id] of ids.entries()) if (waveOf(i) === wave) await retrying(() => engine.start('order', demoOrder(id), { id }));
  };
  await startOrders(-1);

  // ── the workers, and a supervisor that restarts the dead ones ───────────
  const slots: WorkerSlot[] = [...Array(options.workers)].map((_, i) => ({ name: `w${i + 1}`, generation: 0, child: undefined, process: '', paused: false, retired: false }));
  const spawn = (slot: WorkerSlot, crashAt?: string) => {
    slot.generation++;
    const name = `${slot.name}.${slot.generation}`;
    const env: Record<string, string> = {
      ...world.env,
      LEASE_MS: String(leaseMs),
      POLL_MS: '100',
      CONCURRENCY: '4',
      WORKER_NAME: name,
      COOLING_OFF_MS: String(coolingOffMs),
      // The engine's log lines, kept (stamped) in memory: evidence, should a claim end with no fault to explain it.
      COURSE_TRACE: '1',
      NO_COLOR: '1',
    };
    if (crashAt) env.CRASH_AT = crashAt;
    const lines: string[] = [];
    logs.set(name, lines);
    const onLine = (line: string, stream: 'stdout' | 'stderr') => lines.push(`${new Date().toISOString().slice(11, 23)} ${stream === 'stderr' ? '!' : ' '} ${line}`);
    const child = startChild({ script: `${ENGINE}/main.ts`, args: ['worker'], env, onLine });
    slot.child = child;
    slot.process = name;
    slot.paused = false;
    disruptions.workers.set(name, { frozen: [] });
    void child.done.then((attempt) => {
      if (attempt.signal === 'SIGKILL') {
        const killedBy = attempt.killedFromOutside ? 'the harness' : attempt.crashedAt ? `its crash point ${attempt.crashedAt}` : 'itself';
        Object.assign(disruptions.workers.get(name)!, { killedAt: Date.now(), killedBy });
      }
      deaths.push({ process: name, atMs: Date.now() - started, attempt });
      if (slot.child !== child) return;
      slot.child = undefined;
      // Only the harness stops workers (SIGKILL, SIGTERM): any exit of their own, even code 0, is one.
      if (attempt.signal === null && !slot.retired) {
        unexpectedExits.push(`${name} exited ${attempt.exitCode}: ${lastLines(attempt.stderr || attempt.stdout)}`);
      }
      // A dead worker is replaced, as a process supervisor would.
      if (!slot.retired) setTimeout(() => !slot.retired && !slot.child && spawn(slot), 50);
    });
  };
  for (const slot of slots) spawn(slot);

  // ── the faults ──────────────────────────────────────────────────────────
  const kinds = FAULT_KINDS.filter((kind) => {
    if (kind === 'kill-postgres' && (!server.embedded || server.embedded.attached)) {
      skipped.push(
        server.embedded
          ? 'kill-postgres: the embedded server belongs to another course process, which this one must not kill'
          : 'kill-postgres: the database is DATABASE_URL’s server, which the course did not start and cannot restart',
      );
      return false;
    }
    return true;
  });
  // Every kind in turn, each block of kinds in a seeded order: a short round
  // still meets every kind, and the counts stay even.
  let block: FaultKind[] = [];
  const nextKind = (): FaultKind => {
    if (block.length === 0) block = shuffled(kinds, random);
    return block.pop()!;
  };
  const thaws: Promise<void>[] = [];
  for (let i = 0; i < options.faults; i++) {
    await sleep(between(80, Math.max(120, leaseMs / 2)));
    await startOrders(i).catch((thrown: unknown) => log(`  (starting wave ${i} failed: ${toError(thrown).message})`));
    progress = await describeProgress(db, ids).catch(() => '  [the database does not answer]');
    const kind = nextKind();
    const live = slots.filter((s) => s.child && !s.paused);
    try {
      switch (kind) {
        case 'crash-point': {
          const slot = pick(slots);
          const point = `${pick(CRASH_POINTS)}@${between(1, 3)}`;
          slot.retired = true;
          slot.child?.signal('SIGKILL');
          await slot.child?.done;
          slot.retired = false;
          spawn(slot, point);
          note(kind, `${slot.name} restarted as ${slot.process}, armed to SIGKILL itself at ${point}`);
          break;
        }
        case 'kill-worker': {
          if (!live.length) continue;
          const slot = pick(live);
          slot.child?.signal('SIGKILL');
          note(kind, `SIGKILL ${slot.process}`);
          break;
        }
        case 'zombie': {
          if (!live.length) continue;
          const slot = pick(live);
          const child = slot.child!;
          const ms = between(leaseMs * 1.5, leaseMs * 2.5);
          slot.paused = true;
          child.signal('SIGSTOP');
          const freeze = { from: Date.now(), to: Infinity };
          disruptions.workers.get(slot.process)!.frozen.push(freeze);
          note(kind, `SIGSTOP ${slot.process} for ${ms} ms (lease ${leaseMs} ms), then SIGCONT`);
          thaws.push(
            sleep(ms).then(() => {
              child.signal('SIGCONT');
              freeze.to = Date.now();
              if (slot.child === child) slot.paused = false;
            }),
          );
          break;
        }
        case 'kill-postgres': {
          const down = between(100, 600);
          disruptions.database.push({ at: Date.now(), what: 'PostgreSQL killed' });
          await server.embedded!.kill();
          note(kind, `kill -9 the PostgreSQL server, down for ${down} ms`);
          await sleep(down);
          await server.embedded!.restart();
          break;
        }
        case 'drop-connections': {
          disruptions.database.push({ at: Date.now(), what: 'connections dropped' });
          const { rowCount } = await retrying(() =>
            db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`),
          );
          note(kind, `pg_terminate_backend on ${rowCount ?? 0} of the workers' connection(s)`);
          break;
        }
        case 'provider-outage': {
          // How many more failures each service's step can take, for its worst order (see ORDER_STEP_ATTEMPTS); then 1 to 3 of them.
          const room = async (service: ServiceName) => ORDER_STEP_ATTEMPTS - 2 - (await retrying(() => mostFailedAttempts(db, ids, STEP_OF[service])));
          const rooms = { payments: await room('payments'), mail: await room('mail') };
          const service: ServiceName = rooms.payments === rooms.mail ? pick(['payments', 'mail'] as const) : rooms.payments > rooms.mail ? 'payments' : 'mail';
          const times = Math.min(rooms[service], between(1, 3));
          if (times <= 0) {
            note(kind, `(none: an order has failed ${ORDER_STEP_ATTEMPTS - 2} attempts of each step already; one more outage could exhaust its retries)`);
            break;
          }
          await world.failNext(service, times);
          // Then, for up to a second, look for a workflow the outage put to wait out a back-off, and kill the worker that put it there.
          let waiting: Awaited<ReturnType<typeof waitingWorkflows>> = [];
          const alive = (name: string) => slots.find((s) => s.process === name && s.child && !s.paused);
          for (let look = 0; look < 10 && !waiting.some((w) => w.reason === 'back-off' && alive(w.putBy)); look++) {
            await sleep(100);
            waiting = await retrying(() => waitingWorkflows(db));
          }
          const target = waiting.find((w) => w.reason === 'back-off' && alive(w.putBy));
          const slot = target && alive(target.putBy);
          slot?.child?.signal('SIGKILL');
          note(
            kind,
            `the ${service} service answers 503 to its next ${times} call(s): ${STEP_OF[service]} retries after a back-off` +
              (target && slot ? `; SIGKILL ${slot.process} while ${target.id} waits out its back-off (${target.leftMs} ms left), the worker that put it to wait` : ''),
          );
          break;
        }
        case 'kill-waiting': {
          // A workflow waiting in the database (a back-off preferred, else a
          // sleep), and the worker whose run put it there — the one whose
          // timer would have woken it — killed while it waits.
          // Nothing waiting yet? Look again for up to a second: orders sleep before every email.
          const alive = (name: string) => slots.find((s) => s.process === name && s.child && !s.paused);
          let waiting = await retrying(() => waitingWorkflows(db));
          for (let look = 0; look < 10 && !waiting.some((w) => alive(w.putBy)); look++) {
            await sleep(100);
            waiting = await retrying(() => waitingWorkflows(db));
          }
          const now = slots.filter((s) => s.child && !s.paused);
          const target = waiting.find((w) => alive(w.putBy)) ?? waiting[0];
          const slot = target && (alive(target.putBy) ?? (now.length ? pick(now) : undefined));
          if (!target || !slot) {
            // Still nothing: have a worker die the moment its run next puts a workflow to sleep — timed by the engine, not by us.
            if (await retrying(() => allEnded(db, ids))) {
              if (!now.length) continue;
              const other = pick(now);
              other.child?.signal('SIGKILL');
              note('kill-worker', `SIGKILL ${other.process} (a kill-waiting, but nothing was waiting and every order had ended)`);
              break;
            }
            const armed = pick(slots);
            armed.retired = true;
            armed.child?.signal('SIGKILL');
            await armed.child?.done;
            armed.retired = false;
            spawn(armed, 'after-sleep-recorded@1');
            note(kind, `nothing waiting for 1 s: ${armed.name} restarted as ${armed.process}, armed to SIGKILL itself once it has put a workflow to sleep`);
            break;
          }
          slot.child?.signal('SIGKILL');
          const whose = slot.process === target.putBy ? `the worker that put it to wait` : `(${target.putBy}, which put it to wait, is gone)`;
          note(kind, `SIGKILL ${slot.process} while ${target.id} waits for its ${target.reason} (${target.leftMs} ms left), ${whose}`);
          break;
        }
        case 'poison': {
          const poison = { id: `poison-${seed}-${poisons.length + 1}`, maxAttempts: between(1, 2) };
          await retrying(() => engine.start('poison', { size: 1 }, { id: poison.id, maxAttempts: poison.maxAttempts }));
          poisons.push(poison);
          note(kind, `start ${poison.id} (maxAttempts ${poison.maxAttempts}): its second step SIGKILLs whichever worker runs it`);
          break;
        }
      }
    } catch (thrown) {
      note(kind, `(the fault itself failed: ${toError(thrown).message})`);
    }
  }
  await Promise.all(thaws);
  progress = '';

  // ── recovery: no more faults; every workflow must now end ──────────────
  const all = [...ids, ...poisons.map((p) => p.id)];
  const deadline = Date.now() + (options.recoveryTimeoutMs ?? Math.max(30_000, leaseMs * 10));
  let remaining = all.length;
  while (Date.now() < deadline) {
    try {
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id = ANY($1) AND status = 'running'`, [all]);
      remaining = rows[0]!.n;
      if (remaining === 0) break;
    } catch {
      // the server may still be coming back
    }
    await sleep(200);
  }
  log(`  recovery: ${remaining === 0 ? 'every workflow ended' : `${remaining} workflow(s) still running`} after ${Date.now() - started} ms`);

  for (const slot of slots) {
    slot.retired = true;
    slot.child?.signal('SIGTERM');
  }
  await Promise.all(slots.map((s) => s.child?.done));

  const { invariants, observed } = await checkInvariants({ db, world, orders: ids, poisons, coolingOffMs, disruptions });
  // Every SIGKILL is accounted for: the harness's own, a crash point's, or a poison's (its process had claimed one).
  const poisoned = new Set(
    (await db.query<{ owner: string }>(`SELECT DISTINCT c.owner FROM torture_claims c JOIN workflows w ON w.id = c.workflow_id WHERE w.name = 'poison'`)).rows.map((r) => r.owner),
  );
  const workerDeaths: Record<string, number> = { 'killed by the harness': 0, 'crash point': 0, 'poison workflow': 0 };
  for (const { process: name, attempt } of deaths) {
    if (attempt.signal !== 'SIGKILL') continue;
    const cause = attempt.killedFromOutside ? 'killed by the harness' : attempt.crashedAt ? 'crash point' : poisoned.has(name) ? 'poison workflow' : undefined;
    if (cause) workerDeaths[cause]!++;
    else unexpectedExits.push(`${name} died of a SIGKILL nobody sent (no crash point, no poison claimed): ${lastLines(attempt.stderr || attempt.stdout)}`);
  }
  // A claim no fault explains: keep the named processes' logs and the workflows' claim histories.
  const named = invariants.flatMap((i) => i.violations.flatMap((v) => [...v.matchAll(/ by (w\d+\.\d+) at /g)].map((m) => m[1]!)));
  let evidence: RoundResult['evidence'];
  if (named.length) {
    const concerned = invariants.flatMap((i) => i.violations.map((v) => v.split(':')[0]!));
    const claims = await db.query(`SELECT * FROM torture_claims WHERE workflow_id = ANY($1) ORDER BY workflow_id, token`, [concerned]);
    const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
    evidence = {
      logs: Object.fromEntries([...new Set(named)].map((name) => [name, logs.get(name) ?? []])),
      claims: claims.rows,
      disruptions: {
        workers: Object.fromEntries([...disruptions.workers].map(([name, d]) => [name, { killedAt: iso(d.killedAt), killedBy: d.killedBy, frozen: d.frozen.map((f) => `${iso(f.from)} to ${iso(f.to)}`) }])),
        database: disruptions.database.map((d) => ({ at: iso(d.at), what: d.what })),
      },
    };
  }
  await db.end();
  await world.stop({ removeDir: true });
  await dropDatabase(databaseUrl, adminUrl).catch(() => {});
  return { seed, orders, faults, skipped, invariants, observed: { ...observed, workerDeaths }, evidence, unexpectedExits, durationMs: Date.now() - started };
}

/** Workflows waiting in the database right now — a back-off first — and the worker whose run released them. */
async function waitingWorkflows(db: pg.Pool): Promise<Array<{ id: string; reason: 'back-off' | 'sleep'; leftMs: number; putBy: string }>> {
  const { rows } = await db.query<{ id: string; reason: 'back-off' | 'sleep'; leftMs: number; putBy: string }>(
    `SELECT w.id, c.owner AS "putBy",
            CASE WHEN EXISTS (SELECT 1 FROM step_failures f WHERE f.workflow_id = w.id AND f.fencing_token = w.fencing_token - 1 AND f.retry_at IS NOT NULL)
                 THEN 'back-off' ELSE 'sleep' END AS reason,
            ceil(extract(epoch FROM w.lease_expires_at - now()) * 1000)::int AS "leftMs"
       FROM workflows w
       JOIN torture_claims c ON c.workflow_id = w.id AND c.token = w.fencing_token - 1
      WHERE w.status = 'running' AND w.lease_owner IS NULL AND w.lease_expires_at > now() + interval '50 milliseconds'
      ORDER BY reason, random()`,
  );
  return rows;
}

/** The most failed attempts of `step` any order has recorded while the step is not done (0: none). */
async function mostFailedAttempts(db: pg.Pool, ids: string[], step: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT coalesce(max(n), 0)::int AS n FROM (
       SELECT count(*) AS n FROM step_failures f
        WHERE f.workflow_id = ANY($1) AND f.name = $2
          AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = f.workflow_id AND s.seq = f.seq)
        GROUP BY f.workflow_id, f.seq) AS per_order`,
    [ids, step],
  );
  return rows[0]!.n;
}

/** Every order has ended (or not been started yet: then it has not ended). */
async function allEnded(db: pg.Pool, ids: string[]): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id = ANY($1) AND status <> 'running'`, [ids]);
  return rows[0]!.n === ids.length;
}

/** "[12/40 orders done, 3 waiting]": where the orders are when a fault lands. */
async function describeProgress(db: pg.Pool, ids: string[]): Promise<string> {
  const { rows } = await db.query<{ done: number; started: number; waiting: number }>(
    `SELECT count(*) FILTER (WHERE status <> 'running')::int AS done, count(*)::int AS started,
            count(*) FILTER (WHERE status = 'running' AND lease_owner IS NULL AND lease_expires_at > now())::int AS waiting
       FROM workflows WHERE id = ANY($1)`,
    [ids],
  );
  const { done, started, waiting } = rows[0]!;
  return `  [orders: ${started}/${ids.length} started, ${done} ended, ${waiting} waiting]`;
}

function shuffled<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** The end of what a worker printed: enough of a stack trace to see where it died. */
function lastLines(text: string): string {
  return text.trim().split('\n').slice(-60).join('\n        ').slice(-8000);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
