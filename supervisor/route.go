//go:build linux

package supervisor

import (
	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/signals"
)

const exitSignalOffset = 128

// onSignal routes a signal sent to tend.
//
// Both modes first apply -r: S is forwarded as R wherever S would be
// forwarded; R = 0 drops S before anything else, so it is forwarded to
// nobody and starts nothing (no shutdown, no reload). S keeps its own
// role otherwise: a TERM or INT rewritten to another signal still starts
// the shutdown.
//
// Init mode (tini's rules): every forwardable signal goes to the main
// process (its group with -g), rewritten. A TERM or INT that is forwarded
// also starts the shutdown, the forwarded signal being the main process's
// stop.
//
// Supervisor mode: each service's `signals` map comes first, keyed by the
// signal tend got (a 0 value: not forwarded to it). Otherwise TERM and INT
// start the shutdown (each service then gets its stop_signal, so rewriting
// them to another signal changes nothing here), and every other forwardable
// signal goes, rewritten, to the main service if there is one, else only
// to the services that list it.
func (l *loop) onSignal(sig unix.Signal) {
	if !signals.Forwardable(sig) {
		return
	}
	out := sig
	if to, ok := l.cfg.Rewrite[sig]; ok {
		out = to
	}
	if out == 0 {
		l.log.Debug("signal dropped by rewrite", "sig", signals.Name(sig))
		return
	}
	stop := sig == unix.SIGTERM || sig == unix.SIGINT
	if l.cfg.Init {
		if m := l.main; m != nil && m.unit != nil {
			if stop && l.jobsConfig().Stop == config.JobsStopFirst && l.jobs.Running() > 0 && !l.sd.active {
				// The jobs go first: the main process gets this signal
				// as its stop once they have ended.
				m.stopWith = out
			} else {
				l.log.Info("forwarding signal", "sig", signals.Name(out), "service", m.cfg.Name, "pid", m.unit.main)
				l.signalService(m, out, "forward")
				if stop {
					m.stopSent = true
				}
			}
		}
		if stop {
			l.shutdown("received "+signals.Name(sig), exitSignalOffset+int(sig), true)
		}
		return
	}
	if r := l.cfg.File.Control.ReloadOn; r != 0 && sig == r {
		l.log.Info("reloading the config file", "sig", signals.Name(sig))
		l.reloadAsync()
		return
	}
	for _, s := range l.svcs {
		to, mapped := s.cfg.Signals[sig]
		switch {
		case mapped:
		case stop:
			continue // the shutdown stops it with its stop_signal
		case s == l.main:
			to = out
		default:
			continue // services get only the signals they list
		}
		if to == 0 || s.unit == nil {
			continue
		}
		l.log.Info("forwarding signal", "sig", signals.Name(to), "service", s.cfg.Name, "pid", s.unit.main)
		l.signalService(s, to, "forward")
	}
	if stop {
		l.shutdown("received "+signals.Name(sig), exitSignalOffset+int(sig), l.main != nil)
	}
}
