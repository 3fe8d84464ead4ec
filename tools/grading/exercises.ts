/**
 * The course's exercises, as the learner commands and the grader see them.
 *
 * An exercise exists when its spec exists: `tools/grading/specs/NN-name.spec.ts`
 * (course-owned, never inside a learner's copy). Beside it:
 *
 *   exercises/NN-name/            the starter (README.md, hints.md, points.json, and the
 *                                 code the exercise changes or adds, with TODOs); the rest
 *                                 is the chapter's, imported from chapters/NN-name/
 *   tools/grading/starters/NN-name.patch   the starter's code as a patch over the chapter:
 *                                 what `npm run reset-exercise` restores and the CI check
 *                                 grades is derived from it (derive.ts)
 *   solutions/NN-name/            the reference answer, and instructor-only tests:
 *     solution.patch              the answer as a patch over the starter (none: the chapter is the answer)
 *     *.hidden.spec.ts            run by the grader and the CI check, never by `npm run exercise`
 *     points.hidden.json          their points
 *
 * Points are always read from the course's own copy, never from a submission.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CourseError } from '../../shared/errors.ts';
import { chapterOf, courseRoot } from './impl.ts';

export interface Exercise {
  /** 1, 2, 3… (the chapter it extends, so far) */
  number: number;
  /** Folder name, e.g. `01-failed-steps`. */
  slug: string;
  title: string;
  /** The learner's folder in the course: exercises/NN-name. */
  dir: string;
  solutionDir: string;
  /** The public spec, relative to the course root. */
  spec: string;
  /** Instructor-only specs, relative to the course root. */
  hiddenSpecs: string[];
  /** Points per test, by the test's full name (`describe > it`). */
  points: Map<string, number>;
  hiddenPoints: Map<string, number>;
  /** The chapter it extends: its folder in chapters/, e.g. `06-leasing-workers`. */
  chapter: string;
}

const specsDir = path.join(courseRoot, 'tools', 'grading', 'specs');

/** A points file is broken or missing. */
export class ExerciseDefinitionError extends CourseError {}

/** Every exercise, in order. */
export function listExercises(): Exercise[] {
  return fs
    .readdirSync(specsDir)
    .filter((name) => /^\d\d-.+\.spec\.ts$/.test(name))
    .sort()
    .map((name) => loadExercise(name.replace(/\.spec\.ts$/, '')));
}

/** `1`, `01`, `01-failed-steps` or `failed-steps` → that exercise, or a clear error listing them. */
export function findExercise(which: string): Exercise {
  const all = listExercises();
  const n = /^\d+$/.test(which) ? Number(which) : NaN;
  const found = all.find((e) => e.number === n || e.slug === which || e.slug.slice(3) === which);
  if (!found) {
    throw new CourseError(
      `There is no exercise "${which}".`,
      `The exercises are: ${all.map((e) => `${e.number} (${e.slug})`).join(', ')}.`,
    );
  }
  return found;
}

/**
 * Where the learner's exercise folders are: the course's `exercises/`, or
 * COURSE_EXERCISES_ROOT (the course's own tests point the learner commands at
 * a scratch copy, never at a learner's work).
 */
export function exercisesRoot(): string {
  return path.resolve(process.env.COURSE_EXERCISES_ROOT ?? path.join(courseRoot, 'exercises'));
}

function loadExercise(slug: string): Exercise {
  const dir = path.join(exercisesRoot(), slug);
  const solutionDir = path.join(courseRoot, 'solutions', slug);
  const hiddenSpecs = listFiles(solutionDir)
    .filter((name) => name.endsWith('.hidden.spec.ts'))
    .map((name) => path.relative(courseRoot, path.join(solutionDir, name)));
  return {
    number: Number(slug.slice(0, 2)),
    slug,
    title: readTitle(path.join(courseRoot, 'exercises', slug, 'README.md')) ?? slug.slice(3).replace(/-/g, ' '),
    dir,
    solutionDir,
    spec: path.relative(courseRoot, path.join(specsDir, `${slug}.spec.ts`)),
    hiddenSpecs,
    // The course's points, even when the learner's folder is elsewhere: a copy's points.json is not the course's word.
    points: readPoints(path.join(courseRoot, 'exercises', slug, 'points.json'), true),
    hiddenPoints: readPoints(path.join(solutionDir, 'points.hidden.json'), hiddenSpecs.length > 0),
    chapter: chapterOf(slug),
  };
}

/** `{ "describe > it": 2, … }` → a Map; a file that must exist and does not is an error. */
function readPoints(file: string, required: boolean): Map<string, number> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (thrown) {
    if (!required) return new Map();
    throw new ExerciseDefinitionError(`${path.relative(courseRoot, file)} is missing.`, 'Every exercise declares the points of each of its tests there.', { cause: thrown });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (thrown) {
    throw new ExerciseDefinitionError(`${path.relative(courseRoot, file)} is not valid JSON.`, 'It maps each test\'s full name ("describe > it") to its points.', { cause: thrown });
  }
  const points = new Map<string, number>();
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name.startsWith('$')) continue; // "$comment" and the like
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
      throw new ExerciseDefinitionError(`${path.relative(courseRoot, file)}: "${name}" has ${JSON.stringify(value)} points.`, 'Points are whole numbers, 0 or more.');
    }
    points.set(name, value);
  }
  return points;
}

function readTitle(readme: string): string | undefined {
  try {
    const heading = fs.readFileSync(readme, 'utf8').split('\n').find((line) => line.startsWith('# '));
    return heading?.slice(2).replace(/^Exercise \d+\s*[—–-]\s*/, '').trim();
  } catch {
    return undefined;
  }
}

function listFiles(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Every test of an exercise, with its points: public first, then the instructor-only ones. */
export function testsOf(exercise: Exercise, { hidden }: { hidden: boolean }): Array<{ name: string; points: number; hidden: boolean }> {
  const tests = [...exercise.points].map(([name, points]) => ({ name, points, hidden: false }));
  if (hidden) tests.push(...[...exercise.hiddenPoints].map(([name, points]) => ({ name, points, hidden: true })));
  return tests;
}

/** The hints of an exercise: the sections of its hints.md headed `## Hint 1`, `## Hint 2`, … */
export function readHints(exercise: Exercise): string[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(courseRoot, 'exercises', exercise.slug, 'hints.md'), 'utf8');
  } catch {
    return [];
  }
  return parseHints(text);
}

export function parseHints(markdown: string): string[] {
  const hints: string[] = [];
  let current: string[] | undefined;
  for (const line of markdown.split('\n')) {
    if (/^##\s+Hint\s+\d+/i.test(line)) {
      if (current) hints.push(current.join('\n').trim());
      current = [];
    } else if (current) {
      current.push(line);
    }
  }
  if (current) hints.push(current.join('\n').trim());
  return hints.filter((hint) => hint.length > 0);
}

/**
 * The files of an exercise folder that are the learner's work: everything
 * but the course's own material and any test file. This is what the grader
 * copies out of a submission — and all it copies.
 */
export function isLearnerFile(name: string): boolean {
  if (['README.md', 'hints.md', 'points.json', 'points.hidden.json'].includes(name)) return false;
  if (/\.(test|spec)\.[cm]?[jt]s$/.test(name)) return false;
  return /\.(ts|mts|sql|json)$/.test(name);
}
