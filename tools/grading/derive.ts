/**
 * One source for each file: an exercise's starter, its reference answer and
 * the grader's made-up students are derived — by applying patches — from the
 * chapter the exercise extends, never kept as copies of it.
 *
 *   chapters/NN-name/<file>                        the chapter: the one copy of its code
 *   + tools/grading/starters/NN-name.patch        the starter's changes to it (TODOs, cuts, new files)
 *   = the pristine starter                        what `npm run reset-exercise N` restores,
 *                                                 and what exercises/NN-name/ holds as shipped
 *   + solutions/NN-name/solution.patch            the answer's changes to the starter
 *   = the reference answer                        graded by `npm run grade -- --solutions`
 *                                                 (no solution.patch: the answer is the
 *                                                 chapter's own files — exercise 6)
 *
 * The exercise folder holds only the files the exercise changes or adds; the
 * rest of the chapter is imported from `chapters/NN-name/` (impl.ts lays the
 * exercise's files over the chapter when it is tested). So a chapter file in
 * the exercise folder has its imports of the chapter's other files pointed
 * into the chapter before the patch applies (`chapterFile`): that is part of
 * the derivation, not of the patch. Patches name files by
 * their place in the course: `chapters/…` is the file on disk, `exercises/NN-name/…`
 * the pristine starter (never the learner's edited copy), `solutions/NN-name/…`
 * the derived answer. Everything here is plain TypeScript (patch.ts): a copy of
 * the course without git (a zip download) derives the same files.
 *
 * As a command, for course authors:
 *
 *   npx tsx tools/grading/derive.ts                  check: exercises/ is chapters + starter patches,
 *                                                    every answer and fixture derives; exit 1 if not
 *   npx tsx tools/grading/derive.ts --write          after a chapter changed: exercises/ again from the
 *                                                    chapters (and the patches' line numbers renewed)
 *   npx tsx tools/grading/derive.ts --solutions DIR  write every reference answer to DIR/NN-name/
 *   npx tsx tools/grading/derive.ts --record-solution N DIR
 *                                                    solutions/NN-name/solution.patch from DIR/NN-name/
 *                                                    (the answer's files) against the starter
 *   npx tsx tools/grading/derive.ts --class DIR      build the grader's made-up class (fixtures/) in DIR
 *   npx tsx tools/grading/derive.ts --variants N DIR build exercise N's wrong variants (fixtures/variants/)
 *                                                    in DIR, one folder each: npm run grade -- --submissions DIR
 *   npx tsx tools/grading/derive.ts --record-variant N NAME DIR
 *                                                    fixtures/variants/NN-name/NAME.patch from DIR/NN-name/
 *                                                    (the variant's files) against the reference answer
 *
 * (`npm run reset-exercise -- --record N` records the starter patch from exercises/NN-name/.)
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CourseError, runMain } from '../../shared/errors.ts';
import { isLearnerFile } from './exercises.ts';
import { chapterOf, courseRoot } from './impl.ts';
import { applyFilePatch, diffFiles, formatPatch, NEW_FILE, parsePatch, PatchError, type FilePatch, type Patch } from './patch.ts';

const startersDir = path.join(courseRoot, 'tools', 'grading', 'starters');
const fixturesDir = path.join(courseRoot, 'tools', 'grading', 'fixtures', '.class');
const variantsDir = path.join(courseRoot, 'tools', 'grading', 'fixtures', 'variants');

export const starterPatchFile = (slug: string) => path.join(startersDir, `${slug}.patch`);
export const solutionPatchFile = (slug: string) => path.join(courseRoot, 'solutions', slug, 'solution.patch');
const rel = (file: string) => path.relative(courseRoot, file);

function readPatch(file: string): Patch | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return parsePatch(text, rel(file));
}

/**
 * A chapter's file as it stands in the exercise folder, before the starter
 * patch: the same, except that its imports of the chapter's other files —
 * those the exercise does not have (`keep`) — reach into the chapter
 * (`./lease.ts` → `../../chapters/06-leasing-workers/lease.ts`; the same for
 * `new URL('./schema.sql', import.meta.url)`). Its imports of the exercise's
 * own files stay as they are. Undefined when the chapter has no such file.
 */
