"""Start processes as jobs of tend (PID 1) with subprocess's interface.

    import tend
    p = tend.Popen(argv, cwd=ws, stdin=tend.DEVNULL, stdout=log, stderr=log, env=env)

is subprocess.Popen for the common arguments, but the process is started by
tend, through its control socket ($TEND_SOCKET), as a job: it is tend's
child, not yours. tend reaps it and keeps its exit status, so nothing is
left a zombie and no waitpid(-1) loop is needed (or wanted: it would steal
your other children's statuses). Dropping the handle neither kills the job
nor loses its status; tend.on_exit(fn) hears of every exit.

Standard library only. This one file is the whole package: copy it into a
project as tend.py and `import tend` works the same.

Without TEND_SOCKET in the environment, tend.Popen(...) returns a plain
subprocess.Popen, tend.run is subprocess.run and tend.asyncio's functions
are asyncio's: the process is then your child, with subprocess's zombie
behaviour, and on_exit callbacks are never called. tend.available() says
which one you get.
"""

import array as _array
import collections as _collections
import errno as _errno
import io as _io
import json as _json
import os as _os
import re as _re
import select as _select
import selectors as _selectors
import signal as _signal
import socket as _socket
import subprocess as _subprocess
import sys as _sys
import threading as _threading
import time as _time
import traceback as _traceback
import urllib.parse as _urlparse

__all__ = [
    "Popen", "run", "on_exit", "remove_on_exit", "jobs", "job", "exit_of", "available", "asyncio",
    "Job", "Client", "BoundJob", "TendError", "ExecError", "QueueFull",
    "PIPE", "DEVNULL", "STDOUT", "TimeoutExpired", "CalledProcessError", "CompletedProcess",
]

PIPE = _subprocess.PIPE
DEVNULL = _subprocess.DEVNULL
STDOUT = _subprocess.STDOUT
TimeoutExpired = _subprocess.TimeoutExpired
CalledProcessError = _subprocess.CalledProcessError
CompletedProcess = _subprocess.CompletedProcess

DEFAULT_SOCKET = "/run/tend.sock"  # Client's default when TEND_SOCKET is not set
MAX_FDS = 3  # fds one request may pass: stdin, stdout, stderr
_IO_TIMEOUT = 30.0  # bound on each socket operation of a request
_WAIT_STEP = 30.0  # the longest server-side long poll of one wait request
_REAP_WAIT = 5.0  # a process whose pidfd is readable is reaped by tend at once
_USER_AGENT = "tend.py"

# Optional server features, detected on first use (None: not known yet).
# "pidfd": POST /v1/jobs takes "pidfd": true and returns the job's pidfd as
# SCM_RIGHTS ancillary data on the 201 response.
_features = {"pidfd": None}


# --- errors ----------------------------------------------------------------

class TendError(OSError):
    """An error answer of tend (4xx, 5xx), or a failure to reach it
    (status 0). It is an OSError: a job is to the caller what a fork is."""

    def __init__(self, status, message, err=None):
        text = "tend: %s: %s" % (status, message) if status else "tend: %s" % message
        if err is None:
            super().__init__(text)
        else:
            super().__init__(err, text)
        self.status = status  # the HTTP status; 0 when tend could not be reached
        self.message = message


class ExecError(TendError):
    """422: the command cannot be executed; no job was made."""


class QueueFull(TendError, BlockingIOError):
    """429 (tend's job queue is full) or 503 (tend cannot fork now, or is
    shutting down): errno EAGAIN, as a fork that failed for want of
    resources."""

    def __init__(self, status, message):
        super().__init__(status, message, _errno.EAGAIN)


def _error(status, message):
    if status == 422:
        return ExecError(status, message)
    if status in (429, 503):
        return QueueFull(status, message)
    return TendError(status, message)


# --- the wire: HTTP/1.1 on a Unix socket, fds with SCM_RIGHTS ---------------

_ANCBUF = _socket.CMSG_SPACE(MAX_FDS * _array.array("i").itemsize)
_RECV_FLAGS = getattr(_socket, "MSG_CMSG_CLOEXEC", 0)  # no child inherits a received fd


class _Conn:
    """One connection to tend's socket. It keeps the fds that arrive with
    the response's bytes (take_fds) and closes those nobody took."""

    def __init__(self, path, timeout):
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise TendError(0, "connect %s: %s" % (path, e)) from None
        self.buf = b""
        self.fds = []

    def close(self):
        for fd in self.take_fds():
            _close(fd)
        self.sock.close()

    def take_fds(self):
        fds, self.fds = self.fds, []
        return fds

    def send(self, method, target, body=None, fds=()):
        data = b"" if body is None else _json.dumps(body).encode()
        head = "%s %s HTTP/1.1\r\nHost: tend\r\nUser-Agent: %s\r\n" % (method, target, _USER_AGENT)
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += "Content-Length: %d\r\n\r\n" % len(data)
        msg = head.encode() + data
        try:
            if fds:
                # The fds travel with the request's first bytes: tend gives
                # them to the request whose bytes carried them.
                n = _socket.send_fds(self.sock, [msg], list(fds))
                msg = msg[n:]
            if msg:
                self.sock.sendall(msg)
        except _socket.timeout:
            raise TendError(0, "%s %s: timed out sending" % (method, target)) from None

    def _fill(self):
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(65536, _ANCBUF, _RECV_FLAGS)
        except _socket.timeout:
            raise TendError(0, "timed out waiting for tend") from None
        for level, kind, cdata in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds = _array.array("i")
                fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
                self.fds.extend(fds)
        if not data:
            raise TendError(0, "connection closed by tend")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        status_line = self._line()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise TendError(0, "bad status line %r" % status_line)
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(parts[1]), headers

    def chunks(self, status, headers):
        """Yields the body in pieces as they arrive."""
        if status in (204, 304) or status < 200:
            return  # no body, whatever the headers say (RFC 9112 6.3)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(";")[0], 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    return
                yield self._exact(size)
                self._exact(2)
        elif "content-length" in headers:
            yield self._exact(int(headers["content-length"]))
        else:  # until the connection closes
            while True:
                if self.buf:
                    out, self.buf = self.buf, b""
                    yield out
                try:
                    self._fill()
                except TendError:
                    return

    def lines(self, status, headers):
        """Yields the body's lines (NDJSON) as they arrive."""
        pending = b""
        for piece in self.chunks(status, headers):
            pending += piece
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    yield line

    def response(self):
        status, headers = self.read_head()
        return status, headers, b"".join(self.chunks(status, headers))


