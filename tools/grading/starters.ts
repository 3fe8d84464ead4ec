/**
 * The pristine starters, and the reference answers, as folders and files —
 * derived, never stored: a starter is its chapter's files plus
 * `tools/grading/starters/NN-name.patch`, an answer is the starter plus
 * `solutions/NN-name/solution.patch` (derive.ts).
 *
 * The pristine starter is what `npm run reset-exercise N` restores — derived
 * from the chapter and the patch, not taken from git, so it works in a zip
 * download and however many commits a learner has made — and what the CI
 * check proves fails its tests, however far the learner's own exercises/ has
 * come.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deriveSolution, deriveStarter, recordStarterPatch, writeFiles } from './derive.ts';
import { isLearnerFile, type Exercise } from './exercises.ts';
import { stateDir } from './state.ts';

/** The pristine starter of an exercise: file name → content. */
export function pristineStarter(exercise: Exercise): Map<string, string> {
  return deriveStarter(exercise.slug);
}

/** The reference answer of an exercise: file name → content. */
export function referenceAnswer(exercise: Exercise): Map<string, string> {
  return deriveSolution(exercise.slug);
}

/**
 * A temp folder shaped like `exercises/` (NN-name/ folders) holding the
 * pristine starters — or, with `answers`, the reference answers — to grade
 * like a submission. Call `remove()` when done.
 */
export function startersFolder(exercises: Exercise[], { answers = false }: { answers?: boolean } = {}): { dir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), answers ? 'course-solutions-' : 'course-starters-'));
  for (const exercise of exercises) {
    writeFiles(path.join(dir, exercise.slug), answers ? referenceAnswer(exercise) : pristineStarter(exercise));
  }
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** The learner's files in exercises/NN-name that are not what the starter shipped (changed, or missing). */
export function changedFromStarter(exercise: Exercise): string[] {
  const changed: string[] = [];
  const pristine = pristineStarter(exercise);
  for (const [name, text] of pristine) {
    const mine = path.join(exercise.dir, name);
    if (!fs.existsSync(mine) || fs.readFileSync(mine, 'utf8') !== text) changed.push(name);
  }
  // A file the learner added is their work too; a starter file the course added since is "changed" above.
  for (const name of listLearnerFiles(exercise.dir)) if (!pristine.has(name)) changed.push(name);
  return changed.sort();
}

/**
 * Put the starter back in exercises/NN-name. The learner's current files go
 * to `.course-data/backups/NN-name-<time>/` first: a reset never loses work.
 * Files the learner added are moved there too.
 */
export function restoreStarter(exercise: Exercise): { restored: string[]; backup?: string } {
  const pristine = pristineStarter(exercise);
  const changed = changedFromStarter(exercise);
  let backup: string | undefined;
  if (changed.length > 0) {
    backup = path.join(stateDir(), 'backups', `${exercise.slug}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    fs.mkdirSync(backup, { recursive: true });
    for (const name of changed) {
      const mine = path.join(exercise.dir, name);
      if (fs.existsSync(mine)) fs.copyFileSync(mine, path.join(backup, name));
      if (!pristine.has(name)) fs.rmSync(mine);
    }
  }
  writeFiles(exercise.dir, pristine);
  return { restored: changed.filter((name) => pristine.has(name)), backup };
}

/** For course authors: make exercises/NN-name's current code the pristine starter (its patch over the chapter). */
export function recordStarter(exercise: Exercise): { files: string[]; patch: string } {
  const files = listLearnerFiles(exercise.dir);
  const patch = recordStarterPatch(exercise.slug, new Map(files.map((name) => [name, fs.readFileSync(path.join(exercise.dir, name), 'utf8')])));
  return { files, patch };
}

function listLearnerFiles(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((name) => isLearnerFile(name) && fs.statSync(path.join(dir, name)).isFile()).sort();
  } catch {
    return [];
  }
}
