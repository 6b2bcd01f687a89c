#!/usr/bin/python3
# Copyright 2026 The registry-auth-operator Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Generate authserver/authn/session/testdata/session/fixtures.json.

The Go session verifier (authserver/authn/session/verifier.go) must accept exactly the
cookies that the registry web app makes with

    itsdangerous.URLSafeTimedSerializer(SECRET_KEY).dumps(claims)

This script makes those cookies with the real itsdangerous library, so the Go
tests check the Go code against the Python implementation rather than against
the Go author's reading of it.

Regenerate (from the repository root) with Debian's Python and itsdangerous:

    apt-get install -y python3-itsdangerous
    python3 hack/gen-session-fixtures.py          # rewrites the JSON
    python3 hack/gen-session-fixtures.py --check  # fails if the JSON is stale

The output is deterministic: signing times are fixed (TimestampSigner's
get_timestamp is overridden), and JSON + zlib output is stable, so
regenerating produces a byte-identical file unless cases or itsdangerous
change.

Every case is also run through itsdangerous' own loads() at the case's "now"
and the result is stored as itsdangerous_ok. The script refuses to write a
case whose want_ok disagrees with itsdangerous unless the case carries a
"deviation" note explaining why the Go verifier is deliberately stricter (or
more lenient, for the clock-skew leeway).

