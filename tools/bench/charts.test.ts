/**
 * The bench report's charts (charts.ts), drawn from the committed results:
 * one SVG each for throughput, dispatch, the chapters and (chapter 8 on) the
 * wake-up lateness of sleeping workflows, with the figures in them, and
 * nothing in a label that can become markup.
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
    expect(charts.map((c) => c.file)).toEqual(['throughput.svg', 'dispatch.svg', 'chapters.svg', ...(results.production.wakeUp ? ['wakeup.svg'] : [])]);
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

  it('wake-up lateness: a line for each way of waking, its p99 in the legend, the 50 ms target where the axis reaches it', () => {
    const withSleep = structuredClone(results);
    const samples = (scale: number) => Array.from({ length: 100 }, (_, i) => Math.round(i * scale * 100) / 100);
    const lateness = (xs: number[]) => ({ n: xs.length, meanMs: xs.reduce((a, b) => a + b, 0) / xs.length, p50Ms: xs[49]!, p99Ms: xs[98]!, maxMs: xs[99]! });
    const [own, other] = [samples(0.3), samples(0.5)];
    withSleep.production.wakeUp = {
      chapter: '08-failures-and-time',
      concurrency: 8,
      pollMs: 1000,
      alarm: { wake: 'its own worker', workflows: 100, sleepMs: [50, 500], lateness: lateness(own), samplesMs: own },
      handoff: { wake: 'another worker', workflows: 100, sleepMs: [1500, 3000], lateness: lateness(other), samplesMs: other },
    };
    const chart = renderCharts(withSleep).find((c) => c.file === 'wakeup.svg')!;
    expect(chart.svg.match(/<polyline /g)).toHaveLength(2);
    expect(chart.svg).toContain('own worker: p99 29.4 ms');
    expect(chart.svg).toContain('another worker: p99 49.0 ms');
    expect(chart.svg).toContain('target: p99 &lt; 50 ms');
    expect(chart.svg.trimEnd().endsWith('</svg>')).toBe(true);
  });

  it('a label that looks like markup is drawn as text', () => {
    const hostile = structuredClone(results);
    hostile.production.compared![0]!.dispatch![0]!.wake = '<script>alert(1)</script>';
    const svg = renderCharts(hostile).find((c) => c.file === 'dispatch.svg')!.svg;
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;');
  });
});
