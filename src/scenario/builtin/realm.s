; realm: the researcher's "secure realm" design and its variants, one workload for every design.
;
; Views (altp2m): KVIEW (1) is where the kernel runs: the secret and the realm's code are not accessible
; there. RVIEW (2) is the realm's view: everything is reachable, and with apic_view = 2 the host's xAPIC is
; mapped into it. The trampoline pages (TRAMP_GFN) are executable in both and are the only code meant to
; run VMFUNC; the realm (REALM_GFN..) sends IPIs and reads the secret (SECRET_GFN).
;
; Workload on every vCPU: ROUNDS realm calls, each reading the secret and sending an IPI (vector VEC,
; declared with `magic 2`) to vCPU (i + 1) % VCPUS through the realm's send_ipi; the IPI handler, with
; NESTED = 1, sends an IPI of its own (VEC2) to vCPU (i + 2) % VCPUS through the realm too. How the realm
; sends follows IPI_PATH (as ipi.s): xapic-passthrough reads the target's pCPU from the published vCPU map
; and writes ICR_HI then ICR_LO (MASK_ICR = 1 masks interrupts around them, 0 leaves the window open);
; x2apic-passthrough one WRMSR; vlapic, posted, ipiv and avic the (virtualized) APIC page with virtual IDs.
;
; DEST_MODE (xapic-passthrough): 0 physical unicast to the published pCPU; 1 flat logical with the guest's
; own logical IDs (1 << vCPU); 2 the broadcast ID; 3 the all-but-self shorthand (seed point (g)).
; ALTP2M (predefined) = 0: the domain has no views (AMD has no altp2m): the gates make no VMFUNC, and the
; realm and its secret share the kernel's only p2m; the rest of the workload is the same.
; SETUP = 1: vCPU 0 builds the views itself (altp2m "mixed": the guest owns altp2m); 0: an agent did
; (external mode). ROGUE = 1: halfway, ordinary kernel code on each vCPU runs VMFUNC into RVIEW and reads
; the secret. INIT = 1: at its first round vCPU 0's realm sends INIT, SIPI, SIPI to the pCPU vCPU 1 runs on.
; NMI_IPI = 1: the kernel's NMI handler (IDT vector 2) sends VEC2 to vCPU (i + 3) % VCPUS through the realm
; too; NMIs come from the guest's NMI watchdog (domain key guest_nmi_insns). Key 5 = NMIs taken.
; vCPU 0 reports key 1 = IPIs received, 2 = sent, 3 = sum of the secret as the realm read it, 4 = the
; value the rogue code read (ROGUE = 1), and shuts the domain down (with INIT = 1, vCPU 0 may be the one
; lost with the reset pCPU: then the first other vCPU to give up waiting reports and shuts down).
.equ VEC, 0x40
.equ VEC2, 0x41
.equ APIC, 0xFEE00000
.equ KVIEW, 1
.equ RVIEW, 2
.equ OP, 0x20000              ; the xen_hvm_altp2m_op struct (setup; field names: ALTP2M_*, predefined)
.equ VE_GFN0, 0x10            ; vCPU n's #VE information page: gfn VE_GFN0 + n
.equ WAIT_SPINS, 2000
.equ SECRET, SECRET_GFN * 4096

