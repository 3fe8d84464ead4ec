/**
 * Pristine copies of the starters, kept where learners do not work:
 * `tools/grading/starters/NN-name/<file>.starter` (the suffix keeps the type
 * checker and vitest away from them; they are code with TODOs, as shipped).
 *
 * They are what `npm run reset-exercise N` restores — from these files, not
 * from git, so it works in a zip download and however many commits a learner
 * has made — and what the CI check proves fails its tests, however far the
 * learner's own exercises/ has come.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CourseError } from '../../shared/errors.ts';
import { isLearnerFile, type Exercise } from './exercises.ts';
import { courseRoot } from './impl.ts';
import { stateDir } from './state.ts';

const startersDir = path.join(courseRoot, 'tools', 'grading', 'starters');

/**
 * A temp folder shaped like `exercises/` (NN-name/ folders) holding the
 * pristine starters — to grade like a submission. Call `remove()` when done.
 */
export function startersFolder(exercises?: Exercise[]): { dir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'course-starters-'));
  for (const slug of fs.readdirSync(startersDir)) {
    if (exercises && !exercises.some((e) => e.slug === slug)) continue;
    const from = path.join(startersDir, slug);
    if (!fs.statSync(from).isDirectory()) continue;
    fs.mkdirSync(path.join(dir, slug));
    for (const name of fs.readdirSync(from).filter((n) => n.endsWith('.starter'))) {
      fs.copyFileSync(path.join(from, name), path.join(dir, slug, name.slice(0, -'.starter'.length)));
    }
  }
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** The learner's files in exercises/NN-name that are not what the starter shipped (changed, or missing). */
export function changedFromStarter(exercise: Exercise): string[] {
  const changed: string[] = [];
  for (const [name, pristine] of exercise.starterFiles) {
    const mine = path.join(exercise.dir, name);
    if (!fs.existsSync(mine) || !fs.readFileSync(mine).equals(fs.readFileSync(pristine))) changed.push(name);
  }
  // A file the learner added is their work too; a starter file the course added since is "changed" above.
  for (const name of listLearnerFiles(exercise.dir)) if (!exercise.starterFiles.has(name)) changed.push(name);
  return changed.sort();
}

/**
 * Put the starter back in exercises/NN-name. The learner's current files go
 * to `.course-data/backups/NN-name-<time>/` first: a reset never loses work.
 * Files the learner added are moved there too.
 */
export function restoreStarter(exercise: Exercise): { restored: string[]; backup?: string } {
  if (exercise.starterFiles.size === 0) {
    throw new CourseError(`Exercise ${exercise.number} has no pristine starter in tools/grading/starters/${exercise.slug}/.`, 'Restore it from git instead: git checkout -- exercises/' + exercise.slug);
  }
  const changed = changedFromStarter(exercise);
  let backup: string | undefined;
  if (changed.length > 0) {
    backup = path.join(stateDir(), 'backups', `${exercise.slug}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    fs.mkdirSync(backup, { recursive: true });
    for (const name of changed) {
      const mine = path.join(exercise.dir, name);
      if (fs.existsSync(mine)) fs.copyFileSync(mine, path.join(backup, name));
      if (!exercise.starterFiles.has(name)) fs.rmSync(mine);
    }
  }
  fs.mkdirSync(exercise.dir, { recursive: true });
  for (const [name, pristine] of exercise.starterFiles) fs.copyFileSync(pristine, path.join(exercise.dir, name));
  return { restored: changed.filter((name) => exercise.starterFiles.has(name)), backup };
}

/** For course authors: make exercises/NN-name's current code the pristine starter. */
export function recordStarter(exercise: Exercise): string[] {
  const target = path.join(startersDir, exercise.slug);
  fs.rmSync(target, { recursive: true, force: true });
  fs.mkdirSync(target, { recursive: true });
  const files = listLearnerFiles(exercise.dir);
  for (const name of files) fs.copyFileSync(path.join(exercise.dir, name), path.join(target, `${name}.starter`));
  return files;
}

function listLearnerFiles(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((name) => isLearnerFile(name) && fs.statSync(path.join(dir, name)).isFile()).sort();
  } catch {
    return [];
  }
}
