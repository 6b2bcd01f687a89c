//go:build !unix

package standalone

import (
	"fmt"
	"os"
)

// openNonBlocking opens path for reading after checking that it is a
// regular file (without O_NONBLOCK there is no safe way to open anything
// else).
func openNonBlocking(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s)", errNotRegular, fileType(fi.Mode()))}
	}
	return os.Open(path)
}
