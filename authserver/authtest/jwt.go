package authtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// UnsignedJWT returns a compact JWS with an HS256 header, the claims and a
// signature that verifies with no key: for tests of what happens to a token
// before (or instead of) its verification, such as a token of another
// issuer that is handed on. It panics if claims cannot be encoded.
func UnsignedJWT(claims map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(fmt.Sprintf("authtest: encoding claims: %v", err))
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString([]byte("not-a-signature"))
}
