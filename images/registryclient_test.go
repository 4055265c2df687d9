package images

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"slices"
	"testing"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/bothy/bothy/internal/testcert"
	"github.com/bothy/bothy/internal/testenv"
)

// TestUnpublishTrustsOnlyWhatItIsTold: bothy deletes a snapshot's copy
// from a registry over TLS behind a password only with the registry's CA
// and credentials; with another CA, none (plain HTTP to loopback), or a wrong
// password it deletes nothing and says why; a copy already gone is no
// error. No engine: the copy is pushed with the distribution API.
func TestUnpublishTrustsOnlyWhatItIsTold(t *testing.T) {
	reg := testenv.NewSecureRegistry(t)
	pem, err := os.ReadFile(reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(pem)
	const ref = "bothy/snapshot:unpublish-test"
	push(t, reg, ca, ref)

	other, _ := testcert.CA(t)
	otherPool := x509.NewCertPool()
	otherPool.AddCert(other)
	ctx := context.Background()
	for name, access := range map[string]RegistryAccess{
		"another CA":                     {User: reg.User, Password: reg.Password, CA: otherPool},
		"no CA (plain HTTP to loopback)": {User: reg.User, Password: reg.Password},
		"a wrong password":               {User: reg.User, Password: "not-" + reg.Password, CA: ca},
		"no credentials":                 {CA: ca},
	} {
		b := New(nil, testenv.Logger(t), "", t.TempDir())
		b.UseRegistry(reg.Addr, access)
		if err := b.Unpublish(ctx, ref); err == nil {
			t.Errorf("%s: deleted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		b.Close()
	}
	if tags := reg.Tags(t, "bothy/snapshot"); !slices.Contains(tags, "unpublish-test") {
		t.Fatalf("the copy is gone: %v", tags)
	}
	b := New(nil, testenv.Logger(t), "", t.TempDir())
	defer b.Close()
	b.UseRegistry(reg.Addr, RegistryAccess{User: reg.User, Password: reg.Password, CA: ca})
	if err := b.Unpublish(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if tags := reg.Tags(t, "bothy/snapshot"); slices.Contains(tags, "unpublish-test") {
		t.Fatalf("the copy is still there: %v", tags)
	}
	if err := b.Unpublish(ctx, ref); err != nil {
		t.Fatalf("a copy already gone: %v", err)
	}
}

// push puts a small image manifest at ref in reg.
func push(t *testing.T, reg *testenv.SecureRegistry, ca *x509.CertPool, ref string) {
	t.Helper()
	repo, err := remote.NewRepository(reg.Addr + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: ca}
	defer tr.CloseIdleConnections()
	repo.Client = &auth.Client{Client: &http.Client{Transport: tr},
		Credential: auth.StaticCredential(reg.Addr, auth.Credential{Username: reg.User, Password: reg.Password})}
	ctx := context.Background()
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.bothy.test", oras.PackManifestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, desc, repo.Reference.Reference); err != nil {
		t.Fatal(err)
	}
}
