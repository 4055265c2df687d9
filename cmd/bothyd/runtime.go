package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
	"github.com/bothy/bothy/runtime/kubernetes"
)

// sandboxRuntime is where sandboxes run (-runtime), and how their images
// are made to exist there. Runs and apps stay on the local engine.
func sandboxRuntime(ctx context.Context, cfg config, eng *docker.Docker, b *images.Builder, log *slog.Logger) (orchestrator.Runtime, orchestrator.Images, error) {
	if cfg.Runtime != "kubernetes" {
		return eng, b, nil
	}
	// The cluster pulls every image from the registry: the agent's, and
	// the copy of each image a sandbox is made of.
	agent, err := b.AgentImage(ctx, cfg.AgentBinary)
	if err != nil {
		return nil, nil, err
	}
	if err := b.Publish(ctx, agent, nil); err != nil {
		return nil, nil, err
	}
	k, err := kubernetes.New(ctx, kubernetes.Config{
		Kubeconfig: cfg.Kubeconfig, Namespace: cfg.KubeNamespace, AgentImage: b.RemoteRef(agent),
		RuntimeClassName: cfg.KubeClass, UserNS: cfg.KubeUserNS, ImageRef: b.RemoteRef, WithAgent: b.WithAgent,
	}, log)
	if err != nil {
		return nil, nil, err
	}
	info, err := k.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes runtime: %w", err)
	}
	log.Info("sandboxes run on kubernetes", "version", info.Version, "namespace", cfg.KubeNamespace, "agent_image", b.RemoteRef(agent))
	return k, &publishing{b: b, done: map[string]string{}}, nil
}

// publishing makes an image exist locally, as the builder does, and then
// in the registry, where the cluster pulls it.
type publishing struct {
	b  *images.Builder
	mu sync.Mutex
	// done is the image ID last published under each name.
	done map[string]string
}

func (p *publishing) EnsureFor(ctx context.Context, owner, ref string, progress func(string)) (runtime.Image, error) {
	img, err := p.b.EnsureFor(ctx, owner, ref, progress)
	if err != nil {
		return img, err
	}
	p.mu.Lock()
	published := p.done[ref] == img.ID
	p.mu.Unlock()
	if published || p.b.RemoteRef(ref) == "" {
		return img, nil
	}
	if err := p.b.Publish(ctx, ref, progress); err != nil {
		return img, err
	}
	p.mu.Lock()
	p.done[ref] = img.ID
	p.mu.Unlock()
	return img, nil
}
