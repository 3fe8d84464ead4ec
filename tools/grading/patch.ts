/**
 * Unified diffs, made and applied in TypeScript — no git, no `patch` program —
 * so that a copy of the course without git history (a zip download) can still
 * derive its starters, its reference answers and the grader's fixtures.
 *
 * The format is the one `diff -u` prints, without timestamps:
 *
 *   Free text before the first file: the patch's preamble (kept as it is).
 *   --- chapters/01-dict-log/engine.ts<TAB>sha256:…   the file the hunks apply to (/dev/null: a new
 *                                               file), and a fingerprint of it as it was
 *   +++ exercises/01-failed-steps/engine.ts     the file they make
 *   @@ -1,17 +1,19 @@
 *    a line both have
 *   -a line only the first has
 *   +a line only the second has
 *   \ No newline at end of file
 *
 * One extension: a file with no hunks at all (`---` and `+++` and nothing
 * else) is that file unchanged — what the grader's fixtures use to say "this
 * student handed in the reference answer as it is".
 *
 * Applying is strict: every context and removed line must match the file
 * exactly. A hunk may be found a few lines away from where it says (the file
 * grew or shrank elsewhere), never with a line that differs.
 */
import { CourseError } from '../../shared/errors.ts';

export interface Hunk {
  fromStart: number;
  fromCount: number;
  toStart: number;
  toCount: number;
  /** `' x'`, `'-x'`, `'+x'`, or `'\\ No newline at end of file'` after the line it is about. */
  lines: string[];
}

export interface FilePatch {
  /** The file the hunks apply to, as the patch names it; `/dev/null` for a new file. */
  from: string;
  /** What follows the name on the `---` line, after a tab (where `diff -u` puts a date): a fingerprint of `from`. */
  fromStamp?: string;
  /** The file they make. */
  to: string;
  hunks: Hunk[];
}

export interface Patch {
  /** The text before the first file, as it is (with its line ends). */
  preamble: string;
  files: FilePatch[];
}

/** A patch is malformed, or does not apply to the file it names. */
export class PatchError extends CourseError {}

export const NEW_FILE = '/dev/null';
const NO_NEWLINE = '\\ No newline at end of file';

// ── reading and writing patches ─────────────────────────────────────────────

/** Read a patch; `where` names it in errors (its path). */
export function parsePatch(text: string, where: string): Patch {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const files: FilePatch[] = [];
  let i = 0;
  const preamble: string[] = [];
  const isHeader = (at: number) => lines[at]?.startsWith('--- ') && lines[at + 1]?.startsWith('+++ ');
  while (i < lines.length && !isHeader(i)) preamble.push(lines[i++]!);
  while (i < lines.length) {
    if (!isHeader(i)) throw new PatchError(`${where}, line ${i + 1}: expected "--- file" and "+++ file", found ${JSON.stringify(lines[i])}.`, 'The patch is damaged: make it again rather than editing it by hand.');
    const file: FilePatch = { from: fileName(lines[i]!), to: fileName(lines[i + 1]!), hunks: [] };
    const stamp = lines[i]!.split('\t')[1]?.trim();
    if (stamp) file.fromStamp = stamp;
    i += 2;
    while (i < lines.length && lines[i]!.startsWith('@@')) {
      const header = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(lines[i]!);
      if (!header) throw new PatchError(`${where}, line ${i + 1}: a hunk header I cannot read: ${JSON.stringify(lines[i])}.`, 'The patch is damaged: make it again rather than editing it by hand.');
      const hunk: Hunk = {
        fromStart: Number(header[1]),
        fromCount: header[2] === undefined ? 1 : Number(header[2]),
        toStart: Number(header[3]),
        toCount: header[4] === undefined ? 1 : Number(header[4]),
        lines: [],
      };
      i++;
      // The hunk's body is exactly as long as its header says: a removed SQL comment ("--- …") is a line of it, not a file header.
      let from = 0;
      let to = 0;
      while (from < hunk.fromCount || to < hunk.toCount || lines[i]?.startsWith('\\')) {
        const line = lines[i];
        if (line === undefined) throw new PatchError(`${where}: the hunk "${header[0]}" of ${file.to} ends early.`, 'The patch is damaged: make it again rather than editing it by hand.');
        const kind = line[0] ?? ' ';
        if (kind === ' ' || line === '') {
          from++;
          to++;
          hunk.lines.push(line === '' ? ' ' : line);
        } else if (kind === '-') {
          from++;
          hunk.lines.push(line);
        } else if (kind === '+') {
          to++;
          hunk.lines.push(line);
        } else if (kind === '\\') {
          hunk.lines.push(NO_NEWLINE);
        } else {
          throw new PatchError(`${where}, line ${i + 1}: a line of the hunk "${header[0]}" starts with neither " ", "-" nor "+".`, 'The patch is damaged: make it again rather than editing it by hand.');
        }
        i++;
      }
      if (from !== hunk.fromCount || to !== hunk.toCount) throw new PatchError(`${where}: the hunk "${header[0]}" of ${file.to} does not have the lines its header counts.`, 'The patch is damaged: make it again rather than editing it by hand.');
      file.hunks.push(hunk);
    }
    files.push(file);
  }
  return { preamble: preamble.length ? `${preamble.join('\n')}\n` : '', files };
}