export function chapterFile(chapter: string, name: string, keep: Set<string>): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(courseRoot, 'chapters', chapter, name), 'utf8');
  } catch {
    return undefined;
  }
  return text.replace(/(\bfrom\s*|\bimport\s*\(?\s*|\bnew URL\(\s*)(['"])\.\/([^'"/]+)((?:\/[^'"]*)?)\2/g, (all, lead: string, quote: string, first: string, rest: string) =>
    keep.has(first) ? all : `${lead}${quote}../../chapters/${chapter}/${first}${rest}${quote}`,
  );
}

/** `exercises/NN-name/engine.ts` → `engine.ts`, or a clear error when a patch names a file elsewhere. */
function nameIn(folder: string, file: string, where: string): string {
  if (!file.startsWith(`${folder}/`) || file.slice(folder.length + 1).includes('/')) {
    throw new PatchError(`${where} names ${file}, which is not a file of ${folder}/.`, 'The patch is damaged: make it again rather than editing it by hand.');
  }
  return file.slice(folder.length + 1);
}

const starterCache = new Map<string, Map<string, string>>();

/**
 * An exercise's pristine starter, derived: file name → content. Throws
 * PatchError when the chapter changed where the patch changes it. `exact`:
 * also when a change no longer stands at the line the patch names (the
 * chapter grew or shrank above it; `derive.ts --write` records it again).
 */
export function deriveStarter(slug: string, { exact = false }: { exact?: boolean } = {}): Map<string, string> {
  const cached = exact ? undefined : starterCache.get(slug);
  if (cached) return new Map(cached);
  const where = rel(starterPatchFile(slug));
  const patch = readPatch(starterPatchFile(slug));
  if (!patch) throw new CourseError(`Exercise ${slug} has no starter patch, ${where}.`, `Write the starter in exercises/${slug}/, then: npm run reset-exercise -- --record ${slug.slice(0, 2)}`);
  const chapter = chapterOf(slug);
  const keep = new Set(patch.files.map((file) => nameIn(`exercises/${slug}`, file.to, where)));
  const files = new Map<string, string>();
  for (const file of patch.files) {
    const name = nameIn(`exercises/${slug}`, file.to, where);
    let source = '';
    if (file.from !== NEW_FILE) {
      const from = nameIn(`chapters/${chapter}`, file.from, where);
      const text = chapterFile(chapter, from, keep);
      if (text === undefined) throw new PatchError(`${where}: ${file.from} does not exist any more.`, `Exercise ${slug} changes a file chapter ${chapter} no longer has: record its starter again.`);
      source = text;
    }
    files.set(name, applyFilePatch(source, file, where, { exact }));
  }
  starterCache.set(slug, files);
  return new Map(files);
}

/** An exercise's reference answer, derived: file name → content (every file of the starter, answered). */
export function deriveSolution(slug: string): Map<string, string> {
  const starter = deriveStarter(slug);
  const patch = readPatch(solutionPatchFile(slug));
  if (!patch) {
    // No patch: the answer is the chapter itself (exercise 6 cut its starter out of the chapter).
    const chapter = chapterOf(slug);
    const keep = new Set(starter.keys());
    return new Map([...starter].map(([name, text]) => [name, chapterFile(chapter, name, keep) ?? text]));
  }
  const where = rel(solutionPatchFile(slug));
  const answer = new Map(starter);
  for (const file of patch.files) {
    const name = nameIn(`solutions/${slug}`, file.to, where);
    let source = '';
    if (file.from !== NEW_FILE) {
      const from = nameIn(`exercises/${slug}`, file.from, where);
      if (!starter.has(from)) throw new PatchError(`${where}: the starter has no ${from}.`, 'Record the answer again against the starter as it is.');
      source = starter.get(from)!;
    }
    answer.set(name, applyFilePatch(source, file, where));
  }
  return answer;
}

/**
 * A file of the course as the patches name it: `chapters/…` (on disk),
 * `exercises/NN-name/<file>` (the pristine starter), `solutions/NN-name/<file>`
 * (the derived answer), or /dev/null (nothing).
 */
