//go:build linux

package control

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/tendinit/tend/api"
)

// The content types of GET /v1/metrics: Prometheus' text format, and
// OpenMetrics for a client that asks for it in Accept.
const (
	promTextType    = "text/plain; version=0.0.4; charset=utf-8"
	openMetricsType = "application/openmetrics-text; version=1.0.0; charset=utf-8"
)

// jobReasons and serviceStates are every value their labels take, so that
// each series exists from the start (a counter that appears only once it
// is 1 loses its first increase to rate()).
var (
	jobReasons = []string{api.ReasonExited, api.ReasonSignaled, api.ReasonTimeout, api.ReasonKilled,
		api.ReasonShutdown, api.ReasonExecFailed, api.ReasonDisconnected, api.ReasonOOM}
	serviceStates = []string{"pending", "starting", "running", "backoff", "stopping", "stopped", "failed"}
)

// metrics answers GET /v1/metrics: tend's counters and gauges in the
// Prometheus text format (OpenMetrics when Accept asks for it). Job counts
// are of every uid's jobs, as in GET /v1/status's counters: no record.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request, c *conn) {
	open := strings.Contains(r.Header.Get("Accept"), "application/openmetrics-text")
	m := s.cfg.Services.Metrics()
	var b metricsWriter
	b.open = open
	b.family("tend_reaped", "counter", "Children tend reaped (wait4), orphans included.")
	b.sample("tend_reaped", nil, m.Reaped)
	b.family("tend_orphans_reaped", "counter", "Reaped children that were nobody's: orphans reparented to tend.")
	b.sample("tend_orphans_reaped", nil, m.Orphans)
	b.family("tend_jobs_started", "counter", "Jobs started.")
	b.sample("tend_jobs_started", nil, m.Jobs.JobsStarted)
	b.family("tend_jobs_ended", "counter", "Jobs ended, by reason.")
	for _, reason := range jobReasons {
		b.sample("tend_jobs_ended", []string{"reason", reason}, m.JobsEnded[reason])
	}
	b.family("tend_jobs", "gauge", "Jobs queued and running now.")
	b.sample("tend_jobs", []string{"state", "queued"}, uint64(m.Jobs.JobsQueued))
	b.sample("tend_jobs", []string{"state", "running"}, uint64(m.Jobs.JobsRunning))
	b.family("tend_job_records", "gauge", "Exit records kept ([jobs] keep, max_records).")
	b.sample("tend_job_records", nil, uint64(m.Jobs.JobsKept))
	b.family("tend_service_state", "gauge", "1 for the state each service is in, 0 for the others.")
	for _, v := range m.Services {
		for _, st := range serviceStates {
			b.sample("tend_service_state", []string{"service", v.Name, "state", st}, boolVal(v.State == st))
		}
	}
	b.family("tend_service_ready", "gauge", "1 when the service is ready.")
	for _, v := range m.Services {
		b.sample("tend_service_ready", []string{"service", v.Name}, boolVal(v.Ready))
	}
	b.family("tend_service_runs", "counter", "Runs of each service started (the first and every restart).")
	for _, v := range m.Services {
		b.sample("tend_service_runs", []string{"service", v.Name}, uint64(v.Runs))
	}
	b.family("tend_service_check_failing", "gauge", "1 while a [[service.check]] is failing.")
	for _, v := range m.Services {
		for _, ch := range v.Checks {
			b.sample("tend_service_check_failing", []string{"service", v.Name, "check", ch.Name}, boolVal(ch.State == api.CheckFailing))
		}
	}
	b.family("tend_zombie_parents", "gauge", "Live processes holding zombies they never waited for (PID 1 cannot reap those).")
	b.sample("tend_zombie_parents", nil, uint64(m.ZombieParents))
	b.family("tend_zombies_held", "gauge", "Zombies held by live parents, in all.")
	b.sample("tend_zombies_held", nil, uint64(m.Zombies))
	b.family("tend_zombies_held_by", "gauge", "Zombies held by each live parent (the 20 holding the most).")
	for _, z := range m.ZombieTop {
		b.sample("tend_zombies_held_by", []string{"pid", strconv.Itoa(z.PID), "command", z.Command, "owner", z.Owner}, uint64(z.Zombies))
	}
	b.family("tend_stopping", "gauge", "1 once tend is shutting down.")
	b.sample("tend_stopping", nil, boolVal(m.Stopping))
	rss, threads := selfStatus()
	b.family("tend_resident_anon_bytes", "gauge", "tend's own anonymous resident memory (RssAnon).")
	b.sample("tend_resident_anon_bytes", nil, rss)
	b.family("tend_threads", "gauge", "tend's own OS threads.")
	b.sample("tend_threads", nil, threads)
	b.family("tend_open_fds", "gauge", "tend's own open file descriptors.")
	b.sample("tend_open_fds", nil, selfFDs())
	if open {
		b.buf.WriteString("# EOF\n")
	}
	ct := promTextType
	if open {
		ct = openMetricsType
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.buf.Bytes())
}

// metricsWriter writes families and samples in either format.
type metricsWriter struct {
	buf  bytes.Buffer
	open bool
	typ  string // of the current family
}

func (b *metricsWriter) family(name, typ, help string) {
	b.typ = typ
	if !b.open && typ == "counter" {
		name += "_total" // the text format names the counter by its sample
	}
	fmt.Fprintf(&b.buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one sample; labels are name, value pairs.
func (b *metricsWriter) sample(name string, labels []string, v uint64) {
	b.buf.WriteString(name)
	if b.typ == "counter" {
		b.buf.WriteString("_total")
	}
	if len(labels) > 0 {
		b.buf.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.buf.WriteByte(',')
			}
			b.buf.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		}
		b.buf.WriteByte('}')
	}
	b.buf.WriteString(" " + strconv.FormatUint(v, 10) + "\n")
}

// escapeLabel escapes a label value as both formats want.
func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func boolVal(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// selfStatus reads RssAnon (bytes) and Threads from /proc/self/status.
func selfStatus() (rss, threads uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(fs[0], 10, 64)
		switch k {
		case "RssAnon":
			rss = n << 10 // kB
		case "Threads":
			threads = n
		}
	}
	return rss, threads
}

// selfFDs counts /proc/self/fd (less the one reading it).
func selfFDs() uint64 {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return uint64(max(len(names)-1, 0))
}
