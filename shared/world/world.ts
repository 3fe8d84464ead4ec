/**
 * Start the demo world for a test or a demo (the parent side).
 *
 *   const world = await startWorld({ databaseUrl });
 *   await runUntilDone({ script, args, env: world.env, faults });   // the workflow, crashing
 *   const ledger = await world.ledger();
 *   ledger.byOrder('order-1')        // { charges: 1, stockDecrements: 1, emails: 1 }
 *   await world.stop();
 *
 * A world is three things, none of which lives in the workflow process, so
 * all of them outlive its SIGKILLs:
 *   - a fresh directory, where the world server keeps its ledger files
 *     (`course-world-<pid>-…` in the temp folder, removed when the process
 *     that made it exits; one left by a killed process goes at the next start);
 *   - the inventory tables, in the PostgreSQL database the caller gives us;
 *   - the world server (server.ts): payments and mail, as a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { CourseError, DatabaseUnavailableError, toError } from '../errors.ts';
import { readLedger, type Ledger } from './ledger.ts';
import type { ServiceName } from './protocol.ts';

export interface Product {
  sku: string;
  onHand: number;
}

export interface World {
  /** This world's directory (the server's ledger files live here). */
  dir: string;
  /** The PostgreSQL database this world's inventory lives in (the one given to startWorld). */
  databaseUrl: string;
  /** The world server's base URL. */
  url: string;
  /** The world server's process id (a test may kill it to prove its ledger is durable). */
  readonly pid: number;
  /** { DATABASE_URL, WORLD_URL, WORLD_DIR }: pass it to every workflow child process. */
  env: Record<string, string>;
  ledger(): Promise<Ledger>;
  /** The next `times` (default 1) calls to `service` answer 503 and do nothing. */
  failNext(service: ServiceName, times?: number): Promise<void>;
  /** Every service call takes `ms` before it is done (0: no delay). */
  setLatency(ms: number): Promise<void>;
  /**
   * Stop the world server (if it still runs) and start it again on the same
   * directory and port: `url` and `env` stay valid, the ledger is reloaded
   * from disk. The inventory is not touched.
   */
  restartServer(): Promise<void>;
  /**
   * Stop the world server. The directory is kept (a test may look at it)
   * unless `removeDir` — until this process exits, if startWorld made it.
   */
  stop(options?: { removeDir?: boolean }): Promise<void>;
}

export interface StartWorldOptions {
  databaseUrl: string;
  /**
   * Default: a fresh directory under the OS temp dir, removed when this process
   * exits. Give an old world's dir to restart that world (a dir you give is never removed for you).
   */
  dir?: string;
  /** Stock to put on the shelf (default: 100 × "widget"). Sets these skus' stock to exactly this. */
  products?: Product[];
}

/** The world server did not come up. */
export class WorldStartError extends CourseError {}

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, '..', '..');
const serverScript = path.join(here, 'server.ts');
const START_TIMEOUT_MS = 10_000;

export async function startWorld(options: StartWorldOptions): Promise<World> {
  const { databaseUrl } = options;
  const dir = options.dir ? path.resolve(options.dir) : makeWorldDir();
  fs.mkdirSync(dir, { recursive: true });

  await prepareInventory(databaseUrl, options.products ?? [{ sku: 'widget', onHand: 100 }]);
  const started = await spawnServer(dir);
  const url = started.url;
  let child = started.child; // replaced by restartServer()
  const port = Number(new URL(url).port);

  const admin = async (route: string, body: unknown) => {
    const response = await fetch(new URL(route, url), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`POST ${route} answered ${response.status}: ${await response.text()}`);
  };

  return {
    dir,
    databaseUrl,
    url,
    get pid() {
      return child.pid ?? 0;
    },
    env: { DATABASE_URL: databaseUrl, WORLD_URL: url, WORLD_DIR: dir },
    ledger: () => readLedger(url, databaseUrl),
    failNext: (service, times = 1) => admin('/admin/fail-next', { service, times }),
    setLatency: (ms) => admin('/admin/latency', { ms }),
    async restartServer() {
      await stopChild(child);
      ({ child } = await spawnServer(dir, port));
    },
    async stop(stopOptions = {}) {
      await stopChild(child);
      if (stopOptions.removeDir) {
        fs.rmSync(dir, { recursive: true, force: true });
        ownDirs.delete(dir);
      }
    },
  };
}

// ─── The world's directory ──────────────────────────────────────────────────

const WORLD_DIR_PREFIX = 'course-world-';
/** A folder from before names carried their process id: stale once untouched this long. */
const UNOWNED_STALE_MS = 60 * 60 * 1000;

/** Directories startWorld made in this process: removed when it exits. */
const ownDirs = new Set<string>();

