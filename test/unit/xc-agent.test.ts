// The agent API (agent/xc.ts, libxc's xc_altp2m_* names) against the HVMOP_altp2m implementation, and
// vm_event response handling (hv/vm-event.ts vmEventResume), driven directly on a built machine with no
// pCPU running: every vCPU is off-CPU, so a domain pause completes at once.
//
// Expected values come from ../shared/reference/xen-altp2m.md: §1 (modes: the control domain is
// privileged in every enabled mode), §2 (the common checks in order, the per-sub-op errors, index
// conventions), §3 (vm_event_resume: only while paused by vm_event; emulate check, single-step, fast
// single-step, ALTERNATE_P2M without a visibility check, one unpause) and §4 (host writes reach views that
// hold the gfn, keeping their SVE). Errno values are Xen's (= Linux's): written out here, not imported.
import { describe, expect, it } from 'vitest';
import { buildMachine, type DomainSpec, type Machine } from '../../src/machine.js';
import { XcError, XenControl, type AgentHost } from '../../src/agent/xc.js';
import { LAPIC_DEFAULTS } from '../../src/hw/lapic.js';
import { PERM_R, PERM_W } from '../../src/hw/ept.js';
import { HOST_TABLE, clearEntry, entryOut, readEntry, tableRoot } from '../../src/hv/altp2m.js';
import { vmEventPost, vmEventPutResponse, vmEventResume, vmEventTake, type VmEventResponse } from '../../src/hv/vm-event.js';
import { IPI_PATH_VLAPIC } from '../../shared/domain.js';
import {
  ALTP2M_MODE_DISABLED, ALTP2M_MODE_EXTERNAL, ALTP2M_MODE_LIMITED, ALTP2M_MODE_MIXED, VW_MAX_REMAP, VW_MIN_REMAP, viewBase,
} from '../../shared/altp2m.js';
import { ATTR_SUPPRESS_VE, P2MT_RAM_RW, p2mAttrAccess, p2mAttrType } from '../../shared/p2m.js';
import {
  VCA_EMULATE, VCA_FAST_SS, VCA_SINGLESTEP, VCA_VE, VCA_VMFUNC, VC_ALTP2M_FLAGS, VC_EPTP_INDEX, VC_FAST_SS_IDX, VC_P2MIDX,
  VC_PAUSE_COUNT, VC_VE_GFN, VC_VIOL_ACCESS, VC_VIOL_GPA, VC_VM_EVENT_PAUSE,
} from '../../shared/vcpu.js';
import {
  MEM_ACCESS_R, MEM_ACCESS_W, VM_EVENT_FLAG_ALTERNATE_P2M, VM_EVENT_FLAG_EMULATE, VM_EVENT_FLAG_FAST_SINGLESTEP,
  VM_EVENT_FLAG_TOGGLE_SINGLESTEP, VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_INTERFACE_VERSION, VM_EVENT_REASON_MEM_ACCESS,
  VM_EVENT_REASON_SINGLESTEP,
} from '../../shared/vm-event.js';

// ---- errno (Xen's public errno.h = Linux numbering) ------------------------------------------------------
const ERRNO = { EPERM: 1, ESRCH: 3, EBUSY: 16, EEXIST: 17, EINVAL: 22, EOPNOTSUPP: 95 } as const;
type ErrName = keyof typeof ERRNO;
const NAME_OF: Record<number, string> = Object.fromEntries(Object.entries(ERRNO).map(([k, v]) => [v, k]));

/** The call must throw XcError with exactly this errno (name and value both compared). */
function expectErrno(f: () => unknown, name: ErrName): void {
  let caught: unknown = undefined;
  try { f(); } catch (e) { caught = e; }
  if (!(caught instanceof XcError)) {
    throw new Error(`expected XcError ${name} (${ERRNO[name]}), got ${caught === undefined ? 'success' : String(caught)}`);
  }
  expect({ name: NAME_OF[caught.errno] ?? `errno ${caught.errno}`, errno: caught.errno }).toEqual({ name, errno: ERRNO[name] });
}

// ---- access values (xenmem_access_t, §3) -----------------------------------------------------------------
const A_N = 0, A_R = 1, A_RW = 3, A_RX = 5, A_RWX = 7, A_DEFAULT = 11, A_BAD = 12;
const INVALID_GFN = -1;
/** Guest RAM: 64 KiB = gfns 0..15. */
const RAM_FRAMES = 16;
const NOT_RAM = 0x80;
const APIC_GFN = 0xfee;
/** One past the 32-bit guest-physical space (2^maxphysaddr frames). */
const BEYOND_SPACE = 0x100000;
const INVALID_ALTP2M = 0xffff;

// ---- machine and agent -----------------------------------------------------------------------------------
const host: AgentHost = {
  waitUntil(cond: () => boolean, what: string): void {
    for (let i = 0; i < 100; i++) if (cond()) return;
    throw new Error(`waitUntil: '${what}' never held (no pCPU runs in this test)`);
  },
};

interface Opts { count?: number; vcpus?: number; domains?: number }

function domain(name: string, mode: number, o: Opts): DomainSpec {
  return {
    name, vcpus: o.vcpus ?? 2, memoryKb: RAM_FRAMES * 4, image: new Uint8Array(8), entry: 0, affinity: [0], softAffinity: [],
    ipiPath: IPI_PATH_VLAPIC, vcpuMapGpa: -1, altp2mMode: mode, altp2mCount: o.count,
  };
}

function setup(mode: number, o: Opts = {}): { m: Machine; xc: XenControl } {
  const n = o.domains ?? 1;
  const m = buildMachine({
    pcpus: 1, apicMode: 'xapic',
    domains: Array.from({ length: n }, (_, i) => domain(`g${i}`, mode, o)),
  });
  return { m, xc: new XenControl(m, host, LAPIC_DEFAULTS) };
}

/** Domain index 0 is domid 1. */
const D = 1;

function vc(m: Machine, v: number, w: number): number { return Atomics.load(m.vc32, m.vcpuBase(v) + w); }
function vcSet(m: Machine, v: number, w: number, x: number): void { Atomics.store(m.vc32, m.vcpuBase(v) + w, x); }
/** A table's own entry for gfn (HOST_TABLE or a view slot) of domain index d. */
function entry(m: Machine, d: number, t: number, gfn: number): { mfn: number; type: number; access: number; sve: boolean } {
  readEntry(m, tableRoot(m, d, t), gfn);
  return { mfn: entryOut.mfn, type: p2mAttrType(entryOut.attr), access: p2mAttrAccess(entryOut.attr), sve: (entryOut.attr & ATTR_SUPPRESS_VE) !== 0 };
}

