// The claim / pause handshake (sched.ts schedClaim, schedOnCpu). The threaded churn test in
// concurrency/ept-sync.test.ts is where the race showed (a whole-domain altp2m op beside a vCPU a pCPU had
// claimed after reading pause_count = 0); here each side of the handshake is checked at the instants
// that matter, which a free-running run hits only by chance.
import { describe, expect, it } from 'vitest';
import { buildMachine } from '../../src/machine.js';
import { schedClaim, schedClaimNext, schedOnCpu } from '../../src/hv/sched/sched.js';
import { IPI_PATH_IPIV } from '../../shared/domain.js';
import { PC_CLAIMING } from '../../shared/pcpu.js';
import { RS_RUNNABLE, RS_RUNNING, VC_PAUSE_COUNT, VC_PCPU, VC_RUNSTATE } from '../../shared/vcpu.js';

function setup() {
  const m = buildMachine({
    pcpus: 2, apicMode: 'xapic',
    domains: [{ name: 'g', vcpus: 2, memoryKb: 64, image: new Uint8Array(8), entry: 0, affinity: [0, 1], softAffinity: [], ipiPath: IPI_PATH_IPIV, vcpuMapGpa: -1 }],
  });
  for (const v of [0, 1]) { m.vc32[m.vcpuBase(v) + VC_PCPU] = 0; m.vc32[m.vcpuBase(v) + VC_RUNSTATE] = RS_RUNNABLE; }
  return m;
}

describe('schedClaim / schedOnCpu', () => {
  it('an unpaused runnable vCPU is claimed, and the claim word is cleared afterwards', () => {
    const m = setup();
    expect(schedClaim(m, 0, 1)).toBe(true);
    expect(m.vc32[m.vcpuBase(1) + VC_RUNSTATE]).toBe(RS_RUNNING);
    expect(m.pc32[m.pcpuBase(0) + PC_CLAIMING]).toBe(0);
    expect(schedOnCpu(m, 1)).toBe(true);
    expect(schedOnCpu(m, 0)).toBe(false);
  });

  it('a pause raised after the scan but before the claim lands wins: RUNNING is never written', () => {
    const m = setup();
    // The claimer scanned vCPU 1 with pause_count 0; now the pauser raises it and polls.
    m.vc32[m.vcpuBase(1) + VC_PAUSE_COUNT] = 1;
    expect(schedOnCpu(m, 1)).toBe(false);
    expect(schedClaim(m, 0, 1)).toBe(false);
    expect(m.vc32[m.vcpuBase(1) + VC_RUNSTATE]).toBe(RS_RUNNABLE);
    expect(schedOnCpu(m, 1)).toBe(false);
    expect(schedClaimNext(m, 0, true)).toBe(0); // the other vCPU is taken instead
  });

  it('a claim published before the pause is seen by the pauser, from any pCPU', () => {
    const m = setup();
    for (const p of [0, 1]) {
      m.pc32[m.pcpuBase(p) + PC_CLAIMING] = 1 + 1; // pCPU p is between its publish and its compareExchange
      m.vc32[m.vcpuBase(1) + VC_PAUSE_COUNT] = 1;
      expect(schedOnCpu(m, 1)).toBe(true);
      expect(schedOnCpu(m, 0)).toBe(false);
      m.pc32[m.pcpuBase(p) + PC_CLAIMING] = 0;
      expect(schedOnCpu(m, 1)).toBe(false);
      m.vc32[m.vcpuBase(1) + VC_PAUSE_COUNT] = 0;
    }
  });
});
