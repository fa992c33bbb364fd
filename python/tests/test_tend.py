"""Tests of the tend package against a running tend.

Run with TEND_SOCKET set to a tend serving the control API with [jobs]
limits large enough for 1,000 jobs, and TEND set to the tend binary (some
tests start a small tend of their own):
    TEND_SOCKET=$(mktemp -d)/t.sock TEND=./tend python3 -m unittest -v test_tend
containertest/python_test.go does this with a tend it starts.
"""

import asyncio
import contextlib
import errno
import gc
import io
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
sys.path.insert(0, PACKAGE_ROOT)
import tend  # noqa: E402

DEADLINE = 20.0
SOCKET = os.environ.get("TEND_SOCKET", "")


def in_ci():
    return os.environ.get("CI", "") not in ("", "false", "0")


def proc_stat(pid):
    """(state, ppid, session) of pid, None when gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = s[s.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[3])


def gone_or_zombie(pid):
    """One read of /proc: the pid may be reaped between two."""
    st = proc_stat(pid)
    return st is None or st[0] == "Z"


def children(pid):
    """pid -> state of every process whose parent is pid."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[1] == pid:
                out[int(name)] = st[0]
    return out


def zombies(pid):
    return sorted(p for p, state in children(pid).items() if state == "Z")


def wait_until(cond, deadline=DEADLINE, step=0.01):
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


@contextlib.contextmanager
def environ(**kv):
    """Sets (value) or removes (None) environment variables for a while."""
    old = {k: os.environ.get(k) for k in kv}
    try:
        for k, v in kv.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TendTestCase(unittest.TestCase):
    def setUp(self):
        if not SOCKET:
            self.fail("TEND_SOCKET is not set: these tests need a running tend")
        self.tag = "t%d-%s" % (os.getpid(), self.id().rsplit(".", 1)[-1])

    def popen(self, *args, **kwargs):
        p = tend.Popen(*args, **kwargs)
        self.assertIsInstance(p, tend.Popen)
        self.addCleanup(self._reap, p)
        return p

    def _reap(self, p):
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()
        if p.poll() is None:
            p.kill()
            p.wait(DEADLINE)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, DEADLINE))


class HealthTest(TendTestCase):
    def test_health_levels(self):
        c = tend.Client()
        # This test runs as tend's main process: ready and alive.
        self.assertTrue(c.health())
        self.assertTrue(c.health("ready"))
        self.assertTrue(c.health(level="alive"))
        with self.assertRaises(ValueError):
            c.health("sideways")


