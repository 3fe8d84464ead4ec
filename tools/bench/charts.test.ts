/**
 * The bench report's charts (charts.ts), drawn from the committed results:
 * one SVG each for throughput, dispatch and the chapters, with the figures in
 * them, and nothing in a label that can become markup.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../shared/db/server.ts';
import { renderCharts } from './charts.ts';
import { normalizeResults, type BenchResults } from './report.ts';

const results = normalizeResults(JSON.parse(fs.readFileSync(path.join(projectRoot, 'docs', 'bench', 'results.json'), 'utf8')) as BenchResults);

describe('the bench report draws its figures as SVG', () => {
  it('throughput, dispatch and the chapters, each a whole SVG document carrying the run\'s own numbers', () => {
    const charts = renderCharts(results);
    expect(charts.map((c) => c.file)).toEqual(['throughput.svg', 'dispatch.svg', 'chapters.svg']);
    for (const chart of charts) {
      expect(chart.svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(chart.svg.trimEnd().endsWith('</svg>')).toBe(true);
      // Balanced: every element opened is closed (self-closing ones aside).
      const opened = (chart.svg.match(/<(?!\/)[a-z]+[^>]*[^/]>/g) ?? []).length;
      const closed = (chart.svg.match(/<\/[a-z]+>/g) ?? []).length;
      expect(opened, chart.file).toBe(closed);
    }
    const seven = results.production.compared!.find((c) => c.chapter === '07-fast-path')!;
    const eightWay = seven.throughput!.runs.find((r) => r.mode === 'in-process' && r.concurrency === 8)!;
    expect(charts[0]!.svg).toContain(`8 at once: ${Math.round(eightWay.workflowsPerSecond).toLocaleString('en-US')} workflows/s`);
    expect(charts[2]!.svg).toContain(`>${Math.round(seven.sequential!.workflowsPerSecond).toLocaleString('en-US')}<`);
  });

  it('a label that looks like markup is drawn as text', () => {
    const hostile = structuredClone(results);
    hostile.production.compared![0]!.dispatch![0]!.wake = '<script>alert(1)</script>';
    const svg = renderCharts(hostile).find((c) => c.file === 'dispatch.svg')!.svg;
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;');
  });
});
