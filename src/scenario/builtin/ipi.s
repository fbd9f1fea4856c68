; ipi: every vCPU sends ROUNDS IPIs (vector VEC) around a ring, vCPU i -> vCPU (i + 1) % VCPUS, declaring
; each one with `magic 2` first so the oracles can judge where it lands. The send follows the domain's
; ipi_path (IPI_PATH, predefined by the loader): see ipi-send.s, which realm.s shares, as it shares the
; handlers (ipi-handlers.s) and the wait for the vCPU map (wait-vcpu-map.s).
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
.include "wait-vcpu-map.s"
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

.include "ipi-send.s"
.equ nested_send, send_raw     ; the handlers' nested IPI goes out directly

.include "ipi-handlers.s"

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
