/**
 * The bench report's pictures, as SVG files beside it: written from the same
 * results as report.md (a full run, or `npm run bench -- --render`), no
 * dependency and no browser — a chart is a few dozen shapes.
 *
 *   throughput.svg   workflows/s against concurrency: chapters 6 to 9, in one process and in N processes
 *   dispatch.svg     start() to first step: p50 to p99 (and the max) of each wake-up, chapters 6 to 9
 *   chapters.svg     what durability costs, chapter by chapter: sequential workflows/s and commits a workflow
 *   wakeup.svg       how late sleeping workflows woke (the last chapter): the share woken within each lateness
 */
import type { BenchResults } from './report.ts';

/** One SVG file: its name in docs/bench/ and its text. */
export interface Chart {
  file: string;
  title: string;
  svg: string;
}

const WIDTH = 720;
const HEIGHT = 360;
const MARGIN = { top: 48, right: 170, bottom: 52, left: 72 };
const COLOURS = ['#1f77b4', '#d62728', '#7fb1d9', '#f4a3a3', '#2ca02c', '#9467bd', '#8c564b'];
/** Each compared chapter's pair of colours (one process, N processes), counted from the last: the newest darkest. */
const CHAPTER_COLOURS: Array<[string, string]> = [
  ['#1f77b4', '#d62728'],
  ['#7fb1d9', '#f4a3a3'],
  ['#b8b8b8', '#d8b48c'],
  ['#d9d9d9', '#ecd9c3'],
];
const chapterColours = (index: number, count: number): [string, string] => CHAPTER_COLOURS[Math.min(CHAPTER_COLOURS.length - 1, count - 1 - index)]!;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"';

/** Text for SVG: nothing a label holds can become markup. */
function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n >= 10 ? n.toFixed(1) : n.toFixed(2));

function frame(title: string, subtitle: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ${FONT} font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${MARGIN.left}" y="20" font-size="15" font-weight="600">${esc(title)}</text>`,
    `<text x="${MARGIN.left}" y="36" fill="#555">${esc(subtitle)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** A y axis from 0 (linear) or from `min` (log10) to a round maximum; returns the scale and the grid. */
function yAxis(max: number, label: string, log = false, min = 1): { y: (v: number) => number; grid: string[] } {
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x0 = MARGIN.left;
  const x1 = WIDTH - MARGIN.right;
  const grid: string[] = [];
  let y: (v: number) => number;
  let ticks: number[];
  if (log) {
    const lo = Math.floor(Math.log10(min));
    const hi = Math.ceil(Math.log10(max));
    y = (v) => MARGIN.top + plotH - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * plotH;
    ticks = Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i));
  } else {
    const step = 10 ** Math.floor(Math.log10(max || 1));
    const top = Math.ceil((max || 1) / step) * step;
    y = (v) => MARGIN.top + plotH - (v / top) * plotH;
    ticks = Array.from({ length: Math.round(top / step) + 1 }, (_, i) => i * step);
    if (ticks.length > 8) ticks = ticks.filter((_, i) => i % 2 === 0);
  }
  for (const t of ticks) {
    grid.push(`<line x1="${x0}" x2="${x1}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    grid.push(`<text x="${x0 - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" fill="#555">${esc(t >= 1000 ? `${t / 1000}k` : String(t))}</text>`);
  }
  grid.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(label)}</text>`);
  return { y, grid };
}

function legend(entries: Array<{ label: string; colour: string; dashed?: boolean }>): string[] {
  const x = WIDTH - MARGIN.right + 16;
  return entries.flatMap((e, i) => {
    const y = MARGIN.top + 10 + i * 20;
    return [
      `<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${e.colour}" stroke-width="3"${e.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      `<text x="${x + 28}" y="${y + 4}">${esc(e.label)}</text>`,
    ];
  });
}

