#include "textflag.h"

// func int80(nr, a1, a2, a3 uintptr) uintptr
//
// A syscall through the i386 ABI: the number in AX, the arguments in BX,
// CX and DX, the result in AX. The kernel preserves the other registers
// this function's callers rely on (R8-R11 come back zeroed, and are
// scratch registers in Go's ABI0).
TEXT ·int80(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), AX
	MOVQ a1+8(FP), BX
	MOVQ a2+16(FP), CX
	MOVQ a3+24(FP), DX
	INT  $0x80
	MOVQ AX, ret+32(FP)
	RET
