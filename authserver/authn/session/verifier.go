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

// This file verifies the browser session cookie issued by the registry web
// app (Python), which signs it with
//
//	itsdangerous.URLSafeTimedSerializer(SECRET_KEY).dumps(claims)
//
// using every itsdangerous default (checked against itsdangerous 2.1.2; the
// format has been stable since 1.0). The cookie is three dot-separated parts:
//
//	payload "." timestamp "." signature
//
//   - payload: the claims as compact JSON (UTF-8, non-ASCII not escaped),
//     base64url without padding. If zlib makes the JSON more than one byte
//     shorter, the JSON is zlib-compressed first and the payload gets a
//     leading "." (so a compressed cookie starts with "." and has three dots).
//   - timestamp: signing time in whole Unix seconds, as a big-endian unsigned
//     integer with leading zero bytes stripped, base64url without padding.
//   - signature: base64url (no padding, 27 characters) of
//     HMAC-SHA1(key, payload "." timestamp), computed over the text exactly as
//     it appears in the cookie, where
//     key = SHA1("itsdangerous" + "signer" + SECRET_KEY)
//     ("itsdangerous" is the serializer's default salt, "django-concat" the
//     default key derivation).
//
// SECRET_KEY may be a list of keys for rotation (oldest first, the newest
// signs, all verify); newSessionVerifier takes the same list.
//
// Where itsdangerous is lenient about input it never produces, this verifier
// is strict: Python's base64 decoder ignores non-alphabet characters, the
// unused low bits of the last character and the '+'/'/' alphabet, so
// itsdangerous accepts several spellings of one signature; here only the
// canonical base64url spelling is accepted. Likewise trailing bytes after the
// zlib stream are rejected. None of this rejects a cookie that itsdangerous
// produced. The one place where this verifier is more lenient is clock skew
// (see sessionFutureLeeway).

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // itsdangerous' default signer is HMAC-SHA1; HMAC-SHA1 is not affected by SHA-1 collisions.
	"encoding/base64"
	"encoding/json"
	"hash"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

const (
	// sessionMaxCookieLen bounds the whole cookie before any work is done.
	// Browsers cap a cookie at about 4 KiB, so 8 KiB leaves headroom without
	// letting a client make the verifier base64-decode or HMAC large inputs.
	sessionMaxCookieLen = 8 << 10

	// sessionMaxPayloadLen bounds the decompressed JSON. zlib can expand
	// about 1000:1, so a cookie under 8 KiB could otherwise inflate to
	// megabytes. This check runs only after the signature verified, so only
	// a holder of the secret key could build such a cookie, but a key leak or
	// an app bug must not turn into memory exhaustion here.
	sessionMaxPayloadLen = 64 << 10

	// sessionFutureLeeway is how far in the future a cookie's timestamp may
	// be. itsdangerous rejects any timestamp later than "now" (age < 0 raises
	// SignatureExpired), which is right when the same process signs and
	// verifies. Here the web app and the auth server run on different nodes,
	// and the timestamp is truncated to whole seconds, so a freshly issued
	// cookie can look up to a second or so "from the future" on a node whose
	// clock is slightly behind. The leeway absorbs that skew; it can extend a
	// cookie's life by at most this much, and only a key holder can choose a
	// timestamp at all.
	sessionFutureLeeway = 10 * time.Second

	// sessionSalt and sessionKeyDerivationInfix are itsdangerous' defaults:
	// Serializer(salt=b"itsdangerous") and Signer's "django-concat"
	// derivation, key = SHA1(salt + b"signer" + secret_key).
	sessionSalt               = "itsdangerous"
	sessionKeyDerivationInfix = "signer"
)

