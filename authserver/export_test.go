package authserver

import (
	"testing"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// What the tests of other front-ends (package authserver_test, which may
// import them) share with this package's proxy contract.

// ProxyCase is a row of the proxy decision table (proxyRows), exported.
type ProxyCase struct {
	Name, Method, Scheme, Host, Target, Policy string
	Header                                     []string
	Status                                     int
	User                                       string
	AuthMethod                                 check.Method
	Reason                                     check.Reason
}

// ProxyCases are the rows of TestProxyDecisionTable, with their defaults
// filled in. Every front-end must answer each the same.
func ProxyCases(t *testing.T) []ProxyCase {
	var out []ProxyCase
	for _, r := range proxyRows(t) {
		r = r.withDefaults()
		out = append(out, ProxyCase{
			Name: r.name, Method: r.method, Scheme: r.scheme, Host: r.host, Target: r.target, Policy: r.policy,
			Header: r.header, Status: r.want.status, User: r.want.user, AuthMethod: r.want.method, Reason: r.want.reason,
		})
	}
	return out
}

// ProxyStore is the store of the decision table: the base policy and
// team/other.
func ProxyStore(t *testing.T) *policy.Store {
	return newProxyEnv(t, HandlerOptions{}).store
}

// StartTestDelegate starts the test delegate (newTestDelegate) and returns
// its URL and a function returning the headers of the last request it got.
func StartTestDelegate(t *testing.T) (string, func() map[string][]string) {
	d := newTestDelegate(t)
	return d.srv.URL + "/validate", func() map[string][]string { return d.last() }
}
