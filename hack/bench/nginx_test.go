package main

import (
	"strings"
	"testing"
)

func ngCases() []*ngCase {
	cs := []*ngCase{{Name: "nginx_self", Auth: authNginx, Mode: modeSelf}}
	for _, m := range []struct{ key, mode string }{{"keepalive", modeKeepalive}, {"close", modeNoKeepalive}} {
		cs = append(cs,
			&ngCase{Name: "bare_" + m.key, Auth: authBare, Mode: m.mode},
			&ngCase{Name: "static_token_" + m.key, Auth: authRA, Mode: m.mode},
			&ngCase{Name: "oidc_jwt_" + m.key, Auth: authRA, Mode: m.mode},
			&ngCase{Name: "oauth2_proxy_jwt_" + m.key, Auth: authO2, Mode: m.mode},
		)
	}
	return append(cs,
		&ngCase{Name: "bare_direct_close", Auth: authBare, Mode: modeDirectClose},
		&ngCase{Name: "static_token_direct_close", Auth: authRA, Mode: modeDirectClose})
}

// Every case runs between two runs of the bare server of its mode, the
// rounds start each mode's block at another case, and nginx itself runs
// once a round.
func TestNginxOrderBracketsEachModeWithTheBareServer(t *testing.T) {
	cs := ngCases()
	firsts := map[string]bool{}
	for round := 1; round <= 3; round++ {
		order := nginxOrder(cs, round)
		if order[0].Mode != modeSelf {
			t.Errorf("round %d starts with %s, want nginx itself", round, order[0].Name)
		}
		seen := map[string]int{}
		for i, c := range order {
			seen[c.Name]++
			if c.Auth == authBare || c.Mode == modeSelf {
				continue
			}
			var before, after bool
			for _, x := range order[:i] {
				before = before || (x.Auth == authBare && x.Mode == c.Mode)
			}
			for _, x := range order[i+1:] {
				after = after || (x.Auth == authBare && x.Mode == c.Mode)
			}
			if !before || !after {
				t.Errorf("round %d: %s is not between two runs of the bare server of its mode", round, c.Name)
			}
		}
		for _, c := range cs {
			want := 1
			if c.Auth == authBare {
				want = 2
			}
			if seen[c.Name] != want {
				t.Errorf("round %d: %s ran %d times, want %d", round, c.Name, seen[c.Name], want)
			}
		}
		for i, c := range order {
			if c.Name == "bare_keepalive" {
				firsts[order[i+1].Name] = true
				break
			}
		}
	}
	if len(firsts) < 2 {
		t.Errorf("every round started the keepalive block at the same case: %v", firsts)
	}
}

func TestNginxTargets(t *testing.T) {
	r := &nginxResult{Cases: ngCases()}
	set := func(name string, vs, conns float64, rpsByRound ...float64) {
		c := r.get(name)
		c.VsBare, c.ConnsPer1000 = vs, conns
		for i, x := range rpsByRound {
			c.Rounds = append(c.Rounds, wr(i+1, 0, x))
		}
	}
	set("static_token_keepalive", 0.95, 1.0)
	set("oidc_jwt_keepalive", 0.85, 2.5, 5000, 4000)
	set("oauth2_proxy_jwt_keepalive", 0, -1, 1000, 1000)
	set("static_token_close", 0.92, 1000)
	set("oidc_jwt_close", 0.91, 1000, 3000)
	set("oauth2_proxy_jwt_close", 0, -1, 1000)
	set("static_token_direct_close", 0.93, 1000)
	got := map[string]target{}
	for _, tg := range nginxTargets(r) {
		got[tg.Name] = tg
	}
	for name, want := range map[string]struct {
		pass  bool
		value string
	}{
		"through nginx, keepalive: registry-auth ÷ bare server (slowest case)":                 {false, "0.85×"},
		"through nginx, no keepalive: registry-auth ÷ bare server (slowest case)":              {true, "0.91×"},
		"through nginx, keepalive: connections registry-auth accepted per 1,000 checks (most)": {false, "2.50"},
		"through nginx, keepalive: JWT ÷ oauth2-proxy":                                         {true, "4.50×"},
		"through nginx, no keepalive: JWT ÷ oauth2-proxy":                                      {false, "3.00×"},
		"a connection per check, direct: registry-auth ÷ bare server":                          {true, "0.93×"},
	} {
		tg, ok := got[name]
		if !ok {
			t.Errorf("no target %q", name)
			continue
		}
		if tg.Pass != want.pass || !strings.HasPrefix(tg.Value, want.value) {
			t.Errorf("%s: pass %v, %q; want %v, %q...", name, tg.Pass, tg.Value, want.pass, want.value)
		}
	}
}
