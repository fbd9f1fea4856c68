// Cross-pCPU EPT invalidation (../shared/reference/xen-altp2m.md §4) judged by the STALE_TRANSLATION
// oracle. A writer vCPU restricts a page (set_mem_access on the host p2m, which propagates into view 0)
// while a reader vCPU on another pCPU keeps writing it; after the hypercall returns, the writer publishes
// a flag, and the reader's first write after seeing the flag must not go through its old translation.
// ept_sync = "xen" makes that hold for every interleaving; "none" and "no-kick" do not.
import { describe, expect, it } from 'vitest';
import { runGuest, HVMOP_INCLUDE } from '../helpers/run.js';

export const STALE_PROGRAM = `
.equ DATA, 0x8000            ; the page the writer restricts (gfn 8)
.equ FLAGS, 0x9000           ; +0 restricted, +4 reader ready, +8 reader done
.equ OP, 0xa000              ; xen_hvm_altp2m_op
_start:
    mov edi, OP
    mov esi, FLAGS
    mov ebp, DATA
    mov eax, 1
    cpuid
    shr ebx, 24
    cmp ebx, 0
    jne reader

writer:
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_DOMAIN_STATE ; set_domain_state
    mov [edi+ALTP2M_STATE], 1 ;   state = 1
    call hvmop
    mov [esi+4], 0         ; only a write made in view 0 counts as ready
wait_ready:
    mov eax, [esi+4]
    cmp eax, 1
    jne wait_ready
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; set_mem_access
    mov [edi+ALTP2M_VIEW], XENMEM_ACCESS_R << 16 ;   view 0 (the host p2m), access r
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], DATA >> 12
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    mov ecx, eax
    mov ebx, 1
    magic 1                  ; report 1: set_mem_access's result
    mov [esi], 1           ; published after the hypercall returned
wait_done:
    mov eax, [esi+8]
    cmp eax, 1
    jne wait_done
    mov ebx, 0
    magic 0

reader:
    mov ecx, 0
again:
    inc ecx
    mov [ebp], ecx          ; keeps a writable translation of DATA in this pCPU's TLB
    mov [esi+4], 1
    mov eax, [esi]
    cmp eax, 1
    jne again
    mov [ebp], 0x5a5        ; the first write after the restriction was published
    mov [esi+8], 1
spin:
    pause
    jmp spin

${HVMOP_INCLUDE}
`;

function scenario(sync: string) {
  return { pcpus: 2, vcpus: 2, maxInstructions: 400_000, domainExtra: ['altp2m = "mixed"', `ept_sync = "${sync}"`] };
}

describe('EPT invalidation across pCPUs (STALE_TRANSLATION)', () => {
  it('ept_sync = "none": the reader writes through its stale translation (pinned seed)', async () => {
    const r = await runGuest(STALE_PROGRAM, { ...scenario('none'), seed: 3 });
    expect(r.outcome).toBe('completed');
    expect(r.reports.find((x) => x.key === 1)?.value).toBe(0);
    const f = r.findings.find((x) => x.kind === 'STALE_TRANSLATION');
    expect(f, JSON.stringify(r.findings)).toBeDefined();
    expect(f?.first.detail).toMatch(/write of gpa 0x8000 in view 0/);
    expect(f?.first.vcpu).toBe(1);
  });

  it('ept_sync = "no-kick": marked but not kicked, the running reader still uses the old translation', async () => {
    const r = await runGuest(STALE_PROGRAM, { ...scenario('no-kick'), seed: 3 });
    expect(r.findings.map((x) => x.kind)).toContain('STALE_TRANSLATION');
  });

  it('ept_sync = "xen": no stale translation over 200 seeds, and the flush IPIs were sent', async () => {
    let flushIpis = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const r = await runGuest(STALE_PROGRAM, { ...scenario('xen'), seed });
      expect(r.outcome, `seed ${seed}`).toBe('completed');
      expect(r.findings.map((x) => x.kind), `seed ${seed}`).not.toContain('STALE_TRANSLATION');
      expect(r.findings.map((x) => x.kind), `seed ${seed}`).not.toContain('DOMAIN_CRASH');
      flushIpis += r.metrics.ept_flush_ipis as number;
    }
    expect(flushIpis).toBeGreaterThan(0);
  }, 120_000);
});