class ArgumentsTest(TendTestCase):
    def test_list_args_and_returncode(self):
        p = self.popen(["sh", "-c", "exit 3"])
        self.assertIsNotNone(p.pid)
        self.assertEqual(p.wait(DEADLINE), 3)
        self.assertEqual(p.returncode, 3)
        self.assertEqual(p.args, ["sh", "-c", "exit 3"])
        self.assertEqual(p.record["state"], "exited")
        self.assertEqual(p.record["reason"], "exited")

    def test_str_args_without_shell_name_the_program(self):
        self.assertEqual(self.popen("true").wait(DEADLINE), 0)
        # As subprocess: the whole string is the program's name.
        with self.assertRaises(FileNotFoundError) as theirs:
            subprocess.Popen("true 1")
        with self.assertRaises(FileNotFoundError) as ours:
            tend.Popen("true 1")
        self.assertEqual(ours.exception.filename, theirs.exception.filename)

    def test_shell_str_and_list(self):
        p = self.popen("echo $0 $((2+3))", shell=True, stdout=tend.PIPE)
        self.assertEqual(p.communicate()[0], b"/bin/sh 5\n")
        self.assertEqual(p.args, "echo $0 $((2+3))")
        # A list with shell=True: the rest are the shell's $0, $1, ...
        args = ["echo $0-$1", "zero", "one"]
        want = subprocess.run(args, shell=True, stdout=subprocess.PIPE).stdout
        self.assertEqual(self.popen(args, shell=True, stdout=tend.PIPE).communicate()[0], want)
        self.assertEqual(want, b"zero-one\n")

    def test_pathlike_and_bytes_args(self):
        p = self.popen([pathlib.Path("/bin/echo"), b"bytes", "str"], stdout=tend.PIPE)
        self.assertEqual(p.communicate()[0], b"bytes str\n")

    def test_env_none_sends_os_environ(self):
        with environ(TEND_PY_CASE="from os.environ"):
            p = self.popen(["sh", "-c", 'echo "$TEND_PY_CASE"'], stdout=tend.PIPE)
        self.assertEqual(p.communicate()[0], b"from os.environ\n")

    def test_env_dict_is_the_whole_environment(self):
        p = self.popen(["/usr/bin/env"], env={"A": "1", b"B": b"2", "PATH": "/usr/bin:/bin"}, stdout=tend.PIPE)
        got = set(p.communicate()[0].decode().splitlines())
        # tend adds TEND_SOCKET to every job's environment, nothing else.
        self.assertEqual(got, {"A=1", "B=2", "PATH=/usr/bin:/bin", "TEND_SOCKET=" + SOCKET})

    def test_env_bad_name_is_valueerror_as_in_subprocess(self):
        with self.assertRaises(ValueError):
            subprocess.Popen(["true"], env={"A=B": "x"})
        with self.assertRaises(ValueError):
            tend.Popen(["true"], env={"A=B": "x"})

    def test_cwd_default_relative_and_pathlike(self):
        d = os.path.realpath(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d)
        os.mkdir(os.path.join(d, "sub"))
        old = os.getcwd()
        os.chdir(d)
        self.addCleanup(os.chdir, old)
        # tend's own default is /: tend.Popen sends this process's cwd.
        self.assertEqual(self.popen(["pwd"], stdout=tend.PIPE).communicate()[0], (d + "\n").encode())
        self.assertEqual(self.popen(["pwd"], cwd="sub", stdout=tend.PIPE).communicate()[0], (d + "/sub\n").encode())
        self.assertEqual(self.popen(["pwd"], cwd=pathlib.Path("/tmp"), stdout=tend.PIPE).communicate()[0], b"/tmp\n")

    def test_pipes(self):
        p = self.popen(["sh", "-c", "read x; echo out:$x; echo err:$x >&2; exit 2"],
                       stdin=tend.PIPE, stdout=tend.PIPE, stderr=tend.PIPE)
        self.assertEqual(p.communicate(b"hello\n"), (b"out:hello\n", b"err:hello\n"))
        self.assertEqual(p.returncode, 2)
        self.assertTrue(p.stdout.closed and p.stderr.closed and p.stdin.closed)

    def test_pipes_read_directly(self):
        p = self.popen(["cat"], stdin=tend.PIPE, stdout=tend.PIPE)
        p.stdin.write(b"line\n")
        p.stdin.close()
        self.assertEqual(p.stdout.read(), b"line\n")
        self.assertEqual(p.wait(DEADLINE), 0)

    def test_file_objects_the_hermes_way(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "task.log")
        with open(path, "wb") as f:
            f.write(b"before\n")
        log = open(path, "ab")
        p = self.popen(["sh", "-c", "echo out; echo err >&2; cat; pwd"], cwd=d, stdin=tend.DEVNULL,
                       stdout=log, stderr=log, env=dict(os.environ, HERMES_KANBAN_TASK="t-1"),
                       start_new_session=True)
        log.close()  # tend and the job have their own copies
        self.assertEqual(p.wait(DEADLINE), 0)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"before\nout\nerr\n" + d.encode() + b"\n")

    def test_int_fds(self):
        r, w = os.pipe()
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            p = self.popen(["sh", "-c", "echo to-fd; readlink /proc/self/fd/0"], stdin=fd, stdout=w)
        finally:
            os.close(w)
            os.close(fd)
        with os.fdopen(r, "rb") as f:
            self.assertEqual(f.read(), b"to-fd\n/dev/null\n")
        self.assertEqual(p.wait(DEADLINE), 0)

    def test_devnull(self):
        # test is a builtin: /proc/self is the shell, its fds unredirected.
        p = self.popen(["sh", "-c", "[ /proc/self/fd/0 -ef /dev/null ] && [ /proc/self/fd/1 -ef /dev/null ] && "
                        "echo both >&2; cat"], stdin=tend.DEVNULL, stdout=tend.DEVNULL, stderr=tend.PIPE)
        self.assertEqual(p.communicate(), (None, b"both\n"))

    def test_stderr_to_stdout(self):
        p = self.popen(["sh", "-c", "echo a; echo b >&2; echo c"], stdout=tend.PIPE, stderr=tend.STDOUT)
        self.assertEqual(p.communicate(), (b"a\nb\nc\n", None))

    def test_text_modes(self):
        for kw in ({"text": True}, {"universal_newlines": True}, {"encoding": "utf-8"}, {"errors": "strict"}):
            with self.subTest(**kw):
                p = self.popen(["sh", "-c", r"printf 'a\r\nb\rc\n'; cat"], stdin=tend.PIPE, stdout=tend.PIPE, **kw)
                out, _ = p.communicate("é-in")
                self.assertEqual(out, "a\nb\nc\né-in")
        p = self.popen(["printf", r"\303\251"], stdout=tend.PIPE, encoding="ascii", errors="replace")
        self.assertEqual(p.communicate()[0], "\ufffd\ufffd")
        with self.assertRaises(subprocess.SubprocessError):
            tend.Popen(["true"], text=True, universal_newlines=False)

    def test_text_pipes_read_directly(self):
        p = self.popen(["sh", "-c", "read x; echo got $x"], stdin=tend.PIPE, stdout=tend.PIPE, text=True, bufsize=1)
        self.assertIsInstance(p.stdin, io.TextIOWrapper)
        self.assertTrue(p.stdin.line_buffering)
        p.stdin.write("word\n")  # line buffered: no flush needed
        self.assertEqual(p.stdout.readline(), "got word\n")
        self.assertEqual(p.wait(DEADLINE), 0)

    def test_bufsize(self):
        p = self.popen(["true"], stdout=tend.PIPE, bufsize=0)
        self.assertIsInstance(p.stdout, io.FileIO)
        p = self.popen(["true"], stdout=tend.PIPE)
        self.assertIsInstance(p.stdout, io.BufferedReader)

    def test_none_inherits_the_callers_fds(self):
        code = ("import tend, sys; p = tend.Popen(['sh', '-c', 'read x; echo out:$x; echo err:$x >&2; exit 4']);"
                "sys.exit(p.wait())")
        r = subprocess.run([sys.executable, "-c", code], input=b"in\n", capture_output=True, timeout=DEADLINE,
                           env=dict(os.environ, PYTHONPATH=PACKAGE_ROOT))
        self.assertEqual((r.returncode, r.stdout, r.stderr), (4, b"out:in\n", b"err:in\n"))

    def test_always_a_new_session(self):
        for kw in ({}, {"start_new_session": True}, {"start_new_session": False}):
            with self.subTest(**kw):
                p = self.popen(["sh", "-c", "exec cat /proc/self/stat"], stdout=tend.PIPE, **kw)
                out = p.communicate()[0].decode()
                fields = out[out.rfind(")") + 2:].split()
                self.assertEqual(int(fields[3]), p.pid, "session of the job")  # session id = its pid

    def test_pid_is_the_process_running_argv(self):
        p = self.popen(["sleep", "30"])
        # The start is known once exec has closed the child's close-on-exec
        # pipe, which the kernel does before it sets up the new argv: for a
        # moment after, cmdline reads empty.
        for _ in range(100):
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                cmdline = f.read()
            if cmdline:
                break
            time.sleep(0.01)
        self.assertEqual(cmdline, b"sleep\x0030\x00")
        state, ppid, _ = proc_stat(p.pid)
        self.assertNotEqual(ppid, os.getpid(), "the job must be tend's child, not ours")
        self.assertNotIn(p.pid, children(os.getpid()))
        self.assertIsNone(p.poll())
        p.kill()
        self.assertEqual(p.wait(DEADLINE), -signal.SIGKILL)

    def test_context_manager(self):
        with tend.Popen(["sh", "-c", "echo hi; exit 6"], stdout=tend.PIPE) as p:
            self.assertEqual(p.stdout.read(), b"hi\n")
        self.assertEqual(p.returncode, 6)
        self.assertTrue(p.stdout.closed)
        self.assertIn(p.job_id, repr(p))

    def test_labels_and_lookup(self):
        p = self.popen(["sh", "-c", "exit 5"], labels={"case": self.tag, "n": "1"})
        q = self.popen(["true"], labels={"case": self.tag, "n": "2"})
        p.wait(DEADLINE)
        q.wait(DEADLINE)
        self.assertEqual([j.id for j in tend.jobs(label="case=" + self.tag)], [q.job_id, p.job_id])  # newest first
        self.assertEqual([j.id for j in tend.jobs(label={"case": self.tag, "n": "1"})], [p.job_id])
        self.assertEqual([j.id for j in tend.jobs(label=("n", "2")) if j.labels["case"] == self.tag], [q.job_id])
        found = tend.jobs(pid=p.pid)
        self.assertEqual(found[0].id, p.job_id)
        self.assertTrue(all(j.pid == p.pid for j in found))
        j = tend.job(p.job_id)
        self.assertEqual((j.returncode, j.exit_code, j.state, j.reason), (5, 5, "exited", "exited"))
        self.assertEqual(j.labels, {"case": self.tag, "n": "1"})

    def test_run(self):
        r = tend.run(["sh", "-c", "cat; echo e >&2; exit 2"], input=b"in", capture_output=True)
        self.assertIsInstance(r, subprocess.CompletedProcess)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (2, b"in", b"e\n"))
        with self.assertRaises(subprocess.CalledProcessError) as cm:
            tend.run(["sh", "-c", "exit 9"], check=True)
        self.assertEqual(cm.exception.returncode, 9)
        self.assertEqual(tend.run("echo $0", shell=True, stdout=tend.PIPE, text=True).stdout, "/bin/sh\n")