/** Every XenControl method that is one HVMOP_altp2m sub-op, other than get/set_domain_state, with harmless arguments. */
const OTHER_SUBOPS: ReadonlyArray<[string, (xc: XenControl, domid: number) => unknown]> = [
  ['setVcpuEnableNotify', (xc, d) => xc.setVcpuEnableNotify(d, 0, 1)],
  ['setVcpuDisableNotify', (xc, d) => xc.setVcpuDisableNotify(d, 0)],
  ['createView', (xc, d) => xc.createView(d, A_RWX)],
  ['destroyView', (xc, d) => xc.destroyView(d, 1)],
  ['switchToView', (xc, d) => xc.switchToView(d, 0)],
  ['setMemAccess', (xc, d) => xc.setMemAccess(d, 0, 1, A_RX)],
  ['setMemAccessMulti', (xc, d) => xc.setMemAccessMulti(d, 0, [1, 2], [A_RX, A_RX])],
  ['getMemAccess', (xc, d) => xc.getMemAccess(d, 0, 1)],
  ['changeGfn', (xc, d) => xc.changeGfn(d, 0, 1, 2)],
  ['setSuppressVe', (xc, d) => xc.setSuppressVe(d, 0, 1, false)],
  ['setSuppressVeMulti', (xc, d) => xc.setSuppressVeMulti(d, 0, 1, 2, false)],
  ['getSuppressVe', (xc, d) => xc.getSuppressVe(d, 0, 1)],
  ['getVcpuP2mIdx', (xc, d) => xc.getVcpuP2mIdx(d, 0)],
  ['setVisibility', (xc, d) => xc.setVisibility(d, 0, true)],
];
const STATE_SUBOPS: ReadonlyArray<[string, (xc: XenControl, domid: number) => unknown]> = [
  ['getDomainState', (xc, d) => xc.getDomainState(d)],
  ['setDomainState(true)', (xc, d) => xc.setDomainState(d, true)],
  ['setDomainState(false)', (xc, d) => xc.setDomainState(d, false)],
];

const ENABLED_MODES: Array<[string, number]> = [
  ['mixed', ALTP2M_MODE_MIXED],
  ['external', ALTP2M_MODE_EXTERNAL],
  ['limited', ALTP2M_MODE_LIMITED],
];

// =========================================================================================================
describe('disabled mode (§1: nobody may; §2: "not active" is checked before "mode is disabled")', () => {
  it.each(STATE_SUBOPS)('%s -> EINVAL', (_n, f) => {
    const { xc } = setup(ALTP2M_MODE_DISABLED);
    expectErrno(() => f(xc, D), 'EINVAL');
  });
  it.each(OTHER_SUBOPS)('%s -> EOPNOTSUPP', (_n, f) => {
    const { xc } = setup(ALTP2M_MODE_DISABLED);
    expectErrno(() => f(xc, D), 'EOPNOTSUPP');
  });
  it.each([...STATE_SUBOPS, ...OTHER_SUBOPS])('%s on an unknown domid -> ESRCH (checked before the mode)', (_n, f) => {
    const { xc } = setup(ALTP2M_MODE_DISABLED);
    expectErrno(() => f(xc, 2), 'ESRCH');
  });
});

