package session

import (
	"context"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
)

var sessionTestOldKey = []byte("go-test-old-key-not-a-real-secret")

func TestSessionVerifierPreviousKeyGrace(t *testing.T) {
	payload := []byte(`{"username":"erin","groups":["g"]}`)
	oldCookie := makeSessionCookie(sessionTestOldKey, payload, sessionTestSigned, false)
	newCookie := makeSessionCookie(sessionTestKey, payload, sessionTestSigned, false)
	until := sessionTestNow.Add(time.Minute)
	v := newSessionVerifierWithPrevious([][]byte{sessionTestKey}, []PreviousKey{{Value: sessionTestOldKey, ExpiresAt: until}}, sessionTestMaxAge)

	// Inside the window: accepted, and known to be a previous key's.
	for _, now := range []time.Time{sessionTestNow, until.Add(-time.Second)} {
		claims, reason, prev, ok := v.verifyKey(oldCookie, now)
		if !ok || claims.Username != "erin" || !prev.Equal(until) {
			t.Fatalf("at %v: previous key's cookie: ok=%v reason=%q previous=%v", now, ok, reason, prev)
		}
	}
	// From the end of the window on: refused as a bad signature.
	for _, now := range []time.Time{until, until.Add(time.Second)} {
		if _, reason, _, ok := v.verifyKey(oldCookie, now); ok || reason != sessionReasonBadSignature {
			t.Fatalf("at %v: previous key's cookie after its window: ok=%v reason=%q", now, ok, reason)
		}
	}
	// The key in force is not a previous one, before or after.
	for _, now := range []time.Time{sessionTestNow, until.Add(time.Second)} {
		if _, reason, prev, ok := v.verifyKey(newCookie, now); !ok || !prev.IsZero() {
			t.Fatalf("at %v: current key's cookie: ok=%v reason=%q previous=%v", now, ok, reason, prev)
		}
	}
	// Without a window (grace 0: no previous key) the old cookie is refused.
	v0 := newSessionVerifierWithPrevious([][]byte{sessionTestKey}, nil, sessionTestMaxAge)
	if _, reason, _, ok := v0.verifyKey(oldCookie, sessionTestNow); ok || reason != sessionReasonBadSignature {
		t.Fatalf("grace 0: ok=%v reason=%q", ok, reason)
	}
	// A previous key alone does not make a verifier: no key in force, no
	// cookie at all.
	vp := newSessionVerifierWithPrevious(nil, []PreviousKey{{Value: sessionTestOldKey, ExpiresAt: until}}, sessionTestMaxAge)
	if _, reason, _, ok := vp.verifyKey(oldCookie, sessionTestNow); ok || reason != sessionReasonMisconfigured {
		t.Fatalf("previous key only: ok=%v reason=%q", ok, reason)
	}
	// A previous cookie that expired by max age is refused as expired.
	vl := newSessionVerifierWithPrevious([][]byte{sessionTestKey}, []PreviousKey{{Value: sessionTestOldKey, ExpiresAt: sessionTestNow.Add(48 * time.Hour)}}, sessionTestMaxAge)
	if _, reason, _, ok := vl.verifyKey(oldCookie, time.Unix(sessionTestSigned, 0).Add(sessionTestMaxAge+time.Second)); ok || reason != sessionReasonExpired {
		t.Fatalf("expired previous cookie: ok=%v reason=%q", ok, reason)
	}
}

func TestSessionAuthenticatorPreviousReason(t *testing.T) {
	sessionTestKey := []byte("go-test-key-not-a-real-secret-0123456789")
	sessionTestOldKey := []byte("go-test-old-key-not-a-real-secret-0123456789")
	payload := []byte(`{"username":"erin","groups":["g"]}`)
	oldCookie := makeSessionCookie(sessionTestOldKey, payload, sessionTestSigned, false)
	newCookie := makeSessionCookie(sessionTestKey, payload, sessionTestSigned, false)
	until := sessionTestNow.Add(time.Minute)
	compile := func(prev []PreviousKey) *Authenticator {
		t.Helper()
		a, probs := Compile(&Config{SecretKeys: []authn.SecretValue{{Value: sessionTestKey}}, MaxAge: sessionTestMaxAge, Previous: prev},
			&authn.Env{TokenCacheSize: 16})
		if a == nil || len(probs) > 0 {
			t.Fatalf("compile: %v", probs)
		}
		return a
	}
	in := func(cookie string, now time.Time) authn.Input {
		return authn.Input{Cookie: []string{DefaultCookieName + "=" + cookie}, Now: now}
	}
	a := compile([]PreviousKey{{Value: sessionTestOldKey, ExpiresAt: until}})
	// Twice each: the second answer must not come from a cache that
	// forgot which key signed the cookie.
	for range 2 {
		if res := a.Authenticate(context.Background(), in(oldCookie, sessionTestNow)); res.Outcome != authn.Allow || res.Reason != check.ReasonAllowedSessionPrevious {
			t.Fatalf("previous key in window: %+v", res)
		}
		if res := a.Authenticate(context.Background(), in(newCookie, sessionTestNow)); res.Outcome != authn.Allow || res.Reason != check.ReasonAllowedSession {
			t.Fatalf("current key: %+v", res)
		}
	}
	// Accepted until the window ends, never after, even just verified.
	if res := a.Authenticate(context.Background(), in(oldCookie, until)); res.Outcome == authn.Allow || res.Reason != check.ReasonSessionInvalid {
		t.Fatalf("previous key after its window: %+v", res)
	}
	if res := compile(nil).Authenticate(context.Background(), in(oldCookie, sessionTestNow)); res.Outcome == authn.Allow || res.Reason != check.ReasonSessionInvalid {
		t.Fatalf("no grace: %+v", res)
	}
}
