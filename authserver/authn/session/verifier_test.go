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

package session

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // itsdangerous' signer is HMAC-SHA1.
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Test-only signing helpers. They re-implement the itsdangerous signing side
// (see the format description in session.go) so Go-only tests can build
// validly signed cookies with arbitrary contents. TestSessionSignHelper
// checks them against cookies made by the real itsdangerous.

// sessionTestSigned is the signing time used by the Python fixtures
// (hack/gen-session-fixtures.py: SIGNED_AT), 2026-01-01T00:00:00Z.
const sessionTestSigned = 1767225600

var (
	sessionTestKey    = []byte("go-test-key-not-a-real-secret")
	sessionTestNow    = time.Unix(sessionTestSigned+60, 0)
	sessionTestMaxAge = time.Hour
)

// signSessionText signs "payloadText.tsText" the way itsdangerous' Signer
// does with the given salt and the default django-concat derivation.
func signSessionText(secret []byte, salt, payloadText, tsText string) string {
	d := sha1.New()
	d.Write([]byte(salt))
	d.Write([]byte("signer"))
	d.Write(secret)
	m := hmac.New(sha1.New, d.Sum(nil))
	value := payloadText + "." + tsText
	m.Write([]byte(value))
	return value + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// encodeSessionTimestamp is itsdangerous' base64_encode(int_to_bytes(ts)):
// big-endian, leading zero bytes stripped, base64url without padding.
func encodeSessionTimestamp(ts uint64) string {
	var b [8]byte
	for i := range b {
		b[7-i] = byte(ts >> (8 * i))
	}
	i := 0
	for i < len(b) && b[i] == 0 {
		i++
	}
	return base64.RawURLEncoding.EncodeToString(b[i:])
}

// encodeSessionPayload base64url-encodes payload, zlib-compressing it first
// (and prefixing ".") if compress is set. Unlike itsdangerous it does not
// decide by size, so tests can force either form.
func encodeSessionPayload(payload []byte, compress bool) string {
	if !compress {
		return base64.RawURLEncoding.EncodeToString(payload)
	}
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	zw.Write(payload)
	zw.Close()
	return "." + base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// makeSessionCookie signs payload (raw JSON bytes) with the default salt.
func makeSessionCookie(secret, payload []byte, ts uint64, compress bool) string {
	return signSessionText(secret, "itsdangerous", encodeSessionPayload(payload, compress), encodeSessionTimestamp(ts))
}

// sessionFixture is one case written by hack/gen-session-fixtures.py.
type sessionFixture struct {
	Name           string   `json:"name"`
	SecretKeys     []string `json:"secret_keys"`
	MaxAgeSeconds  int64    `json:"max_age_seconds"`
	NowUnix        int64    `json:"now_unix"`
	Cookie         string   `json:"cookie"`
	WantOK         bool     `json:"want_ok"`
	ItsdangerousOK bool     `json:"itsdangerous_ok"`
	WantUsername   string   `json:"want_username"`
	WantGroups     []string `json:"want_groups"`
	WantAuthMethod string   `json:"want_auth_method"`
	WantProvider   string   `json:"want_provider"`
	WantReason     string   `json:"want_reason"`
	Deviation      string   `json:"deviation"`
	Note           string   `json:"note"`
}

func (f sessionFixture) keys() [][]byte {
	keys := make([][]byte, len(f.SecretKeys))
	for i, k := range f.SecretKeys {
		keys[i] = []byte(k)
	}
	return keys
}

func loadSessionFixtures(tb testing.TB) []sessionFixture {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "session", "fixtures.json"))
	if err != nil {
		tb.Fatalf("reading fixtures (regenerate with python3 hack/gen-session-fixtures.py): %v", err)
	}
	var fixtures []sessionFixture
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fixtures); err != nil {
		tb.Fatalf("parsing fixtures: %v", err)
	}
	return fixtures
}

func sessionFixtureByName(tb testing.TB, fixtures []sessionFixture, name string) sessionFixture {
	tb.Helper()
	for _, f := range fixtures {
		if f.Name == name {
			return f
		}
	}
	tb.Fatalf("fixture %q not found", name)
	return sessionFixture{}
}