// =========================================================================================================
describe.each(ENABLED_MODES)('%s mode: the control domain (privileged)', (_mode, mode) => {
  describe('before set_domain_state(1)', () => {
    it('get_domain_state is false', () => {
      const { xc } = setup(mode);
      expect(xc.getDomainState(D)).toBe(false);
    });
    it.each(OTHER_SUBOPS)('%s -> EOPNOTSUPP (altp2m not active)', (_n, f) => {
      const { xc } = setup(mode);
      expectErrno(() => f(xc, D), 'EOPNOTSUPP');
    });
    it('set_domain_state(0) while off does nothing and succeeds', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, false);
      expect(xc.getDomainState(D)).toBe(false);
    });
  });

  describe('unknown domain', () => {
    it.each([...STATE_SUBOPS, ...OTHER_SUBOPS])('%s on domid 3 (two domains) -> ESRCH', (_n, f) => {
      const { xc } = setup(mode, { domains: 2 });
      xc.setDomainState(1, true);
      xc.setDomainState(2, true);
      expectErrno(() => f(xc, 3), 'ESRCH');
    });
    it('domid 0 (the control domain: not an HVM guest) -> EOPNOTSUPP', () => {
      const { xc } = setup(mode);
      expectErrno(() => xc.getDomainState(0), 'EOPNOTSUPP');
      expectErrno(() => xc.setDomainState(0, true), 'EOPNOTSUPP');
    });
  });

  describe('set_domain_state / get_domain_state', () => {
    it('enable: active, every vCPU on slot 0, slot 0 visible with the host default access', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      expect(xc.getDomainState(D)).toBe(true);
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
      expect(xc.getVcpuP2mIdx(D, 1)).toBe(0);
      expect(vc(m, 0, VC_EPTP_INDEX)).toBe(0);
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_RWX);
      xc.switchToView(D, 0); // slot 0 is in the visible list
      // Domain pauses were balanced.
      expect(vc(m, 0, VC_PAUSE_COUNT)).toBe(0);
      expect(vc(m, 1, VC_PAUSE_COUNT)).toBe(0);
    });

    it('enabling twice does nothing the second time (views kept)', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RX);
      xc.setDomainState(D, true);
      expect(xc.getMemAccess(D, v, INVALID_GFN)).toBe(A_RX);
    });

    it('disable wipes every view; later sub-ops need re-enabling; re-enabled views start empty', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v1 = xc.createView(D, A_RX);
      const v2 = xc.createView(D, A_R);
      expect([v1, v2]).toEqual([1, 2]);
      xc.setMemAccess(D, v1, 3, A_N);
      xc.switchToView(D, v2);
      xc.setVcpuEnableNotify(D, 0, 5);
      xc.setDomainState(D, false);
      expect(xc.getDomainState(D)).toBe(false);
      expectErrno(() => xc.createView(D, A_RWX), 'EOPNOTSUPP');
      expectErrno(() => xc.getMemAccess(D, v1, 3), 'EOPNOTSUPP');
      expectErrno(() => xc.getVcpuP2mIdx(D, 0), 'EOPNOTSUPP');
      // Xen's bookkeeping: p2midx INVALID, #VE and VMFUNC off, the #VE page released.
      expect(vc(m, 0, VC_P2MIDX)).toBe(INVALID_ALTP2M);
      expect(vc(m, 1, VC_P2MIDX)).toBe(INVALID_ALTP2M);
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & (VCA_VE | VCA_VMFUNC)).toBe(0);
      expect(vc(m, 0, VC_VE_GFN)).toBe(-1);
      xc.setDomainState(D, true);
      expect(xc.getDomainState(D)).toBe(true);
      // Every slot but 0 is free again, and slot 1's old entries are gone.
      expectErrno(() => xc.getMemAccess(D, v1, INVALID_GFN), 'EINVAL');
      expectErrno(() => xc.getMemAccess(D, v2, INVALID_GFN), 'EINVAL');
      expect(xc.createView(D, A_RWX)).toBe(1);
      expectErrno(() => xc.getMemAccess(D, 1, 3), 'ESRCH');
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
      expect(xc.getVcpuP2mIdx(D, 1)).toBe(0);
      xc.setVcpuEnableNotify(D, 0, 5); // the old registration was dropped: no EEXIST
    });

    it('slot 0 is wiped as well: an entry change_gfn made in it is gone after off/on', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.changeGfn(D, 0, 2, 3);
      expect(entry(m, 0, 0, 2).mfn).toBe(3);
      xc.setDomainState(D, false);
      xc.setDomainState(D, true);
      expect(entry(m, 0, 0, 2).type).toBe(0);
    });
  });

  describe('create_view (create_p2m)', () => {
    it('takes the lowest free slot, starting at 1; a destroyed slot is reused', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      expect([xc.createView(D, A_RWX), xc.createView(D, A_RWX), xc.createView(D, A_RWX)]).toEqual([1, 2, 3]);
      xc.destroyView(D, 2);
      expect(xc.createView(D, A_RWX)).toBe(2);
      expect(xc.createView(D, A_RWX)).toBe(4);
      xc.destroyView(D, 1);
      xc.destroyView(D, 3);
      expect(xc.createView(D, A_RWX)).toBe(1);
    });

    it('the given default access is the view default (get_mem_access gfn -1)', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RX);
      expect(xc.getMemAccess(D, v, INVALID_GFN)).toBe(A_RX);
      const w = xc.createView(D, A_N);
      expect(xc.getMemAccess(D, w, INVALID_GFN)).toBe(A_N);
    });

    it('XENMEM_access_default (11) means the host default_access', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.setMemAccess(D, 0, INVALID_GFN, A_R); // host default_access = r
      const v = xc.createView(D, A_DEFAULT);
      expect(xc.getMemAccess(D, v, INVALID_GFN)).toBe(A_R);
    });

    it('a new view is visible at once (switch_to_view accepts it)', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.switchToView(D, v);
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(v);
    });

    it.each([[A_BAD], [13], [0xffff]])('access %i -> EINVAL, no slot taken', (a) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      expectErrno(() => xc.createView(D, a), 'EINVAL');
      expect(xc.createView(D, A_RWX)).toBe(1);
    });

    it('no free slot (altp2m_count 2) -> EINVAL', () => {
      const { xc } = setup(mode, { count: 2 });
      xc.setDomainState(D, true);
      expect(xc.createView(D, A_RWX)).toBe(1);
      expectErrno(() => xc.createView(D, A_RWX), 'EINVAL');
      xc.destroyView(D, 1);
      expect(xc.createView(D, A_RWX)).toBe(1);
    });

    it('altp2m_count 1: only slot 0, which is always taken -> EINVAL', () => {
      const { xc } = setup(mode, { count: 1 });
      xc.setDomainState(D, true);
      expectErrno(() => xc.createView(D, A_RWX), 'EINVAL');
    });
  });

  describe('destroy_view (destroy_p2m)', () => {
    it.each([
      ['view 0', 0],
      ['a never-created slot', 5],
      ['view == nr', 10],
      ['view >= nr', 300],
    ])('%s -> EBUSY', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.destroyView(D, view), 'EBUSY');
    });

    it('a view a vCPU is on -> EBUSY; after switching away it is destroyed; twice -> EBUSY', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.switchToView(D, v);
      expectErrno(() => xc.destroyView(D, v), 'EBUSY');
      xc.switchToView(D, 0);
      xc.destroyView(D, v);
      expectErrno(() => xc.destroyView(D, v), 'EBUSY');
      expectErrno(() => xc.switchToView(D, v), 'EINVAL');
      expectErrno(() => xc.getMemAccess(D, v, INVALID_GFN), 'EINVAL');
      expect(vc(m, 0, VC_PAUSE_COUNT)).toBe(0);
    });

    it('a destroyed view is emptied: recreated in the same slot it holds nothing', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccess(D, v, 4, A_R);
      expect(xc.getMemAccess(D, v, 4)).toBe(A_R);
      xc.destroyView(D, v);
      expect(xc.createView(D, A_RX)).toBe(v);
      expectErrno(() => xc.getMemAccess(D, v, 4), 'ESRCH');
      expect(xc.getMemAccess(D, v, INVALID_GFN)).toBe(A_RX);
    });
  });

  describe('switch_to_view (switch_p2m) and get_vcpu_p2m_idx', () => {
    it('switches every vCPU of the domain, and only that domain', () => {
      const { m, xc } = setup(mode, { domains: 2 });
      xc.setDomainState(1, true);
      xc.setDomainState(2, true);
      const v = xc.createView(1, A_RWX);
      xc.switchToView(1, v);
      expect([xc.getVcpuP2mIdx(1, 0), xc.getVcpuP2mIdx(1, 1)]).toEqual([v, v]);
      expect([vc(m, 0, VC_EPTP_INDEX), vc(m, 1, VC_EPTP_INDEX)]).toEqual([v, v]);
      expect([xc.getVcpuP2mIdx(2, 0), xc.getVcpuP2mIdx(2, 1)]).toEqual([0, 0]);
      // domid 2's slot 1 was never created.
      expectErrno(() => xc.switchToView(2, v), 'EINVAL');
    });

    it.each([
      ['view == nr', 10],
      ['view >= nr', 511],
      ['a never-created slot', 3],
    ])('%s -> EINVAL', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      expectErrno(() => xc.switchToView(D, view), 'EINVAL');
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
    });

    it('a hidden view -> EINVAL; visible again -> switched', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setVisibility(D, v, false);
      expectErrno(() => xc.switchToView(D, v), 'EINVAL');
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
      xc.setVisibility(D, v, true);
      xc.switchToView(D, v);
      expect(xc.getVcpuP2mIdx(D, 1)).toBe(v);
    });

    it('get_vcpu_p2m_idx: a vCPU id >= max_vcpus -> EINVAL', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      expectErrno(() => xc.getVcpuP2mIdx(D, 2), 'EINVAL');
      expectErrno(() => xc.getVcpuP2mIdx(D, 100), 'EINVAL');
    });
  });

  describe('set_visibility', () => {
    it('hiding view 0 makes switch_to_view(0) EINVAL; other ops on it still work', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.switchToView(D, v);
      xc.setVisibility(D, 0, false);
      expectErrno(() => xc.switchToView(D, 0), 'EINVAL');
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_RWX);
      xc.setVisibility(D, 0, true);
      xc.switchToView(D, 0);
    });

    it.each([['a never-created slot', 4], ['view >= nr', 10], ['a destroyed view', 1]])('%s -> EINVAL', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      xc.destroyView(D, 1);
      expectErrno(() => xc.setVisibility(D, view, true), 'EINVAL');
      expectErrno(() => xc.setVisibility(D, view, false), 'EINVAL');
    });

    it('a hidden view can still be destroyed, and its slot is reused visible', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setVisibility(D, v, false);
      xc.destroyView(D, v);
      expect(xc.createView(D, A_RWX)).toBe(v);
      xc.switchToView(D, v);
    });
  });

  describe('get_mem_access', () => {
    it('a gfn the view has not filled -> ESRCH (no fall-back to the host)', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expectErrno(() => xc.getMemAccess(D, v, 3), 'ESRCH');
      expect(xc.getMemAccess(D, 0, 3)).toBe(A_RWX); // view 0 = the host p2m
    });

    it('gfn -1 -> the view default; view 0 -> the host default', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RX);
      expect(xc.getMemAccess(D, v, INVALID_GFN)).toBe(A_RX);
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_RWX);
    });

    it.each([
      ['a gfn outside RAM', NOT_RAM],
      ['the top gfn of the space, unmapped', 0xfffff],
      ['a gfn beyond the guest-physical space', BEYOND_SPACE],
    ])('view 0, %s -> ESRCH', (_n, gfn) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      expectErrno(() => xc.getMemAccess(D, 0, gfn), 'ESRCH');
    });

    it.each([['a never-created slot', 2], ['view >= nr', 10]])('%s -> EINVAL', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.getMemAccess(D, view, 3), 'EINVAL');
      expectErrno(() => xc.getMemAccess(D, view, INVALID_GFN), 'EINVAL');
    });
  });

  describe('set_mem_access', () => {
    it('on a view: fills the gfn from the host, sets that view\'s access, SVE 1; the host is untouched', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccess(D, v, 3, A_R);
      expect(xc.getMemAccess(D, v, 3)).toBe(A_R);
      expect(xc.getSuppressVe(D, v, 3)).toBe(true);
      expect(entry(m, 0, v, 3)).toMatchObject({ mfn: 3, type: P2MT_RAM_RW });
      expect(xc.getMemAccess(D, 0, 3)).toBe(A_RWX);
      expectErrno(() => xc.getMemAccess(D, v, 4), 'ESRCH');
    });

    it('view 0 is the host p2m: it reaches a view that already holds the gfn, and not one that does not', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const a = xc.createView(D, A_RWX);
      const b = xc.createView(D, A_RWX);
      xc.setSuppressVe(D, a, 3, false); // a holds gfn 3 (host access rwx, SVE 0)
      xc.setMemAccess(D, a, 4, A_N);    // a holds gfn 4 with its own restriction
      xc.setMemAccess(D, 0, 3, A_RX);
      xc.setMemAccess(D, 0, 4, A_RW);
      expect(xc.getMemAccess(D, 0, 3)).toBe(A_RX);
      expect(xc.getMemAccess(D, a, 3)).toBe(A_RX);
      expect(xc.getSuppressVe(D, a, 3)).toBe(false); // the view keeps its SVE (§4)
      expect(xc.getMemAccess(D, a, 4)).toBe(A_RW);   // the view's own access is lost (§4)
      expectErrno(() => xc.getMemAccess(D, b, 3), 'ESRCH');
      expectErrno(() => xc.getMemAccess(D, b, 4), 'ESRCH');
    });

    it('gfn -1 sets the host default_access, even for a view; the view default is unchanged', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RX);
      xc.setMemAccess(D, v, INVALID_GFN, A_R);
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_R);
      expect(xc.getMemAccess(D, v, INVALID_GFN)).toBe(A_RX);
      xc.setMemAccess(D, 0, INVALID_GFN, A_RW);
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_RW);
    });

    it('a gfn whose host entry is not RAM: quietly 0, nothing filled', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccess(D, v, NOT_RAM, A_R);
      xc.setMemAccess(D, v, APIC_GFN, A_R);
      expectErrno(() => xc.getMemAccess(D, v, NOT_RAM), 'ESRCH');
      expectErrno(() => xc.getMemAccess(D, v, APIC_GFN), 'ESRCH');
    });

    it.each([['a never-created slot', 2], ['view >= nr', 10], ['view >= nr, gfn -1', 10]])('%s -> EINVAL', (n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      const gfn = n.endsWith('gfn -1') ? INVALID_GFN : 3;
      expectErrno(() => xc.setMemAccess(D, view, gfn, A_R), 'EINVAL');
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_RWX);
    });

    it.each([[0], [1]])('access 12 on view %i -> EINVAL, nothing changed', (view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.setMemAccess(D, view, 3, A_BAD), 'EINVAL');
      expectErrno(() => xc.setMemAccess(D, view, INVALID_GFN, A_BAD), 'EINVAL');
      expect(xc.getMemAccess(D, 0, 3)).toBe(A_RWX);
      expect(xc.getMemAccess(D, 0, INVALID_GFN)).toBe(A_RWX);
      if (view !== 0) expectErrno(() => xc.getMemAccess(D, view, 3), 'ESRCH');
    });
  });

  describe('set_mem_access_multi', () => {
    it('on a view: each element is handled like set_mem_access', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccessMulti(D, v, [1, 2, 3, NOT_RAM], [A_R, A_RW, A_N, A_R]);
      expect([xc.getMemAccess(D, v, 1), xc.getMemAccess(D, v, 2), xc.getMemAccess(D, v, 3)]).toEqual([A_R, A_RW, A_N]);
      expectErrno(() => xc.getMemAccess(D, v, NOT_RAM), 'ESRCH');
      expect(xc.getMemAccess(D, 0, 1)).toBe(A_RWX);
    });

    it('view 0: the host, propagated into views holding the gfn', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccess(D, v, 5, A_R);
      xc.setMemAccessMulti(D, 0, [5, 6], [A_RX, A_RX]);
      expect([xc.getMemAccess(D, 0, 5), xc.getMemAccess(D, 0, 6), xc.getMemAccess(D, v, 5)]).toEqual([A_RX, A_RX, A_RX]);
      expectErrno(() => xc.getMemAccess(D, v, 6), 'ESRCH');
    });

    it('more than 64 elements (no preemption pending) complete in one call', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      const gfns = Array.from({ length: 80 }, (_, i) => i % RAM_FRAMES);
      const acc = gfns.map((_, i) => (i < 64 ? A_RW : A_R));
      xc.setMemAccessMulti(D, v, gfns, acc);
      for (let g = 0; g < RAM_FRAMES; g++) expect(xc.getMemAccess(D, v, g)).toBe(g < 80 - 64 ? A_R : A_RW);
    });

    it('a bad access value -> EINVAL and it stops there', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expectErrno(() => xc.setMemAccessMulti(D, v, [1, 2, 3], [A_R, A_BAD, A_R]), 'EINVAL');
      expect(xc.getMemAccess(D, v, 1)).toBe(A_R);
      expectErrno(() => xc.getMemAccess(D, v, 2), 'ESRCH');
      expectErrno(() => xc.getMemAccess(D, v, 3), 'ESRCH');
    });

    it.each([['a never-created slot', 2], ['view >= nr', 10]])('%s -> EINVAL', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.setMemAccessMulti(D, view, [1], [A_R]), 'EINVAL');
    });

    it('lists of different lengths -> EINVAL before any call', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      const before = xc.calls;
      expectErrno(() => xc.setMemAccessMulti(D, v, [1, 2], [A_R]), 'EINVAL');
      expect(xc.calls).toBe(before);
      expectErrno(() => xc.getMemAccess(D, v, 1), 'ESRCH');
    });
  });

  describe('change_gfn', () => {
    it('old_gfn -> mfn(new_gfn) with new_gfn\'s type and access; SVE 1 (the caller is not the domain); remap range widened', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccess(D, v, 7, A_R);      // new_gfn's effective entry: the view's own (access r)
      xc.setSuppressVe(D, v, 7, false);   // ... with SVE 0, which must not be copied
      xc.setSuppressVe(D, v, 2, false);   // old_gfn held with SVE 0, which must not be kept
      xc.changeGfn(D, v, 2, 7);
      expect(entry(m, 0, v, 2)).toMatchObject({ mfn: 7, type: P2MT_RAM_RW, access: A_R });
      expect(xc.getMemAccess(D, v, 2)).toBe(A_R);
      expect(xc.getSuppressVe(D, v, 2)).toBe(true);
      expect(entry(m, 0, HOST_TABLE, 2).mfn).toBe(2); // the host p2m is untouched
      const vb = viewBase(0, v);
      expect([m.ap32[vb + VW_MIN_REMAP], m.ap32[vb + VW_MAX_REMAP]]).toEqual([7, 7]);
      xc.changeGfn(D, v, 3, 9);
      xc.changeGfn(D, v, 4, 5);
      expect([m.ap32[vb + VW_MIN_REMAP], m.ap32[vb + VW_MAX_REMAP]]).toEqual([5, 9]);
    });

    it('new_gfn not held by the view: the host entry is used (host access, not the view default)', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_N);
      xc.setMemAccess(D, 0, 8, A_RX);
      xc.changeGfn(D, v, 1, 8);
      expect(entry(m, 0, v, 1)).toMatchObject({ mfn: 8, access: A_RX, sve: true });
      expectErrno(() => xc.getMemAccess(D, v, 8), 'ESRCH'); // new_gfn itself is not filled
    });

    it('on view 0: acts on altp2m slot 0, not on the host p2m', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.changeGfn(D, 0, 2, 3);
      expect(entry(m, 0, 0, 2).mfn).toBe(3);
      expect(entry(m, 0, HOST_TABLE, 2).mfn).toBe(2);
    });

    it('revert (new_gfn -1) removes the view\'s entry; with no entry it still succeeds', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.changeGfn(D, v, 2, 7);
      xc.changeGfn(D, v, 2, INVALID_GFN);
      expectErrno(() => xc.getMemAccess(D, v, 2), 'ESRCH');
      expect(entry(m, 0, v, 2).type).toBe(0);
      xc.changeGfn(D, v, 2, INVALID_GFN);
      xc.changeGfn(D, v, NOT_RAM, INVALID_GFN);
      expect(entry(m, 0, HOST_TABLE, 2).mfn).toBe(2);
    });

    it.each([
      ['old_gfn not RAM', NOT_RAM, 3],
      ['new_gfn not RAM', 3, NOT_RAM],
      ['new_gfn is the APIC page (not ram_rw)', 3, APIC_GFN],
      ['new_gfn beyond the guest-physical space', 3, BEYOND_SPACE],
    ])('%s -> ESRCH', (_n, oldGfn, newGfn) => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expectErrno(() => xc.changeGfn(D, v, oldGfn, newGfn), 'ESRCH');
      if (oldGfn === 3) expect(entry(m, 0, v, 3).mfn === 3 || entry(m, 0, v, 3).type === 0).toBe(true);
    });

    it.each([['a never-created slot', 2, 7], ['view >= nr', 10, 7], ['revert on an invalid view', 2, INVALID_GFN]])('%s -> EINVAL', (_n, view, newGfn) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.changeGfn(D, view, 3, newGfn), 'EINVAL');
    });
  });

  describe('set_suppress_ve / get_suppress_ve', () => {
    it('an unfilled gfn gets a 4K entry with the host\'s type and access (not the view default) and the new SVE', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_R);
      xc.setSuppressVe(D, v, 4, false);
      expect(xc.getSuppressVe(D, v, 4)).toBe(false);
      expect(xc.getMemAccess(D, v, 4)).toBe(A_RWX);
      expect(entry(m, 0, v, 4)).toMatchObject({ mfn: 4, type: P2MT_RAM_RW });
      xc.setSuppressVe(D, v, 4, true);
      expect(xc.getSuppressVe(D, v, 4)).toBe(true);
    });

    it('view 0 is the host p2m; a view holding the gfn keeps its own SVE', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.setMemAccess(D, v, 6, A_R); // held, SVE 1
      expect(xc.getSuppressVe(D, 0, 6)).toBe(true);
      xc.setSuppressVe(D, 0, 6, false);
      expect(xc.getSuppressVe(D, 0, 6)).toBe(false);
      expect(xc.getSuppressVe(D, v, 6)).toBe(true);
    });

    it.each([
      ['a gfn outside RAM', NOT_RAM],
      ['the APIC page', APIC_GFN],
      ['a gfn beyond the guest-physical space', BEYOND_SPACE],
    ])('on a view, %s (host entry not ram_rw) -> ESRCH, nothing filled', (_n, gfn) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expectErrno(() => xc.setSuppressVe(D, v, gfn, false), 'ESRCH');
      expectErrno(() => xc.getSuppressVe(D, v, gfn), 'ESRCH');
    });

    it('get_suppress_ve reads the view\'s own entry: unfilled -> ESRCH', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expectErrno(() => xc.getSuppressVe(D, v, 3), 'ESRCH');
      expect(xc.getSuppressVe(D, 0, 3)).toBe(true);
    });

    it.each([['a never-created slot', 2], ['view >= nr', 10]])('%s -> EINVAL (set and get)', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.setSuppressVe(D, view, 3, false), 'EINVAL');
      expectErrno(() => xc.getSuppressVe(D, view, 3), 'EINVAL');
    });
  });

  describe('set_suppress_ve_multi', () => {
    it('no error: every gfn in [first, last] is set; first error 0', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expect(xc.setSuppressVeMulti(D, v, 2, 5, false)).toEqual({ firstError: 0, firstErrorGfn: -1 });
      for (let g = 2; g <= 5; g++) expect(xc.getSuppressVe(D, v, g)).toBe(false);
      expectErrno(() => xc.getSuppressVe(D, v, 1), 'ESRCH');
      expectErrno(() => xc.getSuppressVe(D, v, 6), 'ESRCH');
    });

    it('per-gfn errors do not stop the loop; the first one (-ESRCH) and its gfn are reported', () => {
      const { m, xc } = setup(mode);
      // Holes at gfn 5 and 8 in the host p2m (not RAM).
      clearEntry(m, tableRoot(m, 0, HOST_TABLE), 5, 0);
      clearEntry(m, tableRoot(m, 0, HOST_TABLE), 8, 0);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expect(xc.setSuppressVeMulti(D, v, 3, 10, false)).toEqual({ firstError: -ERRNO.ESRCH, firstErrorGfn: 5 });
      for (const g of [3, 4, 6, 7, 9, 10]) expect(xc.getSuppressVe(D, v, g)).toBe(false);
      expectErrno(() => xc.getSuppressVe(D, v, 5), 'ESRCH');
      expectErrno(() => xc.getSuppressVe(D, v, 8), 'ESRCH');
    });

    it('a range running past the end of RAM: the first gfn past it is the first error', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expect(xc.setSuppressVeMulti(D, v, RAM_FRAMES - 2, RAM_FRAMES + 3, false)).toEqual({ firstError: -ERRNO.ESRCH, firstErrorGfn: RAM_FRAMES });
      expect(xc.getSuppressVe(D, v, RAM_FRAMES - 1)).toBe(false);
    });

    it('first > last -> EINVAL', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      expectErrno(() => xc.setSuppressVeMulti(D, v, 5, 4, false), 'EINVAL');
      expectErrno(() => xc.getSuppressVe(D, v, 5), 'ESRCH');
    });

    it.each([['a never-created slot', 2], ['view >= nr', 10]])('%s -> EINVAL', (_n, view) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.createView(D, A_RWX);
      expectErrno(() => xc.setSuppressVeMulti(D, view, 1, 2, false), 'EINVAL');
    });
  });

  describe('vcpu_enable_notify / vcpu_disable_notify', () => {
    it('enable: #VE and VMFUNC on for that vCPU, the page recorded; a second enable -> EEXIST', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.setVcpuEnableNotify(D, 0, 5);
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & (VCA_VE | VCA_VMFUNC)).toBe(VCA_VE | VCA_VMFUNC);
      expect(vc(m, 0, VC_VE_GFN)).toBe(5);
      expect(vc(m, 1, VC_ALTP2M_FLAGS) & (VCA_VE | VCA_VMFUNC)).toBe(0);
      expectErrno(() => xc.setVcpuEnableNotify(D, 0, 5), 'EEXIST');
      expectErrno(() => xc.setVcpuEnableNotify(D, 0, 6), 'EEXIST');
      expect(vc(m, 0, VC_VE_GFN)).toBe(5);
    });

    it('already enabled is checked before the gfn: a bad gfn then -> EEXIST', () => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.setVcpuEnableNotify(D, 1, 5);
      expectErrno(() => xc.setVcpuEnableNotify(D, 1, NOT_RAM), 'EEXIST');
    });

    it('any vCPU id may be named (vCPU 1, not the caller\'s)', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.setVcpuEnableNotify(D, 1, 9);
      expect(vc(m, 1, VC_VE_GFN)).toBe(9);
      expect(vc(m, 0, VC_VE_GFN)).toBe(-1);
    });

    it.each([
      ['a gfn outside RAM', 0, NOT_RAM],
      ['the APIC page (not ordinary RAM)', 0, APIC_GFN],
      ['the top gfn of the space, unmapped', 0, 0xfffff],
      ['a gfn beyond the guest-physical space', 0, BEYOND_SPACE],
      ['vcpu_id == max_vcpus', 2, 5],
      ['vcpu_id far out of range', 1000, 5],
    ])('%s -> EINVAL, nothing enabled', (_n, vcpu, gfn) => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      expectErrno(() => xc.setVcpuEnableNotify(D, vcpu, gfn), 'EINVAL');
      for (const v of [0, 1]) {
        expect(vc(m, v, VC_ALTP2M_FLAGS) & (VCA_VE | VCA_VMFUNC)).toBe(0);
        expect(vc(m, v, VC_VE_GFN)).toBe(-1);
      }
    });

    it('disable: #VE off and the page dropped, VMFUNC stays on; enable works again', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.setVcpuEnableNotify(D, 0, 5);
      xc.setVcpuDisableNotify(D, 0);
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & (VCA_VE | VCA_VMFUNC)).toBe(VCA_VMFUNC);
      expect(vc(m, 0, VC_VE_GFN)).toBe(-1);
      xc.setVcpuEnableNotify(D, 0, 6);
      expect(vc(m, 0, VC_VE_GFN)).toBe(6);
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_VE).toBe(VCA_VE);
    });

    it('disable with nothing registered does nothing and returns 0', () => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      xc.setVcpuDisableNotify(D, 1);
      expect(vc(m, 1, VC_ALTP2M_FLAGS) & (VCA_VE | VCA_VMFUNC)).toBe(0);
    });

    it.each([[2], [1000]])('disable: vcpu_id %i (>= max_vcpus) -> EINVAL', (vcpu) => {
      const { xc } = setup(mode);
      xc.setDomainState(D, true);
      expectErrno(() => xc.setVcpuDisableNotify(D, vcpu), 'EINVAL');
    });
  });

  describe('gfns beyond the 32-bit guest-physical space (2^20 frames): no entry there, nothing touched', () => {
    /** First p2m word that differs from `before`, or -1. */
    function firstChange(m: Machine, before: Int32Array): number {
      for (let i = 0; i < before.length; i++) if (m.p2m[i] !== before[i]) return i;
      return -1;
    }
    const BEYOND: Array<[string, number]> = [
      ['0x100000', BEYOND_SPACE], ['0x100400', BEYOND_SPACE + 0x400], ['0xfffffffe', 0xfffffffe],
      ['2^32 + 3 (must not alias gfn 3)', 2 ** 32 + 3],
    ];
    const CASES: Array<[string, ErrName | null, (xc: XenControl, v: number, g: number) => unknown]> = [
      ['get_mem_access view 0', 'ESRCH', (xc, _v, g) => xc.getMemAccess(D, 0, g)],
      ['get_mem_access view v', 'ESRCH', (xc, v, g) => xc.getMemAccess(D, v, g)],
      ['get_suppress_ve view 0', 'ESRCH', (xc, _v, g) => xc.getSuppressVe(D, 0, g)],
      ['get_suppress_ve view v', 'ESRCH', (xc, v, g) => xc.getSuppressVe(D, v, g)],
      ['set_suppress_ve view 0', 'ESRCH', (xc, _v, g) => xc.setSuppressVe(D, 0, g, false)],
      ['set_suppress_ve view v', 'ESRCH', (xc, v, g) => xc.setSuppressVe(D, v, g, false)],
      ['change_gfn old_gfn', 'ESRCH', (xc, v, g) => xc.changeGfn(D, v, g, 3)],
      ['change_gfn new_gfn', 'ESRCH', (xc, v, g) => xc.changeGfn(D, v, 3, g)],
      ['vcpu_enable_notify', 'EINVAL', (xc, _v, g) => xc.setVcpuEnableNotify(D, 0, g)],
      ['set_mem_access view 0 (quietly 0)', null, (xc, _v, g) => xc.setMemAccess(D, 0, g, A_R)],
      ['set_mem_access view v (quietly 0)', null, (xc, v, g) => xc.setMemAccess(D, v, g, A_R)],
      ['change_gfn revert (0 with no entry)', null, (xc, v, g) => xc.changeGfn(D, v, g, INVALID_GFN)],
      ['set_mem_access_multi view 0 (quietly 0)', null, (xc, _v, g) => xc.setMemAccessMulti(D, 0, [g], [A_R])],
      ['set_mem_access_multi view v (quietly 0)', null, (xc, v, g) => xc.setMemAccessMulti(D, v, [g, g], [A_N, A_R])],
    ];
    const TABLE = BEYOND.flatMap(([gn, g]) => CASES.map(([cn, err, f]) => [`${cn}, gfn ${gn}`, g, err, f] as [string, number, ErrName | null, typeof f]));
    it.each(TABLE)('%s', (_n, g, err, f) => {
      const { m, xc } = setup(mode);
      xc.setDomainState(D, true);
      const v = xc.createView(D, A_RWX);
      xc.changeGfn(D, v, 3, 3); // view v holds gfn 3
      const before = Int32Array.from(m.p2m);
      if (err === null) f(xc, v, g);
      else expectErrno(() => f(xc, v, g), err);
      if (!/change_gfn new_gfn/.test(_n)) expect(firstChange(m, before)).toBe(-1);
    });
  });

  describe('two domains: each domid has its own views', () => {
    it('views, accesses and errors of domid 2 do not touch domid 1', () => {
      const { m, xc } = setup(mode, { domains: 2 });
      xc.setDomainState(2, true);
      expect(xc.getDomainState(1)).toBe(false);
      expectErrno(() => xc.createView(1, A_RWX), 'EOPNOTSUPP');
      const v = xc.createView(2, A_RX);
      expect(v).toBe(1);
      xc.setMemAccess(2, v, 3, A_R);
      // Domain index 1's RAM starts after domain 0's 16 frames.
      expect(entry(m, 1, v, 3)).toMatchObject({ mfn: RAM_FRAMES + 3, access: A_R });
      xc.switchToView(2, v);
      expect([vc(m, 2, VC_P2MIDX), vc(m, 3, VC_P2MIDX)]).toEqual([v, v]);
      expect([vc(m, 0, VC_P2MIDX), vc(m, 1, VC_P2MIDX)]).toEqual([INVALID_ALTP2M, INVALID_ALTP2M]);
      xc.setVcpuEnableNotify(2, 1, 2);
      expect(vc(m, 3, VC_VE_GFN)).toBe(2);
      expect(vc(m, 1, VC_VE_GFN)).toBe(-1);
    });
  });
});

