// ROGUE_VMFUNC and REALM_ESCAPE (DESIGN.md §5.4) from scenario regions, and host removals reaching the
// views by Xen's reset rules. Serial engine, 1 pCPU, fixed seed.
import { describe, expect, it } from 'vitest';
import { runGuest, HVMOP_INCLUDE } from '../helpers/run.js';

/** A guest that builds the secure-realm layout itself (mixed mode) and calls the realm through the trampoline. */
function realmProgram(rogue: boolean): string {
  return `
.equ OP, 0x5000
_start:
    mov edi, OP
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_DOMAIN_STATE ; set_domain_state(1)
    mov [edi+ALTP2M_STATE], 1
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; set_mem_access(view 0 = host, n, the secret): the kernel cannot touch it
    mov [edi+ALTP2M_VIEW], 0
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], SECRET_GFN
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_CREATE_P2M ; create_p2m(rwx): view 1, the realm's view, fills from the host lazily
    mov [edi+ALTP2M_VIEW], XENMEM_ACCESS_RWX << 16
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; ... but its secret entry keeps rwx: set it in view 1 explicitly
    mov [edi+ALTP2M_VIEW], XENMEM_ACCESS_RWX << 16 | 1
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], SECRET_GFN
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    call op_header
    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY ; vcpu_enable_notify(0, gfn 4): VMFUNC on
    mov [edi+ALTP2M_VCPU_ID], 0
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], 4
    mov [edi+ALTP2M_GFN+4], 0
    call hvmop
    call trampoline          ; the legitimate way in
    mov ecx, eax
    mov ebx, 1
    magic 1                  ; report {1: the secret, read by the realm}
${rogue ? `
    mov eax, 0               ; ordinary kernel code: VMFUNC to view 1 and read the secret directly
    mov ecx, 1
    vmfunc
    mov eax, [SECRET_GFN * 4096]
    mov ecx, eax
    mov ebx, 2
    magic 1
    mov eax, 0
    mov ecx, 0
    vmfunc` : ''}
    mov ebx, 0
    magic 0

${HVMOP_INCLUDE}

.org TRAMP_GFN * 4096
trampoline:
    mov eax, 0
    mov ecx, 1
    vmfunc                   ; into the realm's view
    call realm
    push eax
    mov eax, 0
    mov ecx, 0
    vmfunc                   ; back to view 0
    pop eax
    ret

.org REALM_GFN * 4096
realm:
    mov eax, [SECRET_GFN * 4096]
    ret

.org SECRET_GFN * 4096
    .word 0x5ec7e7
`;
}

const regions = ['altp2m = "mixed"', 'trampoline = "1"', 'realm = "2"', 'secret = "3"', 'access_required = true'];

describe('secure-realm regions', () => {
  it('the realm reached through the trampoline: no finding', async () => {
    const r = await runGuest(realmProgram(false), { domainExtra: regions });
    expect(r.domains[0].state).toBe('shutdown');
    expect(r.reports.find((x) => x.key === 1)?.value).toBe(0x5ec7e7);
    expect(r.findings).toEqual([]);
    expect(r.metrics.vmfuncs).toBe(2);
  });

  it('kernel code that runs vmfunc itself: ROGUE_VMFUNC, then REALM_ESCAPE when it reads the secret', async () => {
    const r = await runGuest(realmProgram(true), { domainExtra: regions });
    expect(r.domains[0].state).toBe('shutdown');
    expect(r.reports.find((x) => x.key === 2)?.value).toBe(0x5ec7e7); // the union of visible views is one domain
    const kinds = r.findings.map((f) => f.kind);
    // ... and that kernel code ran in the realm's view, where the realm's code is executable (view 1).
    expect(kinds).toEqual(['ROGUE_VMFUNC', 'REALM_ESCAPE', 'KERNEL_IN_REALM_VIEW']);
    const rogue = r.findings[0];
    expect(rogue.count).toBe(2); // into view 1, and back
    expect(rogue.first.detail).toMatch(/VMFUNC to view 1 from view 0 at pc 0x/);
    expect(r.findings[1].first.detail).toMatch(/secret gpa 0x3000 accessed by code at pc 0x.* outside the realm, in view 1/);
    expect(r.findings[1].evidence.some((e) => e.includes('vmfunc'))).toBe(true);
  });

  it('a host restriction does not reach slot 0 entries it has not filled: the kernel reads the secret in view 0', async () => {
    // Lazy fills take the view's default_access (Xen since 2024: "should honor ap2m->default_access"), and
    // slot 0's default is the host's rwx; set_mem_access on view 0 changes the host, which reaches only the
    // views that already hold the gfn. So the restriction above protects nothing in slot 0.
    const src = realmProgram(false).replace('    call trampoline          ; the legitimate way in', '    mov eax, [SECRET_GFN * 4096]');
    const r = await runGuest(src, { domainExtra: regions });
    expect(r.domains[0].state).toBe('shutdown');
    expect(r.findings.map((f) => f.kind)).toEqual(['REALM_ESCAPE']);
    expect(r.findings[0].first.detail).toMatch(/in view 0$/);
  });

  it('once slot 0 holds the gfn, the host restriction propagates: access_required makes the read a domain crash', async () => {
    // Touch the secret in slot 0 first (fill), then restrict the host: the change reaches slot 0.
    const src = realmProgram(false)
      .replace('    call op_header\n    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; set_mem_access(view 0 = host, n, the secret)',
        '    mov eax, [SECRET_GFN * 4096]\n    call op_header\n    mov [edi+ALTP2M_CMD], HVMOP_ALTP2M_SET_MEM_ACCESS ; set_mem_access(view 0 = host, n, the secret)')
      .replace('    call trampoline          ; the legitimate way in', '    mov eax, [SECRET_GFN * 4096]');
    const r = await runGuest(src, { domainExtra: regions });
    expect(r.domains[0].state).toBe('crashed');
    expect(r.findings.map((f) => f.kind)).toEqual(['REALM_ESCAPE', 'DOMAIN_CRASH']);
  });
});