The secret keys below are throwaway test values, not real secrets.
"""

import argparse
import base64
import hashlib
import json
import os
import sys

import itsdangerous
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.timed import TimestampSigner

# Fixed "signing time" for all cookies: 2026-01-01T00:00:00Z.
SIGNED_AT = 1767225600
MAX_AGE = 3600
# Must match sessionFutureLeeway in authserver/authn/session/verifier.go.
GO_FUTURE_LEEWAY = 10

KEY_A = "fixture-key-a-not-a-real-secret"
KEY_B = "fixture-key-b-not-a-real-secret"
KEY_OLD = "fixture-key-old-not-a-real-secret"
KEY_NEW = "fixture-key-new-not-a-real-secret"

ALICE = {
    "username": "alice",
    "groups": ["devs", "ops"],
    "auth_method": "oidc",
    "provider": "keycloak",
}

B64_ALPHABET = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)


def fixed_clock_signer(ts):
    """A TimestampSigner whose clock is frozen at ts.

    itsdangerous reads the clock through get_timestamp() both when signing
    (the embedded timestamp) and when verifying (age = now - timestamp), so
    one subclass serves both directions.
    """

    class FixedClockSigner(TimestampSigner):
        def get_timestamp(self):
            return ts

    return FixedClockSigner


def dumps(obj, keys, ts=SIGNED_AT, **kwargs):
    return URLSafeTimedSerializer(
        keys, signer=fixed_clock_signer(ts), **kwargs
    ).dumps(obj)


def sign_raw(payload_b64, ts_bytes, keys, ts=SIGNED_AT):
    """Sign an arbitrary already-encoded payload and raw timestamp bytes.

    Used for cookies that dumps() cannot produce (invalid UTF-8, a 9-byte
    timestamp) but that still carry a valid itsdangerous signature, so the
    checks after signature verification are exercised.
    """
    signer = URLSafeTimedSerializer(
        keys, signer=fixed_clock_signer(ts)
    ).make_signer()
    value = payload_b64 + b"." + base64_encode(ts_bytes)
    return (value + b"." + signer.get_signature(value)).decode("ascii")


def itsdangerous_loads(cookie, keys, now, max_age):
    """Return (ok, claims_or_None) as the Python side would see it."""
    s = URLSafeTimedSerializer(keys, signer=fixed_clock_signer(now))
    try:
        return True, s.loads(cookie, max_age=max_age)
    except itsdangerous.BadData:
        return False, None


def split(cookie):
    payload, ts, sig = cookie.rsplit(".", 2)
    return payload, ts, sig


def flip_char(s, i):
    """Replace s[i] with a different base64url character (changing high bits)."""
    c = B64_ALPHABET[(B64_ALPHABET.index(s[i]) + 32) % 64]
    return s[:i] + c + s[i + 1 :]


def build_cases():
    cases = []

    def add(name, cookie, keys, want_ok, now=SIGNED_AT + 60, max_age=MAX_AGE,
            want_reason="", deviation=None, note=None):
        if isinstance(keys, str):
            keys = [keys]
        py_ok, py_claims = itsdangerous_loads(cookie, keys, now, max_age)
        if py_ok != want_ok and deviation is None:
            sys.exit(f"case {name}: itsdangerous ok={py_ok}, want_ok={want_ok}"
                     " and no deviation note")
        if py_ok == want_ok and deviation is not None:
            sys.exit(f"case {name}: has a deviation note but itsdangerous agrees")
        case = {
            "name": name,
            "secret_keys": keys,
            "max_age_seconds": max_age,
            "now_unix": now,
            "cookie": cookie,
            "want_ok": want_ok,
            "itsdangerous_ok": py_ok,
        }
        if want_ok:
            # The expected claims are what itsdangerous itself decoded
            # (ignoring the clock when it rejected the case only for age).
            claims = py_claims
            if claims is None:
                claims = URLSafeTimedSerializer(keys).loads(cookie)
            case["want_username"] = claims["username"]
            case["want_groups"] = claims.get("groups", [])
            case["want_auth_method"] = claims.get("auth_method", "")
            case["want_provider"] = claims.get("provider", "")
        else:
            if not want_reason:
                sys.exit(f"case {name}: failing case needs want_reason")
            case["want_reason"] = want_reason
        if deviation is not None:
            case["deviation"] = deviation
        if note is not None:
            case["note"] = note
        cases.append(case)

    normal = dumps(ALICE, KEY_A)
    add("normal", normal, KEY_A, True,
        note="small claims dicts are usually zlib-compressed too")

    # A payload that does not get shorter under zlib stays plain base64 JSON.
    plain = dumps({"username": "u", "groups": []}, KEY_A)
    assert not plain.startswith("."), "expected an uncompressed payload"
    add("uncompressed", plain, KEY_A, True)

    big = dict(ALICE, groups=[f"team-platform-engineering-{i:02d}" for i in range(60)])
    compressed = dumps(big, KEY_A)
    assert compressed.startswith("."), "expected a zlib-compressed payload"
    add("compressed_large_groups", compressed, KEY_A, True)

    add("unicode_username",
        dumps(dict(ALICE, username="zoë-日本語", groups=["ürün"]), KEY_A),
        KEY_A, True, note="default ensure_ascii=False: raw UTF-8 inside the JSON")
    add("unicode_username_json_escaped",
        dumps(dict(ALICE, username="zoë-日本語"), KEY_A,
              serializer_kwargs={"ensure_ascii": True}),
        KEY_A, True, note="\\uXXXX escapes in the JSON")

    add("groups_absent", dumps({"username": "bob"}, KEY_A), KEY_A, True)

    add("wrong_key", normal, KEY_B, False, want_reason="bad_signature")

    p, t, s = split(normal)
    add("tampered_payload", f"{flip_char(p, 5)}.{t}.{s}", KEY_A, False,
        want_reason="bad_signature")
    add("tampered_timestamp", f"{p}.{flip_char(t, 1)}.{s}", KEY_A, False,
        want_reason="bad_signature")
    add("tampered_signature", f"{p}.{t}.{flip_char(s, 0)}", KEY_A, False,
        want_reason="bad_signature")
    # Splice a payload from another valid cookie onto this one's signature.
    p2, _, _ = split(dumps(dict(ALICE, username="mallory"), KEY_A))
    add("spliced_payload", f"{p2}.{t}.{s}", KEY_A, False,
        want_reason="bad_signature")

    # The last of the 27 signature characters carries 4 data bits and 2
    # padding bits. Python's lenient base64 ignores the padding bits, so
    # itsdangerous accepts 4 spellings of every signature. Go decodes strictly.
    last = B64_ALPHABET.index(s[-1])
    alt = s[:-1] + B64_ALPHABET[last ^ 1]
    add("signature_noncanonical_padding_bits", f"{p}.{t}.{alt}", KEY_A, False,
        want_reason="malformed",
        deviation="itsdangerous ignores base64 padding bits in the signature;"
                  " only the canonical encoding it produces is accepted")
    add("signature_with_junk_characters", f"{p}.{t}.{s[:5]}!!{s[5:]}", KEY_A,
        False, want_reason="malformed",
        deviation="Python's base64 decoder discards non-alphabet characters")
    # Needs a signature containing '-' or '_'; search deterministically.
    std = next(c for c in (dumps(dict(ALICE, provider=f"idp{i}"), KEY_A)
                           for i in range(1000))
               if "-" in split(c)[2] or "_" in split(c)[2])
    sp, st, ss = split(std)
    add("signature_standard_base64_alphabet",
        f"{sp}.{st}.{ss.replace('-', '+').replace('_', '/')}", KEY_A, False, want_reason="malformed",
        deviation="itsdangerous also accepts '+' and '/' in the signature")

    add("age_equals_max_age", normal, KEY_A, True, now=SIGNED_AT + MAX_AGE,
        note="itsdangerous rejects age > max_age, so age == max_age is valid")
    add("expired", normal, KEY_A, False, now=SIGNED_AT + MAX_AGE + 1,
        want_reason="expired")
    add("expired_long_ago", normal, KEY_A, False, now=SIGNED_AT + 400 * 86400,
        want_reason="expired")
    add("future_within_leeway", normal, KEY_A, True,
        now=SIGNED_AT - GO_FUTURE_LEEWAY,
        deviation="itsdangerous raises SignatureExpired for any age < 0;"
                  " the Go verifier tolerates a few seconds of clock skew"
                  " between the web app and the auth server")
    add("future_beyond_leeway", normal, KEY_A, False,
        now=SIGNED_AT - GO_FUTURE_LEEWAY - 1, want_reason="future_timestamp")

    old_cookie = dumps(ALICE, KEY_OLD)
    new_cookie = dumps(dict(ALICE, username="carol"), [KEY_OLD, KEY_NEW])
    add("rotation_signed_with_newest", new_cookie, [KEY_OLD, KEY_NEW], True,
        note="itsdangerous signs with the last key of the list")
    add("rotation_signed_with_old_key", old_cookie, [KEY_OLD, KEY_NEW], True)
    add("rotation_old_key_retired", old_cookie, [KEY_NEW], False,
        want_reason="bad_signature")

    add("different_salt", dumps(ALICE, KEY_A, salt="registry-web"), KEY_A,
        False, want_reason="bad_signature")
    add("hmac_key_derivation",
        dumps(ALICE, KEY_A, signer_kwargs={"key_derivation": "hmac"}), KEY_A,
        False, want_reason="bad_signature")
    add("sha256_digest",
        dumps(ALICE, KEY_A, signer_kwargs={"digest_method": hashlib.sha256}),
        KEY_A, False, want_reason="malformed",
        note="a 32-byte signature has the wrong length for HMAC-SHA1")
    # Flask's own session cookie: salt "cookie-session", hmac derivation.
    add("flask_session_cookie_format",
        dumps(ALICE, KEY_A, salt="cookie-session",
              signer_kwargs={"key_derivation": "hmac",
                             "digest_method": hashlib.sha1}),
        KEY_A, False, want_reason="bad_signature")

    # Validly signed, but the claims are unusable for authentication.
    for name, obj in [
        ("missing_username", {"groups": ["devs"]}),
        ("empty_username", dict(ALICE, username="")),
        ("null_username", dict(ALICE, username=None)),
        ("username_not_string", dict(ALICE, username=42)),
        ("username_header_injection",
         dict(ALICE, username="alice\r\nX-Auth-Groups: admins")),
        ("username_nul", dict(ALICE, username="alice\x00")),
        ("username_c1_control", dict(ALICE, username="alice\u0085")),
        ("groups_not_list", dict(ALICE, groups="admins")),
        ("groups_null", dict(ALICE, groups=None)),
        ("groups_non_string_member", dict(ALICE, groups=["devs", 7])),
        ("groups_null_member", dict(ALICE, groups=["devs", None])),
        ("groups_empty_member", dict(ALICE, groups=["devs", ""])),
        ("group_with_newline", dict(ALICE, groups=["devs\nadmins"])),
        ("provider_with_newline", dict(ALICE, provider="kc\r\nx")),
        ("username_case_variant_key",
         {"Username": "root", "groups": ["admins"]}),
    ]:
        add(name, dumps(obj, KEY_A), KEY_A, False, want_reason="bad_claims",
            deviation="itsdangerous only checks the signature; the claims"
                      " are validated by the Go verifier")

    add("duplicate_username_last_wins",
        sign_raw(base64_encode(b'{"username":"root","username":"alice"}'),
                 SIGNED_AT.to_bytes(4, "big"), [KEY_A]),
        KEY_A, True, note="Python's json keeps the last duplicate key; so must Go")

    add("payload_not_object", dumps(["alice"], KEY_A), KEY_A, False,
        want_reason="bad_payload",
        deviation="valid for itsdangerous, but not a claims object")
    add("payload_invalid_utf8",
        sign_raw(base64_encode(b'{"username":"al\xffice"}'),
                 SIGNED_AT.to_bytes(4, "big"), [KEY_A]),
        KEY_A, False, want_reason="bad_payload")
    add("timestamp_nine_bytes",
        sign_raw(base64_encode(b'{"username":"alice"}'),
                 (2**64).to_bytes(9, "big"), [KEY_A]),
        KEY_A, False, want_reason="malformed")

    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed fixtures are stale")
    args = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "authserver", "authn", "session", "testdata", "session", "fixtures.json")
    text = json.dumps(build_cases(), indent=2, ensure_ascii=True) + "\n"

    if args.check:
        with open(out, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{out} is stale: run python3 hack/gen-session-fixtures.py")
        return
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