export function courseFile(name: string, where: string): string {
  if (name === NEW_FILE) return '';
  const derived = /^(exercises|solutions)\/(\d\d-[^/]+)\/([^/]+)$/.exec(name);
  if (derived) {
    const files = derived[1] === 'exercises' ? deriveStarter(derived[2]!) : deriveSolution(derived[2]!);
    const text = files.get(derived[3]!);
    if (text === undefined) throw new PatchError(`${where} names ${name}, which the ${derived[1] === 'exercises' ? 'starter' : 'answer'} does not have.`, 'Make the patch again.');
    return text;
  }
  if (name.startsWith('chapters/')) {
    try {
      return fs.readFileSync(path.join(courseRoot, name), 'utf8');
    } catch (thrown) {
      throw new PatchError(`${where} names ${name}, which does not exist.`, 'Make the patch again.', { cause: thrown });
    }
  }
  throw new PatchError(`${where} names ${name}: a patch's source is a file of chapters/, exercises/ or solutions/.`, 'Make the patch again.');
}

/** Write files (name → content) into `dir`, made if need be. */
export function writeFiles(dir: string, files: Map<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, text] of files) fs.writeFileSync(path.join(dir, name), text);
}

/** Keep a patch's preamble (its own words) when it is made again; a first one says where it comes from. */
function preambleOf(file: string, fallback: string): string {
  return readPatch(file)?.preamble || fallback;
}

/**
 * Record an exercise's starter: `files` (name → content, what exercises/NN-name
 * holds as shipped) as a patch over the chapter. A file the chapter does not
 * have is a new file. Returns the patch's path.
 */
export function recordStarterPatch(slug: string, files: Map<string, string>): string {
  const chapter = chapterOf(slug);
  const target = starterPatchFile(slug);
  const preamble = preambleOf(
    target,
    `Exercise ${Number(slug.slice(0, 2))}'s starter: chapters/${chapter}/ as exercises/${slug}/ changes it.\n\n` +
      `exercises/${slug}/<file> = the chapter's <file> (its imports of the chapter's other\n` +
      `files pointed into the chapter) + this patch; the pristine starter\n` +
      `that npm run reset-exercise ${Number(slug.slice(0, 2))} restores is derived the same way (tools/grading/derive.ts).\n` +
      `After editing exercises/${slug}/: npm run reset-exercise -- --record ${Number(slug.slice(0, 2))}\n\n`,
  );
  const keep = new Set(files.keys());
  const patched: FilePatch[] = [...files.keys()].sort().map((name) => {
    const original = chapterFile(chapter, name, keep);
    const file = diffFiles(original === undefined ? NEW_FILE : `chapters/${chapter}/${name}`, `exercises/${slug}/${name}`, original ?? '', files.get(name)!);
    if (original !== undefined) file.fromStamp = fingerprint(chapter, name);
    return file;
  });
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, formatPatch({ preamble, files: patched }));
  starterCache.delete(slug);
  return target;
}

/** A chapter file's fingerprint, as a starter patch keeps it: `sha256:` and 16 hex digits. */
function fingerprint(chapter: string, name: string): string {
  return `sha256:${createHash('sha256').update(fs.readFileSync(path.join(courseRoot, 'chapters', chapter, name))).digest('hex').slice(0, 16)}`;
}

/**
 * The chapter files an exercise's starter patch was made against that have
 * changed since — anywhere, not only where the patch changes them. The
 * derived starter follows the chapter all the same; this is how a test knows
 * that exercises/NN-name (the learner's copy, committed) has fallen behind.
 */
export function chapterDrift(slug: string): string[] {
  const patch = readPatch(starterPatchFile(slug));
  const chapter = chapterOf(slug);
  return (patch?.files ?? [])
    .filter((file) => file.from !== NEW_FILE)
    .filter((file) => {
      const name = file.from.slice(`chapters/${chapter}/`.length);
      return !fs.existsSync(path.join(courseRoot, 'chapters', chapter, name)) || file.fromStamp !== fingerprint(chapter, name);
    })
    .map((file) => file.from);
}