def _close(fd):
    try:
        _os.close(fd)
    except OSError:
        pass


def _decode(status, body):
    """The JSON of a 2xx body, or the error it says, raised."""
    if status < 400:
        return _json.loads(body.decode()) if body else None
    try:
        msg = _json.loads(body.decode()).get("error", "")
    except (ValueError, AttributeError):
        msg = body.decode(errors="replace")
    raise _error(status, msg)


def _quote(s):
    return _urlparse.quote(str(s), safe="")


def _duration(d):
    """A Go duration from seconds (int or float), or a string as is."""
    if d is None or isinstance(d, str):
        return d
    return "%.3fs" % max(0.0, d)


def _fileno(f):
    return f if isinstance(f, int) else f.fileno()


class BoundJob:
    """A job started with bind=True: tend kills its tree when this handle's
    connection closes before the job exits (close() or garbage collection)."""

    def __init__(self, conn, record):
        self._conn = conn
        self.record = record
        self.id = record["id"]

    def wait(self):
        """Waits on the bound connection; returns the final record."""
        while True:
            self._conn.send("GET", "/v1/jobs/%s/wait?timeout=60s" % _quote(self.id))
            status, _, body = self._conn.response()
            rec = _decode(status, body)
            if rec.get("state") == "exited":
                self.record = rec
                self.close()
                return rec

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    """The control API of one tend, call by call. socket_path defaults to
    $TEND_SOCKET, then /run/tend.sock; timeout (seconds) bounds every socket
    operation. Records are the API's dicts (see README's job record)."""

    def __init__(self, socket_path=None, timeout=_IO_TIMEOUT):
        self.path = socket_path or _os.environ.get("TEND_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout

    def _exchange(self, method, target, body=None, fds=(), timeout=None):
        """One request on a fresh connection: (status, body, received fds)."""
        conn = _Conn(self.path, timeout or self.timeout)
        try:
            conn.send(method, target, body, fds)
            status, _, data = conn.response()
            return status, data, conn.take_fds()
        except TendError:
            raise
        except OSError as e:
            raise TendError(0, "%s %s: %s" % (method, target, e)) from None
        finally:
            conn.close()

    def _do(self, method, target, body=None, fds=(), timeout=None):
        status, data, rfds = self._exchange(method, target, body, fds, timeout)
        for fd in rfds:
            _close(fd)
        return _decode(status, data)

    def _submit(self, req, fds):
        """POST /v1/jobs: (record, pidfd or None). Asks for the job's pidfd
        unless this tend is known not to have the feature."""
        want = _features["pidfd"] is not False
        status, data, rfds = self._exchange("POST", "/v1/jobs", dict(req, pidfd=True) if want else req, fds)
        if want and status == 400 and b"pidfd" in data:
            for fd in rfds:
                _close(fd)
            _features["pidfd"] = False  # today's tend: `unknown field "pidfd"`
            status, data, rfds = self._exchange("POST", "/v1/jobs", req, fds)
        try:
            rec = _decode(status, data)
        except BaseException:
            for fd in rfds:
                _close(fd)
            raise
        pidfd = rfds.pop(0) if rfds else None
        for fd in rfds:
            _close(fd)
        if pidfd is not None:
            if _pidfd_pid(pidfd) in (rec.get("pid"), None):
                _features["pidfd"] = True
            else:  # not the job's: never poll a process we were not given
                _close(pidfd)
                pidfd = None
        return rec, pidfd

    def spawn(self, argv, env=None, cwd=None, labels=None, timeout=None,
              bind=False, user=None, stdin=None, stdout=None, stderr=None):
        """Starts argv as a job; returns its record (a dict), or a BoundJob
        when bind is true.

        env: a dict or a list of "K=V" (None: tend's default, see the README).
        stdin, stdout, stderr: files or fds to hand to the job (None:
        /dev/null). timeout: seconds or a Go duration string. Raises
        ExecError (422) when argv cannot be executed, QueueFull (429).
        """
        req = {"argv": list(argv)}
        if env is not None:
            req["env"] = ["%s=%s" % kv for kv in env.items()] if isinstance(env, dict) else list(env)
        if cwd is not None:
            req["dir"] = cwd
        if labels:
            req["labels"] = dict(labels)
        if timeout is not None:
            req["timeout"] = _duration(timeout)
        if bind:
            req["bind"] = True
        if user is not None:
            req["user"] = str(user)
        fds, targets = [], []
        for target, f in ((0, stdin), (1, stdout), (2, stderr)):
            if f is not None:
                fds.append(_fileno(f))
                targets.append(target)
        if fds:
            req["stdio"] = targets
        if not bind:
            return self._do("POST", "/v1/jobs", req, fds)
        conn = _Conn(self.path, None)  # a bound wait may take as long as the job
        try:
            conn.send("POST", "/v1/jobs", req, fds)
            status, _, body = conn.response()
            return BoundJob(conn, _decode(status, body))
        except BaseException:
            conn.close()
            raise

    def job(self, job_id):
        """The record of one job (TendError 404 when unknown or not yours)."""
        return self._do("GET", "/v1/jobs/%s" % _quote(job_id))

    def wait_once(self, job_id, seconds):
        """One long poll: the record once exited, or the current one after
        seconds."""
        return self._do("GET", "/v1/jobs/%s/wait?timeout=%s" % (_quote(job_id), _duration(seconds)),
                        timeout=seconds + self.timeout)

    def wait(self, job_id, timeout=None):
        """Waits until the job has exited and returns its record. timeout
        (seconds) None waits as long as it takes; else TendError(0) after it."""
        end = None if timeout is None else _time.monotonic() + timeout
        while True:
            left = None if end is None else end - _time.monotonic()
            rec = self.wait_once(job_id, _WAIT_STEP if left is None else max(0.0, min(_WAIT_STEP, left)))
            if rec.get("state") == "exited":
                return rec
            if end is not None and _time.monotonic() >= end:
                raise TendError(0, "job %s: still %s after %gs" % (job_id, rec.get("state"), timeout))

    def signal(self, job_id, sig="SIGTERM", tree=False, kill=False):
        """Sends sig (a name or number) to the job, or to its process group
        with tree; kill also SIGKILLs the group after [jobs] stop_grace."""
        body = {"signal": str(int(sig)) if isinstance(sig, int) else str(sig)}
        if tree:
            body["tree"] = True
        if kill:
            body["kill"] = True
        return self._do("POST", "/v1/jobs/%s/signal" % _quote(job_id), body)

    def jobs(self, label=None, pid=None):
        """The jobs this caller may see, newest first. label: "k=v", a (k, v)
        pair or a dict, all to match; pid: only the jobs with that pid
        (asked with ?pid=N, where tend has it, and filtered here anyway)."""
        query = []
        if label is not None:
            if isinstance(label, dict):
                pairs = list(label.items())
            elif isinstance(label, str):
                pairs = [tuple(label.split("=", 1))] if "=" in label else [(label, "")]
            else:
                pairs = [tuple(label)]
            query += ["label=" + _urlparse.quote("%s=%s" % kv, safe="=") for kv in pairs]
        if pid is not None:
            query.append("pid=%d" % int(pid))
        out = self._do("GET", "/v1/jobs" + ("?" + "&".join(query) if query else "")) or []
        if pid is not None:
            out = [r for r in out if r.get("pid") == int(pid)]
        return out

    def status(self):
        return self._do("GET", "/v1/status")

    def health(self, level=None):
        """True when tend is healthy at level ("ready", the default: every
        counted service ready and no check failing; "alive": none failed
        for good), False on 503."""
        path = "/v1/health"
        if level is not None:
            if level not in ("alive", "ready"):
                raise ValueError("level: %r is not 'alive' or 'ready'" % (level,))
            path += "?level=" + level
        status, data, rfds = self._exchange("GET", path)
        for fd in rfds:
            _close(fd)
        if status in (200, 503):
            return status == 200
        _decode(status, data)
        return False

    def events(self, timeout=None):
        """Yields the events of GET /v1/events (dicts) as they come. Close
        the generator to stop; timeout bounds each wait for the next bytes."""
        conn = _Conn(self.path, timeout)
        try:
            conn.send("GET", "/v1/events")
            status, headers = conn.read_head()
            if status >= 400:
                _decode(status, b"".join(conn.chunks(status, headers)))
            for line in conn.lines(status, headers):
                yield _json.loads(line)
        finally:
            conn.close()


def _pidfd_pid(fd):
    """The pid a pidfd refers to (/proc/self/fdinfo), None if unknown."""
    try:
        with open("/proc/self/fdinfo/%d" % fd) as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


# --- job records -----------------------------------------------------------

_SIGRTMIN, _SIGRTMAX = 32, 64  # the kernel's numbering, which tend's names use


def _signum(name):
    """The number of a signal as tend names it: "SIGTERM", "SIGRTMIN+3",
    "signal 65"; None when unknown."""
    if name is None:
        return None
    if isinstance(name, int):
        return name
    s = str(name).strip().upper()
    if s.startswith("SIGNAL "):
        s = s[7:].strip()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    for base, n in (("SIGRTMIN", _SIGRTMIN), ("SIGRTMAX", _SIGRTMAX)):
        if s.startswith(base):
            rest = s[len(base):]
            try:
                return n + (int(rest) if rest else 0)
            except ValueError:
                return None
    if not s.startswith("SIG_"):
        v = getattr(_signal, s, None)
        if isinstance(v, int):
            return int(v)
    return {"SIGSTKFLT": 16}.get(s)  # Linux's, absent from some Pythons


def _returncode(rec):
    """subprocess's returncode of an exited record: the exit code, or -N
    for signal N; None while it runs (or when nothing says how it ended)."""
    if not rec or rec.get("state") != "exited":
        return None
    rc = rec.get("returncode")  # where tend reports it itself
    if isinstance(rc, int) and not isinstance(rc, bool):
        return rc
    if rec.get("exit_code") is not None:
        return rec["exit_code"]
    n = _signum(rec.get("signal"))
    return -n if n else None


def _wait_status(rec):
    """The raw wait status (os.waitstatus_to_exitcode reads it) of an
    exited record, as tend reports it or as waitpid would have."""
    if not rec or rec.get("state") != "exited":
        return None
    ws = rec.get("wait_status")
    if isinstance(ws, int) and not isinstance(ws, bool):
        return ws
    if rec.get("exit_code") is not None:
        return (rec["exit_code"] & 0xFF) << 8
    n = _signum(rec.get("signal"))
    if not n:
        return None
    return n | (0x80 if rec.get("core_dumped") else 0)


class Job:
    """A job record of tend, read-only: id, pid, state, reason, signal (a
    name), exit_code, core_dumped, labels, argv, plus returncode
    (subprocess's convention) and wait_status (waitpid's). record is the
    API's dict itself."""

    __slots__ = ("record",)

    def __init__(self, record):
        self.record = record

    def _get(name):  # noqa: N805 - a property factory
        return property(lambda self: self.record.get(name), doc="The record's %r." % name)

    id = _get("id")
    pid = _get("pid")
    state = _get("state")
    reason = _get("reason")
    signal = _get("signal")
    exit_code = _get("exit_code")
    core_dumped = _get("core_dumped")
    labels = _get("labels")
    argv = _get("argv")
    error = _get("error")
    del _get

    @property
    def returncode(self):
        return _returncode(self.record)

    @property
    def wait_status(self):
        return _wait_status(self.record)

    def __repr__(self):
        return "<tend.Job %s pid=%s state=%s returncode=%s reason=%s>" % (
            self.id, self.pid, self.state, self.returncode, self.reason)


def available():
    """True when TEND_SOCKET is set and tend answers on it: tend.Popen then
    starts jobs of tend; False means the subprocess fallback."""
    path = _os.environ.get("TEND_SOCKET")
    if not path:
        return False
    try:
        _Conn(path, 5.0).close()
    except TendError:
        return False
    return True


def _client():
    path = _os.environ.get("TEND_SOCKET")
    if not path:
        raise TendError(0, "TEND_SOCKET is not set")
    return Client(path)


def jobs(label=None, pid=None):
    """This caller's jobs (Job objects), newest first; label "k=v", (k, v)
    or a dict to select by; pid to find the jobs that had that pid."""
    return [Job(r) for r in _client().jobs(label=label, pid=pid)]


def job(job_id):
    """The Job with this id (TendError 404 when unknown or not yours)."""
    return Job(_client().job(job_id))


def exit_of(pid, timeout=5.0):
    """The Job of this caller's newest job that had pid, once it has
    exited; None when tend has no such job, or it still runs after timeout
    seconds. For a dispatcher that finds a worker's pid gone before the
    exit reached its on_exit callback: tend reaps, then records, then
    tells, so a process that is gone is recorded within moments."""
    client = _client()
    found = client.jobs(pid=pid)
    if not found:
        return None
    rec = found[0]
    if rec.get("state") != "exited":
        rec = client.wait_once(rec["id"], timeout)
    return Job(rec) if rec.get("state") == "exited" else None


# --- exit callbacks ----------------------------------------------------------
#
# One thread per socket reads GET /v1/events and hands each job.exited of a
# job this process started to the callbacks, which run one at a time on a
# second thread (a slow callback never holds up the stream). A job started
# while a subscription is live has its exit on that stream. Anything else is
# looked up: the jobs pending when a subscription starts (a dropped or cut
# stream: tend drops a reader that falls behind), and a job submitted while no
# subscription was live, once one is.

_EARLY_KEEP = 120.0  # seconds an exit of a job not yet known here is kept
_EARLY_MAX = 10000


class _State:
    """What this process knows of one of its jobs; shared by its Popen and
    the exit watcher."""

    __slots__ = ("id", "pid", "record", "__weakref__")

    def __init__(self, job_id, pid):
        self.id = job_id
        self.pid = pid
        self.record = None  # the exited record, once known


class _Hub:
    def __init__(self):
        self.lock = _threading.Lock()
        self.callbacks = []
        self.watchers = {}  # socket path -> _Watcher
        self.queue = None  # (callbacks, Job) for the delivery thread

    def add(self, fn):
        with self.lock:
            self.callbacks.append(fn)
        path = _os.environ.get("TEND_SOCKET")
        if path:
            # Be subscribed before the caller's next Popen, so its exit
            # comes on the stream (not a reason to fail: the watcher retries).
            self.watcher(path).wait_subscribed(2.0)

    def remove(self, fn):
        with self.lock:
            try:
                self.callbacks.remove(fn)
            except ValueError:
                pass

    def watcher(self, path):
        with self.lock:
            w = self.watchers.get(path)
            if w is None:
                if self.queue is None:
                    import queue
                    self.queue = queue.SimpleQueue()
                    _threading.Thread(target=self._deliver_loop, name="tend-on-exit", daemon=True).start()
                w = self.watchers[path] = _Watcher(self, path)
            return w

    def before_submit(self, path):
        """None when no callback is registered (the job is not watched), else
        the watcher's token to hand to after_submit."""
        if not self.callbacks:
            return None
        w = self.watcher(path)
        return w, w.token()

    def deliver(self, rec):
        with self.lock:
            cbs = list(self.callbacks)
        if cbs:
            self.queue.put((cbs, Job(rec)))

    def _deliver_loop(self):
        while True:
            cbs, j = self.queue.get()
            for fn in cbs:
                try:
                    fn(j)
                except Exception:  # a callback's bug must not end the others' calls
                    _traceback.print_exc()


class _Watcher:
    """The exit stream of one tend (see the comment above _EARLY_KEEP)."""

    def __init__(self, hub, path):
        self.hub = hub
        self.path = path
        self.cond = _threading.Condition(_threading.Lock())
        self.pending = {}  # guarded by cond: job id -> _State, exit not delivered yet
        self.early = _collections.OrderedDict()  # guarded by cond: id -> (record, time)
        self.gen = 0  # guarded by cond: counts subscriptions
        self.live = False  # guarded by cond: a subscription is reading
        _threading.Thread(target=self._run, name="tend-events", daemon=True).start()

    def token(self):
        with self.cond:
            return self.gen if self.live else None

    def wait_subscribed(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.live, timeout)

    def after_submit(self, state, token):
        """Watches state's job. token is token() from before the POST: when
        one subscription was live all along, the exit is on its stream (or
        already arrived); else look the job up once a subscription is live."""
        with self.cond:
            early = self.early.pop(state.id, None)
            if early is None:
                self.pending[state.id] = state
            covered = token is not None and self.live and self.gen == token
        if early is not None:
            state.record = early[0]
            self.hub.deliver(early[0])
        elif not covered:
            self.wait_subscribed(10.0)
            self._lookup([state.id])

    def _exited(self, rec):
        with self.cond:
            state = self.pending.pop(rec.get("id"), None)
            if state is None:
                now = _time.monotonic()
                self.early[rec.get("id")] = (rec, now)
                while self.early and (len(self.early) > _EARLY_MAX or
                                      next(iter(self.early.values()))[1] < now - _EARLY_KEEP):
                    self.early.popitem(last=False)
                return
        state.record = rec
        self.hub.deliver(rec)

    def _lookup(self, ids):
        """Delivers the exits of those of ids that have exited."""
        client = Client(self.path)
        listed = {}
        if len(ids) > 32:
            try:
                listed = {r.get("id"): r for r in client.jobs()}
            except TendError:
                pass
        for job_id in ids:
            rec = listed.get(job_id)
            if rec is None:
                try:
                    rec = client.job(job_id)
                except TendError as e:
                    if e.status != 404:
                        continue  # the next subscription looks again
                    with self.cond:
                        state = self.pending.get(job_id)
                    # tend no longer has the record ([jobs] keep): the exit
                    # is lost, say so rather than never.
                    rec = {"id": job_id, "pid": state.pid if state else None, "state": "exited",
                           "exit_code": None, "signal": None, "reason": None, "lost": True}
            if rec.get("state") == "exited":
                self._exited(rec)

    def _run(self):
        backoff = 0.05
        while True:
            conn = None
            try:
                conn = _Conn(self.path, _IO_TIMEOUT)
                conn.send("GET", "/v1/events")
                status, headers = conn.read_head()
                if status != 200:
                    raise TendError(status, "GET /v1/events")
                # tend subscribed us before it sent the head.
                conn.sock.settimeout(None)  # events may be hours apart
                with self.cond:
                    self.gen += 1
                    self.live = True
                    self.cond.notify_all()
                    ids = list(self.pending)
                if ids:
                    self._lookup(ids)  # exits while no subscription was live
                backoff = 0.05
                for line in conn.lines(status, headers):
                    ev = _json.loads(line)
                    if ev.get("type") == "job.exited" and isinstance(ev.get("job"), dict):
                        self._exited(ev["job"])
            except (OSError, ValueError):
                pass
            finally:
                with self.cond:
                    self.live = False
                if conn is not None:
                    conn.close()
            _time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


_hub = _Hub()


def _after_fork_in_child():
    global _hub
    _hub = _Hub()  # the threads are the parent's; so may a lock be


_os.register_at_fork(after_in_child=_after_fork_in_child)


def on_exit(fn):
    """Calls fn(job) with the tend.Job of each job this process starts
    from now on (tend.Popen, tend.run, tend.asyncio), once, when it exits:
    whether or not its handle still exists. The callbacks run one at a time
    on a thread of their own; keep them short. Returns fn (a decorator).
    In the subprocess fallback (no TEND_SOCKET) fn is never called."""
    _hub.add(fn)
    return fn


def remove_on_exit(fn):
    """Unregisters fn (no error if it was not registered)."""
    _hub.remove(fn)


# --- Popen -----------------------------------------------------------------

# subprocess.Popen's arguments tend cannot honour, with their harmless values.
_UNSUPPORTED = (
    ("executable", None, "a job's argv[0] is the program tend runs"),
    ("preexec_fn", None, "tend forks the job, not this process"),
    ("close_fds", True, "a job inherits only its stdin, stdout and stderr"),
    ("pass_fds", (), "a job inherits only its stdin, stdout and stderr"),
    ("restore_signals", True, "tend sets a job's signal dispositions"),
    ("startupinfo", None, "Windows only"),
    ("creationflags", 0, "Windows only"),
    ("user", None, "a job runs with the caller's uid, gid and groups"),
    ("group", None, "a job runs with the caller's uid, gid and groups"),
    ("extra_groups", None, "a job runs with the caller's uid, gid and groups"),
    ("umask", -1, "a job gets tend's umask"),
    ("pipesize", -1, "not implemented"),
    ("process_group", None, "a job leads its own session and process group"),
)


def _refuse(given):
    for name, default, why in _UNSUPPORTED:
        v = given[name]
        if name == "pass_fds":
            bad = len(v) > 0
        elif default is None:
            bad = v is not None
        else:
            bad = v != default
        if bad:
            raise TypeError("tend.Popen does not support %s=%r: %s" % (name, v, why))


def _argv(args, shell):
    if isinstance(args, (str, bytes)) or hasattr(args, "__fspath__"):
        args = [args]
    else:
        args = list(args)
    if shell:
        args = ["/bin/sh", "-c"] + args
    if not args:
        raise ValueError("args is empty")
    return [_text(a, "argument") for a in args]


def _text(v, what):
    s = _os.fsdecode(_os.fspath(v))
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("%s %r is not UTF-8: tend's API is JSON" % (what, v)) from None
    if "\0" in s:
        raise ValueError("embedded null byte")
    return s


def _envlist(env):
    if env is None:
        env = _os.environ
    out = []
    for k, v in env.items():
        k, v = _text(k, "environment variable"), _text(v, "environment value")
        if not k or "=" in k:
            raise ValueError("illegal environment variable name")
        out.append("%s=%s" % (k, v))
    return out


def _exec_error(message, argv0, cwd):
    """The OSError subprocess raises for an exec failure tend reported as
    "exec PATH: ... (ENOENT)" (a 422, or the record of a queued job)."""
    m = _re.search(r"\((E[A-Z0-9]+)\)\s*$", message or "")
    num = getattr(_errno, m.group(1), None) if m else None
    if num is None:
        num = _errno.ENOENT if "no such file" in (message or "").lower() else _errno.EACCES
    e = OSError(num, _os.strerror(num), cwd if "working directory" in (message or "") else argv0)
    e.tend_message = message
    return e


def _readable(fd, timeout):
    p = _select.poll()
    p.register(fd, _select.POLLIN)
    return bool(p.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


class Popen:
    """subprocess.Popen, the process started as a job of tend (module doc).

    Takes subprocess.Popen's arguments (same order); those tend cannot
    honour raise TypeError (see _UNSUPPORTED), never ignored. Jobs always
    start in a new session (start_new_session=True is implied). env=None
    sends this process's environment, cwd=None its working directory.
    labels (a dict) is tend's own: find jobs by them with tend.jobs(label=).
    The job is not bound: dropping the handle does not kill it.

    Extra attributes: job_id (tend's id), record (the last record read, a
    dict; its reason and signal say why it ended).
    """

    def __new__(cls, *args, **kwargs):
        if not _os.environ.get("TEND_SOCKET"):
            kwargs.pop("labels", None)
            return _subprocess.Popen(*args, **kwargs)  # the documented fallback
        return super().__new__(cls)

    def __init__(self, args, bufsize=-1, executable=None, stdin=None, stdout=None, stderr=None,
                 preexec_fn=None, close_fds=True, shell=False, cwd=None, env=None,
                 universal_newlines=None, startupinfo=None, creationflags=0,
                 restore_signals=True, start_new_session=False, pass_fds=(), *,
                 user=None, group=None, extra_groups=None, encoding=None, errors=None,
                 text=None, umask=-1, pipesize=-1, process_group=None, labels=None):
        self.args = args
        self.pid = None
        self.returncode = None
        self.stdin = self.stdout = self.stderr = None
        self.job_id = None
        self.record = None
        self._pidfd = None
        self._lock = _threading.Lock()
        self._state = _State(None, None)
        self._communication_started = False
        _refuse(locals())
        if text is not None and universal_newlines is not None and bool(universal_newlines) != bool(text):
            raise _subprocess.SubprocessError("Cannot disambiguate when both text and universal_newlines "
                                              "are supplied but different. Pass one or the other.")
        self.text_mode = bool(encoding or errors or text or universal_newlines)
        if bufsize is None:
            bufsize = -1
        line_buffering = False
        if bufsize == 1:
            line_buffering = self.text_mode  # as subprocess: line buffering in text mode only
            bufsize = -1
        argv = _argv(args, shell)
        req = {"argv": argv, "env": _envlist(env),
               "dir": _os.path.abspath(_text(cwd, "cwd")) if cwd is not None else _os.getcwd()}
        if labels:
            req["labels"] = {str(k): str(v) for k, v in dict(labels).items()}

        theirs = []  # pipe ends for the job: closed once tend has its copies
        ours = {}  # 0, 1, 2 -> our end of a pipe
        passed, targets = [], []
        path = _os.environ["TEND_SOCKET"]
        try:
            child = {}
            for target, spec in ((0, stdin), (1, stdout), (2, stderr)):
                if spec is None:
                    fd = target if _fd_open(target) else None  # inherit ours
                elif spec == DEVNULL:
                    fd = None  # tend gives /dev/null to what is not passed
                elif spec == PIPE:
                    r, w = _os.pipe()  # not inheritable: nothing else gets them
                    fd, ours[target] = (r, w) if target == 0 else (w, r)
                    theirs.append(fd)
                elif spec == STDOUT:
                    if target != 2:
                        raise ValueError("STDOUT is for stderr only")
                    fd = child.get(1)
                elif isinstance(spec, int):
                    if spec < 0:
                        raise ValueError("bad file descriptor %d" % spec)
                    fd = spec
                else:
                    fd = spec.fileno()
                child[target] = fd
                if fd is not None:
                    passed.append(fd)
                    targets.append(target)
            if targets:
                req["stdio"] = targets
            client = Client(path)
            token = _hub.before_submit(path)
            rec, self._pidfd = client._submit(req, passed)
        except ExecError as e:
            for fd in list(ours.values()):
                _close(fd)
            raise _exec_error(e.message, argv[0] if not shell else "/bin/sh",
                              cwd if cwd is not None else req["dir"]) from None
        except BaseException:
            for fd in list(ours.values()):
                _close(fd)
            raise
        finally:
            for fd in theirs:
                _close(fd)
        self._client = client
        self.job_id = rec["id"]
        self._state = _State(rec["id"], rec.get("pid"))
        if token is not None:
            token[0].after_submit(self._state, token[1])
        self.record = rec
        if rec.get("state") == "queued":
            try:
                rec = self._await_start()
            except BaseException:
                for fd in ours.values():
                    _close(fd)
                raise
        self.pid = self._state.pid = rec.get("pid")
        if rec.get("state") == "exited":
            self._set_record(rec)
            if rec.get("reason") == "exec_failed":
                for fd in ours.values():
                    _close(fd)
                raise _exec_error(rec.get("error"), argv[0] if not shell else "/bin/sh",
                                  cwd if cwd is not None else req["dir"])
        self._open_pipes(ours, bufsize, line_buffering, encoding, errors)

    def _await_start(self):
        """A queued job: polls its record until it has a pid (or ended)."""
        delay = 0.001
        while True:
            rec = self._client.job(self.job_id)
            if rec.get("state") != "queued":
                self.record = rec
                return rec
            _time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _open_pipes(self, ours, bufsize, line_buffering, encoding, errors):
        if 0 in ours:
            self.stdin = _io.open(ours[0], "wb", bufsize)
            if self.text_mode:
                self.stdin = _io.TextIOWrapper(self.stdin, write_through=True, line_buffering=line_buffering,
                                               encoding=encoding, errors=errors)
        for target in (1, 2):
            if target in ours:
                f = _io.open(ours[target], "rb", bufsize)
                if self.text_mode:
                    f = _io.TextIOWrapper(f, encoding=encoding, errors=errors)
                if target == 1:
                    self.stdout = f
                else:
                    self.stderr = f

    def _set_record(self, rec):
        with self._lock:
            self.record = rec
            if self.returncode is None and rec.get("state") == "exited":
                self.returncode = _returncode(rec)
                fd, self._pidfd = self._pidfd, None
                if fd is not None:
                    _close(fd)  # the exit is delivered: the fd is of no more use
        return self.returncode

    def _known(self):
        """The returncode if this process knows it already."""
        if self.returncode is None and self._state.record is not None:
            self._set_record(self._state.record)
        return self.returncode

    def poll(self):
        """The returncode once the job has exited, else None."""
        if self._known() is not None:
            return self.returncode
        fd = self._pidfd
        if fd is not None:
            try:
                if not _readable(fd, 0):
                    return None  # no round trip while it runs
            except (OSError, ValueError):  # closed meanwhile by another thread
                return self._known()
            rec = self._client.wait_once(self.job_id, _REAP_WAIT)
        else:
            rec = self._client.job(self.job_id)
        return self._set_record(rec)

    def wait(self, timeout=None):
        """Waits for the job to exit and returns its returncode; raises
        TimeoutExpired after timeout seconds."""
        if self._known() is not None:
            return self.returncode
        end = None if timeout is None else _time.monotonic() + timeout
        while True:
            left = None if end is None else end - _time.monotonic()
            fd = self._pidfd
            step = _WAIT_STEP if left is None else max(0.0, min(_WAIT_STEP, left))
            if fd is not None:
                try:
                    if not _readable(fd, left):
                        raise TimeoutExpired(self.args, timeout)
                    step = _REAP_WAIT
                except (OSError, ValueError):
                    pass
            if self._set_record(self._client.wait_once(self.job_id, step)) is not None:
                return self.returncode
            if self._known() is not None:
                return self.returncode
            if end is not None and _time.monotonic() >= end:
                raise TimeoutExpired(self.args, timeout)

    def send_signal(self, sig):
        """Signals the job's process (not its group), as os.kill would; a
        no-op once it has exited."""
        if self._known() is not None:
            return
        try:
            self._client.signal(self.job_id, int(sig))
        except TendError as e:
            if e.status != 409:  # 409: it has exited
                raise

    def terminate(self):
        self.send_signal(_signal.SIGTERM)

    def kill(self):
        self.send_signal(_signal.SIGKILL)

    def communicate(self, input=None, timeout=None):
        """subprocess.Popen.communicate: sends input, reads stdout and stderr
        until EOF, waits; on TimeoutExpired (with the output so far) call
        it again to go on."""
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        end = None if timeout is None else _time.monotonic() + timeout
        if not self._communication_started:
            self._communication_started = True
            self._out = {}
            self._input = b""
            self._input_offset = 0
            if self.stdin is not None:
                if input:
                    self._input = input.encode(self.stdin.encoding, self.stdin.errors) if self.text_mode else bytes(input)
                try:
                    self.stdin.flush()
                except BrokenPipeError:
                    pass  # communicate ignores a job that stopped reading
                except ValueError:
                    if not self.stdin.closed:  # closed by the caller: fine
                        raise
                if not input:
                    try:
                        self.stdin.close()
                    except BrokenPipeError:
                        pass
            for f in (self.stdout, self.stderr):
                if f is not None:
                    self._out[f] = []
        self._pump(end, timeout)
        left = None if end is None else max(0.0, end - _time.monotonic())
        try:
            self.wait(left)
        except TimeoutExpired as e:
            e.timeout = timeout
            raise
        out = [self._output(f) for f in (self.stdout, self.stderr)]
        return out[0], out[1]

    def _output(self, f):
        if f is None:
            return None
        data = b"".join(self._out.get(f, ()))
        if self.text_mode:
            data = data.decode(f.encoding, f.errors).replace("\r\n", "\n").replace("\r", "\n")
        return data

    def _pump(self, end, timeout):
        with _selectors.PollSelector() as sel:
            if self.stdin is not None and not self.stdin.closed and self._input_offset < len(self._input):
                sel.register(self.stdin, _selectors.EVENT_WRITE)
            for f in (self.stdout, self.stderr):
                if f is not None and not f.closed:
                    sel.register(f, _selectors.EVENT_READ)
            view = memoryview(self._input)
            while sel.get_map():
                left = None if end is None else end - _time.monotonic()
                if left is not None and left <= 0:
                    out = [b"".join(self._out[f]) if f in self._out else None for f in (self.stdout, self.stderr)]
                    raise TimeoutExpired(self.args, timeout, output=out[0], stderr=out[1])
                for key, _ in sel.select(left):
                    if key.fileobj is self.stdin:
                        chunk = view[self._input_offset:self._input_offset + _select.PIPE_BUF]
                        try:
                            self._input_offset += _os.write(key.fd, chunk)
                        except BrokenPipeError:
                            self._input_offset = len(self._input)
                        if self._input_offset >= len(self._input):
                            sel.unregister(key.fileobj)
                            try:
                                key.fileobj.close()
                            except BrokenPipeError:
                                pass
                    else:
                        data = _os.read(key.fd, 32768)
                        if data:
                            self._out[key.fileobj].append(data)
                        else:
                            sel.unregister(key.fileobj)
                            key.fileobj.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, value, traceback):
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        try:
            if self.stdin is not None:
                self.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            self.wait()

    def __del__(self):
        # The job goes on (it is not bound) and tend reaps it; only the
        # pidfd, if tend gave one, is ours to release.
        fd = getattr(self, "_pidfd", None)
        if fd is not None:
            self._pidfd = None
            _close(fd)

    def __repr__(self):
        return "<tend.Popen: job %s pid %s returncode: %s args: %.80r>" % (
            self.job_id, self.pid, self.returncode, self.args)


def _fd_open(fd):
    try:
        _os.fstat(fd)
        return True
    except OSError:
        return False


def run(*popenargs, input=None, capture_output=False, timeout=None, check=False, **kwargs):
    """subprocess.run with tend.Popen (its fallback: subprocess.run). On
    timeout the job's process is killed (SIGKILL) and waited for."""
    if not _os.environ.get("TEND_SOCKET"):
        kwargs.pop("labels", None)
        return _subprocess.run(*popenargs, input=input, capture_output=capture_output, timeout=timeout,
                               check=check, **kwargs)
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, retcode, stdout, stderr)