// Reasons returned by sessionVerifier.verify. They are stable, low-cardinality
// strings meant for logs and metric labels; they never contain input data.
const (
	// sessionReasonMisconfigured: the verifier has no usable key or no
	// positive max age, so it rejects everything.
	sessionReasonMisconfigured = "misconfigured"
	// sessionReasonOversized: the cookie is longer than sessionMaxCookieLen.
	sessionReasonOversized = "oversized"
	// sessionReasonMalformed: not payload.timestamp.signature, a signature
	// that is not canonical base64url of an HMAC-SHA1, or (after the
	// signature verified) a timestamp that is not a base64url integer of at
	// most 8 bytes.
	sessionReasonMalformed = "malformed"
	// sessionReasonBadSignature: no configured key produced the signature.
	// This is what a wrong key, a different salt or any tampering yields.
	sessionReasonBadSignature = "bad_signature"
	// sessionReasonExpired: older than the max age.
	sessionReasonExpired = "expired"
	// sessionReasonFutureTimestamp: signed more than sessionFutureLeeway
	// after "now".
	sessionReasonFutureTimestamp = "future_timestamp"
	// sessionReasonBadPayload: signed, but the payload is not base64url, not a
	// valid zlib stream, decompresses to more than sessionMaxPayloadLen, is
	// not UTF-8, or is not a JSON object.
	sessionReasonBadPayload = "bad_payload"
	// sessionReasonBadClaims: a signed JSON object whose claims are missing
	// or unusable (see parseSessionClaims).
	sessionReasonBadClaims = "bad_claims"
)

// sessionB64 is base64url without padding, rejecting non-zero unused bits in
// the last character, so each byte string has exactly one accepted spelling.
var sessionB64 = base64.RawURLEncoding.Strict()

// sessionSigTextLen is the length of a base64url HMAC-SHA1 signature.
var sessionSigTextLen = sessionB64.EncodedLen(sha1.Size)

// sessionMaxTimestampTextLen is the longest base64url text of an 8-byte
// timestamp; itsdangerous cannot sign wider timestamps either.
var sessionMaxTimestampTextLen = sessionB64.EncodedLen(8)

// SessionClaims is what a verified session cookie says about the user.
type SessionClaims struct {
	Username   string   `json:"username"`
	Groups     []string `json:"groups"`
	AuthMethod string   `json:"auth_method"`
	Provider   string   `json:"provider"`
}

// sessionVerifier verifies itsdangerous URLSafeTimedSerializer cookies (see
// the format description at the top of this file). Immutable after
// construction and safe for concurrent use.
type sessionVerifier struct {
	// keys holds one entry per configured secret key, newest first (the
	// order itsdangerous tries them). Only the derived HMAC keys are kept,
	// never the secrets themselves.
	keys []*sessionMACKey
	// maxAgeSeconds is the largest accepted cookie age; itsdangerous compares
	// whole seconds and accepts age == max_age.
	maxAgeSeconds int64
}

// sessionMACKey holds reusable HMAC states for one derived key. Building an
// HMAC (hashing the key pads) costs several allocations, so keyed states are
// pooled and Reset between uses.
type sessionMACKey struct {
	pool sync.Pool // of *sessionMAC
	// until is, for a previous key kept through a rotation grace window,
	// the end of its window: it verifies nothing from then on. Zero for a
	// key in force.
	until time.Time
}

type sessionMAC struct {
	h   hash.Hash
	sum [sha1.Size]byte
}

// newSessionVerifier derives the signing keys for secretKeys (the web app's
// SECRET_KEY list, oldest first, newest last, as itsdangerous takes it) and
// returns a verifier that accepts cookies no older than maxAge.
//
// It fails closed rather than returning an error: empty secret keys are
// ignored (with an empty key the derived HMAC key is public, so anyone could
// mint cookies), and if no key remains, or maxAge is shorter than one second,
// every cookie is rejected with reason "misconfigured". Callers should
// validate their configuration and refuse to start in that case. maxAge is
// truncated to whole seconds, the resolution of itsdangerous timestamps.
//
// The secrets are not retained; the caller may wipe or reuse the slices.
//
// HMAC-SHA1 is not an approved FIPS 140 algorithm, so with
// GODEBUG=fips140=only this panics (at construction, deliberately, rather
// than on the first request).
func newSessionVerifier(secretKeys [][]byte, maxAge time.Duration) *sessionVerifier {
	return newSessionVerifierWithPrevious(secretKeys, nil, maxAge)
}

// newSessionVerifierWithPrevious is newSessionVerifier with keys replaced
// by a rotation and kept for a grace window: each verifies cookies until
// its ExpiresAt, never after. They are tried after the keys in force, and
// do not count as keys in force: with only previous keys the verifier is
// misconfigured.
func newSessionVerifierWithPrevious(secretKeys [][]byte, previous []PreviousKey, maxAge time.Duration) *sessionVerifier {
	v := &sessionVerifier{maxAgeSeconds: int64(maxAge / time.Second)}
	for i := len(secretKeys) - 1; i >= 0; i-- {
		if len(secretKeys[i]) == 0 {
			continue
		}
		v.keys = append(v.keys, newSessionMACKey(secretKeys[i]))
	}
	if len(v.keys) == 0 {
		return v
	}
	for _, p := range previous {
		if len(p.Value) == 0 || p.ExpiresAt.IsZero() {
			continue
		}
		k := newSessionMACKey(p.Value)
		k.until = p.ExpiresAt
		v.keys = append(v.keys, k)
	}
	return v
}

