"""Tests of tend_client.py and hermes-shim against a running tend.

Run with TEND_SOCKET set to a tend serving the control API, and TEND set to
the tend binary (for the shim):
    TEND_SOCKET=$(mktemp -d)/t.sock TEND=./tend python3 -m unittest -v test_tend_client
containertest/python_test.go does this with a tend it starts.
"""

import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tend_client  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = 20.0


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.tend = tend_client.Client(timeout=10)

    def wait(self, job_id):
        return self.tend.wait(job_id, timeout=DEADLINE)

    def test_spawn_passes_stdout_and_ends_when_the_job_does(self):
        r, w = os.pipe()
        try:
            job = self.tend.spawn(["/bin/sh", "-c", "echo hello $X; exit 3"], env={"X": "world", "PATH": "/usr/bin:/bin"},
                                  stdout=w, labels={"case": "stdout"})
        finally:
            os.close(w)
        # tend closes its copy of the fd right after the start, so the pipe
        # reaches EOF when the job exits.
        with os.fdopen(r, "rb") as f:
            self.assertEqual(f.read(), b"hello world\n")
        rec = self.wait(job["id"])
        self.assertEqual(rec["state"], "exited")
        self.assertEqual(rec["exit_code"], 3)
        self.assertEqual(rec["reason"], "exited")
        self.assertEqual(rec["labels"], {"case": "stdout"})

    def test_stdin_and_cwd(self):
        r, w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            job = self.tend.spawn(["/bin/sh", "-c", "read x; echo $x $(pwd)"], cwd="/tmp", stdin=r, stdout=out_w)
        finally:
            os.close(r)
            os.close(out_w)
        os.write(w, b"line\n")
        os.close(w)
        with os.fdopen(out_r, "rb") as f:
            self.assertEqual(f.read(), b"line /tmp\n")
        self.assertEqual(self.wait(job["id"])["exit_code"], 0)

    def test_exec_failure_is_422(self):
        with self.assertRaises(tend_client.ExecError) as cm:
            self.tend.spawn(["/nonexistent/hermes"])
        self.assertEqual(cm.exception.status, 422)
        self.assertIn("/nonexistent/hermes", cm.exception.message)

    def test_list_by_label(self):
        tag = "t%d" % os.getpid()
        a = self.tend.spawn(["/bin/true"], labels={"run": tag, "n": "a"})
        b = self.tend.spawn(["/bin/true"], labels={"run": tag, "n": "b"})
        self.tend.spawn(["/bin/true"], labels={"run": "other"})
        ids = [j["id"] for j in self.tend.jobs(label="run=" + tag)]
        self.assertEqual(sorted(ids), sorted([a["id"], b["id"]]))
        self.assertEqual([j["id"] for j in self.tend.jobs(label=("n", "b")) if j["labels"].get("run") == tag], [b["id"]])

    def test_signal(self):
        job = self.tend.spawn(["/bin/sleep", "30"])
        self.tend.signal(job["id"], "SIGTERM")
        rec = self.wait(job["id"])
        self.assertIsNone(rec["exit_code"])
        self.assertEqual(rec["signal"], "SIGTERM")

    def test_signal_tree_with_kill(self):
        # The job ignores TERM; kill=True SIGKILLs its group after stop_grace.
        job = self.tend.spawn(["/bin/sh", "-c", "trap '' TERM; sleep 30 & wait"])
        time.sleep(0.2)
        self.tend.signal(job["id"], "TERM", tree=True, kill=True)
        rec = self.wait(job["id"])
        self.assertEqual(rec["signal"], "SIGKILL")
        self.assertEqual(rec["reason"], "killed")

    def test_unknown_job_is_404(self):
        with self.assertRaises(tend_client.TendError) as cm:
            self.tend.job("j-nope")
        self.assertEqual(cm.exception.status, 404)

    def test_events(self):
        events = self.tend.events(timeout=DEADLINE)
        got = []
        done = threading.Event()

        def read():
            for ev in events:
                got.append(ev)
                if ev.get("type") == "job.exited" and ev["job"]["labels"].get("case") == "events":
                    break
            done.set()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        time.sleep(0.3)  # the stream is open before the job starts
        job = self.tend.spawn(["/bin/sh", "-c", "exit 5"], labels={"case": "events"})
        self.assertTrue(done.wait(DEADLINE), "no job.exited event; got %r" % got)
        mine = [e for e in got if e.get("job") and e["job"]["id"] == job["id"]]
        self.assertEqual([e["type"] for e in mine][-1], "job.exited")
        self.assertEqual(mine[-1]["job"]["exit_code"], 5)

    def test_bind_kills_the_tree_on_close(self):
        bound = self.tend.spawn(["/bin/sleep", "30"], bind=True)
        bound.close()
        # Poll with plain GETs: a wait request on a bound job binds its own
        # connection too, and would keep the job alive if it reached tend
        # before tend saw the first connection close.
        deadline = time.monotonic() + DEADLINE
        rec = self.tend.job(bound.id)
        while rec["state"] != "exited" and time.monotonic() < deadline:
            time.sleep(0.05)
            rec = self.tend.job(bound.id)
        self.assertEqual(rec["state"], "exited")
        self.assertEqual(rec["reason"], "disconnected")

    def test_bound_wait(self):
        with self.tend.spawn(["/bin/sh", "-c", "sleep 0.2; exit 4"], bind=True) as bound:
            self.assertEqual(bound.wait()["exit_code"], 4)

    def test_health_and_status(self):
        self.assertTrue(self.tend.health())
        st = self.tend.status()
        self.assertIn("counters", st)


class ShimTest(unittest.TestCase):
    def test_shim_runs_the_worker_as_a_job(self):
        if not os.environ.get("TEND"):
            self.skipTest("TEND (the tend binary) not set")
        env = dict(os.environ, HERMES_REAL="/bin/sh")
        p = subprocess.run([os.path.join(HERE, "hermes-shim"), "-c", "echo from $HERMES_KANBAN_TASK; exit 75"],
                           env=dict(env, HERMES_KANBAN_TASK="t-1"), stdout=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(p.stdout, b"from t-1\n")
        self.assertEqual(p.returncode, 75)


if __name__ == "__main__":
    unittest.main()
