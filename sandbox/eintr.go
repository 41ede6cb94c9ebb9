package sandbox

import "golang.org/x/sys/unix"

// The system calls below may touch the FUSE mount, where the Go
// runtime's preemption signals interrupt a waiting request (EINTR): each
// is retried until it is not interrupted. os.OpenFile does the same.

func retry(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

func openE(path string, flags int, mode uint32) (fd int, err error) {
	err = retry(func() (e error) { fd, e = unix.Open(path, flags, mode); return })
	return
}

func openatE(dir int, path string, flags int, mode uint32) (fd int, err error) {
	err = retry(func() (e error) { fd, e = unix.Openat(dir, path, flags, mode); return })
	return
}

func openat2E(dir int, path string, how *unix.OpenHow) (fd int, err error) {
	err = retry(func() (e error) { fd, e = unix.Openat2(dir, path, how); return })
	return
}

func fstatE(fd int, st *unix.Stat_t) error { return retry(func() error { return unix.Fstat(fd, st) }) }

func fstatatE(dir int, path string, st *unix.Stat_t, flags int) error {
	return retry(func() error { return unix.Fstatat(dir, path, st, flags) })
}

func mkdiratE(dir int, path string, mode uint32) error {
	return retry(func() error { return unix.Mkdirat(dir, path, mode) })
}

func mountE(source, target, fstype string, flags uintptr, data string) error {
	return retry(func() error { return unix.Mount(source, target, fstype, flags, data) })
}
