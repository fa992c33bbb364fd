//go:build linux

package control

import "github.com/tendinit/tend/config"

// Limits are the settings of [jobs] and [control] that the server enforces
// itself (config/ has their defaults and validates them). Every refusal
// names the setting.
type Limits struct {
	// What one POST /v1/jobs may carry ([jobs] max_labels and the rest).
	MaxLabels, MaxLabelKeyBytes, MaxLabelValueBytes int
	MaxArgv, MaxArgvBytes, MaxEnv, MaxEnvBytes      int
	MaxDirBytes                                     int

	PageSize, MaxPageSize                int // jobs in a page of GET /v1/jobs and /v1/status
	MaxSubscribers, MaxSubscribersPerUID int // GET /v1/events streams open at once
	MaxParkedFDs, MaxParkedFDsPerUID     int // passed fds waiting for their request
}

// LimitsOf takes the limits from a config's [control] and [jobs].
func LimitsOf(c config.Control, j config.Jobs) Limits {
	return Limits{
		MaxLabels: j.MaxLabels, MaxLabelKeyBytes: j.MaxLabelKeyBytes, MaxLabelValueBytes: j.MaxLabelValueBytes,
		MaxArgv: j.MaxArgv, MaxArgvBytes: j.MaxArgvBytes, MaxEnv: j.MaxEnv, MaxEnvBytes: j.MaxEnvBytes,
		MaxDirBytes: j.MaxDirBytes,
		PageSize:    c.PageSize, MaxPageSize: c.MaxPageSize,
		MaxSubscribers: c.MaxSubscribers, MaxSubscribersPerUID: c.MaxSubscribersPerUID,
		MaxParkedFDs: c.MaxParkedFDs, MaxParkedFDsPerUID: c.MaxParkedFDsPerUID,
	}
}

// DefaultLimits are the limits of an empty config.
func DefaultLimits() Limits {
	cfg, err := config.Parse(nil, "defaults")
	if err != nil {
		panic("config: an empty file is refused: " + err.Error())
	}
	return LimitsOf(cfg.Control, cfg.Jobs)
}