_start:
    mov eax, VCPUS              ; the layout (#VE pages 0x10-0x1f, stacks below the vCPU map) holds 16 vCPUs
    cmp eax, 16
    jle vcpus_ok
    mov ebx, 16
    magic 3                     ; guest assert 16: too many vCPUs for realm.s
    cli
    hlt
vcpus_ok:
    mov eax, 1
    cpuid
    shr ebx, 25
    mov ebp, ebx                ; ebp = my vCPU id for the whole run
    lidt idt
    cmp ebp, 0
    jnz wait_ready
    mov eax, SETUP
    cmp eax, 0
    jz setup_done
    call setup
setup_done:
    mov eax, 1
    mov [ready], eax
wait_ready:
    mov eax, [ready]
    cmp eax, 1
    jz ready_go
    pause
    jmp wait_ready
ready_go:
.include "wait-vcpu-map.s"
go:
    mov eax, ebp                ; from here on this vCPU's NMI handler may send (the views and the map are ready)
    shl eax, 2
    add eax, nmi_armed
    mov [eax], 1
    sti
    mov esi, 0                  ; rounds done
send_loop:
    cmp esi, ROUNDS
    jz finished
    mov eax, INIT
    cmp eax, 0
    jz no_init
    cmp ebp, 0
    jnz no_init
    cmp esi, 1
    jnz no_init
    call gate_init              ; the realm resets a pCPU behind the hypervisor's back
no_init:
    mov eax, ROGUE
    cmp eax, 0
    jz no_rogue
    mov eax, ROUNDS >> 1
    cmp esi, eax
    jnz no_rogue
    call rogue
no_rogue:
    call gate_read              ; a realm call: eax = the secret
    lock add [secret_sum], eax
    mov edi, ebp                ; target = (id + 1) % VCPUS
    add edi, 1
    cmp edi, VCPUS
    jnz have_target
    mov edi, 0
have_target:
    mov ebx, edi
    mov ecx, VEC
    magic 2                     ; intent: vCPU edi, vector VEC
    mov ecx, VEC
    call gate_send
    lock add [sent], 1
    add esi, 1
    mov ecx, WAIT_SPINS         ; wait (bounded) until the target has seen at least esi IPIs
wait_rx:
    mov eax, edi
    shl eax, 2
    add eax, recv
    mov eax, [eax]
    cmp eax, esi
    jge send_loop
    pause
    dec ecx
    jnz wait_rx
    jmp send_loop

finished:
    lock add [done], 1
    cmp ebp, 0
    jnz linger
    mov ecx, 400000             ; with INIT = 1 a reset pCPU may have taken a vCPU for good: wait, but not for ever
wait_all:
    mov eax, [done]
    cmp eax, VCPUS
    jz report
    pause
    mov eax, INIT
    cmp eax, 0
    jz wait_all
    dec ecx
    jnz wait_all
report:
    mov ebx, 1
    mov ecx, [total_rx]
    magic 1
    mov ebx, 2
    mov ecx, [sent]
    magic 1
    mov ebx, 3
    mov ecx, [secret_sum]
    magic 1
    mov ebx, 4
    mov ecx, [rogue_read]
    magic 1
    mov ebx, 5
    mov ecx, [nmi_rx]
    magic 1
    mov ebx, 0
    magic 0
linger:                         ; keep taking IPIs until vCPU 0 ends the domain
    mov eax, INIT
    cmp eax, 0
    jnz linger_bounded
linger_spin:
    pause
    jmp linger_spin
linger_bounded:                 ; after a host reset vCPU 0 itself may be lost: end the domain after a while
    mov ecx, 1000000            ; (longer than vCPU 0 waits for the others)
linger_wait:
    pause
    dec ecx
    jnz linger_wait
    jmp report

; Ordinary kernel code that knows the trick: any VMFUNC anywhere enters every visible view.
rogue:
    pushf
    cli                         ; no interrupt handler may move it back to KVIEW halfway
    push eax
    push ecx
    mov eax, 0
    mov ecx, RVIEW
    vmfunc
    mov eax, [SECRET]
    mov [rogue_read], eax
    mov eax, 0
    mov ecx, KVIEW
    vmfunc
    pop ecx
    pop eax
    popf
    ret

; IPI handlers (kernel code; they run in whichever view the vCPU is in when the vector arrives). Their
; nested IPI goes through the realm, like every other send: nested_send is gate_send (defined below).
.include "ipi-handlers.s"

; NMI handler (kernel code). NMI_IPI = 1: it sends VEC2 to (id + 3) % VCPUS through the realm, as a guest
; kernel's NMI-time work (a backtrace request, perf's irq_work) would: realm_send's cli protects nothing here.
on_nmi:
    push eax
    push ebx
    push ecx
    push edx
    push edi
    lock add [nmi_rx], 1
    mov eax, NMI_IPI
    cmp eax, 0
    jz on_nmi_done
    mov eax, ebp
    shl eax, 2
    add eax, nmi_armed
    mov eax, [eax]
    cmp eax, 0
    jz on_nmi_done              ; an NMI during start-up only counts
    mov edi, ebp
    add edi, 3
nmi_mod:
    cmp edi, VCPUS
    jl nmi_go
    sub edi, VCPUS
    jmp nmi_mod
nmi_go:
    mov ebx, edi
    mov ecx, VEC2
    magic 2
    mov ecx, VEC2
    call gate_send_nmi
on_nmi_done:
    pop edi
    pop edx
    pop ecx
    pop ebx
    pop eax
    iret                        ; ends NMI blocking

