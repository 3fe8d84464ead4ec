import { describe, expect, it } from 'vitest';
import { assertJsonSafe, decodeFromLog, encodeForLog, UNDEFINED_IN_LOG, UnserializableResultError } from './json.ts';

describe('step results must survive JSON unchanged', () => {
  it('accepts plain data', () => {
    expect(() => assertJsonSafe({ id: 'ch_1', amounts: [1, 2.5], ok: true, note: null }, 'step x')).not.toThrow();
  });

  it.each([
    ['undefined', undefined, '$ is undefined'],
    ['a BigInt', { n: 10n }, '$.n is a BigInt'],
    ['a function', { f: () => 1 }, '$.f is a function'],
    ['a Date', { at: new Date(0) }, '$.at is a Date'],
    ['NaN', [NaN], '$[0] is NaN'],
    ['an undefined property', { a: undefined }, '$.a is undefined'],
    ['a NUL character', { s: 'a\u0000b' }, '$.s contains a NUL character'],
  ])('refuses %s, naming where it is', (_label, value, problem) => {
    expect(() => assertJsonSafe(value, 'workflow order-1, step charge_card')).toThrow(UnserializableResultError);
    expect(() => assertJsonSafe(value, 'workflow order-1, step charge_card')).toThrow(problem);
  });

  it('refuses a cycle', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => assertJsonSafe(cyclic, 'workflow w, step s')).toThrow(/workflow w, step s .*cycle/);
  });

  it('accepts the same object twice (a shared reference is not a cycle)', () => {
    const shared = { a: 1 };
    expect(() => assertJsonSafe([shared, shared], 'step x')).not.toThrow();
  });
});

describe('the log records undefined as a tag, and nothing else that JSON cannot carry', () => {
  it('encodes undefined as { "$undefined": true } and decodes it back; any other value is itself', () => {
    expect(encodeForLog(undefined, 'step x')).toEqual(UNDEFINED_IN_LOG);
    expect(JSON.stringify(encodeForLog(undefined, 'step x'))).toBe('{"$undefined":true}');
    expect(decodeFromLog(JSON.parse('{"$undefined":true}'))).toBeUndefined();
    for (const value of [null, 0, '', { a: 1 }, [1], { $undefined: false }, { $undefined: true, other: 1 }]) {
      expect(decodeFromLog(encodeForLog(value, 'step x'))).toEqual(value);
    }
  });

  it('refuses a value that is the tag itself (it would replay as undefined), and undefined inside a value', () => {
    expect(() => encodeForLog({ $undefined: true }, 'step x')).toThrow(UnserializableResultError);
    expect(() => encodeForLog({ $undefined: true }, 'step x')).toThrow('step x returned { "$undefined": true }, which is how the log records undefined');
    expect(() => encodeForLog({ a: undefined }, 'step x')).toThrow('$.a is undefined');
  });
});