/** Workflows a second against concurrency, one line per chapter and mode. */
function throughputChart(r: BenchResults): Chart | undefined {
  const compared = r.production?.compared ?? [];
  const series = compared.flatMap((c, ci) =>
    (['in-process', 'processes'] as const).map((mode, mi) => ({
      label: `ch. ${Number.parseInt(c.chapter, 10)}, ${mode === 'in-process' ? 'one process' : 'N processes'}`,
      colour: chapterColours(ci, compared.length)[mi]!,
      dashed: mode === 'processes',
      points: (c.throughput?.runs ?? []).filter((run) => run.mode === mode).map((run) => ({ x: run.concurrency, y: run.workflowsPerSecond })),
    })),
  ).filter((s) => s.points.length > 0);
  if (series.length === 0) return undefined;
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const { y, grid } = yAxis(Math.max(...series.flatMap((s) => s.points.map((p) => p.y))), 'workflows/s');
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const x = (v: number) => MARGIN.left + (xs.indexOf(v) / Math.max(1, xs.length - 1)) * plotW;
  const body = [
    ...grid,
    ...xs.map((v) => `<text x="${x(v).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 18}" text-anchor="middle" fill="#555">${v}</text>`),
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle" fill="#333">workflows at once (concurrency of one worker, or number of worker processes)</text>`,
    ...series.flatMap((s) => [
      `<polyline fill="none" stroke="${s.colour}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${s.points.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ')}"/>`,
      ...s.points.map((p) => `<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3.5" fill="${s.colour}"><title>${esc(`${s.label}, ${p.x} at once: ${fmt(p.y)} workflows/s`)}</title></circle>`),
    ]),
    ...legend(series),
  ];
  return { file: 'throughput.svg', title: 'Throughput against concurrency', svg: frame('Throughput against concurrency', '3-step workflows drained by one worker (solid) or N worker processes (dashed)', body) };
}

/** start() to the first step: a bar from p50 to p99 with a tick at the max, per wake-up and chapter, on a log scale. */
function dispatchChart(r: BenchResults): Chart | undefined {
  const compared = r.production?.compared ?? [];
  const rows = compared.flatMap((c, ci) =>
    (c.dispatch ?? []).map((d) => ({ label: `ch. ${Number.parseInt(c.chapter, 10)}: ${d.wake.replace(/ \(.*\)$/, '')}`, colour: chapterColours(ci, compared.length)[0], ...d.latency })),
  );
  if (rows.length === 0) return undefined;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const lo = Math.floor(Math.log10(Math.min(...rows.map((r) => r.p50Ms))));
  const hi = Math.ceil(Math.log10(Math.max(...rows.map((r) => r.maxMs))));
  const x = (v: number) => MARGIN.left + 150 + ((Math.log10(v) - lo) / (hi - lo)) * (plotW - 150);
  const rowH = (HEIGHT - MARGIN.top - MARGIN.bottom) / rows.length;
  const body: string[] = [];
  for (let t = lo; t <= hi; t++) {
    body.push(`<line x1="${x(10 ** t).toFixed(1)}" x2="${x(10 ** t).toFixed(1)}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="#e5e5e5"/>`);
    body.push(`<text x="${x(10 ** t).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle" fill="#555">${esc(`${10 ** t} ms`)}</text>`);
  }
  rows.forEach((row, i) => {
    const cy = MARGIN.top + rowH * i + rowH / 2;
    body.push(`<text x="${MARGIN.left + 144}" y="${(cy + 4).toFixed(1)}" text-anchor="end">${esc(row.label.length > 30 ? `${row.label.slice(0, 29)}…` : row.label)}</text>`);
    body.push(`<rect x="${x(row.p50Ms).toFixed(1)}" y="${(cy - 6).toFixed(1)}" width="${Math.max(2, x(row.p99Ms) - x(row.p50Ms)).toFixed(1)}" height="12" fill="${row.colour}"><title>${esc(`${row.label}: p50 ${fmt(row.p50Ms)} ms, p99 ${fmt(row.p99Ms)} ms, max ${fmt(row.maxMs)} ms`)}</title></rect>`);
    body.push(`<line x1="${x(row.maxMs).toFixed(1)}" x2="${x(row.maxMs).toFixed(1)}" y1="${(cy - 7).toFixed(1)}" y2="${(cy + 7).toFixed(1)}" stroke="#333" stroke-width="2"/>`);
    body.push(`<text x="${(Math.max(x(row.p99Ms), x(row.maxMs)) + 6).toFixed(1)}" y="${(cy + 4).toFixed(1)}" fill="#555">${esc(`${fmt(row.p50Ms)}–${fmt(row.p99Ms)} ms`)}</text>`);
  });
  body.push(`<text x="${MARGIN.left + 150 + (plotW - 150) / 2}" y="${HEIGHT - 12}" text-anchor="middle" fill="#333">start() to the first step (log scale): bar p50 to p99, tick at the max</text>`);
  body.push(...legend(compared.map((c, ci) => ({ label: `chapter ${Number.parseInt(c.chapter, 10)}`, colour: chapterColours(ci, compared.length)[0] }))));
  return { file: 'dispatch.svg', title: 'Dispatch latency', svg: frame('Dispatch latency', 'an idle worker, a new workflow: how soon its first step starts', body) };
}

