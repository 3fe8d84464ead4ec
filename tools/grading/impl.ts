/**
 * Which implementation of the exercises is under test — the learner's
 * `exercises/`, the reference `solutions/`, or a copy of one student's
 * submission — and the database it is tested in. The runner (`npm run
 * exercise`, `npm run grade`, the CI check) chooses both through the
 * environment; a spec never does:
 *
 *   IMPL_ROOT            the folder holding the `NN-name/` exercise folders
 *                        (default: the course's `exercises/`)
 *   GRADE_DATABASE_URL   a database of its own for this run (a submission's,
 *                        or the learner's); specs make a schema per test in it
 *   GRADE_REPEATS        how many times each crash test must pass (default 1)
 *   GRADE_TEST_TIMEOUT   the time limit of one test, in ms (default 30 000)
 *   GRADE_CRASH_TEST_TIMEOUT   the same for one repetition of a crash test,
 *                        which starts several real processes (default 60 000)
 *
 * An exercise folder holds only what the exercise changes of the chapter it
 * extends; everything else is the chapter's own code, imported from
 * `chapters/NN-name/`. Under test, the exercise's files are laid over the
 * chapter: wherever a chapter module imports one of them (chapter 6's engine
 * imports `./worker.ts`), it gets the implementation under test instead. The
 * grading vitest config does that for the specs (and sends their imports of
 * `…/exercises/NN-name/…` to IMPL_ROOT); `importImpl` does it for the driver
 * processes (drivers/), with a module resolution hook (overlay-hooks.mjs).
 * Nothing here imports vitest: the drivers use this file too.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { register } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { CourseError } from '../../shared/errors.ts';

/** The course's root folder (where package.json is). */
export const courseRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The folder holding the exercise folders under test. */
export function implRoot(): string {
  return path.resolve(process.env.IMPL_ROOT ?? path.join(courseRoot, 'exercises'));
}

/**
 * The chapter an exercise extends (its folder name, e.g. `06-leasing-workers`):
 * the chapter its starter patch applies to (tools/grading/starters/NN-name.patch),
 * else the chapter with the exercise's number.
 */
export function chapterOf(exercise: string): string {
  let patch = '';
  try {
    patch = fs.readFileSync(path.join(courseRoot, 'tools', 'grading', 'starters', `${exercise}.patch`), 'utf8');
  } catch {
    // no starter patch (yet): go by the number
  }
  const named = /^--- chapters\/([^/\s]+)\//m.exec(patch)?.[1];
  if (named) return named;
  const byNumber = fs.readdirSync(path.join(courseRoot, 'chapters')).find((name) => name.slice(0, 2) === exercise.slice(0, 2));
  if (!byNumber) throw new CourseError(`Exercise ${exercise} extends no chapter I can find.`, `Its starter patch, tools/grading/starters/${exercise}.patch, names the chapter's files (--- chapters/NN-name/…).`);
  return byNumber;
}

/** A path with every symbolic link resolved (a temp folder may be behind one, as on macOS), or as given. */
function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** The exercise's files under test, laid over its chapter: chapter folder, exercise folder, and the files there. */
export interface Overlay {
  chapterDir: string;
  implDir: string;
  files: string[];
}

export function overlayOf(exercise: string): Overlay {
  const implDir = realPath(path.join(implRoot(), exercise));
  let files: string[] = [];
  try {
    files = fs.readdirSync(implDir).filter((name) => fs.statSync(path.join(implDir, name)).isFile());
  } catch {
    // no folder: nothing to lay over the chapter
  }
  return { chapterDir: realPath(path.join(courseRoot, 'chapters', chapterOf(exercise))), implDir, files };
}

/** Where a module the chapter resolved to really comes from under test: the exercise's own file, if it has one. */
export function overlaid(overlay: Overlay, resolved: string): string | undefined {
  const prefix = `${overlay.chapterDir}${path.sep}`;
  if (!resolved.startsWith(prefix)) return undefined;
  const name = resolved.slice(prefix.length);
  return overlay.files.includes(name) ? path.join(overlay.implDir, name) : undefined;
}

const registered = new Set<string>();

/**
 * Import one file of the implementation under test, e.g. `importImpl('02-jsonl-log', 'engine.ts')`:
 * the exercise's own file, or — when the exercise does not change it — the
 * chapter's, whose imports of the exercise's files then reach the exercise's.
 */
export async function importImpl<Module>(exercise: string, file: string): Promise<Module> {
  const overlay = overlayOf(exercise);
  if (!registered.has(exercise)) {
    registered.add(exercise);
    register('./overlay-hooks.mjs', import.meta.url, { data: overlay });
  }
  const target = overlay.files.includes(file) ? path.join(overlay.implDir, file) : path.join(overlay.chapterDir, file);
  return (await import(pathToFileURL(target).href)) as Module;
}

/** How many times each crash test must pass to earn its points. */
export function gradingRepeats(): number {
  const n = Number(process.env.GRADE_REPEATS ?? 1);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** The time limit of one test, in ms. */
export function testTimeoutMs(): number {
  return milliseconds(process.env.GRADE_TEST_TIMEOUT, 30_000);
}

/** The time limit of one repetition of a crash test, in ms. */
export function crashTestTimeoutMs(): number {
  return milliseconds(process.env.GRADE_CRASH_TEST_TIMEOUT, 60_000);
}

/** The time limit of one child process in a crash test: one that loops forever is killed well before the test's own limit. */
export function childTimeoutMs(): number {
  return Math.max(2_000, Math.floor(crashTestTimeoutMs() / 3));
}

function milliseconds(text: string | undefined, fallback: number): number {
  const ms = Number(text ?? fallback);
  return Number.isFinite(ms) && ms > 0 ? ms : fallback;
}

/** The database this run tests in, or a clear error when the spec was started by hand. */
export function gradingDatabaseUrl(): string {
  const url = process.env.GRADE_DATABASE_URL;
  if (!url) {
    throw new CourseError(
      'GRADE_DATABASE_URL is not set, so this exercise has no database to be tested in.',
      'Run it with `npm run exercise N` (or `npm run grade`): they start PostgreSQL and make a database for the run.',
    );
  }
  return url;
}

export interface ScratchSchema {
  /** A connection string whose search_path is this schema: unqualified tables are created and found there. */
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh schema in the run's database, for one test (or one repetition of a
 * crash test): its `workflows` and `steps` tables cannot meet another test's,
 * and a repetition never sees what the one before it left behind.
 */
export async function scratchSchema(label: string): Promise<ScratchSchema> {
  const databaseUrl = gradingDatabaseUrl();
  const name = `${label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(databaseUrl);
  url.searchParams.set('options', `-c search_path=${name}`);
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${client.escapeIdentifier(name)} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
