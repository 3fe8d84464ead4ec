/**
 * The grader's reports, written to the output folder (default `grades/`):
 *
 *   grades.csv                 student,exercise,points,max — one row per student and exercise
 *   <student>/results.json     exercism's test-runner format, version 3, plus score and max_score
 *   junit.xml                  one <testsuite> per student, for CI dashboards
 *   grades.sha256              the SHA-256 of each of them: `sha256sum -c grades.sha256` in the folder
 *
 * Written by the grader alone, after every process of every submission is
 * gone; each file is written beside its place and renamed into it, so a
 * report is whole or not there — never half of one — and the checksums are
 * written last, over what was written.
 *
 * results.json follows https://exercism.org/docs/building/tooling/test-runners/interface:
 * `status` is pass | fail | error, `message` says why a submission is an error
 * (the compiler's output, say), each test has name, status, message, output
 * (≤ 500 characters) and test_code, and `task_id` is the exercise's number.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ExerciseGrade, GradedTest, SubmissionGrade } from './grade.ts';
import { courseRoot } from './impl.ts';

/** exercism truncates a test's output to 500 characters. */
const OUTPUT_LIMIT = 500;

export function writeReports(grades: SubmissionGrade[], outDir: string): { csv: string; junit: string; results: string[]; checksums: string } {
  fs.mkdirSync(outDir, { recursive: true });
  // The folder ignores itself: reports hold students' names and must never be committed by accident.
  const ignore = path.join(outDir, '.gitignore');
  if (!fs.existsSync(ignore)) fs.writeFileSync(ignore, '# Written by npm run grade: reports hold students\' names and work.\n*\n');

  const sums: string[] = [];
  /** Write whole, then rename into place; remember its checksum. */
  const put = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const partial = `${file}.partial-${process.pid}`;
    fs.writeFileSync(partial, text);
    fs.renameSync(partial, file);
    sums.push(`${createHash('sha256').update(text).digest('hex')}  ${path.relative(outDir, file).split(path.sep).join('/')}`);
  };
  const csv = path.join(outDir, 'grades.csv');
  put(csv, toCsv(grades));
  const junit = path.join(outDir, 'junit.xml');
  put(junit, toJunit(grades));
  const results = grades.map((grade) => {
    const file = path.join(outDir, safeName(grade.student), 'results.json');
    put(file, `${JSON.stringify(toResultsJson(grade), null, 2)}\n`);
    return file;
  });
  const checksums = path.join(outDir, 'grades.sha256');
  const partial = `${checksums}.partial-${process.pid}`;
  fs.writeFileSync(partial, `${sums.join('\n')}\n`);
  fs.renameSync(partial, checksums);
  return { csv, junit, results, checksums };
}

// ─── CSV ────────────────────────────────────────────────────────────────────

export function toCsv(grades: SubmissionGrade[]): string {
  const rows = [['student', 'exercise', 'points', 'max']];
  for (const grade of grades) {
    for (const exercise of grade.exercises) rows.push([grade.student, exercise.slug, String(exercise.points), String(exercise.maxPoints)]);
  }
  return `${rows.map((row) => row.map(csvField).join(',')).join('\n')}\n`;
}