// =========================================================================================================
// vm_event responses (§3 "How Xen handles a response").

const NR = 10;

/** Pause vCPU v (global index) of domain index d as a sync MEM_ACCESS event does, recording the access first. */
function post(m: Machine, d: number, v: number, gfn: number, access: number, reason = VM_EVENT_REASON_MEM_ACCESS) {
  vcSet(m, v, VC_VIOL_GPA, (gfn << 12) | 0x10);
  vcSet(m, v, VC_VIOL_ACCESS, access);
  const flags = ((access & (PERM_R | PERM_W)) !== 0 ? MEM_ACCESS_R : 0) | ((access & PERM_W) !== 0 ? MEM_ACCESS_W : 0);
  expect(vmEventPost(m, d, 1, v, true, reason, gfn, 0x10, flags, 0x100)).toBe(true);
  const req = vmEventTake(m, d);
  if (req === null) throw new Error('no request on the ring');
  return req;
}

function respond(m: Machine, d: number, r: Partial<VmEventResponse> & { flags: number; vcpuId: number }): number {
  vmEventPutResponse(m, d, { version: VM_EVENT_INTERFACE_VERSION, reason: VM_EVENT_REASON_MEM_ACCESS, altp2mIdx: 0, ...r });
  return vmEventResume(m, d);
}

