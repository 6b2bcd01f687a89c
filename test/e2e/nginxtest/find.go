package nginxtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The environment variables that decide which nginx the tests run, read the
// same way by hack/provision.sh (which `make test` runs first).
const (
	// NginxBinEnv names the nginx to use; nothing else is looked at then.
	NginxBinEnv = "NGINX_BIN"
	// SbinPathEnv lists the directories searched after PATH (default
	// DefaultSbinPath). Set to "" to search PATH only.
	SbinPathEnv = "NGINX_SBIN_PATH"
	// DefaultSbinPath: Debian's nginx is /usr/sbin/nginx, and /usr/sbin is
	// not on a normal user's PATH.
	DefaultSbinPath = "/usr/sbin:/usr/local/sbin"
)

// howToGet is appended to the reason a test skips.
const howToGet = "get it with `make test` as root, or `sudo hack/provision.sh` " +
	"(Debian's nginx package, installed without starting its service), or set " + NginxBinEnv

// Lookup returns the nginx the tests run: $NGINX_BIN if set, else nginx on
// PATH, else in $NGINX_SBIN_PATH (default /usr/sbin:/usr/local/sbin). It must
// be built with http_auth_request_module (Debian's is). The error says what
// is missing and how to get it.
func Lookup() (string, error) {
	return lookup(os.LookupEnv)
}

func lookup(getenv func(string) (string, bool)) (string, error) {
	if bin, ok := getenv(NginxBinEnv); ok && bin != "" {
		if !isExecutable(bin) {
			return "", fmt.Errorf("%s=%s is not an executable file", NginxBinEnv, bin)
		}
		return bin, checkNginx(bin)
	}
	path, _ := getenv("PATH")
	sbin, ok := getenv(SbinPathEnv)
	if !ok {
		sbin = DefaultSbinPath
	}
	for _, dir := range filepath.SplitList(path + string(filepath.ListSeparator) + sbin) {
		if dir == "" {
			continue
		}
		if bin := filepath.Join(dir, "nginx"); isExecutable(bin) {
			return bin, checkNginx(bin)
		}
	}
	where := "not on PATH"
	if sbin != "" {
		where += " nor in " + sbin
	}
	return "", fmt.Errorf("nginx is not installed (%s): %s", where, howToGet)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// InCI reports whether CI is "true" (or "1"): then nothing may be skipped.
func InCI() bool {
	v := os.Getenv("CI")
	return strings.EqualFold(v, "true") || v == "1"
}

// Require returns the nginx Lookup finds. When there is none it skips tb
// with the reason, or, under CI=true, where nothing may be skipped, fails
// it. Tests that need nginx call it (Start does) before anything costly.
func Require(tb testing.TB) string {
	tb.Helper()
	bin, err := Lookup()
	if err == nil {
		return bin
	}
	if InCI() {
		tb.Fatalf("nginxtest: CI=true, nothing may be skipped: %v", err)
	}
	tb.Skipf("nginxtest: skipping, this test needs nginx: %v", err)
	return ""
}

var (
	checkMu     sync.Mutex
	checkedBins = map[string]error{}
)

// checkNginx verifies once per binary that ngx_http_auth_request_module is
// compiled in (it is not a dynamic module, so there is nothing to load).
func checkNginx(bin string) error {
	checkMu.Lock()
	defer checkMu.Unlock()
	if err, ok := checkedBins[bin]; ok {
		return err
	}
	out, err := exec.Command(bin, "-V").CombinedOutput()
	switch {
	case err != nil:
		err = fmt.Errorf("%s -V: %w: %s", bin, err, bytes.TrimSpace(out))
	case !bytes.Contains(out, []byte("--with-http_auth_request_module")):
		err = fmt.Errorf("%s is built without http_auth_request_module, set %s to one that has it (nginx -V: %s)",
			bin, NginxBinEnv, bytes.TrimSpace(out))
	}
	checkedBins[bin] = err
	return err
}
