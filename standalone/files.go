package standalone

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// MaxSecretFileSize bounds a secret file (*_FILE, key_file,
// INTERNAL_SIGNING_KEY_PATH): tokens, keys and PEM key pairs are far
// smaller. A larger file is refused without being read, so a wrong path (a
// log, an image) cannot make every poll read megabytes.
const MaxSecretFileSize = 64 << 10

// errNotRegular and errTooLarge say why a secret file is refused.
var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = fmt.Errorf("larger than %d KiB", MaxSecretFileSize>>10)
)

// readSecretFile reads a secret file: a regular file (after symlinks, as
// kubelet and Docker mount secrets) of at most MaxSecretFileSize bytes. It
// opens without blocking (openNonBlocking), so a FIFO or a device at the
// path is refused at once instead of hanging the reader, and reads no more
// than the bound even when the file grows meanwhile.
func readSecretFile(path string) ([]byte, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, errors.Unwrap(err) // the *PathError's cause; the caller names the file
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w (%s)", errNotRegular, fileType(fi.Mode()))
	}
	if fi.Size() > MaxSecretFileSize {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretFileSize+1))
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	if len(b) > MaxSecretFileSize {
		return nil, errTooLarge
	}
	return b, nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