/** Chapter by chapter: sequential workflows a second (log scale) and commits a workflow. */
function chaptersChart(r: BenchResults): Chart | undefined {
  const rows = [
    ...(r.chapters ?? []).map((c) => ({ label: `${c.chapter}`, rate: c.workflowsPerSecond, commits: c.writeTransactionsPerWorkflow })),
    ...(r.production?.compared ?? []).flatMap((c) => (c.sequential ? [{ label: `${Number.parseInt(c.chapter, 10)}`, rate: c.sequential.workflowsPerSecond, commits: c.sequential.commitsPerWorkflow }] : [])),
  ].filter((row) => row.rate > 0);
  if (rows.length === 0) return undefined;
  const { y, grid } = yAxis(Math.max(...rows.map((row) => row.rate)), 'sequential workflows/s (log scale)', true, Math.min(...rows.map((row) => row.rate)));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const slot = plotW / rows.length;
  const body = [...grid];
  rows.forEach((row, i) => {
    const bx = MARGIN.left + slot * i + slot * 0.2;
    const top = y(row.rate);
    body.push(`<rect x="${bx.toFixed(1)}" y="${top.toFixed(1)}" width="${(slot * 0.6).toFixed(1)}" height="${(HEIGHT - MARGIN.bottom - top).toFixed(1)}" fill="${COLOURS[0]}"><title>${esc(`chapter ${row.label}: ${fmt(row.rate)} workflows/s, ${row.commits === undefined ? '?' : fmt(row.commits)} commits a workflow`)}</title></rect>`);
    body.push(`<text x="${(bx + slot * 0.3).toFixed(1)}" y="${(top - 6).toFixed(1)}" text-anchor="middle" fill="#333">${esc(fmt(row.rate))}</text>`);
    body.push(`<text x="${(bx + slot * 0.3).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle">${esc(`ch. ${row.label}`)}</text>`);
    const commits = row.commits === undefined ? '' : row.commits === 0 ? 'no commit' : `${row.commits.toFixed(1)} commits`;
    body.push(`<text x="${(bx + slot * 0.3).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 30}" text-anchor="middle" fill="#555" font-size="${rows.length > 7 ? 9 : 10}">${esc(commits)}</text>`);
  });
  return { file: 'chapters.svg', title: 'What durability costs, chapter by chapter', svg: frame('What durability costs, chapter by chapter', '3-step workflows one after another; below each bar, its commits a workflow', body) };
}

/**
 * How late sleeping workflows woke: for each way of waking them, the share
 * woken within x ms of the sleep's recorded end (a step line through the
 * sorted samples, x on a log scale: the body is a few ms, the tail a hundred
 * or more), with the p50 and p99 marked and the target's 50 ms drawn.
 */
