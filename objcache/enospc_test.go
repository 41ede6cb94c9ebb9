package objcache

import "syscall"

var errNoSpace error = syscall.ENOSPC
