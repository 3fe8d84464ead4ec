/**
 * The grader, run the way an instructor runs it (`npm run grade -- --submissions …`),
 * on a class of made-up students (fixtures/.class, described in
 * fixtures/README.md, built into a temp folder: their code is derived from
 * the reference answers and the starters): the right score and the right
 * message for each, and the three reports on disk. Short time limits keep it quick.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureClass } from './derive.ts';
import { courseRoot } from './impl.ts';
import { detectIsolation, processesOf } from './isolation.ts';
import type { ResultsJson } from './reports.ts';

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'grader-test-'));
const classDir = fs.mkdtempSync(path.join(os.tmpdir(), 'grader-class-'));
let run: { status: number | null; stdout: string; stderr: string; ms: number };
const results = (student: string) => JSON.parse(fs.readFileSync(path.join(out, student, 'results.json'), 'utf8')) as ResultsJson;
const test = (student: string, exercise: string, name: string) => {
  const found = results(student).tests.find((t) => t.name.startsWith(`${exercise} > `) && t.name.includes(name));
  if (!found) throw new Error(`${student} has no test "${name}" in ${exercise}`);
  return found;
};

beforeAll(() => {
  buildFixtureClass(classDir);
  const started = Date.now();
  const result = spawnSync(
    process.execPath,
    [
      '--import', 'tsx', 'tools/bin/grade.ts',
      '--submissions', classDir,
      // The made-up class did exercises 1–3 (fixtures/README.md); later exercises would only add "missing" columns.
      '--exercises', '1,2,3',
      '--out', out,
      '--repeats', '2',
      '--test-timeout', '3',
      '--crash-test-timeout', '40',
      '--submission-timeout', '120',
    ],
    // Not the test run's server: the grader makes its own cluster (password logins only), as it does for an instructor.
    { cwd: courseRoot, env: { ...withoutServer(process.env), FORCE_COLOR: '0' }, encoding: 'utf8', timeout: 170_000 },
  );
  run = { status: result.status, stdout: result.stdout, stderr: result.stderr, ms: Date.now() - started };
}, 180_000);

/** The environment without a server of ours: DATABASE_URL and COURSE_DB out. */
function withoutServer(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { DATABASE_URL: _url, COURSE_DB: _db, ...rest } = env;
  return rest;
}

afterAll(() => {
  fs.rmSync(out, { recursive: true, force: true });
  fs.rmSync(classDir, { recursive: true, force: true });
});

