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

package realnode

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's certificates, written under dir: one CA signs the
// API server's and the kubelet's serving certificates and every client
// certificate; sa.key signs ServiceAccount tokens. No TLS bootstrap.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// clientIdentity is a client certificate's user and groups.
type clientIdentity struct {
	file   string // <dir>/<file>.crt and .key
	user   string
	groups []string
}

// The client certificates: the admin, the node's components, and the API
// server's own identity towards the kubelet.
var clients = []clientIdentity{
	{"admin", "realnode-admin", []string{"system:masters"}},
	{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}},
	{"kube-proxy", "system:kube-proxy", nil},
	{"kube-controller-manager", "system:kube-controller-manager", nil},
	{"kube-scheduler", "system:kube-scheduler", nil},
	{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}},
}

func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "realnode-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caCert: cert, caKey: key}
	if err := p.write("ca", der, key); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// write writes <name>.crt and <name>.key.
func (p *pki) write(name string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.WriteFile(p.path(name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(p.path(name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// issue signs a certificate for name with the CA: a client certificate when
// user is set, a serving certificate for ips and dnsNames otherwise.
func (p *pki) issue(name, user string, groups []string, ips []net.IP, dnsNames []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    p.caCert.NotBefore,
		NotAfter:     p.caCert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	if user != "" {
		tmpl.Subject = pkix.Name{CommonName: user, Organization: groups}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return err
	}
	return p.write(name, der, key)
}

// writeAll issues every certificate the cluster needs and the
// ServiceAccount signing key.
func (p *pki) writeAll() error {
	apiIPs := []net.IP{net.ParseIP(NodeIP), net.ParseIP(KubernetesServiceIP), net.ParseIP("127.0.0.1")}
	apiNames := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := p.issue("apiserver", "", nil, apiIPs, apiNames); err != nil {
		return err
	}
	if err := p.issue("kubelet-serving", "", nil, []net.IP{net.ParseIP(NodeIP)}, []string{NodeName}); err != nil {
		return err
	}
	for _, c := range clients {
		if err := p.issue(c.file, c.user, c.groups, nil, nil); err != nil {
			return fmt.Errorf("certificate %s: %w", c.file, err)
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.path("sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	return os.WriteFile(p.path("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// kubeconfig returns a kubeconfig for the client certificate file (one of
// clients) against server.
func (p *pki) kubeconfig(file, server string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: realnode
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: realnode
  context:
    cluster: realnode
    user: %s
current-context: realnode
`, server, p.path("ca.crt"), file, p.path(file+".crt"), p.path(file+".key"), file)
}

// AdminKubeconfig returns an admin kubeconfig for server (e.g. a Forward
// of the API server on 127.0.0.1) with the certificates embedded.
func (c *Cluster) AdminKubeconfig(server string) ([]byte, error) {
	data := map[string]string{}
	for _, f := range []string{"ca.crt", "admin.crt", "admin.key"} {
		b, err := os.ReadFile(c.pki.path(f))
		if err != nil {
			return nil, err
		}
		data[f] = base64.StdEncoding.EncodeToString(b)
	}
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: realnode
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: realnode-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: realnode
  context:
    cluster: realnode
    user: realnode-admin
current-context: realnode
`, server, data["ca.crt"], data["admin.crt"], data["admin.key"])), nil
}
