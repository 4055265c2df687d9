package guard

import "golang.org/x/sys/unix"

// abis: x86-64 (and x32, its numbers with one bit set), then i386, which a
// 64-bit kernel also answers.
func abis() []abi {
	native := abi{arch: unix.AUDIT_ARCH_X86_64, mask: 0x40000000, sealed: sealed, clone: unix.SYS_CLONE, clone3: unix.SYS_CLONE3}
	i386 := abi{arch: unix.AUDIT_ARCH_I386, clone: 120, clone3: 435, sealed: []uint32{
		310, // unshare
		346, // setns
		21,  // mount
		22,  // umount
		52,  // umount2
		217, // pivot_root
		428, // open_tree
		429, // move_mount
		430, // fsopen
		431, // fsconfig
		432, // fsmount
		433, // fspick
		442, // mount_setattr
		357, // bpf
		336, // perf_event_open
		338, // fanotify_init
		341, // name_to_handle_at
		131, // quotactl
		443, // quotactl_fd
		74,  // sethostname
		121, // setdomainname
		103, // syslog
		253, // lookup_dcookie
	}}
	return []abi{native, i386}
}
