package standalone

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Only regular files of bounded size are secret files: anything else at the
// path is refused at start-up, with the reason, and at once.
func TestStandaloneSecretFileKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// 64 MiB, sparse: what a wrong path (a log, an image) may hold.
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	justOver := filepath.Join(dir, "just-over")
	if err := os.WriteFile(justOver, make([]byte, MaxSecretFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	device := filepath.Join(dir, "device")
	if err := os.Symlink("/dev/zero", device); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, path, want string }{
		{"a FIFO", fifo, "not a regular file (a FIFO)"},
		{"a directory", dir, "not a regular file (a directory)"},
		{"a character device behind a symlink", device, "not a regular file (a character device)"},
		{"64 MiB", big, "larger than 64 KiB"},
		{"one byte over the bound", justOver, "larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				_, _, _, err := standaloneStart(t, map[string]string{
					"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
					"REGISTRY_API_TOKEN_FILE":            tc.path,
				})
				done <- err
			}()
			select {
			case err := <-done:
				g.Expect(err).To(HaveOccurred())
				g.Expect(err.Error()).To(ContainSubstring(tc.want))
				g.Expect(err.Error()).To(ContainSubstring("REGISTRY_API_TOKEN"))
			case <-time.After(5 * time.Second):
				t.Fatalf("Start has not returned after 5s: reading %s blocks", tc.name)
			}
			t.Logf("refused in %v", time.Since(start).Round(time.Microsecond))
		})
	}

	// A file of exactly the bound is read.
	at := filepath.Join(dir, "at-bound")
	if err := os.WriteFile(at, []byte(strings.Repeat("k", MaxSecretFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := readSecretFile(at); err != nil || len(b) != MaxSecretFileSize {
		t.Errorf("a file of %d bytes: %d bytes, %v", MaxSecretFileSize, len(b), err)
	}
}

// A 64 MiB file at the path costs nothing per poll: it is refused from its
// size, not read (before, every poll read it whole).
func TestStandaloneBigFileNotRead(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const polls = 20
	for range polls {
		if _, err := readSecretFile(big); !errors.Is(err, errTooLarge) {
			t.Fatalf("reading 64 MiB: %v, want %v", err, errTooLarge)
		}
	}
	runtime.ReadMemStats(&after)
	perPoll := (after.TotalAlloc - before.TotalAlloc) / polls
	t.Logf("%d bytes allocated per poll of a 64 MiB file", perPoll)
	if perPoll > 64<<10 {
		t.Errorf("%d bytes allocated per poll of a 64 MiB file, want at most %d", perPoll, 64<<10)
	}
}

// A FIFO swapped in at the token's path while running: the loop does not
// hang on it; the token is refused, readiness and the metrics say why, and
// a regular file put back is read again.
func TestStandaloneFIFOSwappedIn(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "registry-token")
	tok1, tok2 := standaloneTestToken(t), standaloneTestToken(t)
	g.Expect(os.WriteFile(file, []byte(tok1), 0o600)).To(Succeed())
	sa, store, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN_FILE":            file,
	})
	g.Expect(err).NotTo(HaveOccurred())
	standaloneRun(t, sa)
	standaloneEventually(g, store, tok1, 200, "token allowed")
	g.Expect(sa.Ready()).To(Succeed())

	fifo := filepath.Join(dir, "fifo")
	g.Expect(syscall.Mkfifo(fifo, 0o600)).To(Succeed())
	g.Expect(os.Rename(fifo, file)).To(Succeed())
	standaloneEventually(g, store, tok1, 401, "token refused once its file is a FIFO")
	g.Expect(sa.Ready()).To(MatchError(ContainSubstring("REGISTRY_API_TOKEN: SecretNotFound")))
	g.Expect(gaugeValue(t, sa, "registry_auth_config_problems")).To(BeNumerically("==", 1))
	g.Expect(strings.Join(logs.errorLines(), "\n")).To(ContainSubstring("not a regular file (a FIFO)"))

	g.Expect(os.WriteFile(filepath.Join(dir, "next"), []byte(tok2), 0o600)).To(Succeed())
	g.Expect(os.Rename(filepath.Join(dir, "next"), file)).To(Succeed())
	standaloneEventually(g, store, tok2, 200, "a regular file is read again")
	g.Eventually(sa.Ready).Should(Succeed())
	g.Expect(gaugeValue(t, sa, "registry_auth_config_problems")).To(BeNumerically("==", 0))
	standaloneExpectNoSecret(g, logs, tok1, tok2)
}

// A read that does not return (a network file system that hangs; a file
// system here cannot be made to, so the reader is replaced for this one
// branch) holds up only the file checks: Run goes on, later checks are
// skipped and counted, readiness fails naming the file, and all of it
// clears when the read returns.
func TestStandaloneStuckReadShows(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "registry-token")
	tok1, tok2 := standaloneTestToken(t), standaloneTestToken(t)
	g.Expect(os.WriteFile(file, []byte(tok1), 0o600)).To(Succeed())
	sa, store, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN_FILE":            file,
	})
	g.Expect(err).NotTo(HaveOccurred())
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var hang sync.Mutex
	hanging := false
	sa.readFile = func(path string) ([]byte, error) {
		hang.Lock()
		h := hanging
		hang.Unlock()
		if h {
			<-release
		}
		return readSecretFile(path)
	}
	sa.StuckAfter = 200 * time.Millisecond
	done := standaloneRun(t, sa)
	standaloneEventually(g, store, tok1, 200, "token allowed")

	hang.Lock()
	hanging = true
	hang.Unlock()
	g.Expect(os.WriteFile(file, []byte(tok2), 0o600)).To(Succeed())
	g.Eventually(sa.Ready, 3*time.Second, 20*time.Millisecond).Should(MatchError(And(
		ContainSubstring("REGISTRY_API_TOKEN_FILE"), ContainSubstring("has not returned"))))
	g.Consistently(done, 100*time.Millisecond).ShouldNot(BeClosed())
	g.Expect(counterValue(t, sa, "registry_auth_config_file_checks_skipped_total")).To(BeNumerically(">", 0))
	g.Expect(gaugeValue(t, sa, "registry_auth_config_file_check_running_seconds")).To(BeNumerically(">=", 0.2))
	g.Expect(strings.Join(logs.errorLines(), "\n")).To(ContainSubstring("secret files are not being re-read"))

	once.Do(func() { close(release) })
	standaloneEventually(g, store, tok2, 200, "the rotated token is in force once the read returns")
	g.Eventually(sa.Ready).Should(Succeed())
	g.Eventually(func() float64 { return gaugeValue(t, sa, "registry_auth_config_file_check_running_seconds") }).Should(BeNumerically("<", 0.2))
}

func metricOf(t *testing.T, sa *Loader, name string) *dto.Metric {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(sa.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func gaugeValue(t *testing.T, sa *Loader, name string) float64 {
	return metricOf(t, sa, name).GetGauge().GetValue()
}

func counterValue(t *testing.T, sa *Loader, name string) float64 {
	return metricOf(t, sa, name).GetCounter().GetValue()
}