/** Record an exercise's reference answer (name → content) as a patch over its starter. Returns the patch's path. */
export function recordSolutionPatch(slug: string, answer: Map<string, string>): string {
  const starter = deriveStarter(slug);
  const target = solutionPatchFile(slug);
  const preamble = preambleOf(
    target,
    `Exercise ${Number(slug.slice(0, 2))}'s reference answer: what it changes in the starter (exercises/${slug}/ as shipped).\n\n` +
      `Every file of the starter that this patch does not name is part of the answer as it is.\n` +
      `Made by: npx tsx tools/grading/derive.ts --record-solution ${Number(slug.slice(0, 2))} DIR\n\n`,
  );
  const patched: FilePatch[] = [];
  for (const name of [...answer.keys()].sort()) {
    const before = starter.get(name);
    const file = diffFiles(before === undefined ? NEW_FILE : `exercises/${slug}/${name}`, `solutions/${slug}/${name}`, before ?? '', answer.get(name)!);
    if (file.hunks.length > 0) patched.push(file);
  }
  fs.writeFileSync(target, formatPatch({ preamble, files: patched }));
  return target;
}

// ── the grader's made-up class ──────────────────────────────────────────────

/**
 * Build the fixture class (fixtures/.class/, see its README) in `target`: each
 * student's own files as they are, and their `submission.patch` applied —
 * files made from the course's (the reference answer, the starter) with a
 * student's mistakes in them, instead of copies of those files.
 */
export function buildFixtureClass(target: string): string[] {
  const students = fs.readdirSync(fixturesDir).filter((name) => fs.statSync(path.join(fixturesDir, name)).isDirectory()).sort();
  for (const student of students) {
    const from = path.join(fixturesDir, student);
    const to = path.join(target, student);
    fs.cpSync(from, to, { recursive: true, filter: (source) => path.basename(source) !== 'submission.patch' });
    const patchFile = path.join(from, 'submission.patch');
    const patch = readPatch(patchFile);
    for (const file of patch?.files ?? []) {
      const where = rel(patchFile);
      const made = applyFilePatch(courseFile(file.from, where), file, where);
      if (path.isAbsolute(file.to) || file.to.split('/').includes('..')) throw new PatchError(`${where} writes ${file.to}, outside the student's folder.`, 'Name the file relative to the student\'s folder.');
      fs.mkdirSync(path.dirname(path.join(to, file.to)), { recursive: true });
      fs.writeFileSync(path.join(to, file.to), made);
    }
  }
  return students;
}

// ── wrong variants of an exercise ───────────────────────────────────────────

/**
 * An exercise's wrong variants: each the reference answer with one mistake
 * the exercise is about, kept as `fixtures/variants/NN-name/<variant>.patch`
 * over the derived answer (`solutions/NN-name/<file>` → `NN-name/<file>`). Its
 * preamble says what it gets wrong and, on `Loses: ` lines, the tests it must
 * fail (each line a part of one test's full name); it must pass every other.
 * variants.test.ts grades them and holds them to it.
 */
export interface Variant {
  name: string;
  /** The patch file, relative to the course root. */
  file: string;
  /** Its preamble: what the mistake is. */
  about: string;
  /** Parts of the names of the tests it must fail. */
  loses: string[];
}

export const variantPatchFile = (slug: string, name: string) => path.join(variantsDir, slug, `${name}.patch`);

/** The exercises that have wrong variants (their slugs). */
export function exercisesWithVariants(): string[] {
  try {
    return fs
      .readdirSync(variantsDir)
      .filter((name) => /^\d\d-/.test(name) && fs.statSync(path.join(variantsDir, name)).isDirectory())
      .sort();
  } catch {
    return [];
  }
}

/** The wrong variants of an exercise, by name. */
export function variantsOf(slug: string): Variant[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(path.join(variantsDir, slug)).filter((name) => name.endsWith('.patch')).sort();
  } catch {
    return [];
  }
  return names.map((patchName) => {
    const file = path.join(variantsDir, slug, patchName);
    const preamble = readPatch(file)?.preamble ?? '';
    return {
      name: patchName.slice(0, -'.patch'.length),
      file: rel(file),
      about: preamble.trim(),
      loses: preamble
        .split('\n')
        .filter((line) => line.startsWith('Loses: '))
        .map((line) => line.slice('Loses: '.length).trim()),
    };
  });
}