function csvField(value: string): string {
  // Quote what needs it; and defuse a leading = + - @ (spreadsheet formula injection through a student's folder name).
  const safe = /^[=+\-@]/.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

// ─── results.json (exercism, version 3) ─────────────────────────────────────

export interface ResultsJson {
  version: 3;
  status: 'pass' | 'fail' | 'error';
  message: string | null;
  score: number;
  max_score: number;
  /** How the submission was kept apart from the grader and the others (not in exercism's format; extra keys are allowed). */
  isolation: string;
  tests: Array<{
    name: string;
    status: 'pass' | 'fail' | 'error';
    message: string | null;
    output: string | null;
    test_code?: string;
    task_id: number;
    points: number;
    max_points: number;
  }>;
}

export function toResultsJson(grade: SubmissionGrade): ResultsJson {
  return {
    version: 3,
    status: grade.status,
    message: grade.message ?? null,
    score: grade.score,
    max_score: grade.maxScore,
    isolation: grade.isolation,
    tests: grade.exercises.flatMap((exercise) =>
      exercise.tests.map((test) => ({
        name: testLabel(exercise, test),
        status: test.status,
        message: test.message ?? (test.status === 'pass' ? null : exercise.message ?? null),
        output: test.output ? truncate(test.output, OUTPUT_LIMIT) : null,
        // Instructor-only tests keep their code to themselves.
        ...(test.hidden ? {} : { test_code: testCode(test) }),
        task_id: exercise.number,
        points: test.points,
        max_points: test.maxPoints,
      })),
    ),
  };
}

function testLabel(exercise: ExerciseGrade, test: GradedTest): string {
  return `${exercise.slug} > ${test.name}${test.hidden ? ' (instructor-only)' : ''}`;
}

function truncate(text: string, limit: number): string {
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/**
 * The test's source, from its declaration to the line that closes it (same
 * indentation, `});`). Only ever read from the course's own spec files.
 */
function testCode(test: GradedTest): string | undefined {
  if (!test.file || !test.line) return undefined;
  try {
    const lines = fs.readFileSync(path.join(courseRoot, test.file), 'utf8').split('\n');
    const first = lines[test.line - 1];
    if (first === undefined) return undefined;
    const indent = /^\s*/.exec(first)![0];
    const end = lines.findIndex((line, i) => i >= test.line! - 1 && line.startsWith(`${indent}})`));
    return lines.slice(test.line - 1, end === -1 ? test.line : Math.min(end + 1, test.line + 80)).join('\n');
  } catch {
    return undefined;
  }
}

// ─── JUnit XML ──────────────────────────────────────────────────────────────

export function toJunit(grades: SubmissionGrade[]): string {
  const all = grades.flatMap((g) => g.exercises.flatMap((e) => e.tests));
  const count = (tests: GradedTest[], status: string) => tests.filter((t) => t.status === status).length;
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(`<testsuites name="durable-execution-course grades" tests="${all.length}" failures="${count(all, 'fail')}" errors="${count(all, 'error')}">`);
  for (const grade of grades) {
    const tests = grade.exercises.flatMap((e) => e.tests);
    out.push(
      `  <testsuite name="${xml(grade.student)}" tests="${tests.length}" failures="${count(tests, 'fail')}" errors="${count(tests, 'error')}" time="${(grade.durationMs / 1000).toFixed(3)}">`,
    );
    out.push('    <properties>');
    for (const [name, value] of [['score', grade.score], ['max_score', grade.maxScore], ['status', grade.status]] as const) {
      out.push(`      <property name="${name}" value="${xml(String(value))}"/>`);
    }
    out.push('    </properties>');
    for (const exercise of grade.exercises) {
      for (const test of exercise.tests) {
        const open = `    <testcase classname="${xml(`${grade.student}.${exercise.slug}`)}" name="${xml(`${test.name}${test.hidden ? ' (instructor-only)' : ''} [${test.points}/${test.maxPoints}]`)}" time="${((test.durationMs ?? 0) / 1000).toFixed(3)}"`;
        if (test.status === 'pass') {
          out.push(`${open}/>`);
          continue;
        }
        const message = test.message ?? exercise.message ?? '';
        const tag = test.status === 'fail' ? 'failure' : 'error';
        out.push(`${open}>`);
        out.push(`      <${tag} message="${xml(firstLine(message))}">${xml(message)}</${tag}>`);
        if (test.output) out.push(`      <system-out>${xml(truncate(test.output, 4000))}</system-out>`);
        out.push('    </testcase>');
      }
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

function firstLine(text: string): string {
  return truncate(text.split('\n')[0] ?? '', 200);
}

/** Escape for XML text and attributes, and drop the characters XML 1.0 cannot carry at all. */
function xml(text: string): string {
  return text
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** A student's folder name, fit to be a folder name in the report. */
export function safeName(student: string): string {
  return student.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_') || '_';
}
