#!/usr/bin/env python3
"""Fake hermes worker (docs/WORKLOAD.md): lives a while, starts grandchildren
the way real workers do, and ends with the outcome it was given.

    worker.py TOKEN OUTCOME LIFE SEED
OUTCOME: done unfinished ratelimit config crash sigkill hang ignore_term.
Before it ends it appends {"token", "status", "t"} to $WL_RESULTS/outcomes
(the "kanban DB": the task is marked ended), status being the exit code it
is about to return or "sig9".
SIGTERM: wait about 1.5 s, then exit 0 without cleaning up its children
(ignore_term: SIGTERM ignored).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

CODES = {"done": 0, "unfinished": 0, "ratelimit": 75, "config": 78, "crash": 1}


def record(token, status):
    line = json.dumps({"token": token, "status": status, "t": time.time()}) + "\n"
    fd = os.open(os.path.join(os.environ["WL_RESULTS"], "outcomes"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


def shells(rng):
    """1-5 shell commands; 10% are not waited for."""
    for _ in range(rng.randint(1, 5)):
        cmd = ["sh", "-c", "sleep 0.0%d; echo tool output" % rng.randint(1, 9)]
        if rng.random() < 0.10:
            subprocess.Popen(cmd)  # never waited: a zombie once it ends, an orphan after us
        else:
            subprocess.run(cmd)


def browser(rng, scale):
    """A daemon that double-forks (setsid), starts 4-7 helpers and a
    double-forked crash handler; some helpers outlive the daemon."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the intermediate exits at once
        return
    try:
        if os.fork():
            os._exit(0)
        os.setsid()
        for _ in range(rng.randint(4, 7)):
            subprocess.Popen(["sleep", "%.1f" % rng.uniform(0.5, 6 * scale)])
        if os.fork() == 0:  # crash handler: double-forked too
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "%.1f" % (20 * scale)])
            os._exit(0)
        os.wait()
        time.sleep(rng.uniform(0.5, 3))
    finally:
        os._exit(0)


# The watchdog polls its parent pid (a dead parent that is still a zombie
# would pass kill -0) and stops the server when the worker is gone.
PIPE_SERVER = ('cat >/dev/null & c=$!; p=$PPID; '
               'while read -r _ _ _ pp _ </proc/$$/stat && [ "$pp" = "$p" ]; do sleep 1; done; '
               'kill $c 2>/dev/null; wait $c')


def pipe_server():
    r, w = os.pipe()
    subprocess.Popen(["sh", "-c", PIPE_SERVER], stdin=r)
    os.close(r)
    return w  # kept open until we exit


def escaper(rng, scale):
    """Calls setsid itself and ignores SIGTERM: only a sweep reaches it."""
    if os.fork() == 0:
        try:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SIG_IGN survives exec
            os.execvp("sleep", ["sleep", "%.1f" % (rng.uniform(60, 120) * scale)])
        finally:
            os._exit(127)


def main():
    token, outcome, life, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    scale = float(os.environ.get("WL_LONG_SCALE", "1"))
    rng = random.Random(seed)

    def on_term(signum, frame):
        time.sleep(1.5)
        record(token, 0)
        os._exit(0)

    if outcome == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    keep = []
    shells(rng)
    if rng.random() < 0.20:
        subprocess.Popen(["sleep", "%.1f" % (20 * scale)])  # background, never waited
    if rng.random() < 0.30:
        browser(rng, scale)
    if rng.random() < 0.30:
        keep.append(pipe_server())
    if rng.random() < 0.02:
        escaper(rng, scale)
    if outcome == "unfinished":
        life /= 3
    if outcome == "hang":
        while True:
            time.sleep(3600)
    time.sleep(life)
    if outcome == "sigkill":
        record(token, "sig9")
        os.kill(os.getpid(), signal.SIGKILL)
    code = CODES.get(outcome, 0)
    record(token, code)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
