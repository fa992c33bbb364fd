#!/usr/bin/env python3
"""Fake hermes gateway (docs/WORKLOAD.md): a dispatcher that starts workers
every tick, and its own children whose exit codes it asserts.

Reap modes (--mode):
  none         Popen(start_new_session=True), handle kept, never waited (the bug)
  wildcard     + a waitpid(-1, WNOHANG) loop (the usual fix: steals statuses)
  owned        each worker reaped by its own pid (Popen.poll)
  shim         HERMES_BIN is the tend spawn shim; the proxies reaped by pid
  api          workers started through tend's control API (tend.Client)
  hermes       as hermes-agent's kanban dispatcher: the Popen handle dropped
               (CPython's subprocess._cleanup reaps it at a later Popen and
               throws the status away), upstream's waitpid(-1) reap at the
               top of each tick into an exit registry, a dead pid classified
               from that registry or booked as a crash ("pid N not alive")
  popen        hermes with the one-line change: tend.Popen for the worker,
               the registry fed by tend.on_exit, the reap loop deleted (kept
               when tend is not there: tend.Popen is then subprocess.Popen)
  hermes-shim  hermes with HERMES_BIN at the tend spawn shim
Every mode also runs the gateway's other subprocess traffic (tool calls,
git, ...): `true` every --housekeeping s.
Signals: SIGTERM drains --drain s, then exit 1; SIGUSR1 exits 75;
--fatal-config exits 78 at once. The report (JSON) is rewritten every tick
to $WL_RESULTS/gateway.json.
"""

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HERMES_MODES = ("hermes", "popen", "hermes-shim")
OUTCOMES = [("done", 65), ("unfinished", 8), ("ratelimit", 5), ("config", 2), ("crash", 5),
            ("sigkill", 5), ("hang", 5), ("ignore_term", 5)]


def status_of_returncode(rc):
    return "sig%d" % -rc if rc < 0 else rc


