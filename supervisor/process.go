//go:build linux

package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tendinit/tend/config"
	"github.com/tendinit/tend/unit/helper"
)

// processOf is what a service's runs get set before their exec.
func processOf(c config.Service) helper.Process {
	p := helper.Process{Umask: c.Umask, UmaskSet: c.Umask >= 0, Nice: c.Nice, NiceSet: c.NiceSet, NoNewPrivs: c.NoNewPrivs}
	for _, r := range c.Rlimits {
		p.Rlimits = append(p.Rlimits, helper.Rlimit{Resource: r.Resource, Cur: r.Cur, Max: r.Max})
	}
	return p
}

// checkProcess refuses, before anything starts, the settings a run could
// not get: a limit above tend's own hard one or a nice value below tend's
// need root, in the helper that sets them (the trampoline runs as root;
// the subreaper helper already as the service's user); and they need the
// unit helper's binary.
func (l *loop) checkProcess(c config.Service, hasUser bool) error {
	if !processOf(c).Set() {
		return nil
	}
	if l.helperExe == "" {
		return fmt.Errorf("umask, nice, rlimits and no_new_privs are set by tend's unit helper, and %s cannot be executed", helper.Exe)
	}
	track, _ := l.resolveTrack(c.Track)
	// The helper that sets them: the trampoline, with tend's rights; the
	// subreaper helper of a service with a user, with the user's.
	asUser := track == config.TrackSubreaper && hasUser
	why := func(capName string) string {
		if asUser {
			return "the subreaper helper runs as the service's user (track = \"group\" or \"cgroup\" sets them with tend's rights)"
		}
		return "tend lacks " + capName + " (container runtimes drop it by default)"
	}
	for _, r := range c.Rlimits {
		var own unix.Rlimit
		if err := unix.Getrlimit(r.Resource, &own); err != nil {
			return fmt.Errorf("rlimits: %s: %w", r.Name, err)
		}
		if r.Max > own.Max && (asUser || !hasCap(capSysResource)) {
			return fmt.Errorf("rlimits: %s: hard limit %s is above tend's own %s, which only CAP_SYS_RESOURCE may raise: %s",
				r.Name, limitText(r.Max), limitText(own.Max), why("CAP_SYS_RESOURCE"))
		}
	}
	if c.NiceSet {
		cur, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
		// getpriority(2) returns 20 - nice.
		if err == nil && c.Nice < 20-cur && (asUser || !hasCap(capSysNice)) {
			return fmt.Errorf("nice: %d is below tend's own %d, which only CAP_SYS_NICE may lower: %s", c.Nice, 20-cur, why("CAP_SYS_NICE"))
		}
	}
	return nil
}

// Capabilities of capabilities(7).
const (
	capSysNice     = 23
	capSysResource = 24
)

// hasCap reports whether tend's effective set holds capability n.
func hasCap(n uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			var eff uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &eff); err != nil {
				return false
			}
			return eff&(1<<n) != 0
		}
	}
	return false
}

func limitText(v uint64) string {
	if v == config.Unlimited {
		return "unlimited"
	}
	return fmt.Sprint(v)
}

// readEnvFile reads KEY=VALUE lines: blank lines and lines starting with #
// are skipped, "export " is allowed before a key, a value in matching
// single or double quotes loses them. A missing file is an error unless
// optional; a line that is not KEY=VALUE is an error naming it.
func readEnvFile(path string, optional bool) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE", path, n)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, k+"="+v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
