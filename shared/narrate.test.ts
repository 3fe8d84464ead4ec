import { describe, expect, it } from 'vitest';
import { short } from './narrate.ts';

describe('a trace line never throws, whatever it prints', () => {
  it('prints plain values as short JSON, and undefined as undefined', () => {
    expect(short({ id: 'ch_1' })).toBe('{"id":"ch_1"}');
    expect(short(undefined)).toBe('undefined');
    expect(short('x'.repeat(100))).toBe(`"${'x'.repeat(56)}…`);
  });

  it('prints what JSON cannot — a BigInt, a function, a symbol, a cycle, a throwing toJSON — as [unprintable: …]', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const hostile = { toJSON: () => { throw new Error('no'); } };
    expect(short(10n)).toBe('[unprintable: BigInt]');
    expect(short(() => 1)).toBe('[unprintable: function]');
    expect(short(Symbol('s'))).toBe('[unprintable: symbol]');
    expect(short(cyclic)).toBe('[unprintable: Object]');
    expect(short(hostile)).toBe('[unprintable: Object]');
    expect(short({ n: 1n })).toBe('[unprintable: Object]');
  });
});