/** A wrong variant's files, derived: the reference answer with the variant's patch applied (file name → content). */
export function deriveVariant(slug: string, name: string): Map<string, string> {
  const file = variantPatchFile(slug, name);
  const where = rel(file);
  const patch = readPatch(file);
  if (!patch) throw new CourseError(`There is no variant ${name} of exercise ${slug}: ${where} is missing.`, `Its variants: ${variantsOf(slug).map((v) => v.name).join(', ') || 'none'}.`);
  const answer = deriveSolution(slug);
  const files = new Map(answer);
  for (const filePatch of patch.files) {
    const from = nameIn(`solutions/${slug}`, filePatch.from, where);
    const to = nameIn(slug, filePatch.to, where);
    if (!answer.has(from)) throw new PatchError(`${where}: the reference answer has no ${from}.`, 'Record the variant again against the answer as it is.');
    files.set(to, applyFilePatch(answer.get(from)!, filePatch, where));
  }
  return files;
}

/** Write every wrong variant of an exercise into `target`, a class of one folder per variant (`<variant>/NN-name/`). */
export function buildVariantClass(slug: string, target: string): string[] {
  const variants = variantsOf(slug);
  for (const variant of variants) writeFiles(path.join(target, variant.name, slug), deriveVariant(slug, variant.name));
  return variants.map((v) => v.name);
}

/** Record a wrong variant (its files: name → content) as a patch over the exercise's reference answer, keeping the patch's preamble. */
export function recordVariantPatch(slug: string, name: string, files: Map<string, string>): string {
  const answer = deriveSolution(slug);
  const target = variantPatchFile(slug, name);
  const preamble = preambleOf(
    target,
    `Exercise ${Number(slug.slice(0, 2))}, a wrong variant: the reference answer with one mistake.\n\n` +
      `What it gets wrong: (say it here).\n\nLoses: (a part of the full name of each test it must fail, one line each)\n\n`,
  );
  const patched: FilePatch[] = [];
  for (const fileName of [...files.keys()].sort()) {
    const before = answer.get(fileName);
    if (before === undefined) throw new CourseError(`The answer of exercise ${slug} has no ${fileName}.`, 'A variant changes the answer\'s files only.');
    const file = diffFiles(`solutions/${slug}/${fileName}`, `${slug}/${fileName}`, before, files.get(fileName)!);
    if (file.hunks.length > 0) patched.push(file);
  }
  if (patched.length === 0) throw new CourseError(`Variant ${name} of exercise ${slug} is the reference answer itself.`, 'A variant is the answer with a mistake in it.');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, formatPatch({ preamble, files: patched }));
  return target;
}

// ── the command ─────────────────────────────────────────────────────────────

/** Every exercise slug with a starter patch. */
function exerciseSlugs(): string[] {
  return fs
    .readdirSync(startersDir)
    .filter((name) => /^\d\d-.+\.patch$/.test(name))
    .map((name) => name.slice(0, -'.patch'.length))
    .sort();
}

function slugFor(which: string): string {
  const n = Number(which);
  const found = exerciseSlugs().find((slug) => slug === which || Number(slug.slice(0, 2)) === n);
  if (!found) throw new CourseError(`There is no exercise "${which}".`, `The exercises are: ${exerciseSlugs().join(', ')}.`);
  return found;
}

/** What differs between exercises/NN-name and its derived starter: the files to write again. */
export function drift(slug: string, exercisesDir = path.join(courseRoot, 'exercises')): string[] {
  const starter = deriveStarter(slug);
  const dir = path.join(exercisesDir, slug);
  return [...starter]
    .filter(([name, text]) => {
      try {
        return fs.readFileSync(path.join(dir, name), 'utf8') !== text;
      } catch {
        return true;
      }
    })
    .map(([name]) => name);
}

