package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PKI is a throwaway test CA and what it signed: a server certificate for 127.0.0.1 and localhost,
// a client certificate (mutual TLS), and a second CA that signed nothing the server trusts. Its
// fields are PEM file paths.
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey, OtherCA string
}

// ServerArgs are the serve flags for TLS (with mutual, clients must show a certificate of CA).
func (p *PKI) ServerArgs(mutual bool) []string {
	args := []string{"--tls-cert", p.ServerCert, "--tls-key", p.ServerKey}
	if mutual {
		args = append(args, "--tls-client-ca", p.CA)
	}
	return args
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewPKI writes the certificates and keys into a temporary directory of t.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	newCA(t, dir, "other-ca")
	serverCert, serverKey := newLeaf(t, dir, "server", ca, 2, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.DNSNames = []string{"localhost"}
	})
	clientCert, clientKey := newLeaf(t, dir, "client", ca, 3, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "switchboard.test", Path: "/orchestrator"}}
	})
	return &PKI{
		CA: filepath.Join(dir, "ca.pem"), ServerCert: serverCert, ServerKey: serverKey,
		ClientCert: clientCert, ClientKey: clientKey, OtherCA: filepath.Join(dir, "other-ca.pem"),
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newCA(t testing.TB, dir, name string) issuer {
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard test " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return issuer{cert: cert, key: key}
}

func newLeaf(t testing.TB, dir, name string, ca issuer, serial int64, customize func(*x509.Certificate)) (certPath, keyPath string) {
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	customize(template)
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "PRIVATE KEY", keyDER)
	return certPath, keyPath
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SigningKey is what `switchboard token keygen` writes: the key that issues tokens and its
// public part, which is all a server needs.
type SigningKey struct {
	Private, Public string
}

// Keygen runs `switchboard token keygen` into a temporary directory of t.
func Keygen(t testing.TB) *SigningKey {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signing.key")
	run(t, "token", "keygen", "--out", path)
	return &SigningKey{Private: path, Public: path + ".pub"}
}

// ServerArgs are the serve flags that turn auth on with this key.
func (k *SigningKey) ServerArgs() []string { return []string{"--auth-key-file", k.Public} }

// Issue runs `switchboard token issue` (valid for an hour) and returns the token, e.g.
// Issue(t, "agent", "--specialist", "fe-1").
func (k *SigningKey) Issue(t testing.TB, role string, args ...string) string {
	t.Helper()
	all := append([]string{"token", "issue", "--key-file", k.Private, "--role", role, "--ttl", "1h"}, args...)
	token := strings.TrimSpace(run(t, all...))
	if token == "" || strings.ContainsAny(token, " \n\t") {
		t.Fatalf("switchboard token issue printed %q, want one token", token)
	}
	return token
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("switchboard %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
