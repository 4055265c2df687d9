package images

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// RegistryAccess is how bothy itself reaches its registry, to delete
// what it published there (the engine pushes and pulls with its own
// settings: credentials bothy hands it, a CA in its certs.d).
type RegistryAccess struct {
	User, Password string
	// CA, when set, is the only root the registry's certificate may chain
	// to; nil: the system's roots.
	CA *x509.CertPool
}

// UseRegistry makes b publish the images bothy makes (its recipes' images,
// and snapshots through Publish) to the registry at host (HOST[:PORT]), and
// fetch from there what it lacks before making it again. Images bothy did
// not make are referenced as they are. Call it before b is used.
func (b *Builder) UseRegistry(host string, access RegistryAccess) {
	b.registry = strings.TrimSuffix(host, "/")
	b.remote = newRegistryClient(b.registry, access)
}

// RemoteRef is where ref is kept in the registry: a recipe's image under a
// tag of its recipe's hash (so that what a tag names never changes), any
// other image bothy made (bothy/...) under its own name. It is empty
// without a registry, and for images bothy did not make.
func (b *Builder) RemoteRef(ref string) string {
	if b.registry == "" {
		return ""
	}
	name := normalize(ref)
	if r, ok := recipes[name]; ok {
		return b.registry + "/" + strings.TrimSuffix(name, ":latest") + ":r-" + r.hash()
	}
	if strings.HasPrefix(name, "bothy/") && !strings.Contains(name, "@") {
		return b.registry + "/" + name
	}
	return ""
}

// Publish pushes the local image ref to the registry, when there is one
// and bothy made ref.
func (b *Builder) Publish(ctx context.Context, ref string, progress func(string)) error {
	return b.publish(ctx, normalize(ref), progress)
}

func (b *Builder) publish(ctx context.Context, name string, progress func(string)) error {
	remote := b.RemoteRef(name)
	if remote == "" {
		return nil
	}
	if progress == nil {
		progress = func(string) {}
	}
	defer b.tags.lock(remote)()
	if err := b.eng.ImageTag(ctx, name, remote); err != nil {
		return err
	}
	// The remote name is only the push's: the local image keeps one name.
	defer b.untag(remote)
	progress("pushing " + name + " to " + remote)
	if err := b.eng.ImagePush(ctx, remote, progress); err != nil {
		return fmt.Errorf("publish %s: %w", name, err)
	}
	b.log.Info("image published", "image", name, "remote", remote)
	return nil
}

// Unpublish deletes the registry's copy of ref (a snapshot bothy made)
// when there is one; a copy the registry lacks is no error, nor is one a
// registry that allows no deletes keeps (logged).
func (b *Builder) Unpublish(ctx context.Context, ref string) error {
	remote := b.RemoteRef(normalize(ref))
	if remote == "" {
		return nil
	}
	// The copy with the agent is named after the image's digest: read
	// it before the image goes.
	carrier, err := b.carrierOf(ctx, remote)
	if err == nil {
		err = b.remote.delete(ctx, remote)
	}
	if err == nil && carrier != "" {
		err = b.remote.delete(ctx, carrier)
	}
	if errors.Is(err, errNoDeletes) {
		// Nothing will ever delete it here: the registry's own clean-up
		// must (its operator's to set up).
		b.log.Warn("the registry keeps a deleted snapshot's image: it does not allow deletes", "remote", remote, "err", err)
		return nil
	} else if err != nil {
		return fmt.Errorf("delete %s from the registry: %w", remote, err)
	}
	b.log.Info("image deleted from the registry", "image", ref, "remote", remote)
	return nil
}

// fetch pulls name's copy from the registry and names it name; false when
// there is no registry, bothy did not make name, or the registry lacks it.
func (b *Builder) fetch(ctx context.Context, name string, progress func(string)) bool {
	remote := b.RemoteRef(name)
	if remote == "" {
		return false
	}
	defer b.tags.lock(remote)()
	if err := b.eng.ImagePull(ctx, remote, progress); err != nil {
		b.log.Debug("image not in the registry", "image", name, "remote", remote, "err", err)
		return false
	}
	defer b.untag(remote)
	if err := b.eng.ImageTag(ctx, remote, name); err != nil {
		b.log.Warn("name a fetched image", "image", name, "err", err)
		return false
	}
	b.log.Info("image fetched from the registry", "image", name, "remote", remote)
	return true
}

// untag removes the local name remote, which the image also has under
// another name.
// tagLocks serialises the uses of one remote name in the engine: a push
// and a pull each give an image that name for a moment and take it away
// after, and two at once (a warm-up and a sandbox's create publishing the
// same image) would take it away under each other.
type tagLocks struct {
	mu sync.Mutex
	m  map[string]*tagLock
}

type tagLock struct {
	sync.Mutex
	users int
}

// lock takes name's lock, and returns its release.
func (l *tagLocks) lock(name string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*tagLock{}
	}
	t := l.m[name]
	if t == nil {
		t = &tagLock{}
		l.m[name] = t
	}
	t.users++
	l.mu.Unlock()
	t.Lock()
	return func() {
		t.Unlock()
		l.mu.Lock()
		if t.users--; t.users == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
}

func (b *Builder) untag(remote string) {
	if err := b.eng.ImageRemove(context.WithoutCancel(b.life), remote); err != nil {
		b.log.Debug("untag", "image", remote, "err", err)
	}
}
