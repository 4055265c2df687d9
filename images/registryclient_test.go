package images

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
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

// TestUnpublishOnARegistryWithoutDeletes: a registry that answers 405 to
// deletes (distribution's default) keeps the copy, and a snapshot's delete
// goes on; any other failure stops it.
func TestUnpublishOnARegistryWithoutDeletes(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`)
	sum := sha256.Sum256(manifest)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	status := http.StatusMethodNotAllowed
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodHead, http.MethodGet:
			w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
			w.Header().Set("Docker-Content-Digest", digest)
			w.Header().Set("Content-Length", strconv.Itoa(len(manifest)))
			if r.Method == http.MethodGet {
				w.Write(manifest)
			}
		case http.MethodDelete:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}`)
		}
	}))
	defer srv.Close()
	b := New(nil, testenv.Logger(t), "", t.TempDir())
	defer b.Close()
	b.UseRegistry(strings.TrimPrefix(srv.URL, "http://"), RegistryAccess{})
	if err := b.Unpublish(context.Background(), "bothy/snapshot:kept"); err != nil {
		t.Fatalf("a registry without deletes: %v", err)
	}
	status = http.StatusInternalServerError
	if err := b.Unpublish(context.Background(), "bothy/snapshot:kept"); err == nil {
		t.Fatal("a registry that fails: no error")
	}
}