class DroppedHandleTest(TendTestCase):
    """The hermes pattern: Popen, keep the pid, drop the handle."""

    def test_dropped_handles_finish_with_the_right_record_and_no_zombie(self):
        got = {}
        lock = threading.Lock()

        def record(job):
            with lock:
                got[job.id] = job

        tend.on_exit(record)
        self.addCleanup(tend.remove_on_exit, record)
        want, pids = {}, {}
        for i in range(50):
            p = tend.Popen(["sh", "-c", "sleep 0.3; exit %d" % (i % 7 + 1)], stdin=tend.DEVNULL,
                           labels={"case": self.tag})
            want[p.job_id] = i % 7 + 1
            pids[p.job_id] = p.pid
            del p
        gc.collect()
        self.assertTrue(wait_until(lambda: len(got) >= len(want)), "on_exit: %d of %d exits" % (len(got), len(want)))
        self.assertEqual(set(got), set(want))
        for job_id, code in want.items():
            j = got[job_id]
            self.assertEqual((j.returncode, j.exit_code, j.state, j.reason, j.pid), (code, code, "exited", "exited",
                                                                                     pids[job_id]))
            self.assertEqual(os.waitstatus_to_exitcode(j.wait_status), code)
            self.assertEqual(tend.job(job_id).returncode, code)  # tend's own record
        self.assertEqual(zombies(os.getpid()), [])
        self.assertFalse(set(pids.values()) & set(children(os.getpid())), "a job is our child")

    def test_dropped_handle_without_callbacks(self):
        p = tend.Popen(["sh", "-c", "sleep 0.2; kill -USR1 $$"])
        job_id, pid = p.job_id, p.pid
        del p
        gc.collect()
        self.assertTrue(wait_until(lambda: tend.job(job_id).state == "exited"))
        j = tend.job(job_id)
        self.assertEqual((j.returncode, j.signal, j.reason, j.pid), (-signal.SIGUSR1, "SIGUSR1", "signaled", pid))
        self.assertEqual(zombies(os.getpid()), [])

    def test_exit_records_for_a_hermes_style_registry(self):
        # hermes keeps pid -> raw wait status (what waitpid gave it): on_exit
        # feeds the same registry.
        registry = {}
        cb = tend.on_exit(lambda j: registry.__setitem__(j.pid, j.wait_status))
        self.addCleanup(tend.remove_on_exit, cb)
        want = {}
        for cmd, code in (("exit 0", 0), ("exit 75", 75), ("exit 78", 78), ("kill -KILL $$", -9), ("kill -TERM $$", -15)):
            p = tend.Popen(["sh", "-c", cmd])
            want[p.pid] = code
            del p
        self.assertTrue(wait_until(lambda: set(want) <= set(registry)))
        for pid, code in want.items():
            ws = registry[pid]
            self.assertEqual(os.waitstatus_to_exitcode(ws), code)
            self.assertEqual(os.WIFSIGNALED(ws), code < 0)

    def test_exit_of_a_pid(self):
        p = tend.Popen(["sh", "-c", "exit 3"])
        pid = p.pid
        del p
        self.assertTrue(wait_until(lambda: gone_or_zombie(pid)))
        j = tend.exit_of(pid)
        self.assertEqual((j.pid, j.returncode, os.waitstatus_to_exitcode(j.wait_status)), (pid, 3, 3))
        running = self.popen(["sleep", "30"])
        self.assertIsNone(tend.exit_of(running.pid, timeout=0.1))
        self.assertIsNone(tend.exit_of(os.getpid()))  # not a job

    def test_the_zombie_check_sees_subprocess_zombies(self):
        # The control for the checks above: a subprocess.Popen dropped while
        # its child runs is a zombie once the child ends, until some later
        # Popen() (subprocess._cleanup) reaps it and throws its status away:
        # the mechanism that costs hermes its workers' exits.
        p = subprocess.Popen(["sleep", "0.3"])
        pid = p.pid
        with self.assertWarns(ResourceWarning):  # "subprocess N is still running"
            del p
            gc.collect()
        self.assertTrue(wait_until(lambda: pid in zombies(os.getpid())), "no zombie seen: the check is blind")
        subprocess.Popen(["true"]).wait()  # its __init__ calls subprocess._cleanup
        self.assertNotIn(pid, zombies(os.getpid()))


