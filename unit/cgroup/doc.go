//go:build linux

// Package cgroup gives each unit (a service run or a job) its own cgroup v2
// directory, so that tend can name, count, signal and kill every process of a
// unit however it forks or setsids (DESIGN.md §1.11), and learn that a unit
// is empty from an inotify event instead of polling (§1.8).
//
// # Layout
//
// Find locates tend's own cgroup (the "0::" line of /proc/self/cgroup) in a
// writable cgroup2 mount. That directory is the base; tend never leaves a
// process in it and never works above it:
//
//	<base>/tend        a leaf holding tend's own processes
//	<base>/<unit>-<n>  one directory per unit, made by Hierarchy.New
//
// The leaf exists because of the no-internal-processes rule (cgroups(7),
// cgroup-v2.rst "No Internal Process Constraint"): a non-root cgroup with
// processes of its own cannot enable controllers in cgroup.subtree_control,
// and one whose subtree_control is set refuses new processes with EBUSY. So
// setup moves every process out of the base first, then enables the
// controllers tend wants (memory, pids) that the parent granted it. Enabling
// is best effort: on a hybrid host (cgroup v1 holding memory and pids, as on
// the CI machines) the v2 tree has none of them, and tend still gets process
// tracking, cgroup.kill and cgroup.events, which need no controller.
//
// A container runtime's exec (docker exec) writes into the container's cgroup,
// that is tend's base; once tend has set subtree_control there, the kernel
// refuses it with EBUSY unless the runtime falls back to a child cgroup.
//
// # Who may call what
//
// The package starts no processes and reaps none: a child is put into a unit
// at fork (clone3 CLONE_INTO_CGROUP, through SysProcAttr.UseCgroupFD and
// Group.FD), so there is no window in which it runs outside the unit, and
// tend's one reaper (DESIGN.md §1.1) still reaps it. Signal and Kill are the
// supervisor loop's, the one goroutine that signals children (§1.9); Signal
// goes through checked pidfds so that it never reaches a recycled pid (§1.3).
// A Watcher owns its inotify fd in one goroutine of its own.
//
// # Where clone3 is filtered
//
// Docker's and Podman's default seccomp profiles answer clone3 with ENOSYS,
// and Go's UseCgroupFD does not fall back to clone: the start fails.
// Clone3Usable probes once, without forking, so the supervisor can fall back
// to a unit helper (unit/helper) that joins the cgroup itself before exec.
//
// # cgroup v1
//
// Under v1 there is no per-unit tracking here. Where the v2 tree lacks the
// memory or pids controller (a hybrid host binds them to v1), FindV1 finds
// tend's own cgroup in the v1 hierarchy of that controller and V1.New makes
// a directory per unit for its limits (memory.limit_in_bytes, pids.max);
// the unit's process joins it by itself before exec (unit/helper), and
// V1OOMKills reads its OOM kill counter so that tend can report OOM kills.
package cgroup
