/**
 * Each test of an exercise aims at one idea: wrong variants prove it. A
 * variant (fixtures/variants/NN-name/<variant>.patch) is the reference answer
 * with one mistake the exercise is about — the waiter that looks before it
 * locks, an event kept without its key's dedupe, a wake at every event — and
 * its preamble names, on `Loses: ` lines, the tests it must fail. Graded as a
 * class is graded, each must fail exactly those and pass every other: a test
 * that a mistake does not fail is not testing that idea, and one that fails
 * for a mistake it is not about is testing too much at once.
 *
 * The cheap half (every variant derives, and names tests that exist) always
 * runs. Grading them takes a minute or two per exercise — too long for every
 * `npm test` and CI run, whose suite must stay well under ten minutes — so
 * only with COURSE_VARIANTS=1: run it when an exercise's spec or its variants
 * change (`COURSE_VARIANTS=1 npx vitest run tools/grading/variants.test.ts`).
 * By hand: `npx tsx tools/grading/derive.ts --variants 9 /tmp/v && npm run grade -- --submissions /tmp/v --exercises 9`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildVariantClass, deriveVariant, exercisesWithVariants, variantsOf } from './derive.ts';
import { findExercise } from './exercises.ts';
import { courseRoot } from './impl.ts';
import type { ResultsJson } from './reports.ts';

const slugs = exercisesWithVariants();

describe('wrong variants of the exercises', () => {
  it('every variant derives from its reference answer, says what it gets wrong, and names tests of its exercise that exist, one each', () => {
    expect(slugs.length).toBeGreaterThan(0);
    for (const slug of slugs) {
      const exercise = findExercise(slug);
      const names = [...exercise.points.keys()];
      for (const variant of variantsOf(slug)) {
        expect(deriveVariant(slug, variant.name).size, variant.file).toBeGreaterThan(0);
        expect(variant.about.split('\n')[0], variant.file).toMatch(/a wrong variant/);
        expect(variant.loses.length, `${variant.file}: no Loses: line`).toBeGreaterThan(0);
        for (const part of variant.loses) {
          expect(names.filter((name) => name.includes(part)), `${variant.file}: "Loses: ${part}" must name exactly one test`).toHaveLength(1);
        }
      }
    }
  });

  it.runIf(process.env.COURSE_VARIANTS)(
    'graded, each variant fails exactly the tests it names and passes every other',
    { timeout: 600_000 },
    () => {
      for (const slug of slugs) {
        const exercise = findExercise(slug);
        const classDir = fs.mkdtempSync(path.join(os.tmpdir(), `variants-${slug}-`));
        const out = fs.mkdtempSync(path.join(os.tmpdir(), `variants-${slug}-grades-`));
        try {
          const names = buildVariantClass(slug, classDir);
          const { DATABASE_URL: _url, COURSE_DB: _db, ...env } = process.env;
          const run = spawnSync(
            process.execPath,
            ['--import', 'tsx', 'tools/bin/grade.ts', '--submissions', classDir, '--exercises', String(exercise.number), '--out', out, '--submission-timeout', '240'],
            // Not the test run's server: the grader makes its own cluster, as it does for an instructor.
            { cwd: courseRoot, env: { ...env, FORCE_COLOR: '0' }, encoding: 'utf8', timeout: 580_000 },
          );
          expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
          for (const variant of variantsOf(slug)) {
            expect(names).toContain(variant.name);
            const results = JSON.parse(fs.readFileSync(path.join(out, variant.name, 'results.json'), 'utf8')) as ResultsJson;
            const named = (test: { name: string }) => variant.loses.some((part) => test.name.includes(part));
            const wrong = results.tests
              .filter((test) => (test.status === 'pass') === named(test))
              .map((test) => `${test.status === 'pass' ? 'passes' : `fails (${(test.message ?? '').slice(0, 300)})`}: ${test.name}`);
            expect(wrong, `${variant.file}: each test it names must fail, every other pass`).toEqual([]);
          }
        } finally {
          fs.rmSync(classDir, { recursive: true, force: true });
          fs.rmSync(out, { recursive: true, force: true });
        }
      }
    },
  );
});
