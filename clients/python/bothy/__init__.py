"""bothy's Python client, on the standard library alone.

    from bothy import Client
    c = Client()                      # BOTHY_URL, BOTHY_KEY
    with c.create_sandbox("bothy/base") as sb:
        print(sb.exec("python3 -c 'print(6*7)'").stdout)
"""

from .client import Client, Files, Ports, Processes, Sandbox
from .errors import (Conflict, Forbidden, Internal, InvalidArgument, MethodNotAllowed, NoSpace, NotFound,
                     NotListening, NotSupported, PayloadTooLarge, QuotaExceeded, RateLimited, BothyError, Unauthenticated,
                     Unavailable, UnsupportedMediaType)
from .models import (App, AppResponse, ArchiveResult, DiffEntry, DirList, ExecEvent, ExecResult, ExposedPort,
                     FileInfo, LogRecord, Process, RunResult, Snapshot)

__all__ = [
    "Client", "Sandbox", "Files", "Processes", "Ports",
    "BothyError", "InvalidArgument", "Unauthenticated", "Forbidden", "NotFound", "MethodNotAllowed", "Conflict",
    "RateLimited", "QuotaExceeded", "PayloadTooLarge", "UnsupportedMediaType", "Internal", "NoSpace", "Unavailable",
    "NotListening", "NotSupported",
    "App", "AppResponse", "ArchiveResult", "DiffEntry", "DirList", "ExecEvent", "ExecResult", "ExposedPort",
    "FileInfo", "LogRecord", "Process", "RunResult", "Snapshot",
]
