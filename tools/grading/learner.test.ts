/**
 * The learner's commands, run as a learner runs them — on a scratch copy of
 * exercise 1's starter (COURSE_EXERCISES_ROOT) with a scratch state folder
 * (COURSE_STATE_DIR), never on anyone's real work.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { listExercises } from './exercises.ts';
import { courseRoot } from './impl.ts';
import { pristineStarter, referenceAnswer, startersFolder } from './starters.ts';
import { buildWorkspace } from './workspace.ts';

const exercise = listExercises()[0]!;
const pristine = startersFolder([exercise]);
const workspace = buildWorkspace(pristine.dir, [exercise]);
pristine.remove(); // the workspace has its own copy
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'learner-state-'));
const env = {
  ...process.env,
  DATABASE_URL: inject('adminDatabaseUrl'),
  COURSE_EXERCISES_ROOT: workspace.implRoot,
  COURSE_STATE_DIR: stateDir,
  FORCE_COLOR: '0',
};
const mine = path.join(workspace.implRoot, exercise.slug, 'engine.ts');

afterAll(() => {
  workspace.remove();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

function npm(script: string, ...args: string[]) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', `tools/bin/${script}.ts`, ...args], { cwd: courseRoot, env, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe("the learner's commands", () => {
  it('npm run exercise 1 type-checks and tests the starter, and says what to do next', () => {
    const { status, output } = npm('exercise', '1');
    expect(status, output).toBe(1);
    expect(output).toContain('2/6 tests pass — 2/9 points');
    expect(output).toContain('Stuck? npm run hint 1 (hint 1 of 4)');
  });

  it('npm run hint 1 gives one hint at a time, and remembers how many it gave', () => {
    expect(npm('hint', '1').output).toContain('Hint 1 of 4');
    expect(npm('hint', '1').output).toContain('Hint 2 of 4');
    expect(JSON.parse(fs.readFileSync(path.join(stateDir, 'progress.json'), 'utf8')).exercises[exercise.slug].hintsShown).toBe(2);
    expect(npm('hint', '1', '--again').output.match(/Hint \d of 4/g)).toEqual(['Hint 1 of 4', 'Hint 2 of 4']);
  });

  it('npm run progress shows each exercise and the count of those that pass', () => {
    const { status, output } = npm('progress', '--cached');
    expect(status, output).toBe(0);
    expect(output).toMatch(/^1 +a step that failed for good is a result too +✗ {2}2\/6 +2\/9 +2\/4/m);
    expect(output).toMatch(/^2 .+–  not run/m);
    const all = listExercises();
    const tests = all.reduce((sum, e) => sum + e.points.size, 0); // the public tests: progress never runs the instructor-only ones
    expect(output).toContain(`0/${all.length} exercises pass · 2/${tests} tests`);
  });

  it('npm run exercise 1 -- --watch --poll runs the tests again when a file is saved', { timeout: 90_000 }, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'tools/bin/exercise.ts', '1', '--watch', '--poll'], { cwd: courseRoot, env });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await expect.poll(() => output, { timeout: 45_000, interval: 200 }).toContain('Watching exercises/01-failed-steps (polling)');
      expect(output).toContain('2/6 tests pass');
      fs.writeFileSync(mine, referenceAnswer(exercise).get('engine.ts')!); // the learner saves their answer
      await expect.poll(() => output, { timeout: 45_000, interval: 200 }).toContain('all 6 tests pass — 9/9 points');
    } finally {
      child.kill('SIGINT');
    }
    const code = await new Promise((resolve) => child.once('close', resolve));
    expect(code, output).toBe(0);
  });

  it('npm run reset-exercise 1 restores the starter and keeps the learner\'s version in a backup', () => {
    const answer = fs.readFileSync(mine, 'utf8');
    const { status, output } = npm('reset-exercise', '1');
    expect(status, output).toBe(0);
    expect(output).toContain('exercises/01-failed-steps is the starter again (engine.ts restored)');
    expect(fs.readFileSync(mine, 'utf8')).toBe(pristineStarter(exercise).get('engine.ts'));
    const backups = fs.readdirSync(path.join(stateDir, 'backups'));
    expect(backups).toHaveLength(1);
    expect(fs.readFileSync(path.join(stateDir, 'backups', backups[0]!, 'engine.ts'), 'utf8')).toBe(answer);
  });
});
