package wire

// CPUUsage answers op "cpu": the CPU time the sandbox's processes have used,
// the agent's own left out.
type CPUUsage struct {
	UsageNs int64  `json:"usage_ns"`
	Error   string `json:"error,omitempty"`
}

// Stats answers op "stats": what the sandbox uses, from its cgroup.
type Stats struct {
	// CPUNs is the CPU time of all the sandbox's processes, the agent's
	// included.
	CPUNs int64 `json:"cpu_ns"`
	// MemUsed is the memory charged to the sandbox, MemCache the part of it
	// that is page cache, MemLimit its limit (0: none found).
	MemUsed  int64  `json:"mem_used"`
	MemCache int64  `json:"mem_cache"`
	MemLimit int64  `json:"mem_limit"`
	Error    string `json:"error,omitempty"`
}