# --- asyncio ---------------------------------------------------------------

_async_tasks = set()  # the exit watchers' tasks (the loop keeps only weak references)


async def _aget(path, target, timeout):
    """GET on a fresh connection, asynchronously: (status, body)."""
    import asyncio as _aio

    async def exchange():
        reader, writer = await _aio.open_unix_connection(path)
        try:
            writer.write(("GET %s HTTP/1.1\r\nHost: tend\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n"
                          % (target, _USER_AGENT)).encode())
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            parts = head[0].split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise TendError(0, "bad status line %r" % head[0])
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    body += await reader.readexactly(size)
                    await reader.readexactly(2)
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()
            return int(parts[1]), body
        finally:
            writer.close()

    try:
        return await _aio.wait_for(exchange(), timeout)
    except _aio.TimeoutError:
        raise TendError(0, "GET %s: timed out" % target) from None
    except (OSError, _aio.IncompleteReadError, _aio.LimitOverrunError, ValueError) as e:
        if isinstance(e, TendError):
            raise
        raise TendError(0, "GET %s: %s" % (target, e)) from None


class _AsyncProcess:
    """asyncio.subprocess.Process's interface for a job of tend: its exit
    comes from tend over the socket (a long poll, or the pidfd), so no child
    watcher and no SIGCHLD handler is involved."""

    def __init__(self, popen, loop):
        self._popen = popen
        self._loop = loop
        self.pid = popen.pid
        self.stdin = self.stdout = self.stderr = None
        self._exit = loop.create_future()

    def __repr__(self):
        return "<tend.asyncio.Process %s>" % self.pid

    @property
    def returncode(self):
        return self._popen._known()

    @property
    def job_id(self):
        return self._popen.job_id

    @property
    def record(self):
        return self._popen.record

    async def _watch(self):
        import asyncio as _aio
        p = self._popen
        try:
            if p._pidfd is not None:
                fd = _os.dup(p._pidfd)  # ours alone: p may close its own
                try:
                    readable = self._loop.create_future()
                    self._loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
                    try:
                        await readable
                    finally:
                        self._loop.remove_reader(fd)
                finally:
                    _os.close(fd)
            failures = 0
            while p._known() is None:
                try:
                    status, body = await _aget(p._client.path, "/v1/jobs/%s/wait?timeout=%s" % (
                        _quote(p.job_id), _duration(_WAIT_STEP)), _WAIT_STEP + _IO_TIMEOUT)
                    p._set_record(_decode(status, body))
                    failures = 0
                except TendError as e:
                    failures += 1
                    if e.status or failures > 20:  # an answer, or 10 s without one
                        raise
                    await _aio.sleep(0.5)
            if not self._exit.done():
                self._exit.set_result(p.returncode)
        except _aio.CancelledError:
            if not self._exit.done():
                self._exit.cancel()
            raise
        except BaseException as e:
            if not self._exit.done():
                self._exit.set_exception(e)

    async def wait(self):
        """Waits for the job to exit; returns its returncode."""
        import asyncio as _aio
        return await _aio.shield(self._exit)

    def send_signal(self, signal):
        """Signals the job's process (a short blocking request to tend)."""
        self._popen.send_signal(signal)

    def terminate(self):
        self._popen.terminate()

    def kill(self):
        self._popen.kill()

    async def _feed_stdin(self, input):
        if input is not None:
            self.stdin.write(input)
        try:
            await self.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.stdin.close()

    async def _noop(self):
        return None

    async def communicate(self, input=None):
        import asyncio as _aio
        stdin = self._feed_stdin(input) if self.stdin is not None else self._noop()
        stdout = self.stdout.read() if self.stdout is not None else self._noop()
        stderr = self.stderr.read() if self.stderr is not None else self._noop()
        _, out, err = await _aio.gather(stdin, stdout, stderr)
        await self.wait()
        return out, err


