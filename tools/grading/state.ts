/**
 * What the learner commands remember between runs, in one git-ignored file,
 * `.course-data/progress.json` (COURSE_STATE_DIR moves it, for the course's own tests): how many hints of each exercise were shown,
 * and the last test result of each (with a fingerprint of the files it
 * tested, so `npm run progress` knows when a result is stale).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isLearnerFile, type Exercise } from './exercises.ts';
import { courseRoot } from './impl.ts';

export interface LastRun {
  at: string;
  /** Fingerprint of the exercise's files when they were tested. */
  fingerprint: string;
  /** 'compile-error': the type checker refused the code, so no test ran. */
  outcome: 'tested' | 'compile-error';
  passed: number;
  total: number;
  points: number;
  maxPoints: number;
}

export interface LearnerState {
  version: 1;
  exercises: Record<string, { hintsShown?: number; lastRun?: LastRun }>;
}

/** The git-ignored folder where the learner commands keep what they remember (and reset's backups). */
export function stateDir(): string {
  return path.resolve(process.env.COURSE_STATE_DIR ?? path.join(courseRoot, '.course-data'));
}

export function stateFile(): string {
  return path.join(stateDir(), 'progress.json');
}

export function readState(): LearnerState {
  try {
    const parsed = JSON.parse(fs.readFileSync(stateFile(), 'utf8')) as LearnerState;
    if (parsed.version === 1 && typeof parsed.exercises === 'object' && parsed.exercises) return parsed;
  } catch {
    // no file yet, or one we cannot read: start afresh (it only holds conveniences)
  }
  return { version: 1, exercises: {} };
}

/** Change the state of one exercise and write the file (temp file and rename: never half a file). */
export function updateState(slug: string, change: (entry: LearnerState['exercises'][string]) => void): void {
  const state = readState();
  const entry = (state.exercises[slug] ??= {});
  change(entry);
  const file = stateFile();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, `${JSON.stringify(state, null, 2)}\n`);
  fs.renameSync(temp, file);
}

/** A fingerprint of the learner's files in the exercise folder: names and contents. */
export function fingerprint(exercise: Exercise): string {
  const hash = createHash('sha256');
  let names: string[] = [];
  try {
    names = fs.readdirSync(exercise.dir).filter(isLearnerFile).sort();
  } catch {
    // no folder: the empty fingerprint
  }
  for (const name of names) {
    hash.update(`${name}\0`);
    try {
      hash.update(fs.readFileSync(path.join(exercise.dir, name)));
    } catch {
      hash.update('(unreadable)');
    }
  }
  return hash.digest('hex').slice(0, 16);
}
