/**
 * One torture round: many orders, several real worker processes of the
 * production engine (chapter 6), and a seeded schedule of faults — workers
 * SIGKILLed at crash points or at random moments, workers frozen past their
 * lease and thawed (zombies), the PostgreSQL server itself killed -9 and
 * restarted on the same data, connections dropped. When the faults stop, the
 * workers get time to recover, and the outcome is checked against invariants
 * (invariants.ts). The idea is Jepsen's and FoundationDB's: many randomized
 * faults and a checker, not a handful of hand-picked kill points.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { mulberry32 } from '../../shared/crash/failpoints.ts';
import { startChild, type ChildRun } from '../../shared/crash/runner.ts';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { projectRoot, type PostgresServer } from '../../shared/db/server.ts';
import { toError } from '../../shared/errors.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { startWorld } from '../../shared/world/world.ts';
import { checkInvariants, installFenceWatch, type Invariant } from './invariants.ts';

export const ENGINE = 'chapters/07-fast-path';

export type FaultKind = 'crash-point' | 'kill-worker' | 'zombie' | 'kill-postgres' | 'drop-connections';
export const FAULT_KINDS: FaultKind[] = ['crash-point', 'kill-worker', 'zombie', 'kill-postgres', 'drop-connections'];

/**
 * The engine's durability points a worker can be armed to die at. A plain
 * step's record and the completion are one statement each, so they have no
 * `during-record` point (it commits or it never happened); a `transaction`
 * step has one. A kill while such a statement is in flight is what the
 * kill-worker faults, at random moments, are for.
 */
const CRASH_POINTS = [
  'before-step:charge_card',
  'after-effect:charge_card',
  'after-record:charge_card',
  'before-step:reserve_inventory',
  'after-effect:reserve_inventory',
  'during-record:reserve_inventory',
  'after-record:reserve_inventory',
  'after-effect:send_email',
  'after-record:send_email',
  'after-record:complete',
];

export interface FaultEvent {
  atMs: number;
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
  /** How long recovery may take after the last fault before a workflow counts as stuck. */
  recoveryTimeoutMs?: number;
}

export interface RoundResult {
  seed: number;
  orders: number;
  faults: FaultEvent[];
  skipped: string[];
  invariants: Invariant[];
  /** Worker exits the harness did not cause (a crash loop after a database restart, say). */
  unexpectedExits: string[];
  durationMs: number;
}

interface WorkerSlot {
  name: string;
  child: ChildRun | undefined;
  paused: boolean;
  /** Stops the supervisor from respawning it (end of round). */
  retired: boolean;
}