SIGNALS = [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE,
           signal.SIGVTALRM, 35, 50, 64]


class ThousandTest(TendTestCase):
    def test_1000_popens_every_returncode_exact(self):
        got = {}
        cb = tend.on_exit(lambda j: got.__setitem__(j.id, j))
        self.addCleanup(tend.remove_on_exit, cb)
        cases = []
        for i in range(1000):
            if i % 5 == 4:
                sig = SIGNALS[(i // 5) % len(SIGNALS)]
                cases.append(("kill -%d $$" % sig, -sig))
            else:
                cases.append(("exit %d" % (i % 256), i % 256))
        t0 = time.monotonic()
        procs = [(tend.Popen(["/bin/sh", "-c", cmd]), want) for cmd, want in cases]
        t1 = time.monotonic()
        exact = sum(1 for p, want in procs if p.wait(DEADLINE) == want)
        t2 = time.monotonic()
        wrong = [(p.args, p.returncode, want, p.record) for p, want in procs if p.returncode != want][:5]
        self.assertTrue(wait_until(lambda: len(got) >= len(procs)), "on_exit: %d of %d" % (len(got), len(procs)))
        t3 = time.monotonic()
        heard = sum(1 for p, want in procs if got[p.job_id].returncode == want and
                    os.waitstatus_to_exitcode(got[p.job_id].wait_status) == want)
        print("\n1000 Popens: %d/1000 returncodes exact (%d signals), on_exit %d/1000; start %.2fs, wait %.2fs, "
              "last callback %.2fs after" % (exact, sum(1 for _, w in cases if w < 0), heard, t1 - t0, t2 - t1, t3 - t2),
              file=sys.stderr)
        self.assertEqual(exact, 1000, wrong)
        self.assertEqual(heard, 1000)
        self.assertEqual(zombies(os.getpid()), [])


class AsyncioTest(TendTestCase):
    def test_exec_pipes_and_communicate(self):
        async def main():
            proc = await tend.asyncio.create_subprocess_exec(
                "sh", "-c", "cat; echo err >&2; exit 5", stdin=tend.PIPE, stdout=tend.PIPE, stderr=tend.PIPE)
            self.assertIsInstance(proc, tend.asyncio.Process)
            self.assertIsInstance(proc.stdin, asyncio.StreamWriter)
            self.assertIsInstance(proc.stdout, asyncio.StreamReader)
            out = await proc.communicate(b"data")
            return proc, out
        proc, out = self.run_async(main())
        self.assertEqual(out, (b"data", b"err\n"))
        self.assertEqual(proc.returncode, 5)

    def test_returncode_is_set_without_wait(self):
        async def main():
            proc = await tend.asyncio.create_subprocess_shell("exit 9")
            while proc.returncode is None:
                await asyncio.sleep(0.01)
            return proc.returncode, await proc.wait()
        self.assertEqual(self.run_async(main()), (9, 9))

    def test_streams(self):
        async def main():
            proc = await tend.asyncio.create_subprocess_exec(
                "sh", "-c", "while read x; do echo got $x; done", stdin=tend.PIPE, stdout=tend.PIPE)
            lines = []
            for word in ("a", "b", "c"):
                proc.stdin.write(word.encode() + b"\n")
                await proc.stdin.drain()
                lines.append(await proc.stdout.readline())
            proc.stdin.close()
            await proc.stdin.wait_closed()
            self.assertEqual(await proc.stdout.read(), b"")
            return lines, await proc.wait()
        self.assertEqual(self.run_async(main()), ([b"got a\n", b"got b\n", b"got c\n"], 0))

    def test_signals(self):
        async def main():
            out = []
            for name, send, want in (("terminate", lambda p: p.terminate(), -15),
                                     ("kill", lambda p: p.kill(), -9),
                                     ("send_signal", lambda p: p.send_signal(signal.SIGUSR2), -signal.SIGUSR2)):
                proc = await tend.asyncio.create_subprocess_exec("sleep", "30")
                send(proc)
                out.append((name, await proc.wait(), want))
            return out
        for name, got, want in self.run_async(main()):
            self.assertEqual(got, want, name)

    def test_no_child_watcher_and_no_children(self):
        before = signal.getsignal(signal.SIGCHLD)

        async def main():
            proc = await tend.asyncio.create_subprocess_exec("sleep", "0.3")
            kids = children(os.getpid())
            return proc, kids, await proc.wait()
        proc, kids, rc = self.run_async(main())
        self.assertEqual(rc, 0)
        self.assertNotIn(proc.pid, kids)
        self.assertEqual(signal.getsignal(signal.SIGCHLD), before)
        self.assertEqual(before, signal.SIG_DFL)

    def test_cancelled_wait_leaves_the_job(self):
        async def main():
            proc = await tend.asyncio.create_subprocess_exec("sh", "-c", "sleep 0.3; exit 4")
            t = asyncio.ensure_future(proc.wait())
            await asyncio.sleep(0.05)
            t.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await t
            return await proc.wait()
        self.assertEqual(self.run_async(main()), 4)

    def test_refused_arguments(self):
        async def main():
            for kw, exc in (({"text": True}, ValueError), ({"universal_newlines": True}, ValueError),
                            ({"bufsize": 1}, ValueError), ({"encoding": "utf-8"}, ValueError),
                            ({"preexec_fn": lambda: None}, TypeError), ({"pass_fds": (0,)}, TypeError)):
                with self.subTest(**{k: repr(v) for k, v in kw.items()}):
                    with self.assertRaises(exc):
                        await tend.asyncio.create_subprocess_exec("true", labels={"case": self.tag}, **kw)
        self.run_async(main())
        self.assertEqual(tend.jobs(label="case=" + self.tag), [])

    def test_exec_failure(self):
        async def main():
            with self.assertRaises(FileNotFoundError) as cm:
                await tend.asyncio.create_subprocess_exec("/nonexistent/prog")
            return cm.exception
        self.assertEqual(self.run_async(main()).filename, "/nonexistent/prog")


class SignalTest(TendTestCase):
    def test_terminate_kill_send_signal(self):
        for send, sig in ((lambda p: p.terminate(), signal.SIGTERM), (lambda p: p.kill(), signal.SIGKILL),
                          (lambda p: p.send_signal(signal.SIGUSR1), signal.SIGUSR1),
                          (lambda p: p.send_signal(signal.SIGALRM), signal.SIGALRM)):
            with self.subTest(sig=sig.name):
                p = self.popen(["sleep", "30"])
                send(p)
                self.assertEqual(p.wait(DEADLINE), -sig)
                self.assertEqual((p.record["signal"], p.record["exit_code"], p.record["reason"]),
                                 (sig.name, None, "signaled"))

    def test_signal_after_exit_is_a_noop(self):
        p = self.popen(["true"])
        self.assertEqual(p.wait(DEADLINE), 0)
        p.send_signal(signal.SIGTERM)
        p.kill()
        self.assertEqual(p.returncode, 0)

    def test_signal_an_exited_job_not_yet_waited_for(self):
        p = self.popen(["true"])
        self.assertTrue(wait_until(lambda: tend.job(p.job_id).state == "exited"))
        p.terminate()  # tend answers 409: nothing to do, as subprocess
        self.assertEqual(p.wait(DEADLINE), 0)

    def test_a_job_that_handles_the_signal(self):
        p = self.popen(["sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"], stdout=tend.PIPE)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        p.terminate()
        self.assertEqual(p.wait(DEADLINE), 3)


UNSUPPORTED = [("executable", "/bin/sh"), ("preexec_fn", lambda: None), ("close_fds", False), ("pass_fds", (0,)),
               ("restore_signals", False), ("startupinfo", object()), ("creationflags", 1), ("user", "root"),
               ("group", "root"), ("extra_groups", [0]), ("umask", 0o22), ("pipesize", 65536),
               ("process_group", 0)]


class PidfdTest(TendTestCase):
    def test_the_job_comes_with_its_pidfd(self):
        # Every track gives one (subreaper: its helper's, opened before it
        # could reap the command), unless pidfds are refused (seccomp, a
        # kernel before 5.3): the only fallback, checked here.
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (AttributeError, OSError):
            self.skipTest("no pidfd_open here")
        p = self.popen(["sleep", "30"])
        track = p.record.get("track")
        self.assertIsNotNone(p._pidfd, "tend passed no pidfd for a %s job" % track)
        self.assertEqual(tend._pidfd_pid(p._pidfd), p.pid, "the pidfd is not the job's (%s)" % track)
        self.assertIsNone(p.poll())
        signal.pidfd_send_signal(p._pidfd, signal.SIGKILL)
        self.assertEqual(p.wait(DEADLINE), -signal.SIGKILL)
        self.assertIsNone(p._pidfd, "the pidfd is kept after the exit")


class UnsupportedTest(TendTestCase):
    def test_each_unsupported_argument_is_a_typeerror_naming_it(self):
        for name, value in UNSUPPORTED:
            with self.subTest(name=name):
                with self.assertRaises(TypeError) as cm:
                    tend.Popen(["true"], labels={"case": self.tag}, **{name: value})
                self.assertIn(name, str(cm.exception))
            with self.subTest(name=name, via="run"):
                with self.assertRaises(TypeError):
                    tend.run(["true"], labels={"case": self.tag}, **{name: value})
        self.assertEqual(tend.jobs(label="case=" + self.tag), [], "a refused call started a job")

    def test_unknown_argument(self):
        with self.assertRaises(TypeError) as cm:
            tend.Popen(["true"], bogus=1)
        self.assertIn("bogus", str(cm.exception))

    def test_harmless_values_are_accepted(self):
        p = self.popen(["true"], executable=None, preexec_fn=None, close_fds=True, pass_fds=(), restore_signals=True,
                       startupinfo=None, creationflags=0, user=None, group=None, extra_groups=None, umask=-1,
                       pipesize=-1, process_group=None, start_new_session=True)
        self.assertEqual(p.wait(DEADLINE), 0)


class FallbackTest(unittest.TestCase):
    """Without TEND_SOCKET, tend's functions are subprocess's and asyncio's."""

    def setUp(self):
        ctx = environ(TEND_SOCKET=None)
        ctx.__enter__()
        self.addCleanup(ctx.__exit__, None, None, None)

    def test_popen_is_subprocess_popen(self):
        self.assertFalse(tend.available())
        p = tend.Popen(["sh", "-c", "sleep 0.2; exit 3"], labels={"dropped": "in the fallback"})
        self.assertIs(type(p), subprocess.Popen)
        self.assertEqual(proc_stat(p.pid)[1], os.getpid(), "the fallback's process is our child")
        self.assertEqual(p.wait(DEADLINE), 3)
        # It is subprocess: what tend refuses works here.
        self.assertEqual(tend.Popen(["true"], preexec_fn=lambda: None, close_fds=False).wait(DEADLINE), 0)

    def test_run_and_asyncio(self):
        r = tend.run(["sh", "-c", "echo x; exit 2"], capture_output=True)
        self.assertEqual((r.returncode, r.stdout), (2, b"x\n"))

        async def main():
            proc = await tend.asyncio.create_subprocess_exec("sh", "-c", "exit 7")
            return proc, await proc.wait()
        proc, rc = asyncio.run(main())
        self.assertIsInstance(proc, asyncio.subprocess.Process)
        self.assertEqual(rc, 7)

    def test_on_exit_is_never_called(self):
        called = []
        cb = tend.on_exit(called.append)
        self.addCleanup(tend.remove_on_exit, cb)
        tend.Popen(["true"]).wait(DEADLINE)
        time.sleep(0.3)
        self.assertEqual(called, [])
        with self.assertRaises(tend.TendError):
            tend.jobs()

    def test_available_needs_an_answering_tend(self):
        with environ(TEND_SOCKET="/nonexistent/tend.sock"):
            self.assertFalse(tend.available())
            with self.assertRaises(tend.TendError) as cm:
                tend.Popen(["true"])  # set but dead: an error, never a silent fallback
            self.assertEqual(cm.exception.status, 0)
        if SOCKET:
            with environ(TEND_SOCKET=SOCKET):
                self.assertTrue(tend.available())


class ExecErrorTest(TendTestCase):
    """422: the OSError subprocess would raise, and no job."""

    def cases(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        noexec = os.path.join(d, "noexec")
        with open(noexec, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(noexec, 0o644)
        garbage = os.path.join(d, "garbage")
        with open(garbage, "wb") as f:
            f.write(b"\x00\x01not a program")
        os.chmod(garbage, 0o755)
        return [
            ("missing path", ["/nonexistent/prog"], {}),
            ("missing name", ["no-such-program-tend-test"], {}),
            ("not executable", [noexec], {}),
            ("a directory", [d], {}),
            ("exec format", [garbage], {}),
            ("missing cwd", ["true"], {"cwd": "/nonexistent-dir"}),
            ("cwd not a directory", ["true"], {"cwd": noexec}),
        ]

    def test_same_oserror_as_subprocess(self):
        for name, args, kw in self.cases():
            with self.subTest(name):
                with self.assertRaises(OSError) as theirs:
                    subprocess.Popen(args, **kw)
                with self.assertRaises(OSError) as ours:
                    tend.Popen(args, labels={"case": self.tag}, **kw)
                t, o = theirs.exception, ours.exception
                self.assertEqual((type(o), o.errno, o.filename), (type(t), t.errno, t.filename),
                                 "tend: %r, subprocess: %r" % (o, t))
                self.assertIn("(E", getattr(o, "tend_message", ""))
        self.assertEqual(tend.jobs(label="case=" + self.tag), [], "a 422 made a job")

    def test_types(self):
        with self.assertRaises(FileNotFoundError):
            tend.Popen(["/nonexistent/prog"])
        with self.assertRaises(PermissionError):
            tend.Popen(["/etc/passwd"])


class TimeoutTest(TendTestCase):
    def test_wait_timeout(self):
        p = self.popen(["sleep", "30"])
        t0 = time.monotonic()
        with self.assertRaises(subprocess.TimeoutExpired) as cm:
            p.wait(timeout=0.3)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual((cm.exception.timeout, cm.exception.cmd), (0.3, ["sleep", "30"]))
        with self.assertRaises(subprocess.TimeoutExpired):
            p.wait(timeout=0)
        self.assertIsNone(p.poll())
        p.kill()
        self.assertEqual(p.wait(DEADLINE), -9)

    def test_communicate_timeout_then_again(self):
        p = self.popen(["sh", "-c", "echo first; sleep 1; echo second"], stdout=tend.PIPE)
        with self.assertRaises(subprocess.TimeoutExpired) as cm:
            p.communicate(timeout=0.4)
        self.assertEqual(cm.exception.output, b"first\n")
        self.assertEqual(p.communicate(timeout=DEADLINE), (b"first\nsecond\n", None))
        self.assertEqual(p.returncode, 0)

    def test_run_timeout_kills(self):
        t0 = time.monotonic()
        with self.assertRaises(subprocess.TimeoutExpired):
            tend.run(["sleep", "30"], timeout=0.3, labels={"case": self.tag})
        self.assertLess(time.monotonic() - t0, 3.0)
        (j,) = tend.jobs(label="case=" + self.tag)
        self.assertEqual((j.state, j.signal, j.returncode), ("exited", "SIGKILL", -9))


class RecordTest(unittest.TestCase):
    """returncode and wait_status from a record, with and without the
    fields a newer tend reports itself."""

    def test_computed(self):
        for rec, rc, ws in (
                ({"state": "exited", "exit_code": 3, "signal": None}, 3, 3 << 8),
                ({"state": "exited", "exit_code": None, "signal": "SIGTERM"}, -15, 15),
                ({"state": "exited", "exit_code": None, "signal": "SIGSEGV", "core_dumped": True}, -11, 11 | 0x80),
                ({"state": "exited", "exit_code": None, "signal": "SIGRTMIN+3"}, -35, 35),
                ({"state": "exited", "exit_code": None, "signal": "SIGRTMAX"}, -64, 64),
                ({"state": "exited", "exit_code": None, "signal": "SIGRTMIN"}, -32, 32),
                ({"state": "exited", "exit_code": None, "signal": "SIGSTKFLT"}, -16, 16),
                ({"state": "exited", "exit_code": 127, "signal": None, "reason": "exec_failed"}, 127, 127 << 8),
                ({"state": "running", "exit_code": None, "signal": None}, None, None)):
            with self.subTest(rec=rec):
                j = tend.Job(rec)
                self.assertEqual((j.returncode, j.wait_status), (rc, ws))
                if ws is not None:
                    self.assertEqual(os.waitstatus_to_exitcode(ws), rc)

    def test_server_fields_win(self):
        rec = {"state": "exited", "exit_code": None, "signal": "SIGKILL", "returncode": -9, "wait_status": 9}
        self.assertEqual((tend.Job(rec).returncode, tend.Job(rec).wait_status), (-9, 9))
        # A name this module does not know: the server's fields still say it.
        rec = {"state": "exited", "exit_code": None, "signal": "SIGFUTURE", "returncode": -70, "wait_status": 70}
        self.assertEqual((tend.Job(rec).returncode, tend.Job(rec).wait_status), (-70, 70))


class SmallTendTest(unittest.TestCase):
    """A tend of our own with [jobs] max_running = 1, max_queued = 1."""

    @classmethod
    def setUpClass(cls):
        binary = os.environ.get("TEND")
        if not binary:
            raise unittest.SkipTest("TEND (the tend binary) not set")
        cls.dir = tempfile.mkdtemp()
        cls.sock = os.path.join(cls.dir, "small.sock")
        cfg = os.path.join(cls.dir, "tend.toml")
        with open(cfg, "w") as f:
            f.write('[control]\nsocket = "%s"\n[jobs]\nmax_running = 1\nmax_queued = 1\n' % cls.sock)
        cls.log = open(os.path.join(cls.dir, "tend.log"), "wb")
        cls.srv = subprocess.Popen([binary, "--config", cfg, "--", "sleep", "600"], stdout=cls.log, stderr=cls.log)
        if not wait_until(lambda: os.path.exists(cls.sock) or cls.srv.poll() is not None):
            raise RuntimeError("small tend did not start")
        if cls.srv.poll() is not None:
            raise RuntimeError("small tend exited: %s" % open(cls.log.name).read())

    @classmethod
    def tearDownClass(cls):
        cls.srv.terminate()
        try:
            cls.srv.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            cls.srv.kill()
            cls.srv.wait()
        cls.log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        ctx = environ(TEND_SOCKET=self.sock)
        ctx.__enter__()
        self.addCleanup(ctx.__exit__, None, None, None)

    def test_queued_job_returns_once_it_has_a_pid(self):
        first = tend.Popen(["sleep", "0.6"])
        t0 = time.monotonic()
        second = tend.Popen(["sh", "-c", "exit 4"])  # queued behind first: returns once started
        self.assertGreater(time.monotonic() - t0, 0.3)
        self.assertIsNotNone(second.pid)
        self.assertEqual((first.wait(DEADLINE), second.wait(DEADLINE)), (0, 4))

    def test_queue_full_is_eagain(self):
        first = tend.Popen(["sleep", "30"])
        queued = tend.Client(self.sock).spawn(["true"])  # the Client does not wait for a start
        self.assertEqual(queued["state"], "queued")
        try:
            with self.assertRaises(OSError) as cm:
                tend.Popen(["true"])
            self.assertEqual(cm.exception.errno, errno.EAGAIN)
            self.assertIsInstance(cm.exception, BlockingIOError)
            self.assertEqual(cm.exception.status, 429)
        finally:
            first.kill()
        self.assertEqual(first.wait(DEADLINE), -9)
        self.assertEqual(tend.Client(self.sock).wait(queued["id"], timeout=DEADLINE)["exit_code"], 0)

    def test_queued_exec_failure(self):
        first = tend.Popen(["sleep", "0.3"])
        with self.assertRaises(FileNotFoundError) as cm:
            tend.Popen(["/nonexistent/queued"])  # accepted into the queue, fails at its start
        self.assertEqual((cm.exception.errno, cm.exception.filename), (errno.ENOENT, "/nonexistent/queued"))
        self.assertEqual(first.wait(DEADLINE), 0)


class FakeTend:
    """A stand-in for a newer tend, for the optional features: "pidfd": true
    on POST /v1/jobs (the job's pidfd as SCM_RIGHTS on the 201 response),
    "returncode" and "wait_status" in records, GET /v1/jobs?pid=N. With
    pidfd=False it refuses the field as today's tend does. cut_events: every
    GET /v1/events ends right after its head. Its jobs are its own children."""

    def __init__(self, pidfd=True, cut_events=False):
        self.pidfd, self.cut_events = pidfd, cut_events
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "fake.sock")
        self.lock = threading.Lock()
        self.jobs = {}  # id -> (Popen, labels)
        self.requests = []
        self.ln = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ln.bind(self.path)
        self.ln.listen(64)
        threading.Thread(target=self.serve, daemon=True).start()

    def close(self):
        self.ln.close()
        for p, _ in self.jobs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self):
        while True:
            try:
                c, _ = self.ln.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def record(self, job_id):
        p, labels = self.jobs[job_id]
        rc = p.poll()
        rec = {"id": job_id, "pid": p.pid, "state": "running" if rc is None else "exited", "exit_code": None,
               "signal": None, "core_dumped": False, "labels": labels, "argv": p.args, "uid": os.getuid()}
        if rc is not None:
            rec["reason"] = "exited" if rc >= 0 else "signaled"
            rec["exit_code" if rc >= 0 else "signal"] = rc if rc >= 0 else signal.Signals(-rc).name
            rec["returncode"] = rc
            rec["wait_status"] = (rc << 8) if rc >= 0 else -rc
        return rec

    def handle(self, c):
        with c:
            buf, fds = b"", []
            while b"\r\n\r\n" not in buf:
                data, anc, _, _ = c.recvmsg(65536, socket.CMSG_SPACE(16))
                if not data:
                    return
                for level, kind, cdata in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds += list(memoryview(cdata).cast("i"))
                buf += data
            head, body = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            n = int(next((ln.split(":", 1)[1] for ln in lines if ln.lower().startswith("content-length")), "0"))
            while len(body) < n:
                body += c.recv(65536)
            with self.lock:
                self.requests.append((method, target))
            try:
                self.route(c, method, target, json.loads(body) if n else None, fds)
            finally:
                for fd in fds:
                    os.close(fd)

    def reply(self, c, status, obj, fds=()):
        data = json.dumps(obj).encode() if obj is not None else b""
        msg = ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (status, len(data))).encode() + data
        if fds:
            socket.send_fds(c, [msg], list(fds))
        else:
            c.sendall(msg)

    def route(self, c, method, target, body, fds):
        path, _, query = target.partition("?")
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/jobs":
            if "pidfd" in body and not self.pidfd:
                return self.reply(c, 400, {"error": 'body: unknown field "pidfd"'})
            io = dict(zip(body.get("stdio", []), fds))
            env = dict(kv.split("=", 1) for kv in body["env"])
            p = subprocess.Popen(body["argv"], env=env, cwd=body.get("dir"), stdin=io.get(0, subprocess.DEVNULL),
                                 stdout=io.get(1, subprocess.DEVNULL), stderr=io.get(2, subprocess.DEVNULL),
                                 start_new_session=True)
            job_id = "j-fake%d" % p.pid
            with self.lock:
                self.jobs[job_id] = (p, body.get("labels") or {})
            pidfd = os.pidfd_open(p.pid) if body.get("pidfd") else None
            try:
                self.reply(c, 201, self.record(job_id), [pidfd] if pidfd is not None else ())
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        elif method == "GET" and path == "/v1/jobs":
            pid = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv).get("pid")
            recs = [self.record(i) for i in reversed(list(self.jobs))]
            self.reply(c, 200, [r for r in recs if pid is None or r["pid"] == int(pid)])
        elif method == "GET" and path == "/v1/events":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
            if not self.cut_events:
                time.sleep(3600)
        elif parts[:2] == ["v1", "jobs"] and parts[2] in self.jobs:
            p = self.jobs[parts[2]][0]
            if method == "GET" and len(parts) == 4 and parts[3] == "wait":
                secs = float(query.split("=", 1)[1].rstrip("s")) if query.startswith("timeout=") else None
                try:
                    p.wait(secs)
                except subprocess.TimeoutExpired:
                    pass
                self.reply(c, 200, self.record(parts[2]))
            elif method == "GET" and len(parts) == 3:
                self.reply(c, 200, self.record(parts[2]))
            elif method == "POST" and parts[3:] == ["signal"]:
                p.send_signal(int(body["signal"]))
                self.reply(c, 204, None)
        else:
            self.reply(c, 404, {"error": "no such thing"})


