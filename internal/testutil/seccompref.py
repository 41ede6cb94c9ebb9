"""Write Flatpak's seccomp filter as raw BPF, built by libseccomp.

Usage: seccompref.py [--devel] OUTPUT

The rules are those of setup_seccomp() in Flatpak's common/flatpak-run.c
for a native, non-multiarch run (so modify_ldt is refused and the allowed
personality is PER_LINUX), without the CAN and Bluetooth socket families.
OUTPUT receives the sock_filter array that `bwrap --seccomp FD` reads.
Exit status 3 means the seccomp module (Debian: python3-seccomp) is
missing.
"""

import errno
import socket
import sys
import termios

try:
    import seccomp
except ImportError as e:
    print("import seccomp: %s" % e, file=sys.stderr)
    sys.exit(3)

CLONE_NEWUSER = 0x10000000
PER_LINUX = 0

EPERM, ENOSYS = errno.EPERM, errno.ENOSYS

# (syscall, errno, argument comparison or None), in Flatpak's order.
BLOCKED = [
    ("syslog", EPERM, None),
    ("uselib", EPERM, None),
    ("acct", EPERM, None),
    ("quotactl", EPERM, None),
    ("add_key", EPERM, None),
    ("keyctl", EPERM, None),
    ("request_key", EPERM, None),
    ("move_pages", EPERM, None),
    ("mbind", EPERM, None),
    ("get_mempolicy", EPERM, None),
    ("set_mempolicy", EPERM, None),
    ("migrate_pages", EPERM, None),
    ("unshare", EPERM, None),
    ("setns", EPERM, None),
    ("mount", EPERM, None),
    ("umount", EPERM, None),
    ("umount2", EPERM, None),
    ("pivot_root", EPERM, None),
    ("chroot", EPERM, None),
    ("clone", EPERM, seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)),
    ("ioctl", EPERM, seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, termios.TIOCSTI)),
    ("ioctl", EPERM, seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, termios.TIOCLINUX)),
    ("clone3", ENOSYS, None),
    ("open_tree", ENOSYS, None),
    ("move_mount", ENOSYS, None),
    ("fsopen", ENOSYS, None),
    ("fsconfig", ENOSYS, None),
    ("fsmount", ENOSYS, None),
    ("fspick", ENOSYS, None),
    ("mount_setattr", ENOSYS, None),
    # Not multiarch.
    ("modify_ldt", EPERM, None),
]

NONDEVEL = [
    ("perf_event_open", EPERM, None),
    ("personality", EPERM, seccomp.Arg(0, seccomp.NE, PER_LINUX)),
    ("ptrace", EPERM, None),
]

# Numerical order, as Flatpak keeps it.
SOCKET_FAMILIES = [socket.AF_UNSPEC, socket.AF_UNIX, socket.AF_INET,
                   socket.AF_INET6, socket.AF_NETLINK]


def main(argv):
    devel = "--devel" in argv[1:]
    paths = [a for a in argv[1:] if a != "--devel"]
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    rules = BLOCKED + ([] if devel else NONDEVEL)
    for name, err, arg in rules:
        if arg is None:
            f.add_rule(seccomp.ERRNO(err), name)
        else:
            f.add_rule(seccomp.ERRNO(err), name, arg)
    last = -1
    for family in SOCKET_FAMILIES:
        for other in range(last + 1, family):
            f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                       seccomp.Arg(0, seccomp.EQ, other))
        last = family
    f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
               seccomp.Arg(0, seccomp.GE, last + 1))
    with open(paths[0], "wb") as out:
        f.export_bpf(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