var sessionKnownReasons = []string{
	sessionReasonMisconfigured, sessionReasonOversized, sessionReasonMalformed,
	sessionReasonBadSignature, sessionReasonExpired, sessionReasonFutureTimestamp,
	sessionReasonBadPayload, sessionReasonBadClaims,
}

// checkSessionResult asserts the invariants every verify result must have.
func checkSessionResult(tb testing.TB, claims SessionClaims, reason string, ok bool) {
	tb.Helper()
	if ok {
		if reason != "" {
			tb.Errorf("ok with reason %q", reason)
		}
		if !validSessionClaimString(claims.Username) || check.HasOuterBlank(claims.Username) {
			tb.Errorf("ok with invalid username %q", claims.Username)
		}
		if claims.Groups == nil {
			tb.Errorf("ok with nil groups")
		}
		for _, g := range claims.Groups {
			if !validSessionClaimString(g) {
				tb.Errorf("ok with invalid group %q", g)
			}
		}
		return
	}
	if !slices.Contains(sessionKnownReasons, reason) {
		tb.Errorf("rejected with unknown reason %q", reason)
	}
	if !reflect.DeepEqual(claims, SessionClaims{}) {
		tb.Errorf("rejected but returned claims %+v", claims)
	}
}

// TestSessionFixtures checks the verifier against cookies made by the real
// itsdangerous (hack/gen-session-fixtures.py).
func TestSessionFixtures(t *testing.T) {
	fixtures := loadSessionFixtures(t)

	// Guard against a truncated or regenerated-empty fixture file passing
	// vacuously: these scenarios must be present, with both outcomes.
	for _, name := range []string{
		"normal", "uncompressed", "compressed_large_groups", "unicode_username",
		"wrong_key", "tampered_payload", "tampered_signature", "expired",
		"rotation_signed_with_old_key", "rotation_old_key_retired", "different_salt",
	} {
		sessionFixtureByName(t, fixtures, name)
	}
	if c := sessionFixtureByName(t, fixtures, "compressed_large_groups"); !strings.HasPrefix(c.Cookie, ".") {
		t.Errorf("compressed_large_groups fixture is not compressed")
	}

	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			if f.Deviation == "" && f.WantOK != f.ItsdangerousOK {
				t.Fatalf("fixture disagrees with itsdangerous without a deviation note")
			}
			v := newSessionVerifier(f.keys(), time.Duration(f.MaxAgeSeconds)*time.Second)
			// itsdangerous truncates the clock to whole seconds, so the
			// outcome must not change within the second.
			for _, nsec := range []int64{0, 999_999_999} {
				claims, reason, ok := v.verify(f.Cookie, time.Unix(f.NowUnix, nsec))
				checkSessionResult(t, claims, reason, ok)
				if ok != f.WantOK || reason != f.WantReason {
					t.Fatalf("now=%d.%09d: got ok=%v reason=%q, want ok=%v reason=%q",
						f.NowUnix, nsec, ok, reason, f.WantOK, f.WantReason)
				}
				if !ok {
					continue
				}
				want := SessionClaims{
					Username:   f.WantUsername,
					Groups:     f.WantGroups,
					AuthMethod: f.WantAuthMethod,
					Provider:   f.WantProvider,
				}
				if !reflect.DeepEqual(claims, want) {
					t.Fatalf("claims = %+v, want %+v", claims, want)
				}
			}
		})
	}
}

// TestSessionSignHelper proves the Go test signer reproduces itsdangerous
// byte for byte, so the Go-only tests below exercise the real format.
func TestSessionSignHelper(t *testing.T) {
	fixtures := loadSessionFixtures(t)
	for _, name := range []string{"normal", "uncompressed", "unicode_username", "rotation_signed_with_newest"} {
		f := sessionFixtureByName(t, fixtures, name)
		parts := strings.Split(f.Cookie, ".")
		payload, ts := strings.Join(parts[:len(parts)-2], "."), parts[len(parts)-2]
		if got := encodeSessionTimestamp(sessionTestSigned); got != ts {
			t.Errorf("%s: timestamp %q, want %q", name, got, ts)
		}
		newest := []byte(f.SecretKeys[len(f.SecretKeys)-1])
		if got := signSessionText(newest, "itsdangerous", payload, ts); got != f.Cookie {
			t.Errorf("%s: re-signed cookie differs from itsdangerous'", name)
		}
	}
	// An uncompressed payload is plain base64url of the compact JSON.
	f := sessionFixtureByName(t, fixtures, "uncompressed")
	want := makeSessionCookie([]byte(f.SecretKeys[0]), []byte(`{"username":"u","groups":[]}`), sessionTestSigned, false)
	if want != f.Cookie {
		t.Errorf("makeSessionCookie differs from itsdangerous for an uncompressed payload")
	}
}