class Gateway:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.results = os.environ["WL_RESULTS"]
        self.lock = threading.Lock()  # guards the fields below
        self.workers = {}  # token -> {"pid", "outcome", "job", "t"}
        self.by_pid = {}  # pid -> token (wildcard reaping)
        self.handles = {}  # token -> Popen (kept: a dropped Popen is reaped by subprocess itself)
        self.observed = {}  # token -> status as the gateway learnt it
        self.done_in_db = set()  # tokens the workers marked ended
        self.asserts = {"pipe_ok": 0, "pipe_fail": 0, "exit7_ok": 0, "exit7_fail": 0}
        self.failures = []
        self.counters = {"started": 0, "queue_full": 0, "spawn_errors": 0, "foreign_reaped": 0,
                         "crashes_booked": 0, "late_exits": 0, "tick_restarts": 0}
        self.exit_records = {}  # hermes' _recent_worker_exits: pid -> (raw wait status, time)
        self.running_tasks = {}  # hermes modes: token -> (pid, started), until classified
        self.stopping = False
        self.exit_code = None
        self.exited_at = None
        self.seq = 0
        self.db_offset = 0
        self.tend = None
        self.reap_loop = args.mode in ("hermes", "hermes-shim")
        if args.mode in ("api", "popen"):
            sys.path.insert(0, args.tend_dir)
            import tend
            self.tendmod = tend
            self.tend = tend.Client(timeout=10)
            self.tend_errors = (tend.TendError,)
        if args.mode == "popen":
            self.tend_available = self.tendmod.available()
            # Without tend, tend.Popen is subprocess.Popen: keep the reap loop.
            self.reap_loop = not self.tend_available
            if self.tend_available:
                self.tendmod.on_exit(lambda job: self.record_exit(job.pid, job.wait_status))

    # --- dispatching -------------------------------------------------
    def pick_outcome(self):
        x = self.rng.uniform(0, 100)
        for name, pct in OUTCOMES:
            x -= pct
            if x < 0:
                return name
        return "done"

    def pick_life(self):
        if self.rng.random() < 0.01:
            return self.rng.uniform(30, 120) * self.a.long_scale
        return min(60.0, math.exp(self.rng.gauss(math.log(self.a.median_life), 0.8)))

    def poisson(self, lam):
        n, p, limit = 0, 1.0, math.exp(-lam)
        while True:
            p *= self.rng.random()
            if p < limit:
                return n
            n += 1

    def running(self):
        now = time.time()
        return sum(1 for tok, w in self.workers.items()
                   if tok not in self.observed and tok not in self.done_in_db and now - w["t"] < 180)

    def tick(self):
        self.read_db()
        if self.a.mode in HERMES_MODES:
            self.hermes_tick()
        if self.stopping:
            return
        n = self.rng.randint(3, 6) if self.rng.random() < self.a.burst else self.poisson(self.a.rate)
        with self.lock:
            n = min(n, self.a.max_running - self.running())
        for _ in range(max(0, n)):
            self.start_worker()

    def start_worker(self):
        self.seq += 1
        token = "t-%d-%d" % (os.getpid(), self.seq)
        outcome, life = self.pick_outcome(), self.pick_life()
        ws = os.path.join(self.results, "ws")
        os.makedirs(ws, exist_ok=True)
        argv = [self.a.worker, token, outcome, "%.3f" % life, str(self.rng.randrange(1 << 30))]
        env = dict(os.environ, HERMES_KANBAN_TASK=token)
        log = open(os.path.join(ws, "task.log"), "ab")
        p = None
        try:
            if self.a.mode == "api":
                job, pid = self.spawn_api(argv, ws, env, log, token)
                if job is None:
                    return
            else:
                if self.a.mode in ("shim", "hermes-shim"):
                    env["HERMES_REAL"] = argv[0]
                    argv = [self.a.hermes_bin] + argv[1:]
                popen = self.tendmod.Popen if self.a.mode == "popen" else subprocess.Popen
                p = popen(argv, cwd=ws, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          env=env, start_new_session=True)
                job, pid = None, p.pid
        except OSError as e:
            self.counters["spawn_errors"] += 1
            self.failures.append("spawn: %s" % e)
            return
        finally:
            log.close()
        with self.lock:
            self.workers[token] = {"pid": pid, "outcome": outcome, "job": job, "t": time.time()}
            self.by_pid[pid] = token
            if self.a.mode in HERMES_MODES:
                self.running_tasks[token] = (pid, time.time())  # the pid is all hermes keeps
            elif self.a.mode != "api":
                self.handles[token] = p
            self.counters["started"] += 1
        del p  # hermes modes: the handle is dropped here

    def spawn_api(self, argv, ws, env, log, token):
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            job = self.tend.spawn(argv, cwd=ws, env=env, labels={"task": token},
                                  stdin=devnull, stdout=log, stderr=log)
        except self.tend_errors as e:
            if getattr(e, "status", 0) == 429:
                self.counters["queue_full"] += 1
            else:
                self.counters["spawn_errors"] += 1
                self.failures.append("spawn: %s" % e)
            return None, None
        finally:
            os.close(devnull)
        threading.Thread(target=self.wait_job, args=(token, job["id"]), daemon=True).start()
        return job["id"], job.get("pid")

    def wait_job(self, token, job_id):
        while True:
            try:
                rec = self.tend.wait(job_id, timeout=60)
                break
            except self.tend_errors as e:
                if getattr(e, "status", 0):
                    self.failures.append("wait %s: %s" % (job_id, e))
                    return
                if self.exit_code is not None:
                    return
                time.sleep(0.5)
        if rec["exit_code"] is not None:
            st = rec["exit_code"]
        else:
            st = "sig%d" % signal.Signals[rec["signal"]].value
        with self.lock:
            self.observed[token] = st

    def read_db(self):
        """Reads the tasks the workers marked ended (the kanban DB)."""
        try:
            with open(os.path.join(self.results, "outcomes"), "rb") as f:
                f.seek(self.db_offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.db_offset += end
        for line in data[:end].splitlines():
            self.done_in_db.add(json.loads(line)["token"])

    # --- reaping -----------------------------------------------------
    def poll_owned(self):
        with self.lock:
            for token, p in list(self.handles.items()):
                rc = p.poll()
                if rc is not None:
                    self.observed[token] = status_of_returncode(rc)
                    del self.handles[token]

    def wildcard_loop(self):
        while self.exit_code is None:
            while True:
                try:
                    pid, ws = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                with self.lock:
                    token = self.by_pid.get(pid)
                    if token is None:
                        self.counters["foreign_reaped"] += 1
                    elif token not in self.observed:
                        sig = os.WTERMSIG(ws) if os.WIFSIGNALED(ws) else 0
                        self.observed[token] = "sig%d" % sig if sig else os.WEXITSTATUS(ws)
                        self.handles.pop(token, None)
            time.sleep(0.1)

    # --- hermes' bookkeeping (hermes_cli/kanban_db.py, as upstream) ------
    def record_exit(self, pid, raw_status):
        with self.lock:
            self.exit_records[pid] = (raw_status, time.time())

    def reap_worker_zombies(self):
        """Upstream's reap: every child this process has, whoever owns it."""
        while True:
            try:
                pid, ws = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.record_exit(pid, ws)

    def detect_crashed_workers(self):
        """A running task whose pid is dead: classified from the exit
        registry, or booked as a crash when the registry has nothing."""
        now = time.time()
        with self.lock:
            tasks = list(self.running_tasks.items())
        for token, (pid, started) in tasks:
            if now - started < self.a.crash_grace or pid_alive(pid):
                continue
            with self.lock:
                entry = self.exit_records.get(pid)
            if entry is None and self.a.mode == "popen" and self.tend_available:
                # The pid is gone a moment before its exit reached on_exit.
                job = self.tendmod.exit_of(pid)
                if job is not None:
                    entry = (job.wait_status, now)
                    self.counters["late_exits"] += 1
            if entry is None:
                st = "crash"  # "pid N not alive": hermes books a crash
                self.counters["crashes_booked"] += 1
            elif os.WIFSIGNALED(entry[0]):
                st = "sig%d" % os.WTERMSIG(entry[0])
            else:
                st = os.WEXITSTATUS(entry[0])
            with self.lock:
                self.observed[token] = st
                del self.running_tasks[token]

    def hermes_tick(self):
        """The dispatcher tick's bookkeeping: a tick that fails is logged and
        the next one runs (the gateway restarts its dispatcher tick)."""
        try:
            if self.reap_loop:
                self.reap_worker_zombies()
            self.detect_crashed_workers()
        except Exception as e:
            self.counters["tick_restarts"] += 1
            self.failures.append("dispatcher tick: %r" % e)

    def housekeeping(self):
        """The gateway's other subprocess traffic: every Popen() runs
        subprocess._cleanup, which reaps dropped handles."""
        while self.exit_code is None and self.a.housekeeping > 0:
            subprocess.run(["true"])
            time.sleep(self.a.housekeeping)

    # --- the gateway's own children -----------------------------------
    def expect(self, name, p, want, deadline):
        end = time.time() + deadline
        while p.poll() is None and time.time() < end:
            time.sleep(0.05)
        rc = p.returncode
        ok = rc == want
        with self.lock:
            self.asserts[name + ("_ok" if ok else "_fail")] += 1
            if not ok:
                self.failures.append("%s: exit status %r, want %d" % (name, rc, want))

    def own_children(self):
        pipe, pipe_started = None, 0.0
        next7 = time.time() + self.a.exit7_every
        while self.exit_code is None:
            now = time.time()
            if pipe is None:
                pipe = subprocess.Popen(["sh", "-c", "cat >/dev/null; exit 3"], stdin=subprocess.PIPE)
                pipe_started = now
            elif now - pipe_started >= self.a.pipe_restart or self.stopping:
                pipe.stdin.close()  # the server exits 3 on EOF
                self.expect("pipe", pipe, 3, 5)
                pipe = None
                if self.stopping:
                    return
            if now >= next7:
                next7 = now + self.a.exit7_every
                self.expect("exit7", subprocess.Popen(["sh", "-c", "exit 7"]), 7, 5)
            time.sleep(0.1)

    # --- report ------------------------------------------------------
    def report(self):
        with self.lock:
            rep = {"mode": self.a.mode, "pid": os.getpid(), "expected": {t: w["outcome"] for t, w in self.workers.items()},
                   "observed": dict(self.observed), "asserts": dict(self.asserts), "failures": self.failures[-50:],
                   "counters": dict(self.counters), "exit_code": self.exit_code, "exited_at": self.exited_at,
                   "stopping": self.stopping, "t": time.time()}
        tmp = os.path.join(self.results, "gateway.json.tmp")
        with open(tmp, "w") as f:
            json.dump(rep, f)
        os.rename(tmp, os.path.join(self.results, "gateway.json"))

    def run(self):
        stop_at = [None]

        def on_term(signum, frame):
            if not self.stopping:
                self.stopping = True
                stop_at[0] = time.time()

        def on_usr1(signum, frame):
            self.finish(75)

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGUSR1, on_usr1)
        if self.a.mode == "wildcard":
            threading.Thread(target=self.wildcard_loop, daemon=True).start()
        own = threading.Thread(target=self.own_children, daemon=True)
        own.start()
        threading.Thread(target=self.housekeeping, daemon=True).start()
        while True:
            self.tick()
            if self.a.mode in ("owned", "shim"):
                self.poll_owned()
            self.report()
            if self.stopping:
                own.join(timeout=max(0.0, self.a.drain - (time.time() - stop_at[0])))
                if time.time() - stop_at[0] >= self.a.drain:
                    self.finish(1)
                time.sleep(0.2)
            else:
                time.sleep(self.rng.uniform(self.a.tick_min, self.a.tick_max))

    def finish(self, code):
        self.exit_code = code
        self.exited_at = time.time()
        if self.a.mode in ("owned", "shim"):
            self.poll_owned()
        self.report()
        sys.stdout.flush()
        os._exit(code)


