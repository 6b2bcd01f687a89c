package authtest

// Session cookies of the registry web app, for tests: the signing side of
// itsdangerous.URLSafeTimedSerializer(SECRET_KEY).dumps(claims), with every
// itsdangerous default. The verifying side lives in authserver/authn/session,
// which also describes the format.

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // itsdangerous' default signer is HMAC-SHA1.
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// SessionCookieName is the default name of the registry web app's session
// cookie.
const SessionCookieName = "mcp_gateway_session"

// sessionSalt is itsdangerous' default salt; "signer" is the infix of its
// default "django-concat" key derivation.
const (
	sessionSalt  = "itsdangerous"
	sessionInfix = "signer"
)

// SessionCookie returns the value of a session cookie holding claims, signed
// at signedAt (truncated to whole seconds) with secretKey, exactly as
//
//	itsdangerous.URLSafeTimedSerializer(secretKey).dumps(claims)
//
// does it: compact JSON (separators "," and ":", non-ASCII not escaped),
// zlib-compressed and prefixed with "." when that makes it more than one byte
// shorter, base64url without padding; then "." + the timestamp (big-endian,
// leading zero bytes stripped, base64url) and "." + base64url
// HMAC-SHA1(SHA1("itsdangerous" + "signer" + secretKey), payload "." timestamp).
//
// Differences from Python that change bytes but never validity: Go orders
// object keys alphabetically (Python keeps insertion order), escapes U+2028
// and U+2029, and Go's zlib output differs from the C library's. A claims set
// with one key, or keys inserted in alphabetical order, and no compression
// yields the very cookie itsdangerous makes.
//
// It panics if claims cannot be encoded as JSON (test helper semantics).
func SessionCookie(secretKey []byte, claims map[string]any, signedAt time.Time) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Python's json does not escape <, > and &
	if err := enc.Encode(claims); err != nil {
		panic(fmt.Sprintf("authtest: encoding session claims: %v", err))
	}
	payload := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))

	text := base64.RawURLEncoding.EncodeToString(payload)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z) // zlib.compress' default level (6)
	_, _ = zw.Write(payload)
	_ = zw.Close()
	if z.Len() < len(payload)-1 {
		text = "." + base64.RawURLEncoding.EncodeToString(z.Bytes())
	}
	return signSession(secretKey, text, sessionTimestamp(signedAt.Unix()))
}

// sessionTimestamp is itsdangerous' base64_encode(int_to_bytes(ts)).
func sessionTimestamp(ts int64) string {
	var b [8]byte
	for i := range b {
		b[7-i] = byte(uint64(ts) >> (8 * i))
	}
	i := 0
	for i < len(b) && b[i] == 0 {
		i++
	}
	return base64.RawURLEncoding.EncodeToString(b[i:])
}

// signSession appends the itsdangerous Signer signature to
// payloadText "." tsText.
func signSession(secretKey []byte, payloadText, tsText string) string {
	d := sha1.New()
	d.Write([]byte(sessionSalt))
	d.Write([]byte(sessionInfix))
	d.Write(secretKey)
	m := hmac.New(sha1.New, d.Sum(nil))
	value := payloadText + "." + tsText
	m.Write([]byte(value))
	return value + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