func newSessionMACKey(secret []byte) *sessionMACKey {
	d := sha1.New()
	d.Write([]byte(sessionSalt))
	d.Write([]byte(sessionKeyDerivationInfix))
	d.Write(secret)
	derived := d.Sum(nil)

	k := &sessionMACKey{}
	k.pool.New = func() any {
		return &sessionMAC{h: hmac.New(sha1.New, derived)}
	}
	// Build one state now so that any panic from crypto/hmac (FIPS-only
	// mode) happens at startup.
	k.pool.Put(k.pool.New())
	return k
}

// matches reports whether sig is HMAC-SHA1(derived key, msg), comparing in
// constant time.
func (k *sessionMACKey) matches(msg, sig []byte) bool {
	m := k.pool.Get().(*sessionMAC)
	m.h.Reset()
	m.h.Write(msg)
	ok := hmac.Equal(m.h.Sum(m.sum[:0]), sig)
	k.pool.Put(m)
	return ok
}

// verify returns the claims of a valid, unexpired cookie.
//
// On any problem it returns ok=false and one of the sessionReason* strings;
// on success reason is "". It never returns an error and does not panic on
// any input. Checks run cheapest and least trusting first: the length bound,
// the structure, then the HMAC over the raw text. Nothing in the payload is
// decoded, decompressed or parsed before the signature has verified, so an
// attacker without the key only ever reaches base64 decoding of a 27-byte
// signature and one HMAC per configured key.
func (v *sessionVerifier) verify(cookie string, now time.Time) (claims SessionClaims, reason string, ok bool) {
	claims, reason, _, ok = v.verifyKey(cookie, now)
	return claims, reason, ok
}

// verifyKey is verify, and tells which kind of key signed the cookie:
// previous is the end of the grace window of the previous key that
// verified it, zero when a key in force did.
func (v *sessionVerifier) verifyKey(cookie string, now time.Time) (claims SessionClaims, reason string, previous time.Time, ok bool) {
	if len(v.keys) == 0 || v.maxAgeSeconds <= 0 {
		return SessionClaims{}, sessionReasonMisconfigured, time.Time{}, false
	}
	if len(cookie) > sessionMaxCookieLen {
		return SessionClaims{}, sessionReasonOversized, time.Time{}, false
	}

	// Split as itsdangerous does: the signature follows the last ".", the
	// timestamp the one before it. A compressed payload itself starts with
	// ".", so the payload is everything before the second-to-last dot.
	sigDot := strings.LastIndexByte(cookie, '.')
	if sigDot < 0 {
		return SessionClaims{}, sessionReasonMalformed, time.Time{}, false
	}
	tsDot := strings.LastIndexByte(cookie[:sigDot], '.')
	if tsDot <= 0 { // no timestamp separator, or an empty payload
		return SessionClaims{}, sessionReasonMalformed, time.Time{}, false
	}

	// One copy of the (bounded) cookie; the parts below are sub-slices.
	raw := []byte(cookie)
	signed := raw[:sigDot] // payload "." timestamp, exactly as signed
	tsText := raw[tsDot+1 : sigDot]
	payloadText := raw[:tsDot]

	var sig [sha1.Size]byte
	if sigText := raw[sigDot+1:]; len(sigText) != sessionSigTextLen {
		return SessionClaims{}, sessionReasonMalformed, time.Time{}, false
	} else if n, err := sessionB64.Decode(sig[:], sigText); err != nil || n != len(sig) {
		return SessionClaims{}, sessionReasonMalformed, time.Time{}, false
	}
	matched, previous := v.signatureValid(signed, sig[:], now)
	if !matched {
		return SessionClaims{}, sessionReasonBadSignature, time.Time{}, false
	}

	// The timestamp is covered by the signature, so from here on the
	// cookie was produced by a key holder; the remaining checks are about
	// freshness and defence in depth.
	ts, tsOK := decodeSessionTimestamp(tsText)
	if !tsOK {
		return SessionClaims{}, sessionReasonMalformed, time.Time{}, false
	}
	if r := v.checkAge(ts, now); r != "" {
		return SessionClaims{}, r, time.Time{}, false
	}

	data, dataOK := decodeSessionPayload(payloadText)
	if !dataOK {
		return SessionClaims{}, sessionReasonBadPayload, time.Time{}, false
	}
	if claims, reason, ok = parseSessionClaims(data); !ok {
		return claims, reason, time.Time{}, false
	}
	return claims, "", previous, true
}

