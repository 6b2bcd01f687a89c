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
