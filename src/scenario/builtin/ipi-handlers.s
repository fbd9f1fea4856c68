; ipi-handlers.s: the IPI ring's interrupt handlers, shared by ipi.s and realm.s (`.include`d where the
; handlers go). The including program provides: NESTED, VEC2 (constants); recv (a word per vCPU),
; total_rx, nested_rx (words); ebp = this vCPU's id; and nested_send, the routine that sends vector ecx to
; vCPU edi for the nested IPI (ipi.s: its own send_raw; realm.s: the trampoline's gate_send).

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
    mov edi, ebp                ; nested: VEC2 to (id + 2) % VCPUS, through nested_send
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
    call nested_send
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
