package nginxtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNginx writes an executable "nginx" into dir whose -V output has the
// auth_request module or not.
func fakeNginx(t *testing.T, dir string, withAuthRequest bool) string {
	t.Helper()
	args := "--prefix=/usr/share/nginx --with-http_ssl_module"
	if withAuthRequest {
		args += " --with-http_auth_request_module"
	}
	script := "#!/bin/sh\necho 'nginx version: nginx/0.0.0-fake' >&2\necho 'configure arguments: " + args + "' >&2\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nginx")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestLookup(t *testing.T) {
	root := t.TempDir()
	empty := filepath.Join(root, "empty")
	onPath := filepath.Join(root, "path")
	sbin := filepath.Join(root, "sbin")
	noModule := filepath.Join(root, "nomodule")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	pathNginx := fakeNginx(t, onPath, true)
	sbinNginx := fakeNginx(t, sbin, true)
	badNginx := fakeNginx(t, noModule, false)
	notExec := filepath.Join(root, "notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		env     map[string]string // unset when absent
		want    string
		wantErr []string // substrings of the error
	}{
		{name: "nothing anywhere", env: map[string]string{"PATH": empty, SbinPathEnv: ""},
			wantErr: []string{"nginx is not installed (not on PATH)", "hack/provision.sh", NginxBinEnv}},
		{name: "not on PATH nor in the sbin dirs", env: map[string]string{"PATH": empty, SbinPathEnv: empty},
			wantErr: []string{"nginx is not installed (not on PATH nor in " + empty + ")"}},
		{name: "on PATH", env: map[string]string{"PATH": empty + ":" + onPath, SbinPathEnv: sbin}, want: pathNginx},
		{name: "PATH before the sbin dirs", env: map[string]string{"PATH": onPath, SbinPathEnv: sbin}, want: pathNginx},
		{name: "in the sbin dirs", env: map[string]string{"PATH": empty, SbinPathEnv: "::" + sbin}, want: sbinNginx},
		{name: "NGINX_BIN wins", env: map[string]string{"PATH": onPath, NginxBinEnv: sbinNginx}, want: sbinNginx},
		{name: "NGINX_BIN missing", env: map[string]string{"PATH": onPath, NginxBinEnv: filepath.Join(empty, "nginx")},
			wantErr: []string{NginxBinEnv + "=" + filepath.Join(empty, "nginx") + " is not an executable file"}},
		{name: "NGINX_BIN not executable", env: map[string]string{"PATH": onPath, NginxBinEnv: notExec},
			wantErr: []string{"is not an executable file"}},
		{name: "a directory is no nginx", env: map[string]string{"PATH": root, SbinPathEnv: ""},
			wantErr: []string{"nginx is not installed"}},
		{name: "without auth_request", env: map[string]string{"PATH": noModule + ":" + onPath, SbinPathEnv: ""},
			wantErr: []string{badNginx + " is built without http_auth_request_module"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			got, err := lookup(getenv)
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Fatalf("lookup = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("lookup = %q, want an error containing %q", got, tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestRequireHelperProcess is run by TestRequire in a child process; run
// directly, it does nothing.
func TestRequireHelperProcess(t *testing.T) {
	if os.Getenv("NGINXTEST_REQUIRE_HELPER") != "1" {
		return
	}
	t.Logf("Require returned %s", Require(t))
}

// TestRequire runs Require in a child process (it ends the test with
// t.Skip or t.Fatal) with a PATH that has no nginx: the test must skip with
// the reason, and fail instead under CI=true.
func TestRequire(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	good := fakeNginx(t, filepath.Join(t.TempDir(), "bin"), true)

	run := func(t *testing.T, env ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireHelperProcess$", "-test.v", "-test.count=1")
		for _, kv := range os.Environ() {
			switch strings.SplitN(kv, "=", 2)[0] {
			case "CI", "PATH", NginxBinEnv, SbinPathEnv:
			default:
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "NGINXTEST_REQUIRE_HELPER=1", "PATH="+empty, SbinPathEnv+"=")
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	expect := func(t *testing.T, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("output does not contain %q:\n%s", w, out)
			}
		}
	}

	t.Run("missing skips with the reason", func(t *testing.T) {
		t.Parallel()
		out, err := run(t)
		if err != nil {
			t.Fatalf("want a skip, the child failed (%v):\n%s", err, out)
		}
		expect(t, out, "--- SKIP: TestRequireHelperProcess",
			"this test needs nginx: nginx is not installed (not on PATH)", "sudo hack/provision.sh")
	})
	for _, ci := range []string{"true", "1"} {
		t.Run("missing fails with CI="+ci, func(t *testing.T) {
			t.Parallel()
			out, err := run(t, "CI="+ci)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("want the child to fail, got %v:\n%s", err, out)
			}
			expect(t, out, "--- FAIL: TestRequireHelperProcess", "CI=true, nothing may be skipped: nginx is not installed")
		})
	}
	t.Run("CI=false skips", func(t *testing.T) {
		t.Parallel()
		out, err := run(t, "CI=false")
		if err != nil {
			t.Fatalf("want a skip, the child failed (%v):\n%s", err, out)
		}
		expect(t, out, "--- SKIP: TestRequireHelperProcess")
	})
	t.Run("present", func(t *testing.T) {
		t.Parallel()
		out, err := run(t, "CI=true", NginxBinEnv+"="+good)
		if err != nil {
			t.Fatalf("the child failed (%v):\n%s", err, out)
		}
		expect(t, out, "--- PASS: TestRequireHelperProcess", "Require returned "+good)
	})
}
