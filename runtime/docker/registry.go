package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// SetRegistryAuth gives the engine credentials for the registry at host
// (HOST[:PORT]): pulls and pushes of its images present them. Call it
// before the engine is used.
func (d *Docker) SetRegistryAuth(host, user, password string) error {
	b, err := json.Marshal(registry.AuthConfig{Username: user, Password: password, ServerAddress: host})
	if err != nil {
		return err
	}
	d.registry, d.auth = host, base64.URLEncoding.EncodeToString(b)
	return nil
}

// authFor is the credentials for ref's registry, if there are any.
func (d *Docker) authFor(ref string) string {
	if d.registry != "" && strings.HasPrefix(ref, d.registry+"/") {
		return d.auth
	}
	return ""
}

// ImageTag gives the local image source the reference target too.
func (d *Docker) ImageTag(ctx context.Context, source, target string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if _, err := d.cli.ImageTag(ctx, client.ImageTagOptions{Source: source, Target: target}); err != nil {
		return fmt.Errorf("tag image %s as %s: %w", source, target, err)
	}
	return nil
}

// noAuth is empty credentials: the engine wants some for every push.
var noAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// ImagePush pushes ref to its registry, reporting progress lines.
func (d *Docker) ImagePush(ctx context.Context, ref string, progress func(string)) error {
	auth := d.authFor(ref)
	if auth == "" {
		auth = noAuth
	}
	res, err := d.cli.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("push image %s: %w", ref, err)
	}
	defer res.Close()
	if err := readMessages(res, progress); err != nil {
		return fmt.Errorf("push image %s: %w", ref, err)
	}
	return nil
}
