// Command ceiling is the bench's reference point: the smallest net/http
// server that can answer an auth check, 200 with one header and no body
// (Content-Length: 0, as registry-auth answers /validate). No HTTP auth
// service written with net/http can answer faster on the same machine, so
// `make bench` reports every other case as a fraction of it.
//
// With -response it answers instead with the status and headers (and body,
// if any) in that JSON file (the bench captures registry-auth's answer to an
// allowed request, which has no body): the cost of the response itself,
// without any auth logic.
//
// With -stats-addr it serves, on that second address, the number of
// connections the main address accepted (GET /connections: a decimal
// number), so the bench can tell how many connections a proxy opened per
// check, as registry_auth_connections_accepted_total tells for
// registry-auth. Counting costs one atomic add per connection.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// response is the -response file.
type response struct {
	Status int                 `json:"status"`
	Header map[string][]string `json:"header"`
	Body   []byte              `json:"body"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (127.0.0.1 only in the bench)")
	respFile := flag.String("response", "", "JSON file of the response to send (default: 200 with X-User and no body)")
	statsAddr := flag.String("stats-addr", "", "if set, serve GET /connections (connections accepted on -addr) on this address")
	flag.Parse()
	var h http.HandlerFunc
	if *respFile == "" {
		user := []string{"bench"}
		h = func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["X-User"] = user
			w.WriteHeader(http.StatusOK)
		}
	} else {
		b, err := os.ReadFile(*respFile)
		if err != nil {
			log.Fatal(err)
		}
		var resp response
		if err := json.Unmarshal(b, &resp); err != nil {
			log.Fatal(err)
		}
		h = func(w http.ResponseWriter, _ *http.Request) {
			hdr := w.Header()
			for k, v := range resp.Header {
				hdr[k] = v
			}
			w.WriteHeader(resp.Status)
			if len(resp.Body) > 0 {
				_, _ = w.Write(resp.Body)
			}
		}
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	if *statsAddr != "" {
		var accepted atomic.Int64
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		}
		stats := &http.Server{Addr: *statsAddr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strconv.FormatInt(accepted.Load(), 10) + "\n"))
		})}
		go func() { log.Fatal(stats.ListenAndServe()) }()
	}
	log.Fatal(srv.ListenAndServe())
}
