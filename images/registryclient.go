package images

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// registryClient speaks the distribution API to bothy's registry, with
// its credentials (basic, or the bearer tokens a registry's challenge
// asks for) and CA.
type registryClient struct {
	plainHTTP bool
	client    *auth.Client
}

// registryTimeout bounds one call to the registry.
const registryTimeout = 30 * time.Second

// newRegistryClient reaches host over HTTPS, or over plain HTTP where the
// engine does too without being told: a loopback host given no CA.
func newRegistryClient(host string, access RegistryAccess) *registryClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: access.CA, MinVersion: tls.VersionTLS12}
	c := &auth.Client{Client: &http.Client{Transport: tr, Timeout: registryTimeout}, Cache: auth.NewCache()}
	if access.User != "" || access.Password != "" {
		c.Credential = auth.StaticCredential(host, auth.Credential{Username: access.User, Password: access.Password})
	}
	return &registryClient{plainHTTP: access.CA == nil && loopback(host), client: c}
}

// loopback says host (HOST[:PORT]) names this machine's loopback.
func loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// repo is the repository of ref (HOST/NAME[:TAG]), reached as bothy does.
func (r *registryClient) repo(ref string) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, err
	}
	repo.PlainHTTP, repo.Client = r.plainHTTP, r.client
	return repo, nil
}

// errNoDeletes: the registry does not delete manifests (distribution's
// default, and many hosted registries).
var errNoDeletes = errors.New("the registry does not delete images")

// delete removes the manifest ref (HOST/NAME:TAG) names; one the registry
// lacks is no error.
func (r *registryClient) delete(ctx context.Context, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	repo, err := r.repo(ref)
	if err != nil {
		return err
	}
	desc, err := repo.Resolve(ctx, repo.Reference.Reference)
	if err == nil {
		err = repo.Manifests().Delete(ctx, desc)
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return nil
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) && resp.StatusCode == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w: %v", errNoDeletes, err)
	}
	return err
}
