// Command ceiling is the bench's reference point: the smallest net/http
// server that can answer an auth check, 200 with one header and no body. No
// HTTP auth service written with net/http can answer faster on the same
// machine, so `make bench` reports every other case as a fraction of it.
//
// With -response it answers instead with the status, headers and body in
// that JSON file (the bench captures registry-auth's answer to an allowed
// request): the cost of the response itself, without any auth logic.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
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
			_, _ = w.Write(resp.Body)
		}
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
