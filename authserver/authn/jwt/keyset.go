package jwt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// keySet is the issuer's JWKS, cached. It implements go-oidc's KeySet. It
// refetches the JWKS when a token names an unknown key ID (rate limited) and,
// in the background, when the cached keys are older than keysRefreshAfter.
// A failed fetch keeps the cached keys. Fetches run in goroutines of their
// own, detached from the request that caused them, so no request holds
// fetchMu and a request that goes away does not abort a fetch others wait for.
type keySet struct {
	client  *http.Client
	jwksURL string
	algs    []jose.SignatureAlgorithm

	cur     atomic.Pointer[keysAt]
	fetchMu sync.Mutex // serialises fetches
	limiter *rate.Limiter
	// refetchMu guards refetching, closed when the unknown-kid refetch in
	// flight ends (nil when none is).
	refetchMu  sync.Mutex
	refetching chan struct{}
	bgBusy     atomic.Bool
	bgLast     atomic.Int64 // unix nanos of the last background attempt
	nowFn      func() time.Time
}

type keysAt struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
	gen       uint64
}

func newKeySet(client *http.Client, jwksURL string, algs []string) *keySet {
	ks := &keySet{
		client:  client,
		jwksURL: jwksURL,
		limiter: rate.NewLimiter(rate.Every(unknownKidRefetchEvery), 1),
		nowFn:   time.Now,
	}
	for _, a := range algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	ks.cur.Store(&keysAt{})
	return ks
}

// fetch replaces the cached keys with the issuer's current JWKS.
func (k *keySet) fetch(ctx context.Context, now time.Time) error {
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, k.client, k.jwksURL, &set); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			if key.IsPublic() {
				keys = append(keys, key)
			}
		}
	}
	if len(keys) == 0 {
		return errors.New("jwks: no public signing keys")
	}
	old := k.cur.Load()
	k.cur.Store(&keysAt{keys: keys, fetchedAt: now, gen: old.gen + 1})
	return nil
}

var (
	errUnknownKey   = errors.New("token signed with an unknown key")
	errBadSignature = errors.New("token signature does not verify")
)

// unknownKeyFlag is a context key: VerifySignature sets the *bool it holds
// when the token names a key the issuer does not publish. go-oidc wraps key
// set errors with %v, so errors.Is cannot see errUnknownKey through it.
type unknownKeyFlag struct{}

func markUnknownKey(ctx context.Context) {
	if b, ok := ctx.Value(unknownKeyFlag{}).(*bool); ok {
		*b = true
	}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	cur := k.cur.Load()
	if k.nowFn().Sub(cur.fetchedAt) > keysRefreshAfter {
		k.refreshInBackground()
	}
	if payload, found, err := verifyWith(jws, cur.keys, kid); found {
		return payload, err
	}
	// Unknown key: the issuer may have rotated. Refetch once (rate
	// limited; concurrent callers share the same fetch) and retry.
	if done := k.startRefetch(ctx, cur); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			// The caller has gone: it stops waiting, the fetch goes
			// on for everyone else.
		}
	}
	if payload, found, err := verifyWith(jws, k.cur.Load().keys, kid); found {
		return payload, err
	}
	markUnknownKey(ctx)
	return nil, errUnknownKey
}

// startRefetch starts the JWKS refetch for a caller that found no key for a
// token's key ID among seen, and returns a channel closed when the fetch has
// ended, or nil when there is nothing to wait for: the keys have changed since
// the caller looked (it retries with them), or the limiter refuses.
//
// The limiter's token is spent when the fetch starts, so the fetch must not
// depend on the caller: it runs in its own goroutine with
// context.WithoutCancel(ctx) (getJSON bounds it with FetchTimeout). Were it
// run with the caller's context, a client that sends a made-up key ID and
// drops the connection once per unknownKidRefetchEvery would abort every
// refetch before it reached the issuer, and tokens signed with a newly
// rotated key would be refused until the background refresh. Callers arriving
// while a refetch runs join it instead of asking the limiter; each waits only
// as long as its own context allows.
func (k *keySet) startRefetch(ctx context.Context, seen *keysAt) <-chan struct{} {
	k.refetchMu.Lock()
	defer k.refetchMu.Unlock()
	if k.cur.Load() != seen {
		return nil
	}
	if k.refetching != nil {
		return k.refetching
	}
	if !k.limiter.Allow() {
		return nil
	}
	done := make(chan struct{})
	k.refetching = done
	fetchCtx := context.WithoutCancel(ctx)
	go func() {
		k.fetchMu.Lock()
		if k.cur.Load() == seen { // else a background refresh just fetched
			_ = k.fetch(fetchCtx, k.nowFn()) // on failure the cached keys stay
		}
		k.fetchMu.Unlock()
		k.refetchMu.Lock()
		k.refetching = nil
		k.refetchMu.Unlock()
		close(done)
	}()
	return done
}

// verifyWith verifies jws with the key named kid (or, when the token names
// none, with each key). found reports whether a candidate key existed.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, found bool, err error) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		found = true
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true, nil
		}
	}
	if found {
		return nil, true, errBadSignature
	}
	return nil, false, nil
}

// backgroundRetry spaces background refreshes that fail, so an issuer that
// is down is not asked again on every request.
const backgroundRetry = time.Minute

func (k *keySet) refreshInBackground() {
	now := k.nowFn()
	if now.Sub(time.Unix(0, k.bgLast.Load())) < backgroundRetry || !k.bgBusy.CompareAndSwap(false, true) {
		return
	}
	k.bgLast.Store(now.UnixNano())
	go func() {
		defer k.bgBusy.Store(false)
		k.fetchMu.Lock()
		defer k.fetchMu.Unlock()
		if k.nowFn().Sub(k.cur.Load().fetchedAt) > keysRefreshAfter {
			_ = k.fetch(context.Background(), k.nowFn())
		}
	}()
}
