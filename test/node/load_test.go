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

package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The request ingress-nginx makes for a Registry API call, to the sample
// policy by name (an install grants no host to any namespace unless told:
// --host-grants, Helm value hostGrants).
const (
	validatePath = "/validate/default/registry"
	validateHost = "http://registry.localhost/api/servers"
	loadWorkers  = 2 // per kind of target
	loadPause    = 5 * time.Millisecond
)

// validate makes one validatePath request to base (http://IP:PORT) with
// the token and returns the status code.
func validate(cl *http.Client, base, token string) (int, error) {
	return validateAt(cl, base+validatePath, token)
}

// validateAt makes one request to url as ingress-nginx's auth-url does.
func validateAt(cl *http.Client, url, token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Original-URL", validateHost)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// load is a steady stream of /validate checks with a valid token from
// inside the node's network namespace, each on a new connection: through
// the auth Service's ClusterIP (kube-proxy picks a pod) and straight to the
// pod IPs of the Service's ready endpoints (as an ingress controller
// balancing over endpoints does), refreshed every 200ms.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time

	mu       sync.Mutex
	podIPs   []string
	changes  int                      // how often podIPs changed
	ok, fail map[string]*atomic.Int64 // by kind: "Service" and "pod IPs"
	errs     map[string]int           // failures by message (20 kinds at most)
}

// loadStats is what a load saw.
type loadStats struct {
	Took             time.Duration
	ServiceOK        int64
	ServiceFailed    int64
	EndpointsOK      int64
	EndpointsFailed  int64
	Failures         []string
	EndpointsChanges int
}

func (s loadStats) total() int64 {
	return s.ServiceOK + s.ServiceFailed + s.EndpointsOK + s.EndpointsFailed
}

func (s loadStats) failed() int64 { return s.ServiceFailed + s.EndpointsFailed }

func (s loadStats) String() string {
	return fmt.Sprintf("%d checks in %s (%.0f/s): Service %d ok, %d failed; pod IPs %d ok, %d failed; endpoints changed %d times",
		s.total(), s.Took.Round(time.Millisecond), float64(s.total())/s.Took.Seconds(),
		s.ServiceOK, s.ServiceFailed, s.EndpointsOK, s.EndpointsFailed, s.EndpointsChanges)
}

func startLoad(in *install, token string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{
		cancel: cancel,
		start:  time.Now(),
		ok:     map[string]*atomic.Int64{"Service": {}, "pod IPs": {}},
		fail:   map[string]*atomic.Int64{"Service": {}, "pod IPs": {}},
		errs:   map[string]int{},
	}
	refresh := func() {
		ips := readyEndpoints(ctx, in)
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		if strings.Join(ips, ",") != strings.Join(l.podIPs, ",") {
			l.changes++
		}
		l.podIPs = ips
		l.mu.Unlock()
	}
	refresh()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
				refresh()
			}
		}
	}()
	svc := fmt.Sprintf("http://%s:%d", in.authServiceIP, authPort)
	cl := cluster.HTTPClient(false)
	cl.Timeout = 2 * time.Second
	for w := 0; w < loadWorkers; w++ {
		for _, kind := range []string{"Service", "pod IPs"} {
			l.wg.Add(1)
			go func(kind string, w int) {
				defer l.wg.Done()
				for i := w; ctx.Err() == nil; i++ {
					target := svc
					if kind == "pod IPs" {
						l.mu.Lock()
						ips := l.podIPs
						l.mu.Unlock()
						if len(ips) == 0 {
							l.record(kind, "no ready endpoint")
							time.Sleep(loadPause)
							continue
						}
						target = fmt.Sprintf("http://%s:%d", ips[i%len(ips)], authPort)
					}
					code, err := validate(cl, target, token)
					if ctx.Err() != nil {
						return // a request cut short by the stop is not a result
					}
					switch {
					case err != nil:
						l.record(kind, fmt.Sprintf("%s: %v", target, err))
					case code != http.StatusOK:
						l.record(kind, fmt.Sprintf("%s: HTTP %d", target, code))
					default:
						l.ok[kind].Add(1)
					}
					time.Sleep(loadPause)
				}
			}(kind, w)
		}
	}
	return l
}

func (l *load) record(kind, msg string) {
	l.fail[kind].Add(1)
	l.mu.Lock()
	if _, seen := l.errs[msg]; seen || len(l.errs) < 20 {
		l.errs[msg]++
	}
	l.mu.Unlock()
}

// stop ends the load and returns what it saw.
func (l *load) stop() loadStats {
	l.cancel()
	l.wg.Wait()
	s := loadStats{
		Took:      time.Since(l.start),
		ServiceOK: l.ok["Service"].Load(), ServiceFailed: l.fail["Service"].Load(),
		EndpointsOK: l.ok["pod IPs"].Load(), EndpointsFailed: l.fail["pod IPs"].Load(),
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s.EndpointsChanges = l.changes - 1 // the first list is not a change
	for msg, n := range l.errs {
		s.Failures = append(s.Failures, fmt.Sprintf("%dx %s", n, msg))
	}
	sort.Strings(s.Failures)
	return s
}

// readyEndpoints lists the ready pod IPs of the auth Service's
// EndpointSlices.
func readyEndpoints(ctx context.Context, in *install) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	slices, err := clients.DiscoveryV1().EndpointSlices(in.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + in.authService,
	})
	if err != nil {
		return nil
	}
	var ips []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				ips = append(ips, ep.Addresses...)
			}
		}
	}
	sort.Strings(ips)
	return ips
}