function fileName(header: string): string {
  return header.slice(4).split('\t')[0]!.trim();
}

export function formatPatch(patch: Patch): string {
  const out: string[] = [];
  for (const file of patch.files) {
    out.push(`--- ${file.from}${file.fromStamp ? `\t${file.fromStamp}` : ''}`, `+++ ${file.to}`);
    for (const hunk of file.hunks) {
      out.push(`@@ -${range(hunk.fromStart, hunk.fromCount)} +${range(hunk.toStart, hunk.toCount)} @@`, ...hunk.lines);
    }
  }
  return patch.preamble + (out.length ? `${out.join('\n')}\n` : '');
}

function range(start: number, count: number): string {
  return count === 1 ? String(start) : `${start},${count}`;
}

// ── making a patch ──────────────────────────────────────────────────────────

/** A file's lines, each with its line end (the last one may have none). */
function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n').map((line) => `${line}\n`);
  const last = lines.pop()!;
  if (last !== '\n') lines.push(last.slice(0, -1)); // the text did not end with a newline
  return lines;
}

/** `a` → `b` as one file of a patch: hunks with `context` lines around each change (none when they are equal). */
export function diffFiles(from: string, to: string, a: string, b: string, context = 3): FilePatch {
  const x = splitLines(a);
  const y = splitLines(b);
  const ops = shortestEdit(x, y);
  const hunks: Hunk[] = [];
  // Group the changes: two changes closer than 2 × context lines share a hunk.
  let k = 0;
  while (k < ops.length) {
    while (k < ops.length && ops[k]!.op === '=') k++;
    if (k >= ops.length) break;
    const start = Math.max(0, k - context);
    let end = k;
    let lastChange = k;
    while (end < ops.length) {
      if (ops[end]!.op !== '=') lastChange = end;
      else if (end - lastChange > 2 * context) break;
      end++;
    }
    end = Math.min(ops.length, lastChange + 1 + context);
    const slice = ops.slice(start, end);
    const first = ops[start]!;
    const fromCount = slice.filter((o) => o.op !== '+').length;
    const toCount = slice.filter((o) => o.op !== '-').length;
    const lines: string[] = [];
    for (const o of slice) {
      const text = o.op === '+' ? y[o.j]! : x[o.i]!;
      const marker = o.op === '=' ? ' ' : o.op;
      lines.push(`${marker}${text.endsWith('\n') ? text.slice(0, -1) : text}`);
      if (!text.endsWith('\n')) lines.push(NO_NEWLINE);
    }
    hunks.push({
      fromStart: fromCount === 0 ? first.i : first.i + 1,
      fromCount,
      toStart: toCount === 0 ? first.j : first.j + 1,
      toCount,
      lines,
    });
    k = end;
  }
  return { from, to, hunks };
}

interface EditOp {
  op: '=' | '-' | '+';
  /** The position in the first file this op stands at (for '+': the line it comes before). */
  i: number;
  /** The same in the second file. */
  j: number;
}

