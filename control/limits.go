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

	// ReservedConnections is how many connections root and tend's uid may
	// open beyond Config.MaxConnections ([control] reserved_connections).
	ReservedConnections int
	// What one request may carry ([control] max_body_bytes, max_url_bytes,
	// max_header_bytes); 0 is the default (config never allows 0).
	MaxBodyBytes, MaxURLBytes, MaxHeaderBytes int
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
		ReservedConnections: c.ReservedConnections,
		MaxBodyBytes:        c.MaxBodyBytes, MaxURLBytes: c.MaxURLBytes, MaxHeaderBytes: c.MaxHeaderBytes,
	}
}

// withRequestDefaults fills in the request size limits left 0.
func (l Limits) withRequestDefaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = config.DefaultMaxBodyBytes
	}
	if l.MaxURLBytes <= 0 {
		l.MaxURLBytes = config.DefaultMaxURLBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = config.DefaultMaxHeaderBytes
	}
	return l
}

// DefaultLimits are the limits of an empty config.
func DefaultLimits() Limits {
	cfg, err := config.Parse(nil, "defaults")
	if err != nil {
		panic("config: an empty file is refused: " + err.Error())
	}
	return LimitsOf(cfg.Control, cfg.Jobs)
}
