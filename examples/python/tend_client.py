"""A client for tend's control API, standard library only (Python 3.9+).

Copy this one file into your dispatcher. It speaks HTTP/1.1 + JSON on tend's
Unix socket (TEND_SOCKET, which tend sets in every child's environment) and
passes file descriptors with SCM_RIGHTS, so a job can write straight into
your log file:

    import tend_client
    tend = tend_client.Client()                     # $TEND_SOCKET
    with open("task.log", "ab") as log:
        job = tend.spawn(["hermes", "work", "t-42"], cwd="/opt/data/ws",
                         env={"HERMES_KANBAN_TASK": "t-42"},
                         labels={"task": "t-42"}, stdout=log, stderr=log)
    # tend holds its own copy of the log fd now; close yours when you like.
    rec = tend.wait(job["id"])                      # the job record, once exited
    print(rec["exit_code"], rec["signal"], rec["reason"])

Unlike subprocess.Popen, the worker is tend's child: PID 1 reaps it and keeps
its exit status, so the dispatcher needs no waitpid(-1) loop (which would steal
the statuses of its other children).
"""

import json
import os
import socket
import urllib.parse

DEFAULT_SOCKET = "/run/tend.sock"
MAX_FDS = 3  # stdin, stdout, stderr (DESIGN.md section 5)


class TendError(Exception):
    """An error answer of tend (4xx, 5xx) or a failure to reach it."""

    def __init__(self, status, message):
        super().__init__("tend: %s: %s" % (status, message) if status else "tend: %s" % message)
        self.status = status  # the HTTP status, 0 when tend could not be reached
        self.message = message


class ExecError(TendError):
    """422: the command cannot be executed (no job was made)."""


class QueueFull(TendError):
    """429: tend's job queue is full; try again later."""


class _Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode()) if self.body else None


class _Conn:
    """One HTTP/1.1 connection to tend's socket (keep-alive)."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise TendError(0, "connect %s: %s" % (path, e)) from None
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, method, target, body=None, fds=()):
        data = b"" if body is None else json.dumps(body).encode()
        head = "%s %s HTTP/1.1\r\nHost: tend\r\nUser-Agent: tend_client.py\r\n" % (method, target)
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += "Content-Length: %d\r\n\r\n" % len(data)
        msg = head.encode() + data
        if fds:
            # The fds travel with the first bytes of the request: tend gives
            # them to the request whose bytes carried them.
            n = socket.send_fds(self.sock, [msg], list(fds))
            msg = msg[n:]
        if msg:
            self.sock.sendall(msg)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise TendError(0, "connection closed by tend")
        self.buf += chunk

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
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
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
        if status == 204 or status == 304 or status < 200:
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
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.buf = chunk

    def response(self):
        status, headers = self.read_head()
        return _Response(status, headers, b"".join(self.chunks(status, headers)))


def _check(resp):
    if resp.status < 400:
        return resp.json()
    try:
        msg = resp.json().get("error", "")
    except (ValueError, AttributeError):
        msg = resp.body.decode(errors="replace")
    cls = {422: ExecError, 429: QueueFull}.get(resp.status, TendError)
    raise cls(resp.status, msg)


def _fileno(f):
    return f if isinstance(f, int) else f.fileno()


def _duration(d):
    """A Go duration string from seconds (int/float) or a string."""
    if d is None or isinstance(d, str):
        return d
    return "%gs" % d


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
            rec = _check(self._conn.response())
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


def _quote(s):
    return urllib.parse.quote(s, safe="")


class Client:
    """A client of one tend. socket_path defaults to $TEND_SOCKET, then
    /run/tend.sock; timeout (seconds) bounds every socket operation."""

    def __init__(self, socket_path=None, timeout=30.0):
        self.path = socket_path or os.environ.get("TEND_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout

    def _do(self, method, target, body=None, fds=(), timeout=None):
        conn = _Conn(self.path, timeout or self.timeout)
        try:
            conn.send(method, target, body, fds)
            return _check(conn.response())
        except socket.timeout:
            raise TendError(0, "%s %s: timed out" % (method, target)) from None
        finally:
            conn.close()

    def spawn(self, argv, env=None, cwd=None, labels=None, timeout=None,
              bind=False, user=None, stdin=None, stdout=None, stderr=None):
        """Starts argv as a job of tend; returns its record (a dict), or a
        BoundJob when bind is true.

        env: a dict or a list of "K=V" (None: tend's default, see the README).
        stdin, stdout, stderr: files or fds to hand to the job (None:
        /dev/null). timeout: seconds or a Go duration string.
        Raises ExecError (422) when argv cannot be executed, QueueFull (429).
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
            return BoundJob(conn, _check(conn.response()))
        except BaseException:
            conn.close()
            raise

    def job(self, job_id):
        """The record of one job (TendError 404 when unknown or not yours)."""
        return self._do("GET", "/v1/jobs/%s" % _quote(job_id))

    def wait(self, job_id, timeout=None):
        """Waits until the job has exited and returns its record. timeout
        (seconds) None waits as long as it takes; else TendError(0) after it."""
        left = timeout
        while True:
            step = 30.0 if left is None else max(0.001, min(30.0, left))
            rec = self._do("GET", "/v1/jobs/%s/wait?timeout=%s" % (_quote(job_id), _duration(step)),
                           timeout=step + self.timeout)
            if rec.get("state") == "exited":
                return rec
            if left is not None:
                left -= step
                if left <= 0:
                    raise TendError(0, "job %s: still %s after %gs" % (job_id, rec.get("state"), timeout))

    def signal(self, job_id, sig="SIGTERM", tree=False, kill=False):
        """Sends sig (a name or number) to the job, or to its process group
        with tree; kill also SIGKILLs the group after [jobs] stop_grace."""
        body = {"signal": str(sig)}
        if tree:
            body["tree"] = True
        if kill:
            body["kill"] = True
        return self._do("POST", "/v1/jobs/%s/signal" % _quote(job_id), body)

    def jobs(self, label=None):
        """The jobs this caller may see, newest first; label is "k=v" or a
        (k, v) pair to select by."""
        target = "/v1/jobs"
        if label is not None:
            if not isinstance(label, str):
                label = "%s=%s" % tuple(label)
            target += "?label=" + urllib.parse.quote(label, safe="=")
        return self._do("GET", target) or []

    def status(self):
        return self._do("GET", "/v1/status")

    def health(self):
        """True when every critical service is ready (200), False on 503."""
        conn = _Conn(self.path, self.timeout)
        try:
            conn.send("GET", "/v1/health")
            resp = conn.response()
        finally:
            conn.close()
        if resp.status in (200, 503):
            return resp.status == 200
        _check(resp)
        return False

    def events(self, timeout=None):
        """Yields the events of GET /v1/events (dicts) as they come. Close
        the generator to stop; timeout bounds each wait for the next bytes."""
        conn = _Conn(self.path, timeout)
        try:
            conn.send("GET", "/v1/events")
            status, headers = conn.read_head()
            if status >= 400:
                _check(_Response(status, headers, b"".join(conn.chunks(status, headers))))
            pending = b""
            for piece in conn.chunks(status, headers):
                pending += piece
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            conn.close()
