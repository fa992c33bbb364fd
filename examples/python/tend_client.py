"""Deprecated: use the tend package (python/tend in this repository).

This module is kept so that code written against it goes on working; it is
now a thin re-export of tend's Client, which has the same methods:

    import tend_client
    tend = tend_client.Client()                     # $TEND_SOCKET
    job = tend.spawn(["hermes", "work", "t-42"], labels={"task": "t-42"})
    rec = tend.wait(job["id"])                      # the record, once exited

New code should use tend.Popen (subprocess.Popen's interface; the process is
a job of tend, PID 1) and tend.on_exit; see docs/AGENTS.md. To vendor tend,
copy python/tend/__init__.py alone as tend.py: this file then finds it.
"""

import os
import sys
import warnings

try:
    import tend as _tend
except ImportError:  # run from the repository: python/tend beside examples/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import tend as _tend

warnings.warn("tend_client is deprecated: use the tend package (tend.Popen, tend.Client)",
              DeprecationWarning, stacklevel=2)

Client = _tend.Client
BoundJob = _tend.BoundJob
TendError = _tend.TendError
ExecError = _tend.ExecError
QueueFull = _tend.QueueFull
DEFAULT_SOCKET = _tend.DEFAULT_SOCKET
MAX_FDS = _tend.MAX_FDS