class FeatureTest(unittest.TestCase):
    """The optional features of a newer tend, against FakeTend."""

    def setUp(self):
        old = tend._features["pidfd"]
        tend._features["pidfd"] = None
        self.addCleanup(tend._features.__setitem__, "pidfd", old)

    def fake(self, **kw):
        f = FakeTend(**kw)
        self.addCleanup(f.close)
        ctx = environ(TEND_SOCKET=f.path)
        ctx.__enter__()
        self.addCleanup(ctx.__exit__, None, None, None)
        return f

    def test_pidfd_poll_without_round_trip(self):
        f = self.fake()
        p = tend.Popen(["sh", "-c", "sleep 0.3; exit 6"])
        self.assertTrue(tend._features["pidfd"])
        self.assertIsNotNone(p._pidfd)
        n = len(f.requests)
        self.assertIsNone(p.poll())
        self.assertEqual(len(f.requests), n, "poll() of a running job asked tend")
        with self.assertRaises(subprocess.TimeoutExpired):
            p.wait(0.05)
        self.assertEqual(len(f.requests), n, "a wait that timed out on the pidfd asked tend")
        self.assertEqual(p.wait(DEADLINE), 6)
        self.assertIsNone(p._pidfd, "the pidfd is kept after the exit")

    def test_without_the_feature(self):
        f = self.fake(pidfd=False)
        p = tend.Popen(["sh", "-c", "exit 2"])
        self.assertIs(tend._features["pidfd"], False)
        self.assertIsNone(p._pidfd)
        self.assertEqual(p.wait(DEADLINE), 2)
        posts = [r for r in f.requests if r[0] == "POST"]
        self.assertEqual(len(posts), 2)  # refused once, then without the field
        tend.Popen(["true"]).wait(DEADLINE)
        self.assertEqual(len([r for r in f.requests if r[0] == "POST"]), 3)  # not asked again

    def test_jobs_by_pid(self):
        f = self.fake()
        p = tend.Popen(["true"])
        q = tend.Popen(["true"])
        p.wait(DEADLINE)
        q.wait(DEADLINE)
        self.assertEqual([j.id for j in tend.jobs(pid=q.pid)], [q.job_id])
        self.assertIn(("GET", "/v1/jobs?pid=%d" % q.pid), f.requests)

    def test_exit_arrives_though_the_stream_is_cut(self):
        self.fake(cut_events=True)
        got = []
        cb = tend.on_exit(got.append)
        self.addCleanup(tend.remove_on_exit, cb)
        p = tend.Popen(["sh", "-c", "sleep 0.2; kill -TERM $$"])
        job_id = p.job_id
        del p
        self.assertTrue(wait_until(lambda: got), "the exit never arrived")
        self.assertEqual((got[0].id, got[0].returncode, got[0].wait_status), (job_id, -15, 15))


