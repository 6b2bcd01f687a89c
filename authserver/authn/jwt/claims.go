package jwt

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// lookupClaim returns the claim named name; when there is none and the name
// holds dots, it follows them into nested objects ("realm_access.roles").
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	if !strings.Contains(name, ".") {
		return nil
	}
	var cur any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func stringList(v any) []string {
	switch t := v.(type) {
	case string:
		if t == "" {
			return nil
		}
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func firstString(claims map[string]any, names ...string) string {
	for _, n := range names {
		if s, ok := claims[n].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// numericClaim reads a NumericDate claim (seconds since the epoch). A value
// outside [0, maxNumericDate] is refused: converted to int64 it would
// overflow, and an nbf of 1e300 would wrap into the past and let a token in.
func numericClaim(claims map[string]any, name string) (time.Time, bool) {
	var f float64
	switch v := claims[name].(type) {
	case float64:
		f = v
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// maxNumericDate is the latest date a token may carry: the year 5138, far
// beyond any token's lifetime and far below int64's range.
const maxNumericDate = 1e11

// unverifiedIssuer returns the iss claim of a compact JWS without verifying
// it, or "". It reads at most a few kilobytes of payload.
func unverifiedIssuer(raw string) string {
	first := strings.IndexByte(raw, '.')
	if first < 0 {
		return ""
	}
	rest := raw[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || second > 64<<10 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Iss
}
