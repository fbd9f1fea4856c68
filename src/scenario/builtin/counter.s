; counter: every vCPU adds 1 to two shared counters ITERS times.
;   atomic_counter with `lock xadd` - the total is exact on every engine and interleaving.
;   racy_counter with load / add / store - concurrent pCPUs lose updates.
; vCPU 0 waits for everyone (yielding its time slice through SCHEDOP_yield), then reports
;   key 1 = atomic total, key 2 = racy total, key 3 = expected total (VCPUS * ITERS)
; and shuts the domain down. VCPUS is predefined by the scenario loader.
.equ ITERS, 100000
.equ HYPERVISOR_sched_op, 29
.equ SCHEDOP_yield, 0

_start:
    mov ecx, ITERS
loop:
    mov edx, 1
    lock xadd [atomic_counter], edx
    mov eax, [racy_counter]
    add eax, 1
    mov [racy_counter], eax
    dec ecx
    jnz loop

    lock add [arrived], 1
    mov eax, 1
    cpuid                       ; ebx[31:24] = APIC ID = 2 * vCPU id (Xen's numbering)
    shr ebx, 25
    cmp ebx, 0
    jnz park

wait_all:
    mov eax, [arrived]
    cmp eax, VCPUS
    jz all_done
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    vmcall
    jmp wait_all

all_done:
    mov esi, banner
    call puts
    mov ebx, 1
    mov ecx, [atomic_counter]
    magic 1
    mov ebx, 2
    mov ecx, [racy_counter]
    magic 1
    mov ebx, 3
    mov ecx, VCPUS * ITERS
    magic 1
    mov ebx, 0
    magic 0                     ; shut the domain down, exit code 0

park:                           ; other vCPUs stop for good: hlt with IF=0
    cli
    hlt
    jmp park

; puts: write the NUL-terminated string at esi to the console (port 0xE9)
puts:
    movb eax, [esi]
    cmp eax, 0
    jz puts_end
    out 0xE9, eax
    add esi, 1
    jmp puts
puts_end:
    ret

.align 8
banner:
    .ascii "counter: all vCPUs done\n"
    .byte 0
.align 4
atomic_counter: .word 0
racy_counter:   .word 0
arrived:        .word 0
