; ipi: every vCPU sends ROUNDS IPIs (vector VEC) around a ring, vCPU i -> vCPU (i + 1) % VCPUS, declaring
; each one with `magic 2` first so the oracles can judge where it lands. The send follows the domain's
; ipi_path (IPI_PATH, predefined by the loader):
;   0 vlapic            ICR_HI then ICR_LO through the trapped APIC page, destination = virtual APIC ID 2n
;   1 xapic-passthrough ICR_HI then ICR_LO straight to the pCPU's xAPIC, destination read from VCPU_MAP
;   2 x2apic-passthrough one WRMSR 0x830 to the pCPU's x2APIC, destination read from VCPU_MAP
;   3 posted, 4 ipiv, 5 avic  as vlapic: virtual destinations through the (virtualized) APIC page
; MASK_ICR = 1 wraps the two ICR writes in pushf/cli ... popf, as Linux does; 0 leaves the window open.
; NESTED = 1 makes the handler itself send an IPI (vector VEC2, with its own intent) to vCPU (i + 2) % VCPUS: when it
; runs between ICR_HI and ICR_LO, the interrupted send leaves with the handler's destination.
; vCPU 0 reports key 1 = IPIs received (VEC) by all, key 2 = sent, and shuts the domain down.
.equ VEC, 0x40
.equ VEC2, 0x41
.equ APIC, 0xFEE00000
.equ WAIT_SPINS, 2000

_start:
    mov eax, 1
    cpuid
    shr ebx, 25
    mov ebp, ebx                ; ebp = my vCPU id for the whole run
    lidt idt
    mov eax, IPI_PATH           ; passthrough designs (1, 2): wait until every vCPU has run once, so the
    cmp eax, 1                  ; published map holds a pCPU for each (-1 would be the broadcast ID)
    jl go
    cmp eax, 2
    jg go
    mov edi, 0
wait_map:
    mov eax, edi
    shl eax, 3
    add eax, VCPU_MAP
    mov eax, [eax]
    cmp eax, -1
    jnz map_next
    pause
    jmp wait_map
map_next:
    add edi, 1
    cmp edi, VCPUS
    jnz wait_map
go:
    sti
    mov esi, 0                  ; rounds done
send_loop:
    cmp esi, ROUNDS
    jz finished
    mov edi, ebp                ; target = (id + 1) % VCPUS
    add edi, 1
    cmp edi, VCPUS
    jnz have_target
    mov edi, 0
have_target:
    mov ebx, edi
    mov ecx, VEC
    magic 2                     ; intent: vCPU edi, vector VEC
    mov r8, edi
    shl r8, 2
    add r8, recv                ; r8 = &recv[target]
    mov r9, [r8]                ; what the target had taken before this send
    mov ecx, VEC
    call send_ipi
    lock add [sent], 1
    add esi, 1
    mov ecx, WAIT_SPINS         ; wait (bounded) until the target takes one more: an IPI that never
wait_rx:                        ; lands (coalesced, misdirected) costs one bounded wait, not every later one
    mov eax, [r8]
    cmp eax, r9
    jg send_loop
    pause
    dec ecx
    jnz wait_rx
    jmp send_loop

finished:
    lock add [done], 1
    cmp ebp, 0
    jnz linger
wait_all:
    mov eax, [done]
    cmp eax, VCPUS
    jz report
    pause
    jmp wait_all
report:
    mov ebx, 1
    mov ecx, [total_rx]
    magic 1
    mov ebx, 2
    mov ecx, [sent]
    magic 1
    mov ebx, 0
    magic 0
linger:                         ; keep taking IPIs until vCPU 0 ends the domain
    pause
    jmp linger

; send_ipi: vector ecx to vCPU edi, by IPI_PATH. Clobbers eax, ebx, edx.
send_ipi:
    mov ebx, MASK_ICR
    cmp ebx, 0
    jz send_unmasked
    pushf
    cli
    call send_raw
    popf
    ret
send_unmasked:
    call send_raw
    ret

send_raw:
    mov eax, IPI_PATH
    cmp eax, 1
    jl send_vlapic
    cmp eax, 2
    jg send_vlapic              ; posted, ipiv, avic: virtual APIC IDs, like vlapic
    mov eax, edi                ; passthrough: physical APIC ID of the pCPU the target runs on (maybe stale)
    shl eax, 3
    add eax, VCPU_MAP + 4
    mov edx, [eax]
    mov eax, IPI_PATH
    cmp eax, 2
    jz send_x2apic
    shl edx, 24
    mov [APIC + 0x310], edx     ; ICR_HI
    mov [APIC + 0x300], ecx     ; ICR_LO: sends
    ret
send_x2apic:
    mov eax, ecx
    push ecx
    mov ecx, 0x830
    wrmsr                       ; one write: destination edx, command eax
    pop ecx
    ret
send_vlapic:
    mov edx, edi
    shl edx, 25                 ; virtual APIC ID 2n in bits 31:24
    mov [APIC + 0x310], edx
    mov [APIC + 0x300], ecx
    ret

; handler for VEC: count, maybe send a nested IPI, EOI
on_ipi:
    push eax
    push ebx
    push ecx
    push edx
    push edi
    mov eax, ebp
    shl eax, 2
    add eax, recv
    lock add [eax], 1
    lock add [total_rx], 1
    mov eax, NESTED
    cmp eax, 0
    jz on_ipi_eoi
    mov edi, ebp                ; nested: VEC2 to (id + 2) % VCPUS, no intent
    add edi, 2
nested_mod:
    cmp edi, VCPUS
    jl nested_go
    sub edi, VCPUS
    jmp nested_mod
nested_go:
    mov ebx, edi
    mov ecx, VEC2
    magic 2                     ; the handler's own intent (intents nest like handlers)
    mov ecx, VEC2
    call send_raw
on_ipi_eoi:
    call eoi
    pop edi
    pop edx
    pop ecx
    pop ebx
    pop eax
    iret

on_ipi2:
    push eax
    push ecx
    push edx
    lock add [nested_rx], 1
    call eoi
    pop edx
    pop ecx
    pop eax
    iret

eoi:
    mov eax, IPI_PATH
    cmp eax, 2
    jz eoi_x2
    mov [APIC + 0xB0], 0
    ret
eoi_x2:
    mov ecx, 0x80B
    mov eax, 0
    mov edx, 0
    wrmsr
    ret

.align 8
sent:      .word 0
done:      .word 0
total_rx:  .word 0
nested_rx: .word 0
recv:      .space 4 * 64
.align 8
idt:
    .space 4 * VEC
    .word on_ipi, on_ipi2
    .space 4 * (256 - VEC - 2)