const usage =
  'usage: npx tsx tools/grading/derive.ts [--write] | --solutions DIR | --record-solution N DIR | --class DIR | --variants N DIR | --record-variant N NAME DIR';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      write: { type: 'boolean', default: false },
      solutions: { type: 'string' },
      'record-solution': { type: 'string' },
      class: { type: 'string' },
      variants: { type: 'string' },
      'record-variant': { type: 'string' },
    },
    allowPositionals: true,
  });
  if (values.solutions) {
    for (const slug of exerciseSlugs()) writeFiles(path.join(path.resolve(values.solutions), slug), deriveSolution(slug));
    console.log(`The reference answers are in ${values.solutions}/ (${exerciseSlugs().join(', ')}).`);
    return;
  }
  if (values['record-solution']) {
    const slug = slugFor(values['record-solution']);
    const [dir] = positionals;
    if (!dir) throw new CourseError('Record the answer from which folder?', usage);
    const folder = fs.existsSync(path.join(dir, slug)) ? path.join(dir, slug) : dir;
    const answer = new Map(
      fs
        .readdirSync(folder)
        .filter((name) => isLearnerFile(name) && fs.statSync(path.join(folder, name)).isFile())
        .map((name) => [name, fs.readFileSync(path.join(folder, name), 'utf8')] as const),
    );
    console.log(`Recorded ${rel(recordSolutionPatch(slug, answer))} from ${folder}.`);
    return;
  }
  if (values.variants) {
    const slug = slugFor(values.variants);
    const [dir] = positionals;
    if (!dir) throw new CourseError('Write the variants into which folder?', usage);
    const names = buildVariantClass(slug, path.resolve(dir));
    if (names.length === 0) throw new CourseError(`Exercise ${slug} has no wrong variants (tools/grading/fixtures/variants/${slug}/).`, usage);
    console.log(`The wrong variants of exercise ${slug} (${names.join(', ')}) are in ${dir}/. Grade them: npm run grade -- --submissions ${dir} --exercises ${Number(slug.slice(0, 2))}`);
    return;
  }
  if (values['record-variant']) {
    const slug = slugFor(values['record-variant']);
    const [name, dir] = positionals;
    if (!name || !dir || !/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new CourseError('Record which variant (a name in lowercase-with-dashes), from which folder?', usage);
    const folder = fs.existsSync(path.join(dir, slug)) ? path.join(dir, slug) : dir;
    const files = new Map(
      fs
        .readdirSync(folder)
        .filter((file) => isLearnerFile(file) && fs.statSync(path.join(folder, file)).isFile())
        .map((file) => [file, fs.readFileSync(path.join(folder, file), 'utf8')] as const),
    );
    console.log(`Recorded ${rel(recordVariantPatch(slug, name, files))} from ${folder}.`);
    return;
  }
  if (values.class) {
    const students = buildFixtureClass(path.resolve(values.class));
    console.log(`The fixture class (${students.join(', ')}) is in ${values.class}/. Grade it: npm run grade -- --submissions ${values.class}`);
    return;
  }
  let problems = 0;
  for (const slug of exerciseSlugs()) {
    try {
      const stale = drift(slug);
      const moved = chapterDrift(slug);
      if (values.write) {
        writeFiles(path.join(courseRoot, 'exercises', slug), deriveStarter(slug));
        recordStarterPatch(slug, deriveStarter(slug)); // the same changes, at the chapter's line numbers now
        console.log(`exercises/${slug}: ${stale.length ? `wrote ${stale.join(', ')}` : 'as derived'}.`);
      } else if (stale.length || moved.length) {
        problems++;
        if (moved.length) console.log(`exercises/${slug}: ${moved.join(', ')} changed since ${rel(starterPatchFile(slug))} was made (--write derives the exercise again).`);
        if (stale.length) console.log(`exercises/${slug}: ${stale.join(', ')} differ(s) from chapters/${chapterOf(slug)} + ${rel(starterPatchFile(slug))} (--write writes them again).`);
      } else {
        deriveSolution(slug);
        console.log(`exercises/${slug}: as derived; its reference answer derives.`);
      }
    } catch (thrown) {
      problems++;
      console.log(`exercises/${slug}: ${(thrown as Error).message}`);
    }
  }
  if (!values.write) {
    const scratch = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'fixture-class-'));
    try {
      console.log(`fixtures: ${buildFixtureClass(scratch).length} students derive.`);
    } catch (thrown) {
      problems++;
      console.log(`fixtures: ${(thrown as Error).message}`);
    }
    try {
      for (const slug of exercisesWithVariants()) console.log(`fixtures: the ${buildVariantClass(slug, path.join(scratch, '.variants', slug)).length} wrong variants of ${slug} derive.`);
    } catch (thrown) {
      problems++;
      console.log(`fixtures: ${(thrown as Error).message}`);
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }
  if (problems) process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) runMain(main);