function wakeUpChart(r: BenchResults): Chart | undefined {
  const w = r.production?.wakeUp;
  if (!w) return undefined;
  const cases = [
    { label: 'own worker', colour: COLOURS[0]!, k: w.alarm },
    ...(w.handoff ? [{ label: 'another worker', colour: COLOURS[1]!, k: w.handoff }] : []),
  ].filter((c) => c.k.samplesMs.length > 0);
  if (cases.length === 0) return undefined;
  const all = cases.flatMap((c) => c.k.samplesMs);
  const lo = Math.floor(Math.log10(Math.max(0.1, Math.min(...all))));
  const hi = Math.max(Math.ceil(Math.log10(50)), Math.ceil(Math.log10(Math.max(...all))));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (v: number) => MARGIN.left + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * plotW;
  const y = (share: number) => MARGIN.top + plotH - share * plotH;
  const body: string[] = [];
  for (const share of [0, 0.25, 0.5, 0.75, 1]) {
    body.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(share).toFixed(1)}" y2="${y(share).toFixed(1)}" stroke="#e5e5e5"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${(y(share) + 4).toFixed(1)}" text-anchor="end" fill="#555">${share * 100} %</text>`);
  }
  for (let e = lo; e <= hi; e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t > 10 ** hi) break;
      body.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="${m === 1 ? '#e5e5e5' : '#f3f3f3'}"/>`);
      body.push(`<text x="${x(t).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 16}" text-anchor="middle" fill="#555">${esc(t >= 1 ? Math.round(t).toLocaleString('en-US') : t.toPrecision(1))}</text>`);
    }
  }
  body.push(`<line x1="${x(50).toFixed(1)}" x2="${x(50).toFixed(1)}" y1="${MARGIN.top}" y2="${HEIGHT - MARGIN.bottom}" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="5 3"/>`);
  body.push(`<text x="${(x(50) + 4).toFixed(1)}" y="${(y(0.1) + 4).toFixed(1)}" fill="#2ca02c">target: p99 &lt; 50 ms</text>`);
  body.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">woken within x of the due time</text>`);
  for (const c of cases) {
    const n = c.k.samplesMs.length;
    const points = [`${x(c.k.samplesMs[0]!).toFixed(1)},${y(0).toFixed(1)}`];
    c.k.samplesMs.forEach((v, i) => points.push(`${x(v).toFixed(1)},${y(i / n).toFixed(1)}`, `${x(v).toFixed(1)},${y((i + 1) / n).toFixed(1)}`));
    body.push(`<polyline fill="none" stroke="${c.colour}" stroke-width="2.5" points="${points.join(' ')}"/>`);
    for (const [name, v, share] of [['p50', c.k.lateness.p50Ms, 0.5], ['p99', c.k.lateness.p99Ms, 0.99]] as const) {
      body.push(`<circle cx="${x(v).toFixed(1)}" cy="${y(share).toFixed(1)}" r="4" fill="${c.colour}"><title>${esc(`${c.label}: ${name} ${fmt(v)} ms`)}</title></circle>`);
    }
  }
  body.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle" fill="#333">lateness, ms (log scale): the step after the sleep ran − the sleep's recorded end, database clock</text>`);
  body.push(...legend(cases.map((c) => ({ label: c.label, colour: c.colour }))));
  body.push(
    ...cases.map(
      (c, i) =>
        `<text x="${WIDTH - MARGIN.right + 44}" y="${MARGIN.top + 10 + (cases.length + i) * 20 + 14}" fill="#555" font-size="11">${esc(`${c.label === 'own worker' ? 'own' : 'another'}: p99 ${fmt(c.k.lateness.p99Ms)} ms`)}</text>`,
    ),
  );
  const chapter = `chapter ${Number.parseInt(w.chapter, 10)}`;
  return {
    file: 'wakeup.svg',
    title: 'Wake-up lateness of sleeping workflows',
    svg: frame('Wake-up lateness of sleeping workflows', `${chapter}: an idle worker, concurrency ${w.concurrency}, pollMs ${w.pollMs}; dots at p50 and p99`, body),
  };
}

/** Every chart the results allow (a --only run may have data for some). */
export function renderCharts(results: BenchResults): Chart[] {
  return [throughputChart(results), dispatchChart(results), chaptersChart(results), wakeUpChart(results)].filter((chart): chart is Chart => chart !== undefined);
}
