//go:build linux

package client

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tendinit/tend/api"
	"github.com/tendinit/tend/config"
)

// printStatus writes the services, the jobs and the counters as tables.
func printStatus(w io.Writer, s api.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SERVICE\tSTATE\tPID\tRUNS\tLAST\tWHY\tREADY\tCRITICAL\tSINCE\tTRACK\tPROCS\tLEFTOVERS\tLIMITS\n")
	for _, v := range s.Services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.Name, v.State, optInt(v.PID), v.Runs,
			optInt(v.LastCode), orDash(v.LastReason), yesNo(v.Ready), yesNo(v.Critical), age(v.Since), orDash(v.Track), optInt(v.Processes),
			v.LeftoversKilled, limitsText(v.MemoryMax, v.PidsMax))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range s.Services { // what does not fit in a column
		if v.StatusText != "" || v.NotifyStopping {
			stopping := map[bool]string{true: " (STOPPING=1)"}[v.NotifyStopping]
			if err := printf(w, "%s: status %q%s\n", v.Name, v.StatusText, stopping); err != nil {
				return err
			}
		}
		for _, c := range v.Checks {
			last := ""
			if c.LastError != "" {
				last = ": " + c.LastError
			}
			if err := printf(w, "%s: check %s (%s) %s, %d failures in a row, on failure %s%s\n", v.Name, c.Name, c.Probe,
				c.State, c.Failures, c.OnFailure, last); err != nil {
				return err
			}
		}
	}
	if err := printf(w, "\n"); err != nil {
		return err
	}
	if err := printJobs(w, s.Jobs); err != nil {
		return err
	}
	if s.JobsNext != "" {
		if err := printf(w, "(the newest %d jobs: tend jobs lists them all)\n", len(s.Jobs)); err != nil {
			return err
		}
	}
	c := s.Counters
	return printf(w, "\ntend %s pid %d%s: reaped %d (orphans %d), jobs started %d, running %d, queued %d, exit records %d\n",
		s.Version, s.PID, map[bool]string{true: " (stopping)"}[s.Stopping], c.Reaped, c.OrphansReaped,
		c.JobsStarted, c.JobsRunning, c.JobsQueued, c.JobsKept)
}

// printZombies writes the parents holding zombies as a table.
func printZombies(w io.Writer, zs []api.ZombieParent) error {
	if len(zs) == 0 {
		return printf(w, "no process holds zombies\n")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tUID\tOWNER\tZOMBIES\tFIRST SEEN\tCOMMAND\n")
	for _, z := range zs {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\t%s\n", z.PID, z.UID, orDash(z.Owner), z.Zombies, age(z.FirstSeen), z.Command)
	}
	return tw.Flush()
}

// printJobs writes jobs as a table.
func printJobs(w io.Writer, jobs []api.Job) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "JOB\tSTATE\tPID\tEXIT\tREASON\tAGE\tLIMITS\tLABELS\tCOMMAND\n")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.State, optInt(j.PID), jobEnd(j),
			cmp.Or(j.Reason, "-"), age(j.QueuedAt), limitsText(j.MemoryMax, j.PidsMax), labelText(j.Labels), strings.Join(j.Argv, " "))
	}
	return tw.Flush()
}

// limitsText shows a unit's limits ("memory=32M pids=20"), "-" for none.
func limitsText(memory, pids int64) string {
	var parts []string
	if memory != config.NoLimit {
		parts = append(parts, "memory="+config.FormatBytes(memory))
	}
	if pids != config.NoLimit {
		parts = append(parts, "pids="+strconv.FormatInt(pids, 10))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// formatEvent is one event on one line.
func formatEvent(e api.Event) string {
	line := e.Time.Format(time.RFC3339Nano) + " " + e.Type
	switch {
	case e.Job != nil:
		j := e.Job
		line += fmt.Sprintf(" job=%s pid=%s state=%s", j.ID, optInt(j.PID), j.State)
		if j.State == api.StateExited {
			line += fmt.Sprintf(" exit=%s reason=%s", jobEnd(*j), j.Reason)
		}
	case e.Service != nil:
		v := e.Service
		line += fmt.Sprintf(" service=%s pid=%s state=%s runs=%d", v.Name, optInt(v.PID), v.State, v.Runs)
		if v.LastReason != "" {
			line += " last=" + v.LastReason
		}
		for _, c := range v.Checks {
			if c.Name == e.Check {
				line += fmt.Sprintf(" check=%s check_state=%s failures=%d", c.Name, c.State, c.Failures)
			}
		}
	case e.Zombie != nil:
		z := e.Zombie
		line += fmt.Sprintf(" pid=%d command=%s owner=%s zombies=%d", z.PID, z.Command, orDash(z.Owner), z.Zombies)
	case e.Type == api.EventOrphanReaped:
		line += fmt.Sprintf(" pid=%d code=%s", e.PID, optInt(e.Code))
	}
	return line
}

// jobEnd is how an exited job ended: its code or its signal's name.
func jobEnd(j api.Job) string {
	switch {
	case j.ExitCode != nil:
		return strconv.Itoa(*j.ExitCode)
	case j.Signal != nil:
		return *j.Signal
	}
	return "-"
}

func optInt(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}

func yesNo(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }

// age is how long ago t was, to the second ("-" for the zero time).
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

// labelText is k=v,k=v in key order, or "-".
func labelText(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

// printf is fmt.Fprintf for callers that only need the error.
func printf(w io.Writer, format string, args ...any) error {
	_, err := fmt.Fprintf(w, format, args...)
	return err
}

// orDash is s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