/** Myers' O((N+M)D) shortest edit script between two lists of lines. */
function shortestEdit(x: string[], y: string[]): EditOp[] {
  const n = x.length;
  const m = y.length;
  const max = n + m;
  const offset = max + 1;
  let v: Int32Array = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= max && found < 0; d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      let i = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1;
      let j = i - k;
      while (i < n && j < m && x[i] === y[j]) {
        i++;
        j++;
      }
      v[offset + k] = i;
      if (i >= n && j >= m) {
        found = d;
        break;
      }
    }
  }
  trace.push(v.slice());
  // Walk back from (n, m) through the snapshots, taking each step's diagonal and its one edit.
  const ops: EditOp[] = [];
  let i = n;
  let j = m;
  for (let d = found; d > 0; d--) {
    v = trace[d]!;
    const k = i - j;
    const down = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!);
    const prevK = down ? k + 1 : k - 1;
    const prevI = v[offset + prevK]!;
    const prevJ = prevI - prevK;
    while (i > prevI && j > prevJ) ops.push({ op: '=', i: --i, j: --j });
    if (down) ops.push({ op: '+', i, j: --j });
    else ops.push({ op: '-', i: --i, j });
  }
  while (i > 0 && j > 0) ops.push({ op: '=', i: --i, j: --j });
  return ops.reverse();
}

// ── applying a patch ────────────────────────────────────────────────────────

/**
 * Apply one file's hunks to `text` (the file the patch names as `from`;
 * empty for a new file). `where` names the patch in errors. `exact`: each
 * hunk only at the line it names (the file has not moved since the patch was made).
 */
export function applyFilePatch(text: string, file: FilePatch, where: string, { exact = false }: { exact?: boolean } = {}): string {
  const lines = splitLines(text);
  const out: string[] = [];
  let at = 0; // the next line of `lines` not yet copied to `out`
  let shift = 0; // how far from their stated place the hunks so far were found
  file.hunks.forEach((hunk, index) => {
    const old: string[] = [];
    const made: string[] = [];
    hunk.lines.forEach((line, n) => {
      if (line === NO_NEWLINE) return;
      const eol = hunk.lines[n + 1] === NO_NEWLINE ? '' : '\n';
      const body = `${line.slice(1)}${eol}`;
      if (line[0] !== '+') old.push(body);
      if (line[0] !== '-') made.push(body);
    });
    const stated = (hunk.fromCount === 0 ? hunk.fromStart : hunk.fromStart - 1) + shift;
    const found = findHunk(lines, old, stated, at, exact ? 0 : lines.length);
    if (found === undefined) {
      throw new PatchError(
        `${where}: the change at line ${hunk.fromStart} of ${file.from} (hunk ${index + 1} of ${file.hunks.length} for ${file.to}) no longer matches it. ${firstDifference(lines, old, Math.max(at, Math.min(stated, lines.length)))}`,
        `${file.from} changed where the patch changes it. Make the derived file match the new ${file.from} by hand, then record the patch again (see tools/grading/README.md).`,
      );
    }
    shift = found - (hunk.fromCount === 0 ? hunk.fromStart : hunk.fromStart - 1);
    out.push(...lines.slice(at, found), ...made);
    at = found + old.length;
  });
  out.push(...lines.slice(at));
  return out.join('');
}

/** Where `old` stands in `lines`, at or after `from`: at `stated` if it can, else the nearest place up to `reach` lines away. */
function findHunk(lines: string[], old: string[], stated: number, from: number, reach: number): number | undefined {
  const matches = (p: number) => p >= from && p + old.length <= lines.length && old.every((line, n) => lines[p + n] === line);
  for (let distance = 0; distance <= reach; distance++) {
    if (matches(stated - distance)) return stated - distance;
    if (matches(stated + distance)) return stated + distance;
  }
  return undefined;
}

function firstDifference(lines: string[], old: string[], at: number): string {
  for (let n = 0; n < old.length; n++) {
    if (lines[at + n] !== old[n]) {
      const show = (line: string | undefined) => (line === undefined ? '(the end of the file)' : JSON.stringify(line.replace(/\n$/, '')));
      return `Line ${at + n + 1} is ${show(lines[at + n])}; the patch expects ${show(old[n])}.`;
    }
  }
  return '';
}
