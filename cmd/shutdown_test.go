/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
)

// A request still in flight when the shutdown grace period ends is cut, and
// the server stops without an error: the shutdown was asked for. The log
// says what happened.
func TestAuthRunnableGraceEnds(t *testing.T) {
	g := NewWithT(t)
	release := make(chan struct{})
	defer close(release)
	inHandler := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	var mu sync.Mutex
	var logs []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, args)
	}, funcr.Options{})
	a := &authRunnable{what: "auth service", server: &http.Server{Addr: "127.0.0.1:0", Handler: h, ReadHeaderTimeout: time.Second},
		grace: 200 * time.Millisecond}
	addr := make(chan string, 1)
	a.log = logr.New(listenSink{LogSink: log.GetSink(), addr: addr})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	var url string
	g.Eventually(addr, 5*time.Second).Should(Receive(&url))
	clientErr := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + url + "/validate")
		if err == nil {
			_ = resp.Body.Close()
		}
		clientErr <- err
	}()
	g.Eventually(inHandler, 5*time.Second).Should(Receive())

	cancel()
	var err error
	g.Eventually(done, 5*time.Second).Should(Receive(&err))
	g.Expect(err).NotTo(HaveOccurred(), "a grace period that ends is no failure")
	g.Eventually(clientErr, 5*time.Second).Should(Receive(HaveOccurred()), "the request in flight was cut")
	mu.Lock()
	defer mu.Unlock()
	g.Expect(strings.Join(logs, "\n")).To(ContainSubstring("still in flight after the shutdown grace period"))
}

// listenSink passes the address the runnable logs when it listens.
type listenSink struct {
	logr.LogSink
	addr chan<- string
}

func (s listenSink) Info(level int, msg string, kv ...any) {
	if strings.HasSuffix(msg, " listening") {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == "address" {
				s.addr <- kv[i+1].(string)
			}
		}
	}
	s.LogSink.Info(level, msg, kv...)
}
