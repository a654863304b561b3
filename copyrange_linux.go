package hamt

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// copyFileRange copies n bytes at off in src to dst at its offset, in the kernel
// (copy_file_range: no byte passes through the process, and on file systems that can, none is
// even copied). handled is false, with nothing written, when the kernel cannot copy between these
// files: the caller then copies them itself.
func copyFileRange(dst, src *os.File, off, n int64) (written int64, handled bool, err error) {
	sc, err := src.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var cerr error
	err = sc.Control(func(sfd uintptr) {
		derr := dc.Control(func(dfd uintptr) {
			for written < n {
				m, err := unix.CopyFileRange(int(sfd), &off, int(dfd), nil, int(n-written), 0)
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil {
					if written == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) ||
						errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF)) {
						return // not handled: the caller copies
					}
					handled = true
					cerr = err
					return
				}
				handled = true
				if m == 0 {
					cerr = errors.New("copy_file_range: the source ended early")
					return
				}
				written += int64(m)
			}
		})
		if cerr == nil { // the copy's own error first: Control's nil must not overwrite it
			cerr = derr
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return written, true, &os.PathError{Op: "copy_file_range", Path: dst.Name(), Err: err}
	}
	return written, handled || n == 0, nil
}