class PackagingTest(unittest.TestCase):
    def test_vendored_as_one_file(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        shutil.copy(os.path.join(PACKAGE_ROOT, "tend", "__init__.py"), os.path.join(d, "tend.py"))
        code = ("import asyncio, sys, tend; assert tend.__file__ == %r, tend.__file__\n"
                "p = tend.Popen(['sh', '-c', 'exit 4'], stdout=tend.PIPE)\n"
                "async def main():\n"
                "    a = await tend.asyncio.create_subprocess_exec('sh', '-c', 'echo x; exit 5', stdout=tend.PIPE)\n"
                "    return await a.communicate(), a.returncode\n"
                "print(p.wait(), asyncio.run(main()), tend.available(), type(p).__module__)\n") % os.path.join(d, "tend.py")
        r = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, timeout=DEADLINE,
                           env=dict(os.environ, PYTHONPATH=d))
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout, b"4 ((b'x\\n', None), 5) True tend\n")

    def test_pip_install(self):
        have = subprocess.run([sys.executable, "-c", "import setuptools, pip"], capture_output=True).returncode == 0
        if not have:
            if in_ci():
                self.fail("pip and setuptools are needed for this test (python3-pip, python3-setuptools)")
            self.skipTest("no pip or setuptools for %s" % sys.executable)
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        src = os.path.join(d, "src")
        shutil.copytree(PACKAGE_ROOT, src, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "build"))
        target = os.path.join(d, "site")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
                            "--no-index", "--target", target, src], capture_output=True, timeout=120,
                           env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore"))
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        code = ("import tend; assert tend.__file__ == %r, tend.__file__; print(tend.Popen(['sh', '-c', 'exit 3']).wait())"
                % os.path.join(target, "tend", "__init__.py"))
        r = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, timeout=DEADLINE,
                           env=dict(os.environ, PYTHONPATH=target))
        self.assertEqual((r.returncode, r.stdout), (0, b"3\n"), r.stderr.decode())


class ClientCompatTest(TendTestCase):
    def test_tend_client_is_a_reexport(self):
        sys.path.insert(0, os.path.join(PACKAGE_ROOT, "..", "examples", "python"))
        try:
            with self.assertWarns(DeprecationWarning):
                sys.modules.pop("tend_client", None)
                import tend_client
        finally:
            sys.path.pop(0)
        self.assertIs(tend_client.Client, tend.Client)
        job = tend_client.Client().spawn(["sh", "-c", "exit 3"])
        self.assertEqual(tend_client.Client().wait(job["id"], timeout=DEADLINE)["exit_code"], 3)


if __name__ == "__main__":
    unittest.main()
