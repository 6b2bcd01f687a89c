//go:build unix

package standalone

import (
	"os"
	"syscall"
)

// openNonBlocking opens path for reading with O_NONBLOCK: opening a FIFO
// that has no writer returns at once (a plain open would wait for one), and
// readSecretFile then refuses it as not a regular file. For a regular file
// the flag changes nothing.
func openNonBlocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
