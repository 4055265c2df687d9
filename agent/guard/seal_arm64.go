package guard

import "golang.org/x/sys/unix"

// abis: AArch64 alone; a 32-bit program on a 64-bit Arm kernel is refused
// every call.
func abis() []abi {
	return []abi{{arch: unix.AUDIT_ARCH_AARCH64, sealed: sealed, clone: unix.SYS_CLONE, clone3: unix.SYS_CLONE3}}
}