const P = VM_EVENT_FLAG_VCPU_PAUSED;

function pauseState(m: Machine, v: number): [number, number] {
  return [vc(m, v, VC_PAUSE_COUNT), vc(m, v, VC_VM_EVENT_PAUSE)];
}

describe.each(ENABLED_MODES)('vm_event responses (%s mode)', (_mode, mode) => {
  function ready(o: Opts = {}) {
    const { m, xc } = setup(mode, o);
    xc.setDomainState(D, true);
    return { m, xc };
  }

  it('the request: VCPU_PAUSED | ALTERNATE_P2M, the vCPU\'s current view, its id in the domain; the vCPU is paused once', () => {
    const { m, xc } = ready({ domains: 2 });
    xc.setDomainState(2, true);
    const v = xc.createView(2, A_RWX);
    xc.switchToView(2, v);
    const req = post(m, 1, 3, 4, PERM_W);
    expect(req).toMatchObject({ version: VM_EVENT_INTERFACE_VERSION, flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 1, altp2mIdx: v, gfn: 4 });
    expect(pauseState(m, 3)).toEqual([1, 1]);
    expect(pauseState(m, 2)).toEqual([0, 0]);
  });

  it('ALTERNATE_P2M switches only that vCPU, to a valid view; it is unpaused once', () => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RWX);
    post(m, 0, 1, 3, PERM_W);
    expect(respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 1, altp2mIdx: v })).toBe(1);
    expect(xc.getVcpuP2mIdx(D, 1)).toBe(v);
    expect(vc(m, 1, VC_EPTP_INDEX)).toBe(v);
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
    expect(pauseState(m, 1)).toEqual([0, 0]);
    // The view is now in use (active_vcpus): destroy refuses it.
    expectErrno(() => xc.destroyView(D, v), 'EBUSY');
  });

  it('ALTERNATE_P2M to a hidden view is accepted (visibility is not checked)', () => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RWX);
    xc.setVisibility(D, v, false);
    post(m, 0, 0, 3, PERM_W);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: v });
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(v);
    expect(pauseState(m, 0)).toEqual([0, 0]);
  });

  it.each([
    ['a never-created slot', 4],
    ['idx == nr', NR],
    ['idx >= nr', 0x1ff],
    ['INVALID_ALTP2M', INVALID_ALTP2M],
    ['a destroyed view', 1],
  ])('ALTERNATE_P2M to %s is ignored quietly; the vCPU is still unpaused', (_n, idx) => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RWX);
    const w = xc.createView(D, A_RWX);
    xc.destroyView(D, 1);
    xc.switchToView(D, w);
    expect(v).toBe(1);
    post(m, 0, 0, 3, PERM_W);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: idx });
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(w);
    expect(vc(m, 0, VC_EPTP_INDEX)).toBe(w);
    expect(pauseState(m, 0)).toEqual([0, 0]);
  });

  it('TOGGLE_SINGLESTEP turns single-step on, and a second one off', () => {
    const { m } = ready();
    post(m, 0, 0, 3, PERM_W);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId: 0 });
    expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(VCA_SINGLESTEP);
    expect(vc(m, 1, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(0);
    expect(pauseState(m, 0)).toEqual([0, 0]);
    post(m, 0, 0, 3, PERM_W, VM_EVENT_REASON_SINGLESTEP);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId: 0, reason: VM_EVENT_REASON_SINGLESTEP });
    expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(0);
    expect(pauseState(m, 0)).toEqual([0, 0]);
  });

  it('xen-access\'s reply (ALTERNATE_P2M 0 | TOGGLE_SINGLESTEP) then the step\'s reply (ALTERNATE_P2M view | TOGGLE)', () => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RX);
    xc.switchToView(D, v);
    post(m, 0, 1, 3, PERM_W);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId: 1, altp2mIdx: 0 });
    expect([xc.getVcpuP2mIdx(D, 0), xc.getVcpuP2mIdx(D, 1)]).toEqual([v, 0]);
    expect(vc(m, 1, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(VCA_SINGLESTEP);
    post(m, 0, 1, 3, 0, VM_EVENT_REASON_SINGLESTEP);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId: 1, altp2mIdx: v, reason: VM_EVENT_REASON_SINGLESTEP });
    expect([xc.getVcpuP2mIdx(D, 0), xc.getVcpuP2mIdx(D, 1)]).toEqual([v, v]);
    expect(vc(m, 1, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(0);
    expect(pauseState(m, 1)).toEqual([0, 0]);
  });

  it.each([
    ['idx nr - 1 is taken', NR - 1, true],
    ['idx 0 is taken', 0, true],
    ['idx == nr is ignored', NR, false],
    ['idx >= nr is ignored', 0x1ff, false],
  ])('FAST_SINGLESTEP: %s', (_n, idx, taken) => {
    const { m } = ready();
    post(m, 0, 0, 3, PERM_W);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_FAST_SINGLESTEP, vcpuId: 0, fastSinglestepIdx: idx });
    expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_FAST_SS).toBe(taken ? VCA_FAST_SS : 0);
    if (taken) expect(vc(m, 0, VC_FAST_SS_IDX)).toBe(idx);
    expect(pauseState(m, 0)).toEqual([0, 0]);
  });

  it('a response without VCPU_PAUSED does nothing: no toggle, no switch, still paused', () => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RWX);
    post(m, 0, 0, 3, PERM_W);
    expect(respond(m, 0, { flags: VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP | VM_EVENT_FLAG_FAST_SINGLESTEP, vcpuId: 0, altp2mIdx: v, fastSinglestepIdx: 1 })).toBe(1);
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
    expect(vc(m, 0, VC_ALTP2M_FLAGS) & (VCA_SINGLESTEP | VCA_FAST_SS)).toBe(0);
    expect(pauseState(m, 0)).toEqual([1, 1]);
    // The proper reply then applies.
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: v });
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(v);
    expect(pauseState(m, 0)).toEqual([0, 0]);
  });

  it.each([
    ['version 6', VM_EVENT_INTERFACE_VERSION - 1, 0],
    ['version 8', VM_EVENT_INTERFACE_VERSION + 1, 0],
    ['an unknown vCPU id', VM_EVENT_INTERFACE_VERSION, 2],
  ])('a response with %s is skipped: nothing happens', (_n, version, vcpuId) => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RWX);
    post(m, 0, 0, 3, PERM_W);
    respond(m, 0, { version, flags: P | VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId, altp2mIdx: v });
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
    expect(xc.getVcpuP2mIdx(D, 1)).toBe(0);
    expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(0);
    expect(pauseState(m, 0)).toEqual([1, 1]);
    expect(pauseState(m, 1)).toEqual([0, 0]);
  });

  it('unpaused exactly once: a second reply for the same event, and a reply for a vCPU never paused, do nothing', () => {
    const { m, xc } = ready();
    const v = xc.createView(D, A_RWX);
    post(m, 0, 0, 3, PERM_W);
    respond(m, 0, { flags: P, vcpuId: 0 });
    expect(pauseState(m, 0)).toEqual([0, 0]);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId: 0, altp2mIdx: v });
    expect(pauseState(m, 0)).toEqual([0, 0]);
    expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
    expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(0);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_TOGGLE_SINGLESTEP, vcpuId: 1 });
    expect(pauseState(m, 1)).toEqual([0, 0]);
    expect(vc(m, 1, VC_ALTP2M_FLAGS) & VCA_SINGLESTEP).toBe(0);
  });

  it('two vCPUs paused, both replies in one resume: each unpaused once, each its own view', () => {
    const { m, xc } = ready();
    const a = xc.createView(D, A_RWX);
    const b = xc.createView(D, A_RWX);
    post(m, 0, 0, 3, PERM_W);
    post(m, 0, 1, 4, PERM_W);
    vmEventPutResponse(m, 0, { version: VM_EVENT_INTERFACE_VERSION, reason: VM_EVENT_REASON_MEM_ACCESS, flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: a });
    vmEventPutResponse(m, 0, { version: VM_EVENT_INTERFACE_VERSION, reason: VM_EVENT_REASON_MEM_ACCESS, flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 1, altp2mIdx: b });
    expect(vmEventResume(m, 0)).toBe(2);
    expect([xc.getVcpuP2mIdx(D, 0), xc.getVcpuP2mIdx(D, 1)]).toEqual([a, b]);
    expect([pauseState(m, 0), pauseState(m, 1)]).toEqual([[0, 0], [0, 0]]);
  });

  describe('EMULATE: only when the recorded access would still violate the vCPU\'s current view', () => {
    /** vCPU 0 in view v, where gfn 3 is r; slot 0 holds gfn 3 as rwx. */
    function restricted() {
      const r = ready();
      const v = r.xc.createView(D, A_RWX);
      r.xc.setMemAccess(D, v, 3, A_R);
      r.xc.changeGfn(D, 0, 3, 3); // fills slot 0's gfn 3 from the host: rwx
      r.xc.switchToView(D, v);
      return { ...r, v };
    }

    it('a write to an r page still violates -> VCA_EMULATE', () => {
      const { m } = restricted();
      post(m, 0, 0, 3, PERM_W);
      respond(m, 0, { flags: P | VM_EVENT_FLAG_EMULATE, vcpuId: 0 });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(VCA_EMULATE);
      expect(pauseState(m, 0)).toEqual([0, 0]);
    });

    it('a read of an r page does not violate -> no VCA_EMULATE', () => {
      const { m } = restricted();
      post(m, 0, 0, 3, PERM_R);
      respond(m, 0, { flags: P | VM_EVENT_FLAG_EMULATE, vcpuId: 0 });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(0);
      expect(pauseState(m, 0)).toEqual([0, 0]);
    });

    it('the agent lifted the restriction before replying -> no VCA_EMULATE', () => {
      const { m, xc, v } = restricted();
      post(m, 0, 0, 3, PERM_W);
      xc.setMemAccess(D, v, 3, A_RW);
      respond(m, 0, { flags: P | VM_EVENT_FLAG_EMULATE, vcpuId: 0 });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(0);
    });

    it('checked before the view switch: restricted now, permissive target -> VCA_EMULATE, and switched', () => {
      const { m, xc } = restricted();
      post(m, 0, 0, 3, PERM_W);
      respond(m, 0, { flags: P | VM_EVENT_FLAG_EMULATE | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: 0 });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(VCA_EMULATE);
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(0);
    });

    it('checked before the view switch: permissive now, restricted target -> no VCA_EMULATE, and switched', () => {
      const { m, xc, v } = restricted();
      xc.switchToView(D, 0);
      post(m, 0, 0, 3, PERM_W);
      respond(m, 0, { flags: P | VM_EVENT_FLAG_EMULATE | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: v });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(0);
      expect(xc.getVcpuP2mIdx(D, 0)).toBe(v);
    });

    it('without VCPU_PAUSED: no VCA_EMULATE', () => {
      const { m } = restricted();
      post(m, 0, 0, 3, PERM_W);
      respond(m, 0, { flags: VM_EVENT_FLAG_EMULATE, vcpuId: 0 });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(0);
      expect(pauseState(m, 0)).toEqual([1, 1]);
    });

    it('EMULATE in a reply to a non-mem_access event (SINGLESTEP) is not an emulate request', () => {
      const { m } = restricted();
      post(m, 0, 0, 3, PERM_W, VM_EVENT_REASON_SINGLESTEP);
      respond(m, 0, { flags: P | VM_EVENT_FLAG_EMULATE, vcpuId: 0, reason: VM_EVENT_REASON_SINGLESTEP });
      expect(vc(m, 0, VC_ALTP2M_FLAGS) & VCA_EMULATE).toBe(0);
      expect(pauseState(m, 0)).toEqual([0, 0]);
    });
  });
});

describe('vm_event responses with altp2m off', () => {
  it.each([['disabled', ALTP2M_MODE_DISABLED], ['external, not enabled', ALTP2M_MODE_EXTERNAL]])('%s: the request has no ALTERNATE_P2M; ALTERNATE_P2M 0 in the reply is ignored; unpaused', (_n, mode) => {
    const { m } = setup(mode);
    const req = post(m, 0, 0, 3, PERM_W);
    expect(req.flags).toBe(P);
    expect(req.altp2mIdx).toBe(0);
    respond(m, 0, { flags: P | VM_EVENT_FLAG_ALTERNATE_P2M, vcpuId: 0, altp2mIdx: 0 });
    expect(vc(m, 0, VC_P2MIDX)).toBe(INVALID_ALTP2M);
    expect(vc(m, 0, VC_EPTP_INDEX)).toBe(INVALID_ALTP2M);
    expect(pauseState(m, 0)).toEqual([0, 0]);
  });
});