/** A fresh `course-world-<pid>-XXXXXX` in the temp folder, after clearing those of dead processes. */
function makeWorldDir(): string {
  removeAbandonedWorldDirs();
  installExitHook();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${WORLD_DIR_PREFIX}${process.pid}-`));
  ownDirs.add(dir);
  return dir;
}

/**
 * World directories whose process is gone: it was killed (SIGKILL, a
 * terminal closed) before its exit hook could run. A folder named by an
 * older version of the course (no pid) goes once nothing in it has changed
 * for an hour. Folders of other users, or that cannot be removed, are left.
 */
export function removeAbandonedWorldDirs(tmpDir = os.tmpdir()): string[] {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(tmpDir).filter((name) => name.startsWith(WORLD_DIR_PREFIX));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of entries) {
    const dir = path.join(tmpDir, name);
    if (ownDirs.has(dir)) continue;
    const owned = /^course-world-(\d+)-[^-]+$/.exec(name);
    const stale = owned ? !processExists(Number(owned[1])) : /^course-world-[^-]+$/.test(name) && untouchedFor(dir, UNOWNED_STALE_MS);
    if (!stale) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // not ours to remove, or busy: leave it
    }
  }
  return removed;
}

/** Whether a process with this pid exists (EPERM: it does, but is not ours). */
function processExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (thrown) {
    return (thrown as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Neither the folder nor anything directly in it has changed for `ms`. */
function untouchedFor(dir: string, ms: number): boolean {
  try {
    const stat = fs.lstatSync(dir);
    if (!stat.isDirectory()) return false;
    let newest = stat.mtimeMs;
    for (const entry of fs.readdirSync(dir)) newest = Math.max(newest, fs.lstatSync(path.join(dir, entry)).mtimeMs);
    return Date.now() - newest > ms;
  } catch {
    return false;
  }
}

// ─── The inventory ──────────────────────────────────────────────────────────

const schemaSql = () => fs.readFileSync(path.join(here, 'schema.sql'), 'utf8');

/** Create the tables if need be and put the products on the shelf, in one transaction. */
async function prepareInventory(databaseUrl: string, products: Product[]): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
  } catch (thrown) {
    throw new DatabaseUnavailableError(
      `The world cannot reach its database: ${toError(thrown).message}`,
      'startWorld needs a running PostgreSQL: pass the URL of a database that exists.',
      { cause: thrown },
    );
  }
  try {
    await client.query('BEGIN');
    // Two worlds starting at once on one database would race on CREATE TABLE
    // IF NOT EXISTS (it is not safe against concurrent creators): take turns.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('course-world-schema'))`);
    await client.query(schemaSql());
    for (const { sku, onHand } of products) {
      // Seeding *sets* the stock: a test that asks for 1 widget gets 1, even
      // if an earlier world in the same database left 97.
      await client.query(
        `INSERT INTO inventory (sku, on_hand) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand`,
        [sku, onHand],
      );
    }
    await client.query('COMMIT');
  } catch (thrown) {
    await client.query('ROLLBACK').catch(() => {});
    throw thrown;
  } finally {
    await client.end().catch(() => {});
  }
}

// ─── The world server process ───────────────────────────────────────────────

/** Servers still running, killed if this process exits without stopping them. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: kill() just sends the signal, and rmSync is synchronous.
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
    for (const dir of ownDirs) {
      try {
        // A server just killed may still be finishing a write: retry a moment.
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 20 });
      } catch {
        // the next start removes it (its pid is ours, and we are gone)
      }
    }
  });
}

async function spawnServer(dir: string, port = 0): Promise<{ child: ChildProcess; url: string }> {
  installExitHook();
  const args = ['--import', 'tsx', serverScript, '--dir', dir, '--port', String(port), '--exit-with-parent'];
  const child = spawn(process.execPath, args, {
    cwd: projectRoot, // where `--import tsx` is resolved
    env: process.env,
    // stdin is the lifeline: if we die (even by SIGKILL) the pipe closes and the server exits.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));

  let stderr = '';
  let listening = false;
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    // Before it listens, keep its complaints for the error message; after, pass them on.
    if (listening) process.stderr.write(text.replace(/^(?=.)/gm, '[world server] '));
    else stderr = (stderr + text).slice(-8000);
  });

  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    let settled = false;
    const fail = (why: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(
        new WorldStartError(
          `The world server ${why}.${stderr.trim() ? `\nIts error output:\n${stderr.trim()}` : ''}`,
          `Try it by hand: node --import tsx ${path.relative(process.cwd(), serverScript)} --dir ${dir}`,
          { cause },
        ),
      );
    };
    const timer = setTimeout(() => fail(`did not print WORLD_URL= within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    child.once('error', (error) => fail(`could not be started (${error.message})`, error));
    // 'close', not 'exit': it comes after the output pipes are drained, so stderr is complete.
    child.once('close', (code, signal) => fail(`exited (${signal ?? `code ${code}`}) before it was listening`));
    child.stdout?.on('data', (chunk: Buffer) => {
      if (settled) return;
      stdout += chunk.toString('utf8');
      const match = /^WORLD_URL=(\S+)$/m.exec(stdout);
      if (match?.[1]) {
        settled = listening = true;
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });

  // Do not let the server hold this process open: a demo that forgets stop()
  // still exits, and the exit hook and the stdin lifeline take the server down.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as { unref?: () => void } | null)?.unref?.();
  return { child, url };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