async def _async_start(argv, shell, stdin, stdout, stderr, limit, kwds):
    import asyncio as _aio
    import functools
    for name, bad in (("universal_newlines", bool(kwds.get("universal_newlines"))),
                      ("text", bool(kwds.get("text"))),
                      ("encoding", kwds.get("encoding") is not None),
                      ("errors", kwds.get("errors") is not None)):
        if bad:
            raise ValueError("%s must be %s" % (name, "None" if name in ("encoding", "errors") else "False"))
    if kwds.pop("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")
    if "shell" in kwds:
        raise TypeError("shell is given by the function's name")
    loop = _aio.get_running_loop()
    popen = await loop.run_in_executor(None, functools.partial(
        Popen, argv, stdin=stdin, stdout=stdout, stderr=stderr, shell=shell, bufsize=0, **kwds))
    proc = _AsyncProcess(popen, loop)
    try:
        if popen.stdin is not None:
            tr, proto = await loop.connect_write_pipe(lambda: _aio.StreamReaderProtocol(_aio.StreamReader()),
                                                      popen.stdin)
            proc.stdin = _aio.StreamWriter(tr, proto, None, loop)
        for f, attr in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            if f is not None:
                reader = _aio.StreamReader(limit=limit)
                await loop.connect_read_pipe(lambda r=reader: _aio.StreamReaderProtocol(r), f)
                setattr(proc, attr, reader)
    except BaseException:
        for f in (popen.stdin, popen.stdout, popen.stderr):
            if f is not None:
                f.close()
        raise
    task = loop.create_task(proc._watch())
    _async_tasks.add(task)
    task.add_done_callback(_async_tasks.discard)
    return proc


