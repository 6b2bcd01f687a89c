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
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestRBACLeastPrivilege reads the manifests' roles (the suite's manager
// runs with exactly these, so the tests prove they suffice) and fails on any
// wildcard or on any rule beyond the list below. Widening RBAC therefore
// takes a deliberate change here.
func TestRBACLeastPrivilege(t *testing.T) {
	g := NewWithT(t)
	var role rbacv1.ClusterRole
	g.Expect(readYAML("config/rbac/role.yaml", &role)).To(Succeed())
	var le rbacv1.Role
	g.Expect(readYAML("config/rbac/leader_election_role.yaml", &le)).To(Succeed())

	want := map[string][]string{
		"/configmaps": {"get", "list", "watch"},
		"/secrets":    {"create", "get", "list", "patch", "watch"},
		"auth.registryauth.io/registryauthpolicies":            {"get", "list", "watch"},
		"auth.registryauth.io/registryauthpolicies/finalizers": {"update"},
		"auth.registryauth.io/registryauthpolicies/status":     {"patch"},
		"events.k8s.io/events":                                 {"create", "patch"},
	}
	wantLE := map[string][]string{
		"coordination.k8s.io/leases": {"create", "get", "update"},
	}
	for name, tc := range map[string]struct {
		rules []rbacv1.PolicyRule
		want  map[string][]string
	}{"manager-role": {role.Rules, want}, "leader-election-role": {le.Rules, wantLE}} {
		got := map[string][]string{}
		for _, r := range tc.rules {
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
				for _, v := range field {
					g.Expect(v).NotTo(ContainSubstring("*"), "%s: wildcard in %+v", name, r)
				}
			}
			g.Expect(r.NonResourceURLs).To(BeEmpty(), name)
			for _, grp := range r.APIGroups {
				for _, res := range r.Resources {
					k := grp + "/" + res
					got[k] = append(got[k], r.Verbs...)
				}
			}
		}
		for k := range got {
			slices.Sort(got[k])
			got[k] = slices.Compact(got[k])
		}
		g.Expect(got).To(Equal(tc.want), "%s grants:\n%s", name, describeRules(got))
	}
}

func describeRules(m map[string][]string) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, k+": "+strings.Join(v, ","))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