export async function runRound(options: RoundOptions): Promise<RoundResult> {
  const { seed, orders, leaseMs, adminUrl, server } = options;
  const log = options.log ?? (() => {});
  const random = mulberry32(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const started = Date.now();
  const faults: FaultEvent[] = [];
  const skipped: string[] = [];
  const unexpectedExits: string[] = [];
  const note = (kind: FaultKind, detail: string) => {
    faults.push({ atMs: Date.now() - started, kind, detail });
    log(`  ${String(Date.now() - started).padStart(6)} ms  ${kind.padEnd(16)} ${detail}`);
  };

  const databaseUrl = await createDatabase(adminUrl, `torture_${seed}`);
  const world = await startWorld({ databaseUrl, products: [{ sku: 'widget', onHand: orders * 2 }] });
  // A little latency in the outside world keeps work in flight while the faults land.
  await world.setLatency(options.latencyMs ?? 10);
  const db = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  // The server may be killed under us: a dropped idle connection must not crash the harness.
  db.on('error', () => {});
  const ids = [...Array(orders)].map((_, i) => `order-${seed}-${i + 1}`);

  const engineModule = (await import(pathToFileURL(path.join(projectRoot, ENGINE, 'index.ts')).href)) as typeof import('../../chapters/07-fast-path/index.ts');
  const workflowModule = (await import(pathToFileURL(path.join(projectRoot, ENGINE, 'workflow.ts')).href)) as typeof import('../../chapters/07-fast-path/workflow.ts');
  await engineModule.migrate(db);
  await installFenceWatch(db);
  const engine = engineModule.createEngine({ db, workflows: { order: workflowModule.orderWorkflow() } });
  for (const id of ids) await engine.start('order', demoOrder(id), { id });

  // ── the workers, and a supervisor that restarts the dead ones ───────────
  const slots: WorkerSlot[] = [...Array(options.workers)].map((_, i) => ({ name: `w${i + 1}`, child: undefined, paused: false, retired: false }));
  const spawn = (slot: WorkerSlot, crashAt?: string) => {
    const env: Record<string, string> = {
      ...world.env,
      LEASE_MS: String(leaseMs),
      POLL_MS: '100',
      CONCURRENCY: '4',
      WORKER_NAME: slot.name,
      COURSE_TRACE: '0',
    };
    if (crashAt) env.CRASH_AT = crashAt;
    const child = startChild({ script: `${ENGINE}/main.ts`, args: ['worker'], env });
    slot.child = child;
    slot.paused = false;
    void child.done.then((attempt) => {
      if (slot.child !== child) return;
      slot.child = undefined;
      // Only the harness stops workers (SIGKILL, SIGTERM): any exit of their own, even code 0, is one.
      if (attempt.signal === null && !slot.retired) {
        unexpectedExits.push(`${slot.name} exited ${attempt.exitCode}: ${lastLines(attempt.stderr || attempt.stdout)}`);
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
          note(kind, `${slot.name} restarted, armed to SIGKILL itself at ${point}`);
          break;
        }
        case 'kill-worker': {
          if (!live.length) continue;
          const slot = pick(live);
          slot.child?.signal('SIGKILL');
          note(kind, `SIGKILL ${slot.name}`);
          break;
        }
        case 'zombie': {
          if (!live.length) continue;
          const slot = pick(live);
          const child = slot.child!;
          const ms = between(leaseMs * 1.5, leaseMs * 2.5);
          slot.paused = true;
          child.signal('SIGSTOP');
          note(kind, `SIGSTOP ${slot.name} for ${ms} ms (lease ${leaseMs} ms), then SIGCONT`);
          thaws.push(
            sleep(ms).then(() => {
              child.signal('SIGCONT');
              if (slot.child === child) slot.paused = false;
            }),
          );
          break;
        }
        case 'kill-postgres': {
          const down = between(100, 600);
          await server.embedded!.kill();
          note(kind, `kill -9 the PostgreSQL server, down for ${down} ms`);
          await sleep(down);
          await server.embedded!.restart();
          break;
        }
        case 'drop-connections': {
          const { rowCount } = await db.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
          );
          note(kind, `pg_terminate_backend on ${rowCount ?? 0} of the workers' connection(s)`);
          break;
        }
      }
    } catch (thrown) {
      note(kind, `(the fault itself failed: ${toError(thrown).message})`);
    }
  }
  await Promise.all(thaws);

  // ── recovery: no more faults; every workflow must now finish ────────────
  const deadline = Date.now() + (options.recoveryTimeoutMs ?? Math.max(30_000, leaseMs * 10));
  let remaining = ids.length;
  while (Date.now() < deadline) {
    try {
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id = ANY($1) AND status <> 'completed'`, [ids]);
      remaining = rows[0]!.n;
      if (remaining === 0) break;
    } catch {
      // the server may still be coming back
    }
    await sleep(200);
  }
  log(`  recovery: ${remaining === 0 ? 'every workflow completed' : `${remaining} workflow(s) not completed`} after ${Date.now() - started} ms`);

  for (const slot of slots) {
    slot.retired = true;
    slot.child?.signal('SIGTERM');
  }
  await Promise.all(slots.map((s) => s.child?.done));

  const invariants = await checkInvariants({ db, world, ids });
  await db.end();
  await world.stop({ removeDir: true });
  await dropDatabase(databaseUrl, adminUrl).catch(() => {});
  return { seed, orders, faults, skipped, invariants, unexpectedExits, durationMs: Date.now() - started };
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
