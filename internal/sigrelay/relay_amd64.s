//go:build linux

#include "textflag.h"

// func relayHandler()
// Called by the kernel as void handler(int sig), sig in DI, on the
// thread's signal stack. It writes sig's low byte to relayFD: one byte in
// the red zone below SP (a leaf function may use it; the kernel skips it
// when it builds a nested signal frame), then write(2). AX, CX, DX, SI,
// DI and R11 change; the kernel restores them all at rt_sigreturn.
TEXT ·relayHandler(SB),NOSPLIT|NOFRAME,$0
	MOVB	DI, -8(SP)
	MOVL	·relayFD(SB), DI
	LEAQ	-8(SP), SI
	MOVL	$1, DX
	MOVL	$1, AX // SYS_write
	SYSCALL
	RET

// func relayRestorer()
TEXT ·relayRestorer(SB),NOSPLIT|NOFRAME,$0
	MOVL	$15, AX // SYS_rt_sigreturn
	SYSCALL
	INT	$3 // not reached

// func relayPCs() (handler, restorer uintptr)
TEXT ·relayPCs(SB),NOSPLIT,$0-16
	MOVQ	$·relayHandler(SB), AX
	MOVQ	AX, handler+0(FP)
	MOVQ	$·relayRestorer(SB), AX
	MOVQ	AX, restorer+8(FP)
	RET
