"""What bothy's API answers with, as dataclasses. Fields a newer server adds
are ignored, so an older client keeps working."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T")


def from_json(cls: Type[T], data: Dict[str, Any]) -> T:
    """Build cls from a JSON object, keeping the fields cls has."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[call-arg]


def _decode(text: str, encoding: Optional[str]) -> bytes:
    if encoding == "base64":
        return base64.b64decode(text)
    return text.encode()


@dataclass
class Sandbox:
    id: str
    state: str
    image: str = ""
    cpus: float = 0
    memory_mb: int = 0
    pids: int = 0
    disk_mb: int = 0
    disk_full: bool = False
    network: str = ""
    idle_timeout_s: int = 0
    idle_policy: str = ""
    ttl_s: int = 0
    user: str = ""
    workdir: str = ""
    env_keys: List[str] = field(default_factory=list)
    labels: Dict[str, str] = field(default_factory=dict)
    error: str = ""
    created_at: str = ""
    updated_at: str = ""
    last_active_at: str = ""
    awake_by: str = ""
    expires_at: Optional[str] = None


@dataclass
class ExecResult:
    """A finished command. A non-zero exit_code is a result, not an error."""
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    signal: str = ""
    duration_ms: float = 0
    cpu_ms: float = 0
    peak_memory_kb: int = 0
    oom_killed: bool = False
    timed_out: bool = False
    truncated: bool = False
    start_error: str = ""
    stdout_encoding: str = ""
    stderr_encoding: str = ""

    @property
    def stdout_bytes(self) -> bytes:
        return _decode(self.stdout, self.stdout_encoding)

    @property
    def stderr_bytes(self) -> bytes:
        return _decode(self.stderr, self.stderr_encoding)


@dataclass
class ExecEvent:
    """One event of a streamed exec: stdout or stderr data, then exit (with
    result) or error."""
    type: str
    data: bytes = b""
    result: Optional[ExecResult] = None
    error: Optional[Dict[str, Any]] = None


@dataclass
class FileInfo:
    name: str
    path: str
    type: str
    size: int = 0
    mode: str = ""
    mtime: str = ""
    target: str = ""
    owner: str = ""
    group: str = ""


@dataclass
class DirList:
    dir: FileInfo
    entries: List[FileInfo]
    truncated: bool = False


@dataclass
class ArchiveResult:
    path: str
    files: int
    bytes: int


@dataclass
class Process:
    pid: int
    cmd: List[str]
    state: str
    cwd: str = ""
    tag: str = ""
    user: str = ""
    started_at: str = ""
    ended_at: Optional[str] = None
    exit_code: Optional[int] = None
    signal: str = ""
    timed_out: bool = False
    cpu_ms: float = 0
    peak_memory_kb: int = 0
    stdin_open: bool = False
    output_bytes: int = 0
    output_from: int = 0


@dataclass
class LogRecord:
    """One record of a process's log: output (stream, offset, data), gap (the
    bytes from offset to to were dropped), end (the process ended: process),
    or error."""
    type: str
    offset: int = 0
    stream: str = ""
    to: int = 0
    data: bytes = b""
    process: Optional[Process] = None
    error: Optional[Dict[str, Any]] = None


@dataclass
class ExposedPort:
    port: int
    public: bool
    token: str
    url: str
    path_url: str = ""
    created_at: str = ""


@dataclass
class Snapshot:
    id: str
    name: str
    sandbox_id: str
    base_image: str = ""
    parent: str = ""
    labels: Dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    created_at: str = ""


@dataclass
class DiffEntry:
    path: str
    change: str
    type: str
    size: int = 0


@dataclass
class RunResult:
    stdout: str
    stderr: str
    exit_code: int
    signal: str = ""
    duration_ms: float = 0
    cpu_ms: float = 0
    memory_peak_bytes: int = 0
    timed_out: bool = False
    oom: bool = False
    truncated: bool = False
    files: List[Dict[str, Any]] = field(default_factory=list)
    leftover: bool = False
    runner: str = ""
    warm: bool = False
    wall_ms: float = 0
    stdout_encoding: str = ""
    stderr_encoding: str = ""

    @property
    def stdout_bytes(self) -> bytes:
        return _decode(self.stdout, self.stdout_encoding)


@dataclass
class App:
    name: str
    runtime: str
    version: int
    code_sha256: str = ""
    code: str = ""
    env: Dict[str, str] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)
    storage_bytes: int = 0
    warm: bool = False
    created_at: str = ""
    updated_at: str = ""


@dataclass
class AppResponse:
    """What an app answered to an invoke."""
    status: int
    headers: Dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode()
