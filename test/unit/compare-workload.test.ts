// workloadWarnings (src/cli/compare.ts): what makes two designs' workloads differ, named; nothing when equal.
import { describe, expect, it } from 'vitest';
import { workloadWarnings, type Workload } from '../../src/cli/compare.js';

function wl(design: string, o: { pcpus?: number; vcpus?: number; hash?: string; program?: string; defines?: [string, number][]; domains?: number } = {}): Workload {
  return {
    design,
    machine: { pcpus: o.pcpus ?? 4, scheduler: 'fifo', timeslice_us: 100, migration: 'balance', migrate_percent: 30 },
    domains: Array.from({ length: o.domains ?? 1 }, (_, i) => ({
      name: i === 0 ? 'guest' : `g${i}`, vcpus: o.vcpus ?? 6, program: o.program ?? 'realm.s', programHash: o.hash ?? 'aa',
      defines: new Map(o.defines ?? [['ROUNDS', 40]]),
    })),
  };
}

describe('workloadWarnings', () => {
  it('equal workloads, whatever the design is called or where the program lives: no warning', () => {
    expect(workloadWarnings([wl('a'), wl('b', { program: '/elsewhere/realm.s' }), wl('c')])).toEqual([]);
    expect(workloadWarnings([])).toEqual([]);
    expect(workloadWarnings([wl('a')])).toEqual([]);
  });

  it('names each difference against the first design', () => {
    expect(workloadWarnings([wl('a'), wl('b', { hash: 'bb', program: 'mine.s' }), wl('c', { pcpus: 2, vcpus: 3 })])).toEqual([
      'b runs another workload than a: program mine.s differs from realm.s',
      'c runs another workload than a: pcpus 2 (not 4), vcpus 3 (not 6)',
    ]);
    expect(workloadWarnings([wl('a'), wl('b', { defines: [['ROUNDS', 40], ['ROGUE', 1]] }), wl('c', { defines: [] })])).toEqual([
      'b runs another workload than a: ROGUE = 1 (not unset)',
      'c runs another workload than a: ROUNDS = unset (not 40)',
    ]);
    expect(workloadWarnings([wl('a'), wl('b', { domains: 2 })])).toEqual(['b runs another workload than a: 2 domain(s) (not 1)']);
  });
});
