//go:build darwin || freebsd || netbsd

package hamt

import (
	"io/fs"
	"syscall"
)

// changeTime is a file's status change time (ctime) in nanoseconds, 0 where unknown: ImportDir
// compares it before and after a read, as it does the size and modification time.
func changeTime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctimespec.Nano()
	}
	return 0
}
