//go:build !linux

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

package utils

import (
	"os/exec"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Outside Linux there is no parent-death signal: a test binary that crashes
// leaves envtest's etcd and kube-apiserver running.
func tieControlPlaneToProcess(*envtest.Environment) {}

// DieWithTest has no parent-death signal to set outside Linux.
func DieWithTest(*exec.Cmd) {}
