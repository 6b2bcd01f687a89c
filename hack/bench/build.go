package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// oauth2ProxyVersion is the release the bench compares against; it must
// match hack/bench/tools/go.mod.
const oauth2ProxyVersion = "v7.15.6"

// binaries are the programs the bench runs.
type binaries struct {
	registryAuth string
	ceiling      string
	oauth2Proxy  string
	chart        string
}

func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // go run builds and runs the bench on one machine: this is the go that built it, whatever PATH holds
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

func goBuild(dir string, env []string, args ...string) error {
	cmd := exec.Command(goTool(), append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, out.String())
	}
	return nil
}

// buildAll builds registry-auth and the ceiling server from this tree (every
// run: the point is to measure the current code), and oauth2-proxy and the
// chart renderer from the tools module. oauth2-proxy takes minutes to build,
// so it is kept in bin/bench with a stamp of the tools module and the Go
// version, and rebuilt only when either changes.
func buildAll(root string, cfg config) (binaries, error) {
	dir := filepath.Join(root, "bin", "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return binaries{}, err
	}
	b := binaries{
		registryAuth: filepath.Join(dir, "registry-auth"),
		ceiling:      filepath.Join(dir, "ceiling"),
		oauth2Proxy:  filepath.Join(dir, "oauth2-proxy-"+oauth2ProxyVersion),
		chart:        filepath.Join(dir, "chart"),
	}
	if cfg.binary != "" {
		abs, err := filepath.Abs(cfg.binary)
		if err != nil {
			return b, err
		}
		b.registryAuth = abs
		logf("using %s as registry-auth", abs)
	} else {
		logf("building registry-auth")
		if err := goBuild(root, nil, "-o", b.registryAuth, "./cmd"); err != nil {
			return b, err
		}
	}
	if err := goBuild(root, nil, "-o", b.ceiling, "./hack/bench/ceiling"); err != nil {
		return b, err
	}
	tools := filepath.Join(root, "hack", "bench", "tools")
	if err := goBuild(tools, nil, "-o", b.chart, "./chart"); err != nil {
		return b, err
	}
	stamp, err := toolsStamp(tools)
	if err != nil {
		return b, err
	}
	stampFile := b.oauth2Proxy + ".stamp"
	if old, err := os.ReadFile(stampFile); err == nil && string(old) == stamp {
		if _, err := os.Stat(b.oauth2Proxy); err == nil {
			logf("oauth2-proxy %s is up to date (%s)", oauth2ProxyVersion, rel(root, b.oauth2Proxy))
			return b, nil
		}
	}
	logf("building oauth2-proxy %s from the Go module proxy (first time: a few minutes)", oauth2ProxyVersion)
	_ = os.Remove(stampFile)
	ldflags := "-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=" + oauth2ProxyVersion
	if err := goBuild(tools, nil, "-ldflags", ldflags, "-o", b.oauth2Proxy, "github.com/oauth2-proxy/oauth2-proxy/v7"); err != nil {
		return b, err
	}
	return b, os.WriteFile(stampFile, []byte(stamp), 0o644)
}

// toolsStamp identifies what the oauth2-proxy binary was built from.
func toolsStamp(tools string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(tools, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	out, err := exec.Command(goTool(), "version").Output()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("oauth2-proxy %s\ntools %s\n%s", oauth2ProxyVersion, hex.EncodeToString(h.Sum(nil)), out), nil
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}
