/**
 * `npm run diff 2 3` — what chapter 3 adds to chapter 2, file by file.
 * Chapters are snapshots, so this diff *is* the lesson's code.
 *
 * The code comes first and, unless asked for, alone: the engine (`engine.ts`),
 * then the other source (`*.ts` that are not tests, `*.sql`), the process
 * (`main.ts`) and the demo last. The tests (`*.test.ts`, `fixtures/`) and the
 * text (README.md) follow only with a flag, each under a heading of its own:
 *
 *   npm run diff 3 4                  the code
 *   npm run diff 3 4 -- --tests       the tests only (likewise --text; --code --tests both)
 *   npm run diff 3 4 -- --all         the code, then the tests, then the text
 *   npm run diff 3 4 -- --stat        a summary of the same, section by section
 *
 * git does the diffing (`git diff --no-index --find-renames`, coloured on a
 * terminal); every other option is passed on to it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CourseError, runMain } from '../../shared/errors.ts';
import { projectRoot } from '../../shared/db/server.ts';
import { paint } from '../../shared/narrate.ts';
import { findChapter, type Chapter } from '../../shared/scenarios.ts';

const SECTIONS = [
  { flag: '--code', title: 'the code', kind: 'code' },
  { flag: '--tests', title: 'the tests', kind: 'tests' },
  { flag: '--text', title: 'the text', kind: 'text' },
] as const;
type Kind = (typeof SECTIONS)[number]['kind'];

const USAGE = 'npm run diff 2 3   (the code; add -- --tests, -- --text or -- --all for the rest, -- --stat for a summary)';

/** One changed file: its path inside each chapter (undefined where it does not exist). */
interface Change {
  from?: string;
  to?: string;
}

runMain(async () => {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`usage: ${USAGE}\n`);
    return;
  }
  const chapters = args.filter((arg) => !arg.startsWith('-'));
  const [from, to] = chapters;
  if (from === undefined || to === undefined || chapters.length > 2) throw new CourseError('which two chapters?', USAGE);
  const flags = new Set(args.filter((arg) => SECTIONS.some((s) => s.flag === arg) || arg === '--all'));
  const gitOptions = args.filter((arg) => arg.startsWith('-') && !flags.has(arg));
  const shown = new Set<Kind>(
    flags.has('--all') ? SECTIONS.map((s) => s.kind) : flags.size > 0 ? SECTIONS.filter((s) => flags.has(s.flag)).map((s) => s.kind) : ['code'],
  );

  const a = findChapter(from);
  const b = findChapter(to);
  const changes = changedFiles(a, b);
  const sections = SECTIONS.map((section) => ({ ...section, changes: changes.filter((c) => kindOf(c) === section.kind).sort(byReadingOrder) }));

  const out: string[] = [`${paint.bold(`From chapter ${a.number} (${a.slug}) to chapter ${b.number} (${b.slug}):`)}\n`];
  for (const section of sections) {
    const where = shown.has(section.kind) ? 'below' : `npm run diff ${from} ${to} -- ${section.flag}`;
    const files = section.changes.length === 0 ? 'no changes' : `${count(section.changes.length)}: ${section.changes.map(describe).join(', ')}`;
    out.push(`  ${section.title.padEnd(10)} ${files}${section.changes.length > 0 ? paint.dim(`   (${where})`) : ''}\n`);
  }
  for (const section of sections.filter((s) => shown.has(s.kind))) {
    out.push(`\n${paint.bold(`━━ ${section.title} (${count(section.changes.length)}) ${'━'.repeat(40)}`)}\n`);
    out.push(section.changes.length === 0 ? 'no changes\n' : gitDiff(a, b, section.changes, gitOptions));
  }
  const hidden = sections.filter((s) => !shown.has(s.kind) && s.changes.length > 0);
  if (hidden.length > 0) {
    const flagsHint = hidden.map((s) => `-- ${s.flag}`).join(', ');
    out.push(paint.dim(`\nnot shown: ${hidden.map((s) => `${s.title} (${count(s.changes.length)})`).join(', ')} — npm run diff ${from} ${to} ${flagsHint} or -- --all\n`));
  }
  page(out.join(''));
});

function count(n: number): string {
  return `${n} file${n === 1 ? '' : 's'}`;
}

/** A changed file as the header lists it: its name in the later chapter, and what happened to it. */
function describe(change: Change): string {
  if (change.from === undefined) return `${change.to} (new)`;
  if (change.to === undefined) return `${change.from} (deleted)`;
  return change.from === change.to ? change.to : `${change.to} (was ${change.from})`;
}

