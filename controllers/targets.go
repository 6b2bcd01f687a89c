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