describe('npm run grade on a class', () => {
  it('prints one row per student with the expected scores, and writes grades.csv, junit.xml and a results.json each', () => {
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    const rows = run.stdout.split('\n');
    const row = (student: string) => rows.find((line) => line.startsWith(`${student} `))?.replace(/\s+/g, ' ').trim();
    expect(row('ada')).toBe('ada 9/9 14/14 11/11 34/34 pass');
    expect(row('brook')).toBe('brook 7/9 — missing — missing 7/34 fail');
    expect(row('cyrus')).toBe('cyrus 7/9 — missing — missing 7/34 fail');
    expect(row('dana')).toBe('dana 6/9 — missing — missing 6/34 fail');
    expect(row('emil')).toBe('emil 0/9 error — missing — missing 0/34 error');
    expect(row('fay')).toBe('fay 2/9 — missing — missing 2/34 fail');
    expect(row('gus')).toBe('gus 9/9 — missing — missing 9/34 fail');
    expect(row('hal')).toBe('hal — missing — missing 8/11 8/34 fail');
    expect(row('jade')).toBe('jade 2/9 — missing — missing 2/34 fail');
    expect(row('kai')).toBe('kai 2/9 — missing — missing 2/34 fail');
    expect(row('lena')).toBe('lena 2/9 — missing — missing 2/34 fail');

    const csv = fs.readFileSync(path.join(out, 'grades.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('student,exercise,points,max');
    expect(csv).toContain('ada,02-jsonl-log,14,14');
    expect(csv).toContain('hal,03-inspect,8,11');
    expect(csv).toHaveLength(1 + 13 * 3);

    const junit = fs.readFileSync(path.join(out, 'junit.xml'), 'utf8');
    expect(junit.match(/<testsuite /g)).toHaveLength(13);
    expect(junit).toContain('<testsuite name="ada" tests="21" failures="0" errors="0"');
    expect(fs.readFileSync(path.join(out, '.gitignore'), 'utf8')).toContain('*');
    expect(run.ms).toBeLessThan(120_000);
  });

  it("a correct submission earns every point, the instructor-only test's too", () => {
    expect(results('ada')).toMatchObject({ version: 3, status: 'pass', message: null, score: 34, max_score: 34 });
    expect(test('ada', '03-inspect', '(instructor-only)')).toMatchObject({ status: 'pass', points: 1 });
    expect(test('ada', '01-failed-steps', 'is recorded').test_code).toContain("it('is recorded: when the workflow is retried");
  });

  it("a student's own copy of the tests and of points.json is never used", () => {
    // brook's spec copy passes everything and her points.json says 100 a test: neither counts.
    expect(results('brook')).toMatchObject({ score: 7, max_score: 34 });
    expect(test('brook', '01-failed-steps', 'ends the workflow at once')).toMatchObject({ status: 'fail', points: 0, max_points: 2 });
    expect(test('brook', '02-jsonl-log', 'replays every finished step')).toMatchObject({ status: 'error', message: 'Not submitted.' });
  });

  it('a test that loops forever is stopped at its time limit, and the tests after it still run', () => {
    expect(test('cyrus', '01-failed-steps', 'ends the workflow at once')).toMatchObject({ status: 'error', points: 0 });
    expect(test('cyrus', '01-failed-steps', 'ends the workflow at once').message).toMatch(/^Stopped: this test held its process past its time limit \(3 s\)/);
    expect(test('cyrus', '01-failed-steps', 'a step that finished replays')).toMatchObject({ status: 'pass', points: 1 });
  });

  it('code that calls process.exit, or kills its own process, fails that one test', () => {
    expect(test('dana', '01-failed-steps', 'ends the workflow at once').message).toContain('process.exit unexpectedly called');
    expect(test('dana', '01-failed-steps', 'rebuilt from the recorded message')).toMatchObject({ status: 'error', points: 0 });
    expect(test('dana', '01-failed-steps', 'rebuilt from the recorded message').message).toMatch(/^The test process died while running this test/);
    expect(test('dana', '01-failed-steps', 'an ordinary error is not recorded')).toMatchObject({ status: 'pass' });
  });

  it("a submission that does not compile is an error, with the compiler's message, and scores nothing", () => {
    const emil = results('emil');
    expect(emil).toMatchObject({ status: 'error', score: 0 });
    expect(emil.message).toContain('01-failed-steps: Does not compile (tsc, strict)');
    expect(emil.message).toMatch(/01-failed-steps\/engine\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
    expect(emil.tests.every((t) => t.status === 'error' && t.points === 0)).toBe(true);
  });

  it("a submission that goes looking for another student's files finds none of them", () => {
    // fay's engine re-exports ada's answer if it can reach it; she scores what the starter scores.
    expect(results('fay')).toMatchObject({ status: 'fail', score: 2 });
  });

  it('a submission that prints megabytes is graded all the same, its output cut to 500 characters', () => {
    expect(results('gus')).toMatchObject({ score: 9 });
    const output = test('gus', '01-failed-steps', 'is recorded').output ?? '';
    expect(output.length).toBeGreaterThan(0);
    expect(output.length).toBeLessThanOrEqual(500);
  });

  // What this machine allows the grader (isolation.ts): a user per submission needs root and a course
  // other users can read; namespaces need a kernel and container that allow them. Tests of a level the
  // machine does not offer are skipped, and say so in their names' reason.
  const level = detectIsolation();
  const ownUsers = level.kind === 'user';
  const namespaces = level.kind === 'user' && level.namespaces;

  it('the report says how the submissions were isolated', () => {
    expect(results('ada').isolation.startsWith(level.summary.split(':')[0]!)).toBe(true);
    expect(run.stdout).toContain(`Isolation: ${level.summary.split(':')[0]}:`);
  });

  it.skipIf(!ownUsers)('graded as root, each submission runs as a user of its own, and the report says so', () => {
    expect(results('ada').isolation).toMatch(/^user( and namespaces)?: each submission runs as a user of its own/);
    expect(run.stdout).toMatch(/Isolation: user( and namespaces)?: /);
  });

  it.skipIf(!ownUsers)('a submission that writes "passed" into every channel it can reach, then kills its process, earns no more than its honest code', () => {
    // ivan's code is the starter (2/9) plus the forgery: the results file is out of his user's reach, and what
    // he wrote to the progress channel is not a verdict — each test he forged is run again, and dies again.
    expect(results('ivan').score).toBeLessThanOrEqual(2);
    expect(results('ivan').tests.filter((t) => t.status === 'pass').length).toBeLessThanOrEqual(2);
    expect(run.stdout).toMatch(/ivan 01-failed-steps: the test process wrote \d+ line\(s\) to its progress channel that are not the grader's/);
  });

  it('…and where the code runs as the grader\'s own user, in its view of the machine (--no-isolation), the forgery earns full marks, and so does taking the answer through node_modules/..: the failures this fixes', () => {
    const alone = fs.mkdtempSync(path.join(os.tmpdir(), 'grader-test-unisolated-'));
    try {
      const result = spawnSync(
        process.execPath,
        ['--import', 'tsx', 'tools/bin/grade.ts', '--submissions', classDir, '--students', 'ivan,mia', '--exercises', '1', '--out', alone, '--test-timeout', '3', '--no-isolation'],
        { cwd: courseRoot, env: { ...withoutServer(process.env), FORCE_COLOR: '0' }, encoding: 'utf8', timeout: 120_000 },
      );
      expect(result.stdout).toContain('Isolation: none: turned off (--no-isolation)');
      const forged = JSON.parse(fs.readFileSync(path.join(alone, 'ivan', 'results.json'), 'utf8')) as ResultsJson;
      expect(forged.score).toBeGreaterThan(2); // his honest code earns 2 (the starter's)
      const stolen = JSON.parse(fs.readFileSync(path.join(alone, 'mia', 'results.json'), 'utf8')) as ResultsJson;
      expect(stolen.score).toBe(9); // the reference answer's
    } finally {
      fs.rmSync(alone, { recursive: true, force: true });
    }
  }, 120_000);

  it('junk in the grader\'s channels is that submission\'s problem: the grader goes on, and the honest score stands', () => {
    expect(results('jade')).toMatchObject({ score: 2 });
    expect(run.stdout).toMatch(/jade 01-failed-steps: the test process wrote \d+ line\(s\) to its progress channel that are not the grader's \(the first: "this is not JSON"\)/);
  });

  it('a detached child outlives nothing: no process of the class is left, and the reports are the grader\'s, as their checksums say', () => {
    // kai's child would write this file every 200 ms for 30 s; it is gone, and has been since his grading ended.
    expect(spawnSync('pgrep', ['-f', 'kai-outlived-grading'], { encoding: 'utf8' }).stdout.trim()).toBe('');
    const note = '/tmp/kai-outlived-grading';
    if (fs.existsSync(note)) expect(Date.now() - Number(fs.readFileSync(note, 'utf8'))).toBeGreaterThan(1000);
    expect(fs.readFileSync(path.join(out, 'grades.csv'), 'utf8')).toContain('kai,01-failed-steps,2,9');
    // The three reports agree: each student's CSV rows add up to their results.json score and their JUnit suite's count.
    const csvRows = fs.readFileSync(path.join(out, 'grades.csv'), 'utf8').trim().split('\n').slice(1).map((line) => line.split(','));
    const junit = fs.readFileSync(path.join(out, 'junit.xml'), 'utf8');
    for (const student of new Set(csvRows.map((row) => row[0]!))) {
      const points = csvRows.filter((row) => row[0] === student).reduce((sum, row) => sum + Number(row[2]), 0);
      expect(results(student).score, student).toBe(points);
      expect(junit, student).toContain(`<testsuite name="${student}" tests="${results(student).tests.length}"`);
    }
    // The grader's own cluster is gone with the run.
    const clusters = fs.existsSync(path.join(courseRoot, '.course-data', 'pg')) ? fs.readdirSync(path.join(courseRoot, '.course-data', 'pg')) : [];
    expect(clusters.filter((name) => /^grade-\d+$/.test(name))).toEqual([]);
    // Every report is what grades.sha256 says it is.
    const sums = fs.readFileSync(path.join(out, 'grades.sha256'), 'utf8').trim().split('\n');
    expect(sums).toHaveLength(2 + 13);
    for (const line of sums) {
      const [sum, file] = line.split('  ');
      expect(createHash('sha256').update(fs.readFileSync(path.join(out, file!))).digest('hex'), file).toBe(sum);
    }
  });

  it('a submission connects as a role of its own: dropping classmates\' databases, making a superuser and a read-only server all fail, and nobody else loses a point', () => {
    // lena tried all of it while others were graded beside her (two at a time): the rows above are unchanged, hers is the starter's.
    expect(results('lena')).toMatchObject({ score: 2 });
    expect(results('lena').isolation).toMatch(/Database: a role of its own per submission, on a cluster made for this run/);
    expect(run.stdout).not.toMatch(/could not test this submission/);
  });

  it.skipIf(!ownUsers)('no process of any submission user outlives the run', () => {
    const students = fs.readdirSync(out).filter((name) => fs.existsSync(path.join(out, name, 'results.json')));
    const uids = students.map((student) => Number(/\(this one: uid (\d+)\)/.exec(results(student).isolation)?.[1]));
    expect(uids.every((uid) => Number.isInteger(uid) && uid > 0), `${students.join(', ')}: each ran as a user of its own`).toBe(true);
    expect(new Set(uids).size).toBe(students.length);
    expect(uids.flatMap((uid) => processesOf(uid))).toEqual([]);
  });

  it.skipIf(!namespaces)('a submission that goes for the reference answers through node_modules/.., or for a classmate through the grader\'s command line in /proc, finds neither', () => {
    expect(results('mia')).toMatchObject({ score: 2 }); // the starter's
    expect(run.stdout).toMatch(/^mia\s+2\/9\s/m);
    expect(results('mia').isolation).toMatch(/^user and namespaces: .*not solutions\/, not the class/);
  });

  it('a crash test that passes once and then fails earns nothing under --repeats 2', () => {
    expect(test('hal', '03-inspect', 'a new process inspects a workflow killed half-way')).toMatchObject({ status: 'fail', points: 0, max_points: 3 });
    expect(test('hal', '03-inspect', "inspect(id) shows the workflow's name")).toMatchObject({ status: 'pass' });
  });
});