; ---- setup (SETUP = 1): the guest builds its own views, as mixed mode lets it ----
setup:
    mov edi, OP
    mov eax, HVMOP_ALTP2M_SET_DOMAIN_STATE
    mov ebx, 1                  ; state 1: active
    call altp2m
    mov eax, HVMOP_ALTP2M_CREATE_P2M
    mov ebx, XENMEM_ACCESS_RWX << 16 ; default access rwx -> KVIEW
    call altp2m
    mov eax, HVMOP_ALTP2M_CREATE_P2M
    mov ebx, XENMEM_ACCESS_RWX << 16 ; -> RVIEW
    call altp2m
    mov esi, SECRET_GFN         ; KVIEW: the secret and the realm's code are out of reach
    mov ebx, KVIEW              ; set_mem_access(KVIEW, n, gfn)
    call no_access
    mov esi, REALM_GFN
    call no_access
    mov esi, REALM_GFN + 1
    call no_access
    mov esi, 0                  ; vcpu_enable_notify for every vCPU: VMFUNC on
enable_next:
    mov edx, esi
    add edx, VE_GFN0
    mov [edi+ALTP2M_GFN], edx   ; gfn of this vCPU's #VE page (the pad before it and the gfn's high word stay 0)
    mov eax, HVMOP_ALTP2M_VCPU_ENABLE_NOTIFY
    mov ebx, esi
    call altp2m_keep
    inc esi
    cmp esi, VCPUS
    jnz enable_next
    mov eax, HVMOP_ALTP2M_SWITCH_P2M ; every vCPU to KVIEW
    mov ebx, KVIEW
    call altp2m
    ret

no_access:
    mov eax, HVMOP_ALTP2M_SET_MEM_ACCESS
    mov [edi+ALTP2M_VIEW], ebx  ; view ebx, access XENMEM_ACCESS_N (the high half, 0)
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], esi
    mov [edi+ALTP2M_GFN+4], 0
    call altp2m_call
    ret

; altp2m: sub-op eax, first union word ebx (ALTP2M_VIEW, ALTP2M_VCPU_ID, ...) and the rest of the union's
; first 16 bytes zero; altp2m_keep leaves those as set
altp2m:
    mov [edi+ALTP2M_PAD], 0
    mov [edi+ALTP2M_GFN], 0
    mov [edi+ALTP2M_GFN+4], 0
altp2m_keep:
    mov [edi+ALTP2M_U], ebx
altp2m_call:
    mov [edi+ALTP2M_VERSION], HVMOP_ALTP2M_INTERFACE_VERSION
    mov [edi+ALTP2M_CMD], eax
    mov [edi+ALTP2M_DOMAIN], DOMID_SELF
    mov [edi+ALTP2M_PAD2], 0
    push ebx
    push ecx
    mov eax, HYPERVISOR_HVM_OP
    mov ebx, HVMOP_ALTP2M
    mov ecx, edi
    vmcall
    pop ecx
    pop ebx
    cmp eax, 0
    jz altp2m_ok
    mov ebx, eax
    magic 3                     ; setup failed: guest assert with the errno
altp2m_ok:
    ret

.align 8
ready:      .word 0
sent:       .word 0
done:       .word 0
total_rx:   .word 0
nested_rx:  .word 0
nmi_rx:     .word 0
secret_sum: .word 0
rogue_read: .word 0
depth:      .space 4 * 64       ; per vCPU: nesting of realm calls (VMFUNC only at the outermost)
recv:       .space 4 * 64
nmi_armed:  .space 4 * 64       ; per vCPU: its NMI handler may send
.align 8
idt:
    .space 4 * 2
    .word on_nmi                ; vector 2: NMI (IF and cli do not hold it off)
    .space 4 * (VEC - 3)
    .word on_ipi, on_ipi2
    .space 4 * (256 - VEC - 2)

; ---- trampoline: the only code meant to run VMFUNC; executable in both views ----
.org TRAMP_GFN * 4096
gate_send:                      ; vector ecx to vCPU edi
    call enter
    call realm_send
    call leave
    ret
.equ nested_send, gate_send
gate_read:                      ; eax = the secret
    call enter
    call realm_read
    call leave
    ret
gate_init:
    call enter
    call realm_init
    call leave
    ret
; From the NMI handler: the NMI may have struck anywhere, even between enter's depth update and its VMFUNC,
; so this gate enters the realm's view whatever the depth says and, on the way out, sets the view the
; interrupted code's depth calls for. Vector ecx to vCPU edi.
gate_send_nmi:
    push eax
    push ecx
    mov eax, ALTP2M
    cmp eax, 0
    jz nmi_gate_in
    mov eax, 0
    mov ecx, RVIEW
    vmfunc