def pid_alive(pid):
    """hermes' _pid_alive: the pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split(":", 1)[1]
    except OSError:
        return False
    return True


MODES = ["none", "wildcard", "owned", "shim", "api", "hermes", "popen", "hermes-shim"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=MODES, default="none")
    ap.add_argument("--rate", type=float, default=0.8, help="mean workers started per tick (Poisson)")
    ap.add_argument("--burst", type=float, default=0.05, help="chance per tick of a burst of 3-6")
    ap.add_argument("--tick-min", type=float, default=0.5)
    ap.add_argument("--tick-max", type=float, default=1.0)
    ap.add_argument("--max-running", type=int, default=8)
    ap.add_argument("--median-life", type=float, default=1.5, help="median worker life, seconds")
    ap.add_argument("--long-scale", type=float, default=1.0, help="scales the 30-120 s tail, sleeps and escapers")
    ap.add_argument("--drain", type=float, default=2.0, help="seconds of drain on SIGTERM")
    ap.add_argument("--pipe-restart", type=float, default=30.0, help="seconds between pipe server restarts")
    ap.add_argument("--exit7-every", type=float, default=5.0, help="seconds between sh -c 'exit 7' checks")
    ap.add_argument("--worker", default=os.path.join(HERE, "worker.py"))
    ap.add_argument("--hermes-bin", default=os.environ.get("HERMES_BIN", ""), help="the shim (mode shim)")
    ap.add_argument("--tend-dir", default=os.path.join(HERE, "..", "python"), help="where the tend package is")
    ap.add_argument("--housekeeping", type=float, default=0.3,
                    help="seconds between the gateway's other subprocesses (`true`); 0: none")
    ap.add_argument("--crash-grace", type=float, default=0.5,
                    help="hermes modes: a task younger than this is not checked for a dead pid")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fatal-config", action="store_true", help="exit 78 at once")
    a = ap.parse_args()
    if a.fatal_config:
        sys.exit(78)
    os.environ.setdefault("WL_LONG_SCALE", str(a.long_scale))
    Gateway(a).run()


if __name__ == "__main__":
    main()