/**
 * Views changing under running vCPUs: vCPU 0 restricts the shared page ROUNDS times (each restriction is
 * undone by the next write, which Xen relaxes to rwx with no listener), changes view 1 with change_gfn,
 * switches the whole domain to view 1 and back, and bumps a generation word after each round; vCPUs 1..
 * write the page and read the generation the whole time. A whole-domain op that ran while another vCPU
 * was on its pCPU would abort the run (an invariant in hvm-op.ts).
 */
export const CHURN_PROGRAM = `
.equ DATA, 0x8000
.equ OTHER, 0xb000
.equ FLAGS, 0x9000           ; +0 generation, +4 writers done
.equ OP, 0xa000
_start:
    mov edi, OP
    mov esi, FLAGS
    mov ebp, DATA
    mov eax, 1
    cpuid
    shr ebx, 24
    cmp ebx, 0
    jne writer

changer:
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_DOMAIN_STATE ; set_domain_state(1)
    mov [edi+ALTP2M_STATE], 1
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_CREATE_P2M ; create_p2m, default access rwx
    mov [edi+ALTP2M_VIEW], XENMEM_ACCESS_RWX << 16
    call hvmop
    mov r8, 0
round:
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; set_mem_access(view 0, r, DATA)
    mov [edi+ALTP2M_VIEW], XENMEM_ACCESS_R << 16
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], DATA >> 12
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_CHANGE_GFN ; change_gfn(view 1, DATA -> OTHER), then revert
    mov [edi+ALTP2M_VIEW], 1
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_OLD_GFN], DATA >> 12
    mov [edi+ALTP2M_OLD_GFN+4], 0
    mov [edi+ALTP2M_NEW_GFN], OTHER >> 12
    mov [edi+ALTP2M_NEW_GFN+4], 0
    call hvmop
    mov [edi+ALTP2M_NEW_GFN], -1
    mov [edi+ALTP2M_NEW_GFN+4], -1
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SWITCH_P2M ; switch_p2m(1) and back: every vCPU, paused off its pCPU meanwhile
    mov [edi+ALTP2M_VIEW], 1
    call hvmop
    mov [edi+ALTP2M_VIEW], 0
    call hvmop
    lock add [esi], 1        ; a new generation: everything above has returned
    inc r8
    cmp r8, ROUNDS
    jne round
wait:
    mov eax, [esi+4]
    cmp eax, VCPUS - 1
    jne wait
    mov ebx, 0
    magic 0

writer:
    mov ecx, 0
again:
    inc ecx
    mov [ebp], ecx
    mov eax, [ebp]
    mov eax, [esi]
    cmp eax, ROUNDS
    jne again
    lock add [esi+4], 1
spin:
    pause
    jmp spin

${HVMOP_INCLUDE}
`;

describe('views changing under running vCPUs', () => {
  it('threaded, 4 pCPUs x 4 vCPUs, ept_sync = "xen": no stale translation, no crash', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await runGuest(CHURN_PROGRAM, {
        engine: 'threaded', pcpus: 4, vcpus: 4, maxInstructions: 50_000_000, watchdogMs: 10_000,
        domainExtra: ['altp2m = "mixed"', 'ept_sync = "xen"', 'defines = { ROUNDS = 150 }'],
      });
      expect(r.outcome, r.reason ?? '').toBe('completed');
      expect(r.domains[0].state).toBe('shutdown');
      expect(r.findings.map((f) => f.kind)).toEqual([]);
      expect(r.metrics.ept_flush_ipis as number).toBeGreaterThan(0);
      expect(r.metrics.ept_flushes as number).toBeGreaterThan(0);
    }
  }, 120_000);

  it('serial, the same churn with ept_sync = "none": stale translations are found (pinned seed)', async () => {
    const r = await runGuest(CHURN_PROGRAM, {
      pcpus: 4, vcpus: 4, seed: 5, maxInstructions: 5_000_000,
      domainExtra: ['altp2m = "mixed"', 'ept_sync = "none"', 'defines = { ROUNDS = 20 }'],
    });
    expect(r.outcome).toBe('completed');
    expect(r.findings.map((f) => f.kind)).toContain('STALE_TRANSLATION');
  });
});
