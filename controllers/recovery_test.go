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
	"testing"

	. "github.com/onsi/gomega"
)

func TestSameSecrets(t *testing.T) {
	// Loaded from Secret "a" at version 5; "b" was not found.
	res := &resolution{namespace: "ns", secretNames: []string{"a", "b"}, secretVersions: []string{"5", ""}}
	for _, tc := range []struct {
		name     string
		versions map[string]string // the API server's, by "namespace/name"
		want     bool
	}{
		{"unchanged", map[string]string{"ns/a": "5"}, true},
		{"a written", map[string]string{"ns/a": "6"}, false},
		{"a deleted", map[string]string{}, false},
		{"b created", map[string]string{"ns/a": "5", "ns/b": "7"}, false},
		{"a Secret of another namespace", map[string]string{"ns/a": "5", "other/b": "7"}, true},
		{"a Secret the policy does not read", map[string]string{"ns/a": "5", "ns/c": "1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(sameSecrets(res, tc.versions)).To(Equal(tc.want))
		})
	}
}