func TestSessionVerifyRoundTrip(t *testing.T) {
	v := newSessionVerifier([][]byte{sessionTestKey}, sessionTestMaxAge)
	payload := []byte(`{"username":"dave","groups":["a","b,c"],"auth_method":"ldap","provider":"corp","extra":{"x":[1,2.5,null]}}`)
	want := SessionClaims{Username: "dave", Groups: []string{"a", "b,c"}, AuthMethod: "ldap", Provider: "corp"}
	for _, compress := range []bool{false, true} {
		cookie := makeSessionCookie(sessionTestKey, payload, sessionTestSigned, compress)
		claims, reason, ok := v.verify(cookie, sessionTestNow)
		if !ok || !reflect.DeepEqual(claims, want) {
			t.Errorf("compress=%v: got %+v %q %v, want %+v", compress, claims, reason, ok, want)
		}
	}
}

func TestSessionVerifyOversized(t *testing.T) {
	v := newSessionVerifier([][]byte{sessionTestKey}, sessionTestMaxAge)

	// Grow a validly signed, uncompressed cookie across the limit: the
	// longest one within the limit must verify, the next one must not.
	var lastOK, firstOver string
	for pad := 6000; pad < 7000 && firstOver == ""; pad++ {
		payload := fmt.Sprintf(`{"username":"alice","pad":"%s"}`, strings.Repeat("x", pad))
		cookie := makeSessionCookie(sessionTestKey, []byte(payload), sessionTestSigned, false)
		if len(cookie) <= sessionMaxCookieLen {
			lastOK = cookie
		} else {
			firstOver = cookie
		}
	}
	if len(lastOK) < sessionMaxCookieLen-2 || firstOver == "" || len(firstOver) > sessionMaxCookieLen+2 {
		t.Fatalf("did not bracket the limit: %d, %d", len(lastOK), len(firstOver))
	}
	if _, reason, ok := v.verify(lastOK, sessionTestNow); !ok {
		t.Errorf("cookie of %d bytes rejected: %s", len(lastOK), reason)
	}
	if _, reason, ok := v.verify(firstOver, sessionTestNow); ok || reason != sessionReasonOversized {
		t.Errorf("cookie of %d bytes: ok=%v reason=%q, want %q", len(firstOver), ok, reason, sessionReasonOversized)
	}
	if _, reason, _ := v.verify(strings.Repeat("A", 1<<20), sessionTestNow); reason != sessionReasonOversized {
		t.Errorf("1 MiB garbage: reason %q, want %q", reason, sessionReasonOversized)
	}
}

// sessionJSONOfLen returns a claims object of exactly n bytes.
func sessionJSONOfLen(tb testing.TB, n int) []byte {
	tb.Helper()
	const head, tail = `{"username":"alice","pad":"`, `"}`
	b := []byte(head + strings.Repeat("z", n-len(head)-len(tail)) + tail)
	if len(b) != n || !json.Valid(b) {
		tb.Fatalf("bad test payload")
	}
	return b
}

func TestSessionVerifyDecompressionLimit(t *testing.T) {
	v := newSessionVerifier([][]byte{sessionTestKey}, sessionTestMaxAge)

	at := makeSessionCookie(sessionTestKey, sessionJSONOfLen(t, sessionMaxPayloadLen), sessionTestSigned, true)
	if claims, reason, ok := v.verify(at, sessionTestNow); !ok || claims.Username != "alice" {
		t.Errorf("payload of exactly the limit rejected: %s", reason)
	}
	over := makeSessionCookie(sessionTestKey, sessionJSONOfLen(t, sessionMaxPayloadLen+1), sessionTestSigned, true)
	if _, reason, ok := v.verify(over, sessionTestNow); ok || reason != sessionReasonBadPayload {
		t.Errorf("payload one byte over the limit: ok=%v reason=%q", ok, reason)
	}
}