function kindOf(change: Change): Kind {
  const file = (change.to ?? change.from)!;
  if (/\.test\.[cm]?[jt]s$/.test(file) || /(^|\/)fixtures\//.test(file)) return 'tests';
  if (/\.([cm]?[jt]sx?|sql)$/.test(file)) return 'code';
  return 'text';
}

/** The engine first, the process and the demo last; README first among the text. */
function byReadingOrder(x: Change, y: Change): number {
  const rank = (change: Change) => {
    const name = path.basename((change.to ?? change.from)!);
    return ['engine.ts', 'README.md'].includes(name) ? 0 : name === 'main.ts' ? 2 : name === 'demo.ts' ? 3 : 1;
  };
  const nameOf = (change: Change) => (change.to ?? change.from)!;
  return rank(x) - rank(y) || nameOf(x).localeCompare(nameOf(y));
}

/** Run git; it exits 1 when the two sides differ, which is the normal case here. */
function git(args: string[], cwd: string): string {
  // The output is captured, so tell git the terminal's width (its --stat fits it).
  const env = process.stdout.columns ? { ...process.env, COLUMNS: String(process.stdout.columns) } : process.env;
  const result = spawnSync('git', args, { cwd, env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (result.error) {
    throw new CourseError(`could not run git: ${result.error.message}`, 'Compare the two chapter folders with any diff tool: diff -ru A B');
  }
  if (result.status !== 0 && result.status !== 1) {
    throw new CourseError(`git diff failed: ${result.stderr.trim().split('\n')[0] ?? ''}`, USAGE);
  }
  return result.stdout;
}

/** Which files differ between the two chapters, with renames paired up. */
function changedFiles(a: Chapter, b: Chapter): Change[] {
  const aDir = path.relative(projectRoot, a.dir);
  const bDir = path.relative(projectRoot, b.dir);
  const fields = git(['diff', '--no-index', '--find-renames', '--name-status', '-z', aDir, bDir], projectRoot).split('\0');
  const inside = (dir: string, file: string) => path.relative(dir, file).split(path.sep).join('/');
  const changes: Change[] = [];
  for (let i = 0; i < fields.length - 1; ) {
    const status = fields[i++]!;
    if (status.startsWith('R') || status.startsWith('C')) {
      changes.push({ from: inside(aDir, fields[i++]!), to: inside(bDir, fields[i++]!) });
    } else {
      const file = fields[i++]!;
      const underA = !path.relative(aDir, file).startsWith('..');
      const rel = inside(underA ? aDir : bDir, file);
      changes.push({ from: status === 'A' ? undefined : rel, to: status === 'D' ? undefined : rel });
    }
  }
  return changes;
}

/**
 * git's diff of just these files: copies of them, under the chapters' own
 * paths, in a scratch folder, so the output reads exactly as a diff of the two
 * chapter folders would — in reading order.
 */
function gitDiff(a: Chapter, b: Chapter, changes: Change[], options: string[]): string {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'course-diff-'));
  try {
    const aDir = path.relative(projectRoot, a.dir);
    const bDir = path.relative(projectRoot, b.dir);
    const copy = (chapter: Chapter, dir: string, file: string) => {
      const target = path.join(scratch, dir, file);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.copyFileSync(path.join(chapter.dir, file), target);
      fs.chmodSync(target, fs.statSync(path.join(chapter.dir, file)).mode);
    };
    for (const dir of [aDir, bDir]) fs.mkdirSync(path.join(scratch, dir), { recursive: true });
    for (const change of changes) {
      if (change.from !== undefined) copy(a, aDir, change.from);
      if (change.to !== undefined) copy(b, bDir, change.to);
    }
    const order = path.join(scratch, 'order');
    fs.writeFileSync(order, changes.flatMap((c) => [c.from && `${aDir}/${c.from}`, c.to && `${bDir}/${c.to}`].filter(Boolean)).join('\n') + '\n');
    const colour = paint.bold('x') !== 'x' && !options.some((o) => /^--(no-)?colou?r/.test(o)) ? ['--color=always'] : [];
    return git(['diff', '--no-index', '--find-renames', `-O${order}`, ...colour, ...options, aDir, bDir], scratch);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** Show `text` through git's pager on a terminal (as `git diff` itself would), else print it. */
function page(text: string): void {
  const pager = process.stdout.isTTY ? spawnSync('git', ['var', 'GIT_PAGER'], { encoding: 'utf8' }).stdout?.trim() : '';
  if (pager && pager !== 'cat') {
    const result = spawnSync(pager, { shell: true, input: text, stdio: ['pipe', 'inherit', 'inherit'], env: { LESS: 'FRX', LV: '-c', ...process.env } });
    if (!result.error && result.status !== 127) return;
  }
  process.stdout.write(text);
}
