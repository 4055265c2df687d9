package wire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The identities of the network transport's certificates, as URI names:
// each certificate names one sandbox and one side, so that what is taken
// from one sandbox opens no other, and an agent's certificate cannot stand
// in for bothy's.
const (
	identityPrefix = "bothy:sandbox/"
	roleAgent      = "/agent"
	roleBothy      = "/bothyd"
)

// AgentIdentity is the name in the certificate of sandbox id's agent.
func AgentIdentity(id string) string { return identityPrefix + id + roleAgent }

// BothyIdentity is the name in the certificate bothy presents to sandbox
// id's agent.
func BothyIdentity(id string) string { return identityPrefix + id + roleBothy }

// SandboxOfAgent is the sandbox an agent's certificate names.
func SandboxOfAgent(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		s := u.String()
		if id, ok := strings.CutPrefix(s, identityPrefix); ok {
			if id, ok = strings.CutSuffix(id, roleAgent); ok && id != "" && !strings.Contains(id, "/") {
				return id, nil
			}
		}
	}
	return "", errors.New("the certificate names no sandbox's agent")
}

// VerifyPeer checks a TLS peer: its certificate chains to roots for usage,
// and names want. It is a tls.Config's VerifyConnection, on both ends (the
// names are not host names, so the standard host check does not apply).
func VerifyPeer(roots *x509.CertPool, want string, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("the peer's certificate: %w", err)
		}
		names := make([]string, 0, len(leaf.URIs))
		for _, u := range leaf.URIs {
			names = append(names, u.String())
		}
		if !slices.Contains(names, want) {
			return fmt.Errorf("the peer's certificate names %v, not %s", names, want)
		}
		return nil
	}
}
