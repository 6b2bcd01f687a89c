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

package controllers

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Policy authors name URLs the operator's pods then call: an OIDC issuer
// (discovery and keys) and a delegate (every delegated auth request, with
// the client's headers). Unchecked, any author could make the operator
// reach any address of the cluster network and read the outcome back (SSRF).
// These are the cluster admin's rules for them.

// TargetRules say which URLs policies may name.
type TargetRules struct {
	// AllowLoopbackHTTP admits plain http:// issuers and delegates on a
	// loopback address (tests, make run). Otherwise issuers must be https.
	AllowLoopbackHTTP bool
	// DelegateHosts are the hosts (host or host:port; "*.example" matches
	// any host under example) a delegate URL may name. Empty: none.
	DelegateHosts []string
}

// issuerAllowed reports whether an issuer URL may be discovered.
func (t TargetRules) issuerAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		return t.AllowLoopbackHTTP && loopback(u.Hostname())
	}
	return false
}

// delegateAllowed reports whether a delegate URL may be called.
func (t TargetRules) delegateAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if t.AllowLoopbackHTTP && loopback(u.Hostname()) {
		return true
	}
	host := strings.ToLower(u.Host)
	name := strings.ToLower(u.Hostname())
	for _, h := range t.DelegateHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
		case h == host || h == name:
			return true
		case strings.HasPrefix(h, "*.") && strings.HasSuffix(name, h[1:]):
			return true
		}
	}
	return false
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HostGrants say which namespaces' policies may answer for which hosts on
// plain /validate (the host of the original request chooses the policy).
// Without them any namespace could list another's host: block it, or answer
// for it once its owner's policy is gone, with its own IdP and group map.
// The cluster admin grants hosts, as a Gateway's allowedRoutes grants
// routes; among the policies a host is granted to, the oldest answers for
// it. /validate/<namespace>/<name> needs no grant.
type HostGrants struct {
	grants []hostGrant
}

type hostGrant struct {
	namespace string // "*": any
	hosts     []string
}

// ParseHostGrants parses --host-grants:
// "NAMESPACE=HOST[,HOST…][;NAMESPACE=HOST…]", where NAMESPACE may be "*" (any
// namespace) and HOST may be "*" (any host) or "*.example.com" (any host under
// example.com). Empty grants nothing.
func ParseHostGrants(v string) (HostGrants, error) {
	var g HostGrants
	for _, entry := range strings.Split(v, ";") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		ns, hosts, ok := strings.Cut(entry, "=")
		ns = strings.TrimSpace(ns)
		if !ok || ns == "" {
			return HostGrants{}, fmt.Errorf("host grant %q: want NAMESPACE=HOST[,HOST...]", entry)
		}
		hg := hostGrant{namespace: ns}
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
				hg.hosts = append(hg.hosts, h)
			}
		}
		if len(hg.hosts) == 0 {
			return HostGrants{}, fmt.Errorf("host grant %q names no host", entry)
		}
		g.grants = append(g.grants, hg)
	}
	return g, nil
}

// Allows reports whether a policy in namespace ns may answer for host.
func (g HostGrants) Allows(ns, host string) bool {
	host = strings.ToLower(host)
	for _, gr := range g.grants {
		if gr.namespace != "*" && gr.namespace != ns {
			continue
		}
		for _, h := range gr.hosts {
			switch {
			case h == "*", h == host:
				return true
			case strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]):
				return true
			}
		}
	}
	return false
}

// Empty reports whether nothing is granted.
func (g HostGrants) Empty() bool { return len(g.grants) == 0 }