// signatureValid tries every key, newest first, like itsdangerous. Which key
// matched may leak through timing; that is not secret. Whether the signature
// matches a given key does not, thanks to hmac.Equal.
//
// A previous key (one with a grace window) is tried last, and only before
// its window ends; previous is then the window's end.
func (v *sessionVerifier) signatureValid(signed, sig []byte, now time.Time) (ok bool, previous time.Time) {
	for _, k := range v.keys {
		if !k.until.IsZero() && !now.Before(k.until) {
			continue
		}
		if k.matches(signed, sig) {
			return true, k.until
		}
	}
	return false, time.Time{}
}

// decodeSessionTimestamp decodes itsdangerous' timestamp: base64url of a
// big-endian integer with leading zero bytes stripped. Like itsdangerous, it
// rejects integers wider than 8 bytes.
func decodeSessionTimestamp(text []byte) (uint64, bool) {
	if len(text) == 0 || len(text) > sessionMaxTimestampTextLen {
		return 0, false
	}
	var buf [8]byte
	n, err := sessionB64.Decode(buf[:], text)
	if err != nil {
		return 0, false
	}
	var ts uint64
	for _, b := range buf[:n] {
		ts = ts<<8 | uint64(b)
	}
	return ts, true
}

// checkAge mirrors itsdangerous' TimestampSigner.unsign: with whole-second
// clocks, age = now - timestamp, and age > max_age is expired. itsdangerous
// also rejects age < 0; see sessionFutureLeeway for why a small negative age
// is allowed here. The comparisons are arranged so none can overflow.
func (v *sessionVerifier) checkAge(ts uint64, now time.Time) string {
	nowSec := now.Unix()
	if ts > math.MaxInt64 {
		return sessionReasonFutureTimestamp
	}
	signedAt := int64(ts)
	if signedAt-int64(sessionFutureLeeway/time.Second) > nowSec {
		return sessionReasonFutureTimestamp
	}
	// signedAt <= nowSec + leeway here, so nowSec-signedAt >= -leeway.
	if nowSec-signedAt > v.maxAgeSeconds {
		return sessionReasonExpired
	}
	return ""
}

// decodeSessionPayload turns the signed payload text into JSON bytes:
// base64url-decode, and zlib-inflate (bounded) if it starts with ".". The
// result must be UTF-8, because itsdangerous decodes it with
// bytes.decode("utf-8") and Go's JSON decoder would otherwise silently
// replace invalid bytes.
func decodeSessionPayload(text []byte) ([]byte, bool) {
	compressed := len(text) > 0 && text[0] == '.'
	if compressed {
		text = text[1:]
	}
	if len(text) == 0 {
		return nil, false
	}
	data := make([]byte, sessionB64.DecodedLen(len(text)))
	n, err := sessionB64.Decode(data, text)
	if err != nil {
		return nil, false
	}
	data = data[:n]
	if compressed {
		var ok bool
		if data, ok = inflateSessionPayload(data); !ok {
			return nil, false
		}
	}
	if len(data) > sessionMaxPayloadLen || !utf8.Valid(data) {
		return nil, false
	}
	return data, true
}

// sessionZlibReaders pools zlib readers (each holds a ~40 KiB inflate
// state). Entries are io.ReadCloser values that implement zlib.Resetter.
var sessionZlibReaders sync.Pool

