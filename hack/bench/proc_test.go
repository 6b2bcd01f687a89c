package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestScrapeGC(t *testing.T) {
	for _, tc := range []struct {
		name, metrics, want, wantErr string
	}{
		{name: "default, no limit",
			metrics: "# HELP go_gc_gogc_percent x\ngo_gc_gogc_percent 200\ngo_gc_gomemlimit_bytes 9.223372036854776e+18\ngo_goroutines 7\n",
			want:    "GOGC 200, no memory limit"},
		{name: "a limit",
			metrics: "go_gc_gogc_percent 100\ngo_gc_gomemlimit_bytes 2.415919104e+08\n",
			want:    "GOGC 100, memory limit 230 MiB"},
		{name: "off",
			metrics: "go_gc_gogc_percent -1\ngo_gc_gomemlimit_bytes 9.223372036854776e+18\n",
			want:    "GOGC off, no memory limit"},
		{name: "missing", metrics: "go_goroutines 7\n", wantErr: "has no go_gc_gogc_percent"},
		{name: "malformed", metrics: "go_gc_gogc_percent lots\n", wantErr: "lots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(tc.metrics))
			}))
			defer srv.Close()
			got, err := scrapeGC(srv.URL + "/metrics")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("scrapeGC = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The collector settings of the bench's own environment do not reach the
// processes it measures: machine.md can say the bench set none of them.
func TestChildEnvDropsRuntimeSettings(t *testing.T) {
	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	t.Setenv("CONTAINER_MEMORY_LIMIT", "1000")
	t.Setenv("BENCH_TEST_KEEP", "1")
	env := childEnv(map[string]string{"GOGC": "400"})
	var gogc []string
	kept := false
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "GOGC":
			gogc = append(gogc, v)
		case "GOMEMLIMIT", "CONTAINER_MEMORY_LIMIT":
			t.Errorf("childEnv passed %s on", kv)
		case "BENCH_TEST_KEEP":
			kept = true
		}
	}
	if len(gogc) != 1 || gogc[0] != "400" {
		t.Errorf("GOGC in the child's environment: %v, want only the one asked for (400)", gogc)
	}
	if !kept {
		t.Error("childEnv dropped an unrelated variable")
	}
}
