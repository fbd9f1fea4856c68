; ipi-send.s: send an IPI as the domain's ipi_path does it, shared by ipi.s and realm.s (`.include`d where
; the routine goes: realm.s puts it in the realm's pages). Needs APIC (a constant).
;   0 vlapic            ICR_HI then ICR_LO through the trapped APIC page, destination = virtual APIC ID 2n
;   1 xapic-passthrough ICR_HI then ICR_LO straight to the pCPU's xAPIC, destination read from VCPU_MAP
;   2 x2apic-passthrough one WRMSR 0x830 to the pCPU's x2APIC, destination read from VCPU_MAP
;   3 posted, 4 ipiv, 5 avic  as vlapic: virtual destinations through the (virtualized) APIC page
; send_raw: vector ecx to vCPU edi, by IPI_PATH, with interrupts as they are. Clobbers eax, edx.
send_raw:
    mov eax, IPI_PATH
    cmp eax, 1
    jl send_virtual
    cmp eax, 2
    jg send_virtual             ; posted, ipiv, avic: virtual APIC IDs, like vlapic
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
send_virtual:
    mov edx, edi
    shl edx, 25                 ; virtual APIC ID 2n in bits 31:24
    mov [APIC + 0x310], edx
    mov [APIC + 0x300], ecx
    ret
