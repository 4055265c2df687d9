"""The client: Client for the account-wide calls, Sandbox for one sandbox."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import BothyError, error_for
from .models import (App, AppResponse, ArchiveResult, DiffEntry, DirList, ExecEvent, ExecResult,
                     ExposedPort, FileInfo, LogRecord, Process, RunResult, Sandbox as SandboxInfo,
                     Snapshot, from_json)

Query = Sequence[Tuple[str, str]]
Body = Union[bytes, str]


class Client:
    """A bothy server and an API key. Both default to the environment:
    BOTHY_URL (else http://127.0.0.1:7070) and BOTHY_KEY."""

    def __init__(self, url: Optional[str] = None, key: Optional[str] = None, *, timeout: float = 660) -> None:
        self.url = (url or os.environ.get("BOTHY_URL") or "http://127.0.0.1:7070").rstrip("/")
        key = key if key is not None else os.environ.get("BOTHY_KEY")
        if not key:
            raise ValueError("no API key: pass key= or export BOTHY_KEY=...")
        self.key = key
        self.timeout = timeout

    # -- transport -------------------------------------------------------

    def _open(self, method: str, path: str, *, query: Query = (), json_body: Any = None,
              data: Optional[bytes] = None, content_type: str = "", headers: Optional[Mapping[str, str]] = None,
              timeout: Optional[float] = None) -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(list(query))
        h = {"Authorization": "Bearer " + self.key, "User-Agent": "bothy-python/0.1"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            h["Content-Type"] = content_type
        h.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise _error(e) from None

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        with self._open(method, path, **kw) as res:
            body = res.read()
        return json.loads(body) if body else None

    def _lines(self, method: str, path: str, **kw: Any) -> Iterator[Dict[str, Any]]:
        res = self._open(method, path, **kw)
        try:
            for line in res:
                if line.strip():
                    yield json.loads(line)
        finally:
            res.close()

    # -- sandboxes -------------------------------------------------------

    def create_sandbox(self, image: str = "", *, env: Optional[Mapping[str, str]] = None,
                       labels: Optional[Mapping[str, str]] = None, cpus: float = 0, memory_mb: int = 0,
                       pids: int = 0, disk_mb: int = 0, network: str = "", idle_timeout_s: Optional[int] = None,
                       idle_policy: str = "", ttl_s: Optional[int] = None, user: str = "", workdir: str = "",
                       snapshot: str = "", idempotency_key: str = "") -> "Sandbox":
        """Create a sandbox (from an image, or from a snapshot) and return it
        running. idempotency_key makes a retry return the first sandbox."""
        req: Dict[str, Any] = {k: v for k, v in {
            "image": image, "snapshot": snapshot, "env": dict(env or {}), "labels": dict(labels or {}),
            "cpus": cpus, "memory_mb": memory_mb, "pids": pids, "disk_mb": disk_mb, "network": network,
            "idle_policy": idle_policy, "user": user, "workdir": workdir}.items() if v}
        if idle_timeout_s is not None:
            req["idle_timeout_s"] = idle_timeout_s
        if ttl_s is not None:
            req["ttl_s"] = ttl_s
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Sandbox(self, from_json(SandboxInfo, self._json("POST", "/v1/sandboxes", json_body=req, headers=headers)))

    def sandbox(self, sandbox_id: str) -> "Sandbox":
        """The sandbox with this ID (it is fetched, so a wrong ID raises NotFound)."""
        return Sandbox(self, self._sandbox_info(sandbox_id))

    def _sandbox_info(self, sandbox_id: str) -> SandboxInfo:
        return from_json(SandboxInfo, self._json("GET", "/v1/sandboxes/" + _seg(sandbox_id)))

    def list_sandboxes(self, *, labels: Optional[Mapping[str, str]] = None, state: str = "",
                       page_size: int = 100) -> Iterator["Sandbox"]:
        """Every sandbox of the key (matching all labels, in state), page by page."""
        cursor = ""
        while True:
            q: List[Tuple[str, str]] = [("label", f"{k}={v}") for k, v in (labels or {}).items()]
            if state:
                q.append(("state", state))
            q.append(("limit", str(page_size)))
            if cursor:
                q.append(("cursor", cursor))
            page = self._json("GET", "/v1/sandboxes", query=q)
            for s in page["sandboxes"]:
                yield Sandbox(self, from_json(SandboxInfo, s))
            cursor = page.get("next_cursor", "")
            if not cursor:
                return

    # -- snapshots -------------------------------------------------------

    def list_snapshots(self, sandbox_id: str = "") -> List[Snapshot]:
        q = [("sandbox", sandbox_id)] if sandbox_id else []
        return [from_json(Snapshot, s) for s in self._json("GET", "/v1/snapshots", query=q)["snapshots"]]

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        return from_json(Snapshot, self._json("GET", "/v1/snapshots/" + _seg(snapshot_id)))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._json("DELETE", "/v1/snapshots/" + _seg(snapshot_id))

    def diff_snapshot(self, snapshot_id: str, to: str) -> List[DiffEntry]:
        """What differs from the snapshot to another snapshot or a sandbox
        (as it is now)."""
        out = self._json("GET", f"/v1/snapshots/{_seg(snapshot_id)}/diff", query=[("to", to)])
        return [from_json(DiffEntry, c) for c in out["changes"]]

    def export_snapshot(self, snapshot_id: str) -> Iterator[bytes]:
        """The snapshot as a portable tar stream, in chunks."""
        res = self._open("GET", f"/v1/snapshots/{_seg(snapshot_id)}/export")
        try:
            while chunk := res.read(1 << 20):
                yield chunk
        finally:
            res.close()

    def import_snapshot(self, data: bytes) -> Snapshot:
        return from_json(Snapshot, self._json("POST", "/v1/snapshots/import", data=data, content_type="application/x-tar"))

    # -- runs and apps ---------------------------------------------------

    def run(self, runtime: str, code: str, *, stdin: str = "", files: Optional[Mapping[str, Body]] = None,
            env: Optional[Mapping[str, str]] = None, timeout_ms: int = 0, memory_mb: int = 0) -> RunResult:
        """Run code ("python", "node" or "bash") in a warm, locked-down runner."""
        req: Dict[str, Any] = {"runtime": runtime, "code": code}
        if stdin:
            req["stdin"] = stdin
        if files:
            req["files"] = [_run_file(p, c) for p, c in files.items()]
        if env:
            req["env"] = dict(env)
        if timeout_ms:
            req["timeout_ms"] = timeout_ms
        if memory_mb:
            req["memory_mb"] = memory_mb
        return from_json(RunResult, self._json("POST", "/v1/run", json_body=req))

    def deploy_app(self, name: str, runtime: str, code: str, *, env: Optional[Mapping[str, str]] = None,
                   limits: Optional[Mapping[str, Any]] = None) -> App:
        req: Dict[str, Any] = {"runtime": runtime, "code": code}
        if env:
            req["env"] = dict(env)
        if limits:
            req["limits"] = dict(limits)
        return from_json(App, self._json("PUT", "/v1/apps/" + _seg(name), json_body=req))

    def get_app(self, name: str) -> App:
        return from_json(App, self._json("GET", "/v1/apps/" + _seg(name)))

    def list_apps(self) -> List[App]:
        return [from_json(App, a) for a in self._json("GET", "/v1/apps")["apps"]]

    def delete_app(self, name: str) -> None:
        self._json("DELETE", "/v1/apps/" + _seg(name))

    def invoke_app(self, name: str, path: str = "/", *, method: str = "GET", body: Optional[Body] = None,
                   headers: Optional[Mapping[str, str]] = None) -> AppResponse:
        """Send a request to an app. Its answer comes back whatever its
        status; errors of bothy itself (no such app, rate limits) raise."""
        data = body.encode() if isinstance(body, str) else body
        url = self.url + f"/v1/apps/{_seg(name)}/invoke" + ("/" + path.lstrip("/") if path.strip("/") else "")
        h = {"Authorization": "Bearer " + self.key, **(headers or {})}
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return AppResponse(res.status, dict(res.headers.items()), res.read())
        except urllib.error.HTTPError as e:
            b = e.read()
            # bothy's own refusals (no such app, limits) are errors; an
            # app's answer, whatever its status, is a response.
            if e.code in (401, 403, 404, 413, 429, 503) and _is_error_body(b):
                raise _error(e, b) from None
            return AppResponse(e.code, dict(e.headers.items()), b)

    def app_logs(self, name: str, limit: int = 100) -> List[Dict[str, Any]]:
        return self._json("GET", f"/v1/apps/{_seg(name)}/logs", query=[("limit", str(limit))])["entries"]

    def usage(self, since: str = "") -> List[Dict[str, Any]]:
        q = [("since", since)] if since else []
        return self._json("GET", "/v1/usage", query=q)["rows"]


class Sandbox:
    """One sandbox. info holds what the server said last; refresh() asks again."""

    def __init__(self, client: Client, info: SandboxInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self.files = Files(self)
        self.processes = Processes(self)
        self.ports = Ports(self)

    def __repr__(self) -> str:
        return f"<Sandbox {self.id} {self.info.state}>"

    @property
    def _path(self) -> str:
        return "/v1/sandboxes/" + _seg(self.id)

    def _set(self, data: Dict[str, Any]) -> "Sandbox":
        self.info = from_json(SandboxInfo, data)
        return self

    def refresh(self) -> "Sandbox":
        return self._set(self.client._json("GET", self._path))

    def update(self, *, labels: Optional[Mapping[str, str]] = None, idle_timeout_s: Optional[int] = None,
               idle_policy: Optional[str] = None, ttl_s: Optional[int] = None) -> "Sandbox":
        req = {k: v for k, v in {"labels": None if labels is None else dict(labels), "idle_timeout_s": idle_timeout_s,
                                 "idle_policy": idle_policy, "ttl_s": ttl_s}.items() if v is not None}
        return self._set(self.client._json("PATCH", self._path, json_body=req))

    def delete(self) -> None:
        self.client._json("DELETE", self._path)

    def stop(self) -> "Sandbox":
        return self._set(self.client._json("POST", self._path + "/stop"))

    def start(self) -> "Sandbox":
        return self._set(self.client._json("POST", self._path + "/start"))

    def pause(self) -> "Sandbox":
        return self._set(self.client._json("POST", self._path + "/pause"))

    def resume(self) -> "Sandbox":
        return self._set(self.client._json("POST", self._path + "/resume"))

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.delete()

    # -- exec ------------------------------------------------------------

    @staticmethod
    def _exec_request(cmd: Union[str, Sequence[str]], env: Optional[Mapping[str, str]], cwd: str, user: str,
                      stdin: Optional[Body], timeout_ms: int) -> Dict[str, Any]:
        req: Dict[str, Any] = {"shell": cmd} if isinstance(cmd, str) else {"cmd": list(cmd)}
        if env:
            req["env"] = dict(env)
        if cwd:
            req["cwd"] = cwd
        if user:
            req["user"] = user
        if stdin:
            req["stdin"] = stdin.decode() if isinstance(stdin, bytes) else stdin
        if timeout_ms:
            req["timeout_ms"] = timeout_ms
        return req

    def exec(self, cmd: Union[str, Sequence[str]], *, env: Optional[Mapping[str, str]] = None, cwd: str = "",
             user: str = "", stdin: Optional[Body] = None, timeout_ms: int = 0, max_output_bytes: int = 0) -> ExecResult:
        """Run a command and wait for it: a string runs with /bin/sh -c, a
        list as an argument vector."""
        req = self._exec_request(cmd, env, cwd, user, stdin, timeout_ms)
        if max_output_bytes:
            req["max_output_bytes"] = max_output_bytes
        return from_json(ExecResult, self.client._json("POST", self._path + "/exec", json_body=req))

    def exec_stream(self, cmd: Union[str, Sequence[str]], *, env: Optional[Mapping[str, str]] = None, cwd: str = "",
                    user: str = "", stdin: Optional[Body] = None, timeout_ms: int = 0) -> Iterator[ExecEvent]:
        """Run a command and yield its output as it comes, then an exit event
        with the result."""
        req = self._exec_request(cmd, env, cwd, user, stdin, timeout_ms)
        for ev in self.client._lines("POST", self._path + "/exec", json_body=req, headers={"Accept": "application/x-ndjson"}):
            if ev["type"] in ("stdout", "stderr"):
                raw = ev.get("data", "")
                yield ExecEvent(ev["type"], base64.b64decode(raw) if ev.get("encoding") == "base64" else raw.encode())
            elif ev["type"] == "exit":
                yield ExecEvent("exit", result=from_json(ExecResult, ev["result"]))
            else:
                err = ev.get("error") or {}
                raise error_for(err.get("code", "internal"), err.get("message", "exec failed"), request_id=err.get("request_id", ""))

    # -- snapshots -------------------------------------------------------

    def snapshot(self, name: str = "", labels: Optional[Mapping[str, str]] = None) -> Snapshot:
        """Checkpoint the sandbox's filesystem."""
        req: Dict[str, Any] = {}
        if name:
            req["name"] = name
        if labels:
            req["labels"] = dict(labels)
        return from_json(Snapshot, self.client._json("POST", self._path + "/snapshots", json_body=req))

    def fork(self, count: int = 1, labels: Optional[Mapping[str, str]] = None) -> List["Sandbox"]:
        """New sandboxes from this one's filesystem as it is now (with its
        limits, environment, user and working directory)."""
        req: Dict[str, Any] = {"count": count}
        if labels:
            req["labels"] = dict(labels)
        out = self.client._json("POST", self._path + "/fork", json_body=req)
        return [Sandbox(self.client, from_json(SandboxInfo, s)) for s in out["sandboxes"]]

    def restore(self, snapshot_id: str, paths: Optional[Sequence[str]] = None) -> "Sandbox":
        """Put the sandbox's filesystem back as the snapshot has it (only
        paths, when given)."""
        req: Dict[str, Any] = {"snapshot": snapshot_id}
        if paths:
            req["paths"] = list(paths)
        return self._set(self.client._json("POST", self._path + "/restore", json_body=req))


class Files:
    """A sandbox's files."""

    def __init__(self, sb: Sandbox) -> None:
        self._sb = sb

    def _q(self, path: str, user: str = "", **more: str) -> Query:
        q = [("path", path)] + [(k, v) for k, v in more.items() if v]
        return q + [("user", user)] if user else q

    def read(self, path: str, *, offset: int = 0, length: Optional[int] = None, user: str = "") -> bytes:
        more = {"offset": str(offset) if offset else "", "length": "" if length is None else str(length)}
        with self._sb.client._open("GET", self._sb._path + "/files", query=self._q(path, user, **more)) as res:
            return res.read()

    def read_text(self, path: str, *, user: str = "") -> str:
        return self.read(path, user=user).decode()

    def write(self, path: str, data: Body, *, mode: str = "", parents: bool = True, user: str = "") -> FileInfo:
        """Write a file atomically (creating its parent directories)."""
        body = data.encode() if isinstance(data, str) else data
        q = self._q(path, user, mode=mode, parents="true" if parents else "")
        return from_json(FileInfo, self._sb.client._json("PUT", self._sb._path + "/files", query=q, data=body,
                                                         content_type="application/octet-stream"))

    def list(self, path: str, *, recursive: bool = False, depth: int = 0, user: str = "") -> DirList:
        q = self._q(path, user, recursive="true" if recursive else "", depth=str(depth) if depth else "")
        out = self._sb.client._json("GET", self._sb._path + "/files", query=q)
        if "dir" not in out:
            raise error_for("invalid_argument", path + " is not a directory")
        return DirList(from_json(FileInfo, out["dir"]), [from_json(FileInfo, e) for e in out["entries"]], out.get("truncated", False))

    def stat(self, path: str, *, user: str = "") -> FileInfo:
        return from_json(FileInfo, self._sb.client._json("GET", self._sb._path + "/files/stat", query=self._q(path, user)))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except BothyError as e:
            if e.code == "not_found":
                return False
            raise

    def remove(self, path: str, *, recursive: bool = False, user: str = "") -> None:
        self._sb.client._json("DELETE", self._sb._path + "/files", query=self._q(path, user, recursive="true" if recursive else ""))

    def mkdir(self, path: str, *, mode: str = "", parents: bool = True) -> FileInfo:
        req: Dict[str, Any] = {"path": path, "parents": parents}
        if mode:
            req["mode"] = mode
        return from_json(FileInfo, self._sb.client._json("POST", self._sb._path + "/files/mkdir", json_body=req))

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        return from_json(FileInfo, self._sb.client._json("POST", self._sb._path + "/files/move",
                                                         json_body={"from": src, "to": dst, "overwrite": overwrite}))

    def chmod(self, path: str, mode: str) -> FileInfo:
        return from_json(FileInfo, self._sb.client._json("POST", self._sb._path + "/files/chmod", json_body={"path": path, "mode": mode}))

    def download_archive(self, path: str) -> bytes:
        """A directory as a tar archive."""
        with self._sb.client._open("GET", self._sb._path + "/archive", query=[("path", path)]) as res:
            return res.read()

    def upload_archive(self, path: str, tar: bytes) -> ArchiveResult:
        """Unpack a tar archive into a directory."""
        return from_json(ArchiveResult, self._sb.client._json("PUT", self._sb._path + "/archive", query=[("path", path)],
                                                              data=tar, content_type="application/x-tar"))


class Processes:
    """A sandbox's background processes."""

    def __init__(self, sb: Sandbox) -> None:
        self._sb = sb

    def _p(self, pid: int) -> str:
        return f"{self._sb._path}/processes/{int(pid)}"

    def start(self, cmd: Union[str, Sequence[str]], *, tag: str = "", env: Optional[Mapping[str, str]] = None,
              cwd: str = "", user: str = "", stdin: bool = False, timeout_ms: int = 0, log_bytes: int = 0) -> Process:
        req: Dict[str, Any] = {"shell": cmd} if isinstance(cmd, str) else {"cmd": list(cmd)}
        req.update({k: v for k, v in {"tag": tag, "env": dict(env or {}), "cwd": cwd, "user": user, "stdin": stdin,
                                      "timeout_ms": timeout_ms, "log_bytes": log_bytes}.items() if v})
        return from_json(Process, self._sb.client._json("POST", self._sb._path + "/processes", json_body=req))

    def list(self, tag: str = "") -> List[Process]:
        q = [("tag", tag)] if tag else []
        return [from_json(Process, p) for p in self._sb.client._json("GET", self._sb._path + "/processes", query=q)["processes"]]

    def get(self, pid: int) -> Process:
        return from_json(Process, self._sb.client._json("GET", self._p(pid)))

    def kill(self, pid: int) -> Process:
        return from_json(Process, self._sb.client._json("DELETE", self._p(pid)))

    def signal(self, pid: int, signal: str) -> Process:
        return from_json(Process, self._sb.client._json("POST", self._p(pid) + "/signal", json_body={"signal": signal}))

    def wait(self, pid: int, timeout_ms: int = 0) -> Process:
        """Wait for the process to end (up to timeout_ms; then it may still run)."""
        q = [("timeout_ms", str(timeout_ms))] if timeout_ms else []
        return from_json(Process, self._sb.client._json("GET", self._p(pid) + "/wait", query=q))

    def write_stdin(self, pid: int, data: Body) -> Process:
        body = data.encode() if isinstance(data, str) else data
        return from_json(Process, self._sb.client._json("POST", self._p(pid) + "/stdin", data=body,
                                                        content_type="application/octet-stream"))

    def close_stdin(self, pid: int) -> Process:
        return from_json(Process, self._sb.client._json("POST", self._p(pid) + "/stdin/close"))

    def logs(self, pid: int, *, offset: int = 0, follow: bool = False, stream: str = "") -> Iterator[LogRecord]:
        """The process's output from offset, as records; with follow, until it
        ends (the last record is then its exit)."""
        q = [("from", str(offset))]
        if follow:
            q.append(("follow", "true"))
        if stream:
            q.append(("stream", stream))
        for r in self._sb.client._lines("GET", self._p(pid) + "/logs", query=q):
            data = r.get("data", "")
            raw = base64.b64decode(data) if r.get("encoding") == "base64" else data.encode()
            proc = from_json(Process, r["process"]) if r.get("process") else None
            yield LogRecord(r["type"], r.get("offset", 0), r.get("stream", ""), r.get("to", 0), raw, proc, r.get("error"))


class Ports:
    """A sandbox's exposed ports."""

    def __init__(self, sb: Sandbox) -> None:
        self._sb = sb

    def expose(self, port: int, *, public: bool = False) -> ExposedPort:
        return from_json(ExposedPort, self._sb.client._json("POST", self._sb._path + "/ports", json_body={"port": port, "public": public}))

    def list(self) -> List[ExposedPort]:
        return [from_json(ExposedPort, p) for p in self._sb.client._json("GET", self._sb._path + "/ports")["ports"]]

    def unexpose(self, port: int) -> None:
        self._sb.client._json("DELETE", f"{self._sb._path}/ports/{int(port)}")

    def wait(self, port: int, timeout_ms: int = 0) -> None:
        """Wait until something listens on the port."""
        q = [("timeout_ms", str(timeout_ms))] if timeout_ms else []
        self._sb.client._json("GET", f"{self._sb._path}/ports/{int(port)}/wait", query=q)

    def request(self, port: int, path: str = "/", *, method: str = "GET", body: Optional[Body] = None) -> Tuple[int, bytes]:
        """A request to the server on the port, through bothy (with the key)."""
        data = body.encode() if isinstance(body, str) else body
        res = self._sb.client._open(method, f"{self._sb._path}/ports/{int(port)}/{path.lstrip('/')}", data=data)
        with res:
            return res.status, res.read()


def _seg(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _run_file(path: str, content: Body) -> Dict[str, Any]:
    if isinstance(content, bytes):
        return {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}
    return {"path": path, "content": content}


def _is_error_body(b: bytes) -> bool:
    try:
        return isinstance(json.loads(b).get("error"), dict)
    except (ValueError, AttributeError):
        return False


def _error(e: urllib.error.HTTPError, body: Optional[bytes] = None) -> BothyError:
    b = e.read() if body is None else body
    retry = e.headers.get("Retry-After")
    try:
        err = json.loads(b)["error"]
        code, msg, rid = err.get("code", ""), err.get("message", ""), err.get("request_id", "")
    except (ValueError, KeyError, TypeError):
        code, msg, rid = "", b.decode(errors="replace")[:500] or e.reason, ""
    if not code:
        code = {400: "invalid_argument", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict",
                413: "payload_too_large", 429: "rate_limited", 502: "unavailable", 503: "unavailable"}.get(e.code, "internal")
    return error_for(code, msg, status=e.code, request_id=rid, retry_after=int(retry) if retry and retry.isdigit() else None)