nmi_gate_in:
    pop ecx
    call realm_send
    mov eax, ALTP2M
    cmp eax, 0
    jz nmi_gate_out
    mov eax, ebp
    shl eax, 2
    add eax, depth
    mov eax, [eax]
    mov ecx, KVIEW
    cmp eax, 0
    jz nmi_gate_view
    mov ecx, RVIEW
nmi_gate_view:
    mov eax, 0
    vmfunc
nmi_gate_out:
    pop eax
    ret

; enter/leave: VMFUNC at the outermost call only, with interrupts off so the view and the depth agree. The
; depth moves before the VMFUNC on the way in and after it... no: before it on both ways, so an NMI (which
; cli does not stop) always finds the view it must leave behind in the depth (gate_send_nmi restores it).
enter:
    pushf
    cli
    push eax
    push ecx
    push edx
    mov edx, ebp
    shl edx, 2
    add edx, depth
    mov eax, [edx]
    inc eax
    mov [edx], eax
    cmp eax, 1
    jnz enter_nested
    mov eax, ALTP2M              ; no views (altp2m disabled, e.g. AMD): the gates only count
    cmp eax, 0
    jz enter_nested
    mov eax, 0
    mov ecx, RVIEW
    vmfunc
enter_nested:
    pop edx
    pop ecx
    pop eax
    popf
    ret
leave:
    pushf
    cli
    push eax
    push ecx
    push edx
    mov edx, ebp
    shl edx, 2
    add edx, depth
    mov eax, [edx]
    dec eax
    mov [edx], eax
    cmp eax, 0
    jnz leave_nested
    mov eax, ALTP2M
    cmp eax, 0
    jz leave_nested
    mov eax, 0
    mov ecx, KVIEW
    vmfunc
leave_nested:
    pop edx
    pop ecx
    pop eax
    popf
    ret

; ---- the realm: reachable only in RVIEW ----
.org REALM_GFN * 4096
realm_read:
    mov eax, [SECRET]
    ret

; realm_send: vector ecx to vCPU edi, by IPI_PATH (ipi-send.s), interrupts masked around it with
; MASK_ICR = 1. Clobbers eax, ebx, edx.
realm_send:
    mov ebx, MASK_ICR
    cmp ebx, 0
    jz realm_send_raw
    pushf
    cli
    call realm_send_raw
    popf
    ret
realm_send_raw:                 ; DEST_MODE chooses the destination form on xapic-passthrough
    mov eax, IPI_PATH
    cmp eax, 1
    jnz send_raw
    mov eax, DEST_MODE
    cmp eax, 0
    jz send_raw
; DEST_MODE 1-3 (xapic-passthrough): the destination forms a guest kernel uses with its own APIC, on the
; host's. 1: flat logical, the guest's logical ID of vCPU n being 1 << n (Linux's flat mode for up to 8 CPUs);
; the host LAPICs match it against the LDRs Xen programmed for pCPUs. 2: the broadcast ID 0xFF. 3: the
; all-but-self shorthand (only ICR_LO). Clobbers eax, edx.
send_other_dest:
    cmp eax, 1
    jnz send_not_logical
    mov eax, ecx
    mov ecx, edi
    mov edx, 1
    shl edx, ecx                ; 1 << target vCPU id
    mov ecx, eax
    shl edx, 24
    mov [APIC + 0x310], edx
    mov eax, ecx
    or eax, 0x800               ; destination mode logical
    mov [APIC + 0x300], eax
    ret
send_not_logical:
    cmp eax, 2
    jnz send_shorthand
    mov edx, 0xFF << 24
    mov [APIC + 0x310], edx
    mov [APIC + 0x300], ecx     ; physical destination 0xFF: every APIC
    ret
send_shorthand:
    mov eax, ecx
    or eax, 3 << 18             ; all excluding self
    mov [APIC + 0x300], eax
    ret
.include "ipi-send.s"

; INIT, SIPI, SIPI to the pCPU vCPU 1 was published on: only the hypervisor should ever do this
realm_init:
    push eax
    push edx
    mov eax, VCPU_MAP + 8 + 4   ; vCPU 1's physical APIC ID
    mov edx, [eax]
    shl edx, 24
    mov [APIC + 0x310], edx
    mov [APIC + 0x300], 0x4500  ; INIT
    mov [APIC + 0x310], edx
    mov [APIC + 0x300], 0x4610  ; SIPI, vector 0x10
    mov [APIC + 0x310], edx
    mov [APIC + 0x300], 0x4610
    pop edx
    pop eax
    ret

; ---- the secret ----
.org SECRET_GFN * 4096
    .word 0x5ec7e7
