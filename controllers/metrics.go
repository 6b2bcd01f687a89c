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
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// rotationsTotal counts token and key rotations the leader has recorded
// (one per TokenRotated event).
var rotationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "registry_auth_rotations_total",
	Help: "Rotations of static tokens (credential \"static\"), API keys, the federation token and the session signing key (\"session\") recorded by the leader.",
}, []string{"policy", "credential"})

func init() {
	metrics.Registry.MustRegister(rotationsTotal)
}
