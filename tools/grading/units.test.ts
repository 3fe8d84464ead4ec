/**
 * The grader's small parts, in process and fast: hints, the learner's files,
 * submission layouts, the reports' escaping, the file watcher, and reset.
 * (The whole grader on a class of made-up students is grader.test.ts; the
 * proof that the exercises' tests mean something is check.test.ts.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isLearnerFile, listExercises, parseHints, readHints, type Exercise } from './exercises.ts';
import type { SubmissionGrade } from './grade.ts';
import { toCsv, toJunit, toResultsJson } from './reports.ts';
import { chapterFile } from './derive.ts';
import { applyFilePatch, diffFiles, formatPatch, parsePatch, PatchError } from './patch.ts';
import { changedFromStarter, pristineStarter, restoreStarter } from './starters.ts';
import { watchFolder } from './watch.ts';
import { findExercisesFolder } from './workspace.ts';

const temps: string[] = [];
const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grading-units-'));
  temps.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  delete process.env.COURSE_STATE_DIR;
});

describe('exercises and hints', () => {
  it('every exercise has a title, at least one hint, points for its tests and a pristine starter', () => {
    const exercises = listExercises();
    // Unique and in order; not 1…N: an exercise takes its chapter's number (exercise 8 extends chapter 8, chapter 7 has none).
    const numbers = exercises.map((e) => e.number);
    expect(numbers).toEqual([...new Set(numbers)].sort((a, b) => a - b));
    for (const exercise of exercises) {
      expect(exercise.title, exercise.slug).not.toBe(exercise.slug.slice(3).replace(/-/g, ' '));
      expect(readHints(exercise).length, exercise.slug).toBeGreaterThan(0);
      expect(exercise.points.size, exercise.slug).toBeGreaterThan(0);
      expect(pristineStarter(exercise).size, exercise.slug).toBeGreaterThan(0);
    }
  });

  it('hints are the sections headed "## Hint N", in order, and nothing before the first', () => {
    expect(parseHints('# Hints\nintro\n\n## Hint 1\n\nfirst\n\n## Hint 2\nsecond\n  more\n')).toEqual(['first', 'second\n  more']);
    expect(parseHints('no hints here')).toEqual([]);
  });

  it("a learner's files are code, never tests or the course's own material", () => {
    expect(['engine.ts', 'queries.ts', 'schema.sql', 'helpers.mts'].filter(isLearnerFile)).toHaveLength(4);
    expect(['README.md', 'hints.md', 'points.json', 'engine.test.ts', 'x.spec.ts', 'x.hidden.spec.ts', 'notes.txt'].filter(isLearnerFile)).toEqual([]);
  });

  it('a submission is a whole clone (exercises/ inside) or a copy of exercises/ alone, and anything else has no exercises', () => {
    const clone = tempDir();
    fs.mkdirSync(path.join(clone, 'exercises', '01-failed-steps'), { recursive: true });
    const copy = tempDir();
    fs.mkdirSync(path.join(copy, '01-failed-steps'));
    const empty = tempDir();
    fs.writeFileSync(path.join(empty, 'notes.txt'), 'hello');
    expect(findExercisesFolder(clone)).toBe(path.join(clone, 'exercises'));
    expect(findExercisesFolder(copy)).toBe(copy);
    expect(findExercisesFolder(empty)).toBeUndefined();
  });
});

describe('the reports', () => {
  const grade: SubmissionGrade = {
    student: '=cmd|"evil",x',
    status: 'fail',
    score: 2,
    maxScore: 3,
    durationMs: 1234,
    isolation: 'none: a test',
    exercises: [
      {
        number: 1,
        slug: '01-failed-steps',
        title: 'x',
        status: 'fail',
        points: 2,
        maxPoints: 3,
        tests: [
          { name: 'a > passes', hidden: false, status: 'pass', points: 2, maxPoints: 2 },
          { name: 'a > fails <here> & "there"', hidden: true, status: 'fail', message: 'expected \u0001 1 to be 2', output: 'y'.repeat(2000), points: 0, maxPoints: 1 },
        ],
      },
    ],
  };

  it('the CSV quotes what needs quoting and defuses a formula in a student name', () => {
    expect(toCsv([grade])).toBe('student,exercise,points,max\n"\'=cmd|""evil"",x",01-failed-steps,2,3\n');
  });

  it('results.json is exercism version 3, with score, max_score, task ids, output cut at 500 characters and no code for an instructor-only test', () => {
    const results = toResultsJson(grade);
    expect(results).toMatchObject({ version: 3, status: 'fail', message: null, score: 2, max_score: 3 });
    expect(results.tests.map((t) => [t.name, t.status, t.task_id, t.points])).toEqual([
      ['01-failed-steps > a > passes', 'pass', 1, 2],
      ['01-failed-steps > a > fails <here> & "there" (instructor-only)', 'fail', 1, 0],
    ]);
    expect(results.tests[1]!.output).toHaveLength(500);
    expect(results.tests[1]).not.toHaveProperty('test_code');
  });

  it('JUnit XML escapes markup and drops the characters XML cannot carry', () => {
    const xml = toJunit([grade]);
    expect(xml).toContain('<testsuite name="=cmd|&quot;evil&quot;,x" tests="2" failures="1" errors="0"');
    expect(xml).toContain('name="a &gt; fails &lt;here&gt; &amp; &quot;there&quot; (instructor-only) [0/1]"');
    expect(xml).toContain('<failure message="expected  1 to be 2">');
    expect(xml).not.toContain('\u0001');
    expect(xml).toContain('<property name="score" value="2"/>');
  });
});

describe('watching an exercise folder', () => {
  for (const poll of [false, true]) {
    it(`a save is noticed ${poll ? 'by polling alone, where file events never arrive' : 'through file events'}, and once`, async () => {
      const dir = tempDir();
      fs.writeFileSync(path.join(dir, 'engine.ts'), 'one');
      let changes = 0;
      const watch = watchFolder(dir, () => changes++, { poll, intervalMs: 100, debounceMs: 50 });
      try {
        expect(watch.mode).toBe(poll ? 'polling' : 'events+polling');
        await new Promise((resolve) => setTimeout(resolve, 150));
        fs.writeFileSync(path.join(dir, 'engine.ts'), 'two, longer');
        fs.writeFileSync(path.join(dir, 'README.md'), 'not the learner\'s: ignored');
        await expect.poll(() => changes, { timeout: 3000 }).toBe(1);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(changes).toBe(1);
      } finally {
        watch.close();
      }
    });
  }
});

describe('reset', () => {
  it('puts the pristine starter back, and keeps the learner\'s version (and any file they added) in a backup', () => {
    const real = listExercises()[0]!;
    const dir = path.join(tempDir(), real.slug);
    fs.mkdirSync(dir);
    process.env.COURSE_STATE_DIR = tempDir();
    const exercise: Exercise = { ...real, dir };
    for (const [name, text] of pristineStarter(exercise)) fs.writeFileSync(path.join(dir, name), text);
    expect(changedFromStarter(exercise)).toEqual([]);

    fs.writeFileSync(path.join(dir, 'engine.ts'), '// my work');
    fs.writeFileSync(path.join(dir, 'helper.ts'), '// mine too');
    expect(changedFromStarter(exercise)).toEqual(['engine.ts', 'helper.ts']);
    const { restored, backup } = restoreStarter(exercise);
    expect(restored).toEqual(['engine.ts']);
    expect(changedFromStarter(exercise)).toEqual([]);
    expect(fs.readFileSync(path.join(backup!, 'engine.ts'), 'utf8')).toBe('// my work');
    expect(fs.readFileSync(path.join(backup!, 'helper.ts'), 'utf8')).toBe('// mine too');
    expect(restoreStarter(exercise).backup).toBeUndefined(); // already the starter: nothing to back up
  });
});

describe('patches (the starters, answers and fixtures are derived with them)', () => {
  const a = 'one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n';
  const b = 'one\ntwo\nTHREE\nfour\nfive\nsix\nseven\neight\nnine\nten\neleven';

  it('a patch made from two texts, written and read back, makes the second from the first', () => {
    const made = diffFiles('chapters/x/a.ts', 'exercises/01-x/a.ts', a, b);
    const text = formatPatch({ preamble: 'What this is.\n\n', files: [made] });
    expect(text).toContain('\\ No newline at end of file');
    const read = parsePatch(text, 'test.patch');
    expect(read.preamble).toBe('What this is.\n\n');
    expect(applyFilePatch(a, read.files[0]!, 'test.patch')).toBe(b);
    expect(applyFilePatch('', diffFiles('/dev/null', 'new.ts', '', b), 'new')).toBe(b); // a new file
  });

  it('a removed SQL comment ("--- …" in the patch) is a line of its hunk, and a file with no hunks is the file unchanged', () => {
    const sql = '-- a comment\nCREATE TABLE t ();\n';
    const text = formatPatch({ preamble: '', files: [diffFiles('s.sql', 's.sql', sql, 'CREATE TABLE t ();\n'), diffFiles('a', 'b', a, a)] });
    const read = parsePatch(text, 'sql.patch');
    expect(read.files).toHaveLength(2);
    expect(applyFilePatch(sql, read.files[0]!, 'sql.patch')).toBe('CREATE TABLE t ();\n');
    expect(applyFilePatch(a, read.files[1]!, 'sql.patch')).toBe(a);
  });

  it('a hunk is found where the file moved it, but never over a line that differs: that is a clear error', () => {
    const made = diffFiles('a', 'b', a, b);
    expect(applyFilePatch(`zero\n${a}`, made, 'p')).toBe(`zero\n${b}`);
    expect(() => applyFilePatch(`zero\n${a}`, made, 'p', { exact: true })).toThrow(PatchError);
    expect(() => applyFilePatch(a.replace('four', 'FOUR'), made, 'p')).toThrow(/no longer matches it\. Line 4 is "FOUR"; the patch expects "four"/);
  });

  it("a chapter's file in an exercise folder imports the chapter's other files from the chapter, and the exercise's own from beside it", () => {
    const text = chapterFile('06-leasing-workers', 'worker.ts', new Set(['worker.ts', 'queries.ts']))!;
    expect(text).toContain("import type { EngineCore } from '../../chapters/06-leasing-workers/engine.ts';");
    expect(text).toContain("from './queries.ts';");
    expect(chapterFile('03-postgres-log', 'queries.ts', new Set(['queries.ts']))).toContain("new URL('../../chapters/03-postgres-log/schema.sql', import.meta.url)");
  });
});