// inflateSessionPayload decompresses a complete zlib stream, refusing output
// beyond sessionMaxPayloadLen (memory stays bounded whatever the compression
// ratio) and trailing bytes after the stream. A truncated stream or a bad Adler-32 checksum is an error.
func inflateSessionPayload(compressed []byte) ([]byte, bool) {
	src := bytes.NewReader(compressed)
	var zr io.ReadCloser
	if pooled, _ := sessionZlibReaders.Get().(io.ReadCloser); pooled != nil {
		if err := pooled.(zlib.Resetter).Reset(src, nil); err != nil {
			sessionZlibReaders.Put(pooled)
			return nil, false
		}
		zr = pooled
	} else {
		r, err := zlib.NewReader(src)
		if err != nil {
			return nil, false
		}
		zr = r
	}
	defer sessionZlibReaders.Put(zr)

	// Read at most one byte past the limit. The buffer starts at a size
	// that fits typical claims (JSON compresses about 2-4x) and doubles, so
	// the total allocated stays below about twice the limit.
	out := make([]byte, 0, min(4*len(compressed)+512, sessionMaxPayloadLen+1))
	for {
		if len(out) == cap(out) {
			if len(out) > sessionMaxPayloadLen {
				return nil, false
			}
			out = slices.Grow(out, min(cap(out), sessionMaxPayloadLen+1-len(out)))
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false
		}
	}
	// EOF from the zlib reader means the Adler-32 checksum matched.
	if len(out) > sessionMaxPayloadLen || src.Len() != 0 {
		return nil, false
	}
	return out, true
}

// parseSessionClaims extracts and validates the claims from the payload JSON.
//
// The JSON is first decoded into a map of raw values rather than directly
// into SessionClaims because encoding/json matches struct field names
// case-insensitively: {"Username": "root"} would fill Username, while the
// Python app (and Python's json) treat it as a different key. Map keys are
// matched exactly; for duplicate keys the last one wins, as in Python.
//
// Claims requirements, since they end up in HTTP headers and authz checks:
//   - username: present, a non-empty string without control characters
//     (CR/LF would allow header injection, NUL and friends confuse logs and
//     downstream parsers).
//   - groups: absent (= no groups) or a list of non-empty strings without
//     control characters. Commas are allowed (LDAP DNs contain them); code
//     that joins groups into one header must encode them.
//   - auth_method, provider: absent, null or a string without control
//     characters.
//
// Unknown keys are ignored.
func parseSessionClaims(data []byte) (SessionClaims, string, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return SessionClaims{}, sessionReasonBadPayload, false
	}
	bad := func() (SessionClaims, string, bool) {
		return SessionClaims{}, sessionReasonBadClaims, false
	}

	var c SessionClaims
	rawUser, present := fields["username"]
	// A username with a space at either end would lose it in X-User
	// (see check.HeaderSafe): " admin" would reach the registry as "admin".
	if !present || json.Unmarshal(rawUser, &c.Username) != nil || !validSessionClaimString(c.Username) || check.HasOuterBlank(c.Username) {
		return bad()
	}

	c.Groups = []string{}
	if rawGroups, present := fields["groups"]; present {
		if string(rawGroups) == "null" || json.Unmarshal(rawGroups, &c.Groups) != nil {
			return bad()
		}
		for _, g := range c.Groups {
			if !validSessionClaimString(g) {
				return bad()
			}
		}
	}

	if !optionalSessionClaimString(fields, "auth_method", &c.AuthMethod) ||
		!optionalSessionClaimString(fields, "provider", &c.Provider) {
		return bad()
	}
	return c, "", true
}

// optionalSessionClaimString decodes fields[key], if present, into dst. It
// accepts null (leaving dst empty) and strings without control characters.
func optionalSessionClaimString(fields map[string]json.RawMessage, key string, dst *string) bool {
	raw, present := fields[key]
	if !present {
		return true
	}
	return json.Unmarshal(raw, dst) == nil && strings.IndexFunc(*dst, unicode.IsControl) < 0
}

// validSessionClaimString reports whether s is non-empty and free of Unicode
// control characters (C0, DEL and C1, which includes CR, LF, TAB and NUL).
func validSessionClaimString(s string) bool {
	return s != "" && strings.IndexFunc(s, unicode.IsControl) < 0
}

// expiry is when a cookie that verified stops being valid: its signing time
// plus the maximum age. It returns the zero time for a cookie whose
// timestamp cannot be read (verify would have refused it).
func (v *sessionVerifier) expiry(cookie string) time.Time {
	sigDot := strings.LastIndexByte(cookie, '.')
	if sigDot < 0 {
		return time.Time{}
	}
	tsDot := strings.LastIndexByte(cookie[:sigDot], '.')
	if tsDot < 0 {
		return time.Time{}
	}
	ts, ok := decodeSessionTimestamp([]byte(cookie[tsDot+1 : sigDot]))
	if !ok || ts > math.MaxInt64/2 {
		return time.Time{}
	}
	return time.Unix(int64(ts)+v.maxAgeSeconds, 0)
}
