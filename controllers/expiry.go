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
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Event reasons of the credential lifecycle (Warning events, recorded by the
// leader when the condition of the same name turns True or its message
// changes).
const (
	EventCredentialExpiring = authv1alpha1.ConditionCredentialExpiring
	EventCredentialExpired  = authv1alpha1.ConditionCredentialExpired
)

// DefaultExpiryWarning is spec.expiryWarning's default (the API server
// defaults it too; this covers objects written before the field existed).
const DefaultExpiryWarning = 7 * 24 * time.Hour

// expiring is a credential in force with an expiresAt.
type expiring struct {
	what string // "static token" or `API key "ci"`
	at   time.Time
}

// expiringCredentials lists the credentials in force that have an expiry,
// soonest first.
func expiringCredentials(e policy.Expiries) []expiring {
	var out []expiring
	if !e.StaticToken.IsZero() {
		out = append(out, expiring{"static token", e.StaticToken})
	}
	for name, at := range e.APIKeys {
		out = append(out, expiring{fmt.Sprintf("API key %q", name), at})
	}
	slices.SortFunc(out, func(a, b expiring) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.what, b.what)
	})
	return out
}

// setExpiryConditions sets CredentialExpiring and CredentialExpired from the
// expiries of the credentials in force at now, or removes both when no
// credential has an expiry. The messages name credentials and instants only
// (never a value, nor a countdown that would change at every reconcile). It
// returns how long until the next change of either condition, 0 when none is
// due.
func setExpiryConditions(pol *authv1alpha1.RegistryAuthPolicy, e policy.Expiries, now time.Time) time.Duration {
	st := &pol.Status
	creds := expiringCredentials(e)
	if len(creds) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, authv1alpha1.ConditionCredentialExpiring)
		meta.RemoveStatusCondition(&st.Conditions, authv1alpha1.ConditionCredentialExpired)
		return 0
	}
	warn := DefaultExpiryWarning
	if w := pol.Spec.ExpiryWarning; w != nil && w.Duration >= 0 {
		warn = w.Duration
	}
	var soon, gone []string
	var next time.Time
	due := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, c := range creds {
		at := c.at.UTC().Format(time.RFC3339)
		switch {
		case !now.Before(c.at):
			gone = append(gone, c.what+" expired at "+at)
		case !now.Before(c.at.Add(-warn)):
			soon = append(soon, c.what+" expires at "+at)
		}
		due(c.at.Add(-warn))
		due(c.at)
	}
	set := func(typ string, items []string, reason, suffix string) {
		cond := metav1.Condition{Type: typ, ObservedGeneration: pol.Generation,
			Status: metav1.ConditionFalse, Reason: authv1alpha1.ReasonNotDue}
		if len(items) > 0 {
			cond.Status, cond.Reason = metav1.ConditionTrue, reason
			cond.Message = strings.Join(items, "; ") + suffix
			if len(cond.Message) > maxConditionMessage {
				cond.Message = cond.Message[:maxConditionMessage-3] + "..."
			}
		} else if typ == authv1alpha1.ConditionCredentialExpiring {
			cond.Message = fmt.Sprintf("no static token or API key expires within %v", warn)
		} else {
			cond.Message = "no static token or API key has expired"
		}
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	set(authv1alpha1.ConditionCredentialExpiring, soon, authv1alpha1.ReasonExpiresSoon,
		"; renew before then: write a new value to the Secret and move expiresAt")
	set(authv1alpha1.ConditionCredentialExpired, gone, authv1alpha1.ReasonExpired,
		"; refused (credential_expired) until expiresAt is moved or removed")
	if next.IsZero() {
		return 0
	}
	return next.Sub(now)
}

// recordExpiry emits a Warning event when CredentialExpiring or
// CredentialExpired turns True or, True, changes its message (another
// credential joined).
func (s *StatusReconciler) recordExpiry(pol, orig *authv1alpha1.RegistryAuthPolicy) {
	for _, typ := range []string{authv1alpha1.ConditionCredentialExpiring, authv1alpha1.ConditionCredentialExpired} {
		now := meta.FindStatusCondition(pol.Status.Conditions, typ)
		if now == nil || now.Status != metav1.ConditionTrue {
			continue
		}
		was := meta.FindStatusCondition(orig.Status.Conditions, typ)
		if was != nil && was.Status == now.Status && was.Message == now.Message {
			continue
		}
		s.recorder.Eventf(pol, nil, corev1.EventTypeWarning, typ, "Expire", "%s", now.Message)
	}
}
