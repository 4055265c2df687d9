package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// Lifetimes of the network transport's certificates. An agent's and bothy's
// are made again whenever bothy opens the sandbox's endpoint (at its
// start, and at each start of the sandbox).
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	certLifetime = 365 * 24 * time.Hour
	// clockSkew backdates certificates a little.
	clockSkew = time.Hour
)

// CA is the authority bothy keeps for the network transport: it signs
// each sandbox's agent certificate and the certificate bothy presents to
// that agent. Its key never leaves bothy's data directory.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// Files of the CA in its directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// OpenCA loads the CA kept in dir, making it on first use.
func OpenCA(dir string) (*CA, error) {
	certPEM, errCert := os.ReadFile(filepath.Join(dir, caCertFile))
	keyPEM, errKey := os.ReadFile(filepath.Join(dir, caKeyFile))
	if errors.Is(errCert, os.ErrNotExist) {
		// The certificate is written last: without it the CA was never
		// whole (a key alone is from a start that died half-way).
		return makeCA(dir)
	}
	if errCert != nil || errKey != nil {
		return nil, fmt.Errorf("agent CA in %s: %w", dir, errors.Join(errCert, errKey))
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent CA in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("agent CA in %s: not an ECDSA key", dir)
	}
	return newCA(pair.Leaf, certPEM, key), nil
}

func newCA(cert *x509.Certificate, certPEM []byte, key *ecdsa.PrivateKey) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: certPEM, key: key, pool: pool}
}

func makeCA(dir string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "bothy agent channel CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The key first: a CA whose certificate exists is complete.
	if err := writeFile(filepath.Join(dir, caKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600, -1); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, caCertFile), certPEM, 0o644, -1); err != nil {
		return nil, err
	}
	return newCA(cert, certPEM, key), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// Credentials are one sandbox's side of the network transport: what its
// agent gets (its certificate and key, and the CA to check bothy's by) and
// the certificate bothy presents to it, which stays in bothy's memory.
type Credentials struct {
	AgentCert, AgentKey, CA []byte // PEM
	bothy                   tls.Certificate
}

// Issue makes the credentials of sandbox id.
func (ca *CA) Issue(id string) (*Credentials, error) {
	agentCert, agentKey, _, err := ca.issue(wire.AgentIdentity(id), x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	_, _, bothy, err := ca.issue(wire.BothyIdentity(id), x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &Credentials{AgentCert: agentCert, AgentKey: agentKey, CA: ca.certPEM, bothy: bothy}, nil
}

func (ca *CA) issue(name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, pair tls.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, pair, err
	}
	u, err := url.Parse(name)
	if err != nil {
		return nil, nil, pair, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		URIs:         []*url.URL{u},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, pair, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, pair, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	return certPEM, keyPEM, pair, err
}

// WriteCredentials puts what the agent of an endpoint's sandbox needs in
// dir, beside its token: its certificate, its key (readable by the host
// uid uid alone, the agent's), the CA and the port to listen on.
func WriteCredentials(dir string, cr *Credentials, uid int) error {
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
		uid  int
	}{
		{wire.CAName, cr.CA, 0o444, -1},
		{wire.CertName, cr.AgentCert, 0o444, -1},
		{wire.KeyName, cr.AgentKey, 0o400, uid},
		{wire.ListenName, fmt.Appendf(nil, "%d\n", wire.AgentPort), 0o444, -1},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.data, f.mode, f.uid); err != nil {
			return fmt.Errorf("write agent credentials: %w", err)
		}
	}
	return nil
}

// WriteKEP writes the standard runtime interface's configuration in a
// sandbox's run directory dir, where the agent reads it at its start; nil
// removes it (the agent then serves no such interface).
func WriteKEP(dir string, cfg *wire.KEPConfig) error {
	p := filepath.Join(dir, wire.KEPName)
	if cfg == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return writeFile(p, b, 0o444, -1)
}

// writeFile replaces p with data, mode and (unless uid < 0) owner uid at once.
func writeFile(p string, data []byte, mode os.FileMode, uid int) error {
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil { // whatever the umask
		os.Remove(tmp)
		return err
	}
	if uid >= 0 {
		if err := os.Chown(tmp, uid, uid); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	return os.Rename(tmp, p)
}