class _AsyncioAPI:
    """tend.asyncio: asyncio.create_subprocess_exec and _shell, the process
    started as a job of tend (an attribute, not a submodule, so that this
    file can be vendored alone). Without TEND_SOCKET they are asyncio's."""

    PIPE = PIPE
    DEVNULL = DEVNULL
    STDOUT = STDOUT
    Process = _AsyncProcess

    async def create_subprocess_exec(self, program, *args, stdin=None, stdout=None, stderr=None,
                                     limit=2 ** 16, **kwds):
        if not _os.environ.get("TEND_SOCKET"):
            import asyncio as _aio
            kwds.pop("labels", None)
            return await _aio.create_subprocess_exec(program, *args, stdin=stdin, stdout=stdout, stderr=stderr,
                                                     limit=limit, **kwds)
        return await _async_start([program] + list(args), False, stdin, stdout, stderr, limit, kwds)

    async def create_subprocess_shell(self, cmd, stdin=None, stdout=None, stderr=None, limit=2 ** 16, **kwds):
        if not _os.environ.get("TEND_SOCKET"):
            import asyncio as _aio
            kwds.pop("labels", None)
            return await _aio.create_subprocess_shell(cmd, stdin=stdin, stdout=stdout, stderr=stderr,
                                                      limit=limit, **kwds)
        if not isinstance(cmd, (str, bytes)):
            raise ValueError("cmd must be a string")
        return await _async_start(cmd, True, stdin, stdout, stderr, limit, kwds)


asyncio = _AsyncioAPI()
