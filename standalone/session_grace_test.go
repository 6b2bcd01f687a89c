package standalone

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// TestStandaloneSecretKeyFileRotationGrace rotates SECRET_KEY_FILE: with
// SECRET_KEY_ROTATION_GRACE_PERIOD, cookies of the previous key stay valid
// until the window ends, never after; the registry token signs with the
// new key at once; a missing file revokes every key; without the variable
// the previous key is refused at once.
func TestStandaloneSecretKeyFileRotationGrace(t *testing.T) {
	for _, grace := range []time.Duration{0, 600 * time.Millisecond} {
		t.Run(grace.String(), func(t *testing.T) {
			g := NewWithT(t)
			dir := t.TempDir()
			file := filepath.Join(dir, "secret-key")
			key1, key2, key3 := standaloneTestToken(t), standaloneTestToken(t), standaloneTestToken(t)
			g.Expect(os.WriteFile(file, []byte(key1+"\n"), 0o600)).To(Succeed())
			env := map[string]string{"SECRET_KEY_FILE": file}
			if grace > 0 {
				env["SECRET_KEY_ROTATION_GRACE_PERIOD"] = grace.String()
			}
			sa, store, logs, err := standaloneStart(t, env)
			g.Expect(err).NotTo(HaveOccurred())
			standaloneRun(t, sa)
			cookie := func(key string) string {
				return authtest.SessionCookieName + "=" + authtest.SessionCookie([]byte(key), map[string]any{"username": "alice"}, time.Now())
			}
			reason := func(key string) check.Reason {
				return standaloneDecide(store, "GET", standaloneServersURL, "", cookie(key)).Reason
			}
			g.Expect(reason(key1)).To(Equal(check.ReasonAllowedSession))

			g.Expect(os.WriteFile(file, []byte(key2+"\n"), 0o600)).To(Succeed())
			rotated := time.Now()
			g.Eventually(func() check.Reason { return reason(key2) }, 2*time.Second, 5*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
			// The registry token signs with the new key at once.
			now := time.Now()
			tok, err := mintFor(store, now)
			g.Expect(err).NotTo(HaveOccurred())
			_, err = (&authtest.RegistryVerifier{SecretKey: []byte(key2)}).Verify(tok, now)
			g.Expect(err).NotTo(HaveOccurred(), "hop token signed with the new key")
			if grace == 0 {
				g.Expect(reason(key1)).To(Equal(check.ReasonSessionInvalid), "no grace: the previous key is refused at once")
			} else {
				g.Expect(time.Since(rotated)).To(BeNumerically("<", grace/2), "the test was too slow to look inside the window")
				g.Expect(reason(key1)).To(Equal(check.ReasonAllowedSessionPrevious), "inside the window")
				g.Eventually(func() check.Reason { return reason(key1) }, grace+time.Second, 5*time.Millisecond).Should(Equal(check.ReasonSessionInvalid))
				g.Expect(time.Since(rotated)).To(BeNumerically(">=", grace-100*time.Millisecond), "refused too early")
			}
			g.Expect(reason(key2)).To(Equal(check.ReasonAllowedSession))

			// Rotate again, then delete the file: nothing is accepted, the
			// previous key included.
			g.Expect(os.WriteFile(file, []byte(key3), 0o600)).To(Succeed())
			g.Eventually(func() check.Reason { return reason(key3) }, 2*time.Second, 5*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
			g.Expect(os.Remove(file)).To(Succeed())
			g.Eventually(func() bool {
				return standaloneDecide(store, "GET", standaloneServersURL, "", cookie(key3)).Allowed()
			}, 2*time.Second, 5*time.Millisecond).Should(BeFalse())
			g.Expect(standaloneDecide(store, "GET", standaloneServersURL, "", cookie(key2)).Allowed()).To(BeFalse())
			// Back with key3: key2 does not come back as previous.
			g.Expect(os.WriteFile(file, []byte(key3), 0o600)).To(Succeed())
			g.Eventually(func() check.Reason { return reason(key3) }, 2*time.Second, 5*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
			g.Expect(standaloneDecide(store, "GET", standaloneServersURL, "", cookie(key2)).Allowed()).To(BeFalse())

			standaloneExpectNoSecret(g, logs, key1, key2, key3)
		})
	}
}

func TestStandaloneSecretKeyGraceEnv(t *testing.T) {
	g := NewWithT(t)
	e, err := ParseEnv(standaloneEnv(map[string]string{"SECRET_KEY_FILE": "/x", "SECRET_KEY_ROTATION_GRACE_PERIOD": "3600"}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.SecretKeyGrace).To(Equal(time.Hour))
	for _, bad := range []string{"-1s", "25h", "soon"} {
		_, err := ParseEnv(standaloneEnv(map[string]string{"SECRET_KEY_FILE": "/x", "SECRET_KEY_ROTATION_GRACE_PERIOD": bad}))
		g.Expect(err).To(MatchError(ContainSubstring("SECRET_KEY_ROTATION_GRACE_PERIOD")), bad)
	}
}
