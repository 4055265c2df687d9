package orchestrator

import (
	"context"
)

// EngineStatus is what the orchestrator reports of its container engine.
type EngineStatus struct {
	Version     string
	APIVersion  string
	UsernsRemap bool
	CgroupV2    bool
	// DiskLimits names how the engine bounds a sandbox's disk; empty when
	// it cannot.
	DiskLimits string
}

// Engine asks the container engine how it is.
func (o *Orchestrator) Engine(ctx context.Context) (EngineStatus, error) {
	info, err := o.rt.Info(ctx)
	if err != nil {
		return EngineStatus{}, err
	}
	return EngineStatus{Version: info.Version, APIVersion: info.APIVersion, UsernsRemap: info.UsernsRemap,
		CgroupV2: info.CgroupV2, DiskLimits: info.DiskLimits}, nil
}
