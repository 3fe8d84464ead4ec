/**
 * A submission's private workspace: a fresh folder under the system's temp
 * folder, holding a copy of the student's exercise code — and nothing else of
 * theirs. The course's `shared/` (the crash harness, the world), `chapters/`
 * and `node_modules/` are linked in, so the student's `../../shared/…` imports
 * reach the course's own harness, whatever their copy of it says, and their
 * `../../chapters/NN-name/…` imports the chapter the exercise extends (an
 * exercise folder holds only what the exercise changes; the rest is the
 * chapter's).
 *
 *   <tmp>/course-grade-XXXX/
 *     package.json          {"type":"module"}
 *     shared/               a link to each part of <course>/shared (never tools/)
 *     chapters/             a link to each chapter of <course>/chapters
 *     node_modules → <course>/node_modules
 *     exercises/NN-name/    the student's code files (isLearnerFile), copied
 *
 * What is NOT copied: tests, README/hints/points (the course's are used),
 * symbolic links (one could point at another student's files), files over
 * 512 KB, and anything past 5 MB in all.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isLearnerFile, type Exercise } from './exercises.ts';
import { courseRoot } from './impl.ts';

const FILE_LIMIT = 512 * 1024;
const TOTAL_LIMIT = 5 * 1024 * 1024;

export interface Workspace {
  dir: string;
  /** The folder that holds the copied `NN-name/` folders: the IMPL_ROOT for this submission. */
  implRoot: string;
  /** The exercises the submission has a folder for. */
  present: Set<string>;
  /** What was left out while copying, per exercise slug, to show in the report. */
  notes: Map<string, string[]>;
  remove(): void;
}

/**
 * Where a submission keeps its exercises: a whole clone of the course has an
 * `exercises/` folder; a copy of `exercises/` alone has the `NN-name/` folders
 * at its top. Undefined when it has neither.
 */
export function findExercisesFolder(submission: string): string | undefined {
  const nested = path.join(submission, 'exercises');
  if (isRealDirectory(nested)) return nested;
  const entries = safeReaddir(submission);
  return entries.some((name) => /^\d\d-/.test(name) && isRealDirectory(path.join(submission, name))) ? submission : undefined;
}

/** Copy a submission's exercise code (from `exercisesFolder`, which may be undefined) into a new workspace. */
export function buildWorkspace(exercisesFolder: string | undefined, exercises: Exercise[]): Workspace {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'course-grade-'));
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module", "private": true }\n');
  linkCourseCode('shared', path.join(dir, 'shared'));
  linkCourseCode('chapters', path.join(dir, 'chapters'));
  fs.symlinkSync(path.join(courseRoot, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const implRoot = path.join(dir, 'exercises');
  fs.mkdirSync(implRoot);

  const present = new Set<string>();
  const notes = new Map<string, string[]>();
  const budget = { bytes: TOTAL_LIMIT };
  for (const exercise of exercises) {
    const source = exercisesFolder ? path.join(exercisesFolder, exercise.slug) : undefined;
    if (!source || !isRealDirectory(source)) continue;
    present.add(exercise.slug);
    const skipped: string[] = [];
    copyLearnerFiles(source, path.join(implRoot, exercise.slug), skipped, budget, 0);
    if (skipped.length > 0) notes.set(exercise.slug, skipped);
  }
  return { dir, implRoot, present, notes, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function copyLearnerFiles(from: string, to: string, skipped: string[], budget: { bytes: number }, depth: number): void {
  fs.mkdirSync(to, { recursive: true });
  for (const name of safeReaddir(from).sort()) {
    const source = path.join(from, name);
    const stat = fs.lstatSync(source);
    if (stat.isSymbolicLink()) {
      skipped.push(`${name} (a symbolic link: not followed)`);
    } else if (stat.isDirectory()) {
      if (depth < 2 && name !== 'node_modules' && !name.startsWith('.')) copyLearnerFiles(source, path.join(to, name), skipped, budget, depth + 1);
    } else if (stat.isFile() && isLearnerFile(name)) {
      if (stat.size > FILE_LIMIT || stat.size > budget.bytes) {
        skipped.push(`${name} (${stat.size} bytes: over the size limit)`);
        continue;
      }
      budget.bytes -= stat.size;
      fs.copyFileSync(source, path.join(to, name));
    }
  }
}

/**
 * The workspace's `shared/` or `chapters/`: a link to each entry of the
 * course's. The grader itself lives in `tools/`, which is not linked: its
 * specs, starter patches and fixture class are nothing a submission needs to
 * import, or to read.
 */
function linkCourseCode(folder: 'shared' | 'chapters', target: string): void {
  fs.mkdirSync(target);
  const source = path.join(courseRoot, folder);
  for (const name of fs.readdirSync(source)) {
    fs.symlinkSync(path.join(source, name), path.join(target, name));
  }
}

/** A directory, and not a symbolic link to one (the submission folder itself may be a link; nothing inside it may). */
function isRealDirectory(p: string): boolean {
  try {
    const stat = fs.lstatSync(p);
    return stat.isDirectory();
  } catch {
    return false;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