func TestSessionVerifyZlibBomb(t *testing.T) {
	v := newSessionVerifier([][]byte{sessionTestKey}, sessionTestMaxAge)

	// 4 MiB of JSON that deflates ~1000:1, properly signed: only a key
	// holder could send this, but it must still not be inflated in full.
	const inflated = 4 << 20
	bomb := makeSessionCookie(sessionTestKey, sessionJSONOfLen(t, inflated), sessionTestSigned, true)
	if len(bomb) > sessionMaxCookieLen {
		t.Fatalf("bomb cookie is %d bytes; it must fit the cookie limit to test inflation", len(bomb))
	}

	v.verify(bomb, sessionTestNow) // warm the pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	claims, reason, ok := v.verify(bomb, sessionTestNow)
	runtime.ReadMemStats(&after)

	checkSessionResult(t, claims, reason, ok)
	if ok || reason != sessionReasonBadPayload {
		t.Errorf("zlib bomb: ok=%v reason=%q, want %q", ok, reason, sessionReasonBadPayload)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 4*sessionMaxPayloadLen {
		t.Errorf("zlib bomb allocated %d bytes, want <= %d", allocated, 4*sessionMaxPayloadLen)
	}
}

func TestSessionVerifyGarbage(t *testing.T) {
	v := newSessionVerifier([][]byte{sessionTestKey}, sessionTestMaxAge)
	validSig := strings.Split(makeSessionCookie(sessionTestKey, []byte(`{"username":"a"}`), sessionTestSigned, false), ".")[2]
	tsText := encodeSessionTimestamp(sessionTestSigned)
	signed := func(payloadText, ts string) string {
		return signSessionText(sessionTestKey, "itsdangerous", payloadText, ts)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	zlibBytes := func(s string) []byte {
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		zw.Write([]byte(s))
		zw.Close()
		return buf.Bytes()
	}
	goodZlib := zlibBytes(`{"username":"alice"}`)
	badChecksum := slices.Clone(goodZlib)
	badChecksum[len(badChecksum)-1] ^= 1

	for _, tc := range []struct {
		name, cookie, reason string
	}{
		{"empty", "", sessionReasonMalformed},
		{"no dots", "abcdef", sessionReasonMalformed},
		{"one dot", "abc.def", sessionReasonMalformed},
		{"only dots", "...", sessionReasonMalformed},
		{"empty payload", "." + tsText + "." + validSig, sessionReasonMalformed},
		{"binary", "\x00\xff.\x00\xff.\x00\xff", sessionReasonMalformed},
		{"non-ascii signature", "e30." + tsText + "." + strings.Repeat("é", 13) + "x", sessionReasonMalformed},
		{"signature 26 chars", "e30." + tsText + "." + validSig[:26], sessionReasonMalformed},
		{"signature with padding", "e30." + tsText + "." + validSig + "=", sessionReasonMalformed},
		{"signature bad alphabet", "e30." + tsText + "." + strings.Repeat("!", 27), sessionReasonMalformed},
		{"well-formed but unsigned", "e30." + tsText + "." + strings.Repeat("A", 27), sessionReasonBadSignature},
		{"signature of another cookie", "e30." + tsText + "." + validSig, sessionReasonBadSignature},
		{"wrong salt", signSessionText(sessionTestKey, "itsdangerous.Signer", b64([]byte(`{"username":"a"}`)), tsText), sessionReasonBadSignature},

		// Validly signed, so these reach the post-signature checks.
		{"timestamp empty", signed("e30", ""), sessionReasonMalformed},
		{"timestamp bad base64", signed("e30", "a!"), sessionReasonMalformed},
		{"timestamp non-canonical", signed("e30", "aVW5AB"), sessionReasonMalformed},
		{"timestamp 9 bytes", signed("e30", b64(make([]byte, 9))), sessionReasonMalformed},
		{"timestamp max uint64", signed("e30", b64(bytes.Repeat([]byte{0xff}, 8))), sessionReasonFutureTimestamp},
		{"timestamp max int64", signed("e30", encodeSessionTimestamp(1<<63-1)), sessionReasonFutureTimestamp},
		{"timestamp zero", signed("e30", b64([]byte{0})), sessionReasonExpired},
		{"payload bad base64", signed("!!!!", tsText), sessionReasonBadPayload},
		{"payload non-canonical base64", signed("e31", tsText), sessionReasonBadPayload},
		{"compressed empty", signed(".", tsText), sessionReasonBadPayload},
		{"compressed double dot", signed(".."+b64(goodZlib), tsText), sessionReasonBadPayload},
		{"compressed not zlib", signed("."+b64([]byte("not zlib")), tsText), sessionReasonBadPayload},
		{"compressed truncated", signed("."+b64(goodZlib[:len(goodZlib)-3]), tsText), sessionReasonBadPayload},
		{"compressed bad checksum", signed("."+b64(badChecksum), tsText), sessionReasonBadPayload},
		{"compressed trailing bytes", signed("."+b64(append(slices.Clone(goodZlib), 'x')), tsText), sessionReasonBadPayload},
		{"json invalid", signed(b64([]byte(`{"username":`)), tsText), sessionReasonBadPayload},
		{"json trailing data", signed(b64([]byte(`{"username":"a"} {}`)), tsText), sessionReasonBadPayload},
		{"json null", signed(b64([]byte(`null`)), tsText), sessionReasonBadPayload},
		{"json string", signed(b64([]byte(`"alice"`)), tsText), sessionReasonBadPayload},
		{"json empty object", signed(b64([]byte(`{}`)), tsText), sessionReasonBadClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, reason, ok := v.verify(tc.cookie, sessionTestNow)
			checkSessionResult(t, claims, reason, ok)
			if ok || reason != tc.reason {
				t.Errorf("ok=%v reason=%q, want reason %q", ok, reason, tc.reason)
			}
		})
	}

	// The compressed control case: the same zlib stream, intact, verifies.
	if _, reason, ok := v.verify(signed("."+b64(goodZlib), tsText), sessionTestNow); !ok {
		t.Errorf("intact compressed payload rejected: %s", reason)
	}
}

func TestSessionVerifyClaims(t *testing.T) {
	v := newSessionVerifier([][]byte{sessionTestKey}, sessionTestMaxAge)
	for _, tc := range []struct {
		name, json string
		want       *SessionClaims // nil: rejected as bad_claims
	}{
		{"minimal", `{"username":"a"}`, &SessionClaims{Username: "a", Groups: []string{}}},
		{"empty groups", `{"username":"a","groups":[]}`, &SessionClaims{Username: "a", Groups: []string{}}},
		{"null optional strings", `{"username":"a","auth_method":null,"provider":null}`, &SessionClaims{Username: "a", Groups: []string{}}},
		{"unknown fields ignored", `{"username":"a","admin":true,"groups":["g"]}`, &SessionClaims{Username: "a", Groups: []string{"g"}}},
		{"exact key wins over case variant", `{"USERNAME":"root","username":"a","Username":"root"}`, &SessionClaims{Username: "a", Groups: []string{}}},
		{"case variant of groups ignored", `{"username":"a","Groups":["admins"]}`, &SessionClaims{Username: "a", Groups: []string{}}},
		{"escaped key", `{"user\u006eame":"a"}`, &SessionClaims{Username: "a", Groups: []string{}}},
		{"duplicate groups last wins", `{"username":"a","groups":["admins"],"groups":["g"]}`, &SessionClaims{Username: "a", Groups: []string{"g"}}},
		{"line separator is not a control character", `{"username":"a\u2028b"}`, &SessionClaims{Username: "a\u2028b", Groups: []string{}}},
		{"username tab", `{"username":"a\tb"}`, nil},
		{"username leading space", `{"username":" admin"}`, nil},
		{"username trailing space", `{"username":"admin "}`, nil},
		{"username spaces only", `{"username":"   "}`, nil},
		{"inner space is fine", `{"username":"Zoë Doe"}`, &SessionClaims{Username: "Zoë Doe", Groups: []string{}}},
		{"username DEL", `{"username":"a\u007fb"}`, nil},
		{"username escaped CR", `{"username":"a\rb"}`, nil},
		{"username array", `{"username":["a"]}`, nil},
		{"username object", `{"username":{}}`, nil},
		{"username bool", `{"username":true}`, nil},
		{"groups object", `{"username":"a","groups":{}}`, nil},
		{"groups nested list", `{"username":"a","groups":[["g"]]}`, nil},
		{"group with tab", `{"username":"a","groups":["g\t"]}`, nil},
		{"auth_method number", `{"username":"a","auth_method":1}`, nil},
		{"auth_method with LF", `{"username":"a","auth_method":"x\n"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cookie := makeSessionCookie(sessionTestKey, []byte(tc.json), sessionTestSigned, false)
			claims, reason, ok := v.verify(cookie, sessionTestNow)
			checkSessionResult(t, claims, reason, ok)
			if tc.want == nil {
				if ok || reason != sessionReasonBadClaims {
					t.Errorf("ok=%v reason=%q, want %q", ok, reason, sessionReasonBadClaims)
				}
				return
			}
			if !ok || !reflect.DeepEqual(claims, *tc.want) {
				t.Errorf("got %+v reason=%q, want %+v", claims, reason, *tc.want)
			}
		})
	}
}

func TestSessionVerifyAge(t *testing.T) {
	const maxAge = 300
	v := newSessionVerifier([][]byte{sessionTestKey}, maxAge*time.Second)
	cookie := makeSessionCookie(sessionTestKey, []byte(`{"username":"a"}`), sessionTestSigned, true)
	leeway := int64(sessionFutureLeeway / time.Second)
	for _, tc := range []struct {
		name   string
		now    time.Time
		reason string
	}{
		{"just signed", time.Unix(sessionTestSigned, 0), ""},
		{"max age", time.Unix(sessionTestSigned+maxAge, 999_999_999), ""},
		{"max age + 1s", time.Unix(sessionTestSigned+maxAge+1, 0), sessionReasonExpired},
		{"clock behind within leeway", time.Unix(sessionTestSigned-leeway, 0), ""},
		{"clock behind beyond leeway", time.Unix(sessionTestSigned-leeway-1, 999_999_999), sessionReasonFutureTimestamp},
		{"now is zero time", time.Time{}, sessionReasonFutureTimestamp},
		{"now before 1970", time.Unix(-1<<40, 0), sessionReasonFutureTimestamp},
		{"now far future", time.Unix(1<<62, 0), sessionReasonExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, reason, ok := v.verify(cookie, tc.now)
			checkSessionResult(t, claims, reason, ok)
			if reason != tc.reason || ok != (tc.reason == "") {
				t.Errorf("ok=%v reason=%q, want reason %q", ok, reason, tc.reason)
			}
		})
	}
}

func TestSessionVerifierConfig(t *testing.T) {
	payload := []byte(`{"username":"a"}`)
	good := makeSessionCookie(sessionTestKey, payload, sessionTestSigned, false)
	emptyKeyCookie := makeSessionCookie(nil, payload, sessionTestSigned, false)

	for _, tc := range []struct {
		name   string
		keys   [][]byte
		maxAge time.Duration
	}{
		{"nil keys", nil, time.Hour},
		{"only empty keys", [][]byte{{}, nil}, time.Hour},
		{"zero max age", [][]byte{sessionTestKey}, 0},
		{"sub-second max age", [][]byte{sessionTestKey}, 999 * time.Millisecond},
		{"negative max age", [][]byte{sessionTestKey}, -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newSessionVerifier(tc.keys, tc.maxAge)
			for _, c := range []string{good, emptyKeyCookie} {
				if _, reason, ok := v.verify(c, sessionTestNow); ok || reason != sessionReasonMisconfigured {
					t.Errorf("ok=%v reason=%q, want %q", ok, reason, sessionReasonMisconfigured)
				}
			}
		})
	}

	t.Run("empty key entry is never accepted", func(t *testing.T) {
		v := newSessionVerifier([][]byte{{}, sessionTestKey}, time.Hour)
		if _, reason, ok := v.verify(good, sessionTestNow); !ok {
			t.Errorf("cookie signed with the real key rejected: %s", reason)
		}
		if _, reason, ok := v.verify(emptyKeyCookie, sessionTestNow); ok || reason != sessionReasonBadSignature {
			t.Errorf("cookie signed with the empty key: ok=%v reason=%q", ok, reason)
		}
	})

	t.Run("secrets are not retained", func(t *testing.T) {
		key := slices.Clone(sessionTestKey)
		v := newSessionVerifier([][]byte{key}, time.Hour)
		clear(key)
		if _, reason, ok := v.verify(good, sessionTestNow); !ok {
			t.Errorf("verifier depends on the caller's key slice after construction: %s", reason)
		}
	})

	t.Run("every rotation key verifies", func(t *testing.T) {
		keys := [][]byte{[]byte("k1-test"), []byte("k2-test"), []byte("k3-test")}
		v := newSessionVerifier(keys, time.Hour)
		for i, k := range keys {
			if _, reason, ok := v.verify(makeSessionCookie(k, payload, sessionTestSigned, false), sessionTestNow); !ok {
				t.Errorf("key %d rejected: %s", i, reason)
			}
		}
		if _, _, ok := v.verify(makeSessionCookie([]byte("k4-test"), payload, sessionTestSigned, false), sessionTestNow); ok {
			t.Errorf("unknown key accepted")
		}
	})
}

// TestSessionVerifyConcurrent exercises the pooled HMAC and zlib state from
// many goroutines; run with -race.
func TestSessionVerifyConcurrent(t *testing.T) {
	k2 := []byte("second-test-key")
	v := newSessionVerifier([][]byte{sessionTestKey, k2}, sessionTestMaxAge)
	type input struct {
		cookie, user string
	}
	var inputs []input
	for i := range 16 {
		user := fmt.Sprintf("user%d", i)
		key := [][]byte{sessionTestKey, k2, []byte("unknown-key")}[i%3]
		cookie := makeSessionCookie(key, []byte(`{"username":"`+user+`"}`), sessionTestSigned, i%2 == 0)
		if i%3 == 2 {
			user = ""
		}
		inputs = append(inputs, input{cookie, user})
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				in := inputs[(g+i)%len(inputs)]
				claims, _, ok := v.verify(in.cookie, sessionTestNow)
				if ok != (in.user != "") || claims.Username != in.user {
					t.Errorf("goroutine %d: got %q ok=%v, want %q", g, claims.Username, ok, in.user)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSessionVerify(b *testing.B) {
	v := newSessionVerifier([][]byte{[]byte("old-bench-key"), sessionTestKey}, sessionTestMaxAge)
	payload := []byte(`{"username":"alice","groups":["devs","ops","registry-admins"],"auth_method":"oidc","provider":"keycloak"}`)
	for _, bc := range []struct {
		name   string
		cookie string
	}{
		{"compressed", makeSessionCookie(sessionTestKey, payload, sessionTestSigned, true)},
		{"uncompressed", makeSessionCookie(sessionTestKey, payload, sessionTestSigned, false)},
		{"bad_signature", makeSessionCookie([]byte("attacker"), payload, sessionTestSigned, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.verify(bc.cookie, sessionTestNow)
			}
		})
	}
}

// FuzzSessionVerify feeds arbitrary bytes to verify both as a whole cookie
// and, signed with the verifier's key, as the payload JSON (plain and
// compressed), so the post-signature parsing is fuzzed too; random cookies
// almost never get past the HMAC. Properties: no panic, results satisfy
// checkSessionResult, and signed garbage that is not a JSON object with a
// username is never accepted.
func FuzzSessionVerify(f *testing.F) {
	fixtures := loadSessionFixtures(f)
	var keys [][]byte
	for _, fx := range fixtures {
		f.Add([]byte(fx.Cookie))
		for _, k := range fx.keys() {
			if !slices.ContainsFunc(keys, func(have []byte) bool { return bytes.Equal(have, k) }) {
				keys = append(keys, k)
			}
		}
	}
	f.Add([]byte(`{"username":"alice","groups":["a"]}`))
	f.Add([]byte(`{"username":"a\u0000","groups":[null]}`))
	keys = append(keys, sessionTestKey)
	v := newSessionVerifier(keys, sessionTestMaxAge)

	f.Fuzz(func(t *testing.T, data []byte) {
		claims, reason, ok := v.verify(string(data), sessionTestNow)
		checkSessionResult(t, claims, reason, ok)

		for _, compress := range []bool{false, true} {
			cookie := makeSessionCookie(sessionTestKey, data, sessionTestSigned, compress)
			claims, reason, ok := v.verify(cookie, sessionTestNow)
			checkSessionResult(t, claims, reason, ok)
			if ok && (!json.Valid(data) || !bytes.Contains(data, []byte(`"`))) {
				t.Errorf("accepted a payload that is not JSON with a string: %q", data)
			}
		}
	})
}
