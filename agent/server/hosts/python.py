# The Python runtime host of a bothy runner. bothy-agent starts it once per
# runner container with its control socket as fd 3. It imports the standard
# library, freezes the heap, and then serves the agent one message at a time:
#
#   fork      fork a process for a future run and send the agent its socket
#             ("spare"); the agent sends that process the run and its stdio
#             fds directly, and the process reports its own exit
#   wait      say how a run process that was killed ended ("waited")
#   app_init  load an app's code into this process once
#   invoke    call the app's fetch(request, env); storage calls go back to the
#             agent as "storage" messages and wait for "storage_result"
#
# Messages are a 4-byte big-endian length and that many bytes of JSON.
import asyncio, base64, builtins, collections, contextlib, copy, csv, dataclasses
import datetime, decimal, enum, fractions, functools, gc, hashlib, heapq, io
import itertools, json, math, operator, os, pathlib, random, re, resource
import signal, socket, statistics, string, struct, subprocess, sys, textwrap
import threading, time, traceback, typing, urllib.parse, uuid

ctl = socket.socket(fileno=3)


def recv_exact(n, fds=None, sock=ctl):
    data = b""
    while len(data) < n:
        if fds is not None and not data:
            chunk, got, _, _ = socket.recv_fds(sock, n, 3)
            fds.extend(got)
        else:
            chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def recv():
    fds = []
    (n,) = struct.unpack(">I", recv_exact(4, fds))
    return json.loads(recv_exact(n)), fds


def send(msg):
    b = json.dumps(msg).encode()
    ctl.sendall(struct.pack(">I", len(b)) + b)


def set_limits(m):
    cpu = max(1, int(m.get("timeout_ms", 0) / 1000) + 1)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    except (ValueError, OSError):
        pass


def spare_child(sock):
    """A forked process made ready before it has work: it waits on sock for
    one run from the agent (the message and its stdio fds), runs it, reports,
    and exits."""
    rc = 1
    try:
        os.setsid()
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 4096)
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        for res, val in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 256)):
            try:
                resource.setrlimit(res, (val, val))
            except (ValueError, OSError):
                pass
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The streams are bound to fd numbers; the run's pipes replace the
        # fds under them.
        stdin = open(0, "r", closefd=False)
        stdout = open(1, "w", closefd=False, errors="backslashreplace")
        stderr = open(2, "w", closefd=False, errors="backslashreplace", buffering=1)
        # Touch what every run touches, so that the copy-on-write faults
        # happen now rather than on the run's clock.
        exec(compile("x = [1]\nprint(x, len(x), end='')", "warm", "exec"),
             {"__builtins__": builtins, "print": lambda *a, **k: None})
        json.dumps({"status": 0, "cpu_ms": 0.0, "maxrss_kb": 0})
        resource.getrusage(resource.RUSAGE_SELF)
        fds = []
        try:
            (n,) = struct.unpack(">I", recv_exact(4, fds, sock))
            m = json.loads(recv_exact(n, None, sock))
        except EOFError:  # the host is gone, and no run came
            os._exit(0)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
        set_limits(m)
        os.chdir(m["cwd"])
        os.environ.clear()
        os.environ.update(m.get("env") or {})
        sys.argv = ["main.py"]
        sys.path.insert(0, m["cwd"])
        code = compile(m["code"], "main.py", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
        rc = 0
    except SystemExit as e:
        if e.code is None:
            rc = 0
        elif isinstance(e.code, int):
            rc = e.code & 0xFF
        else:
            print(e.code, file=sys.stderr)
            rc = 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:
                pass
        # Report to the agent before exiting: tearing down the process's
        # memory takes longer than the run. Closing stdio first ends the
        # output.
        try:
            for fd in (0, 1, 2):
                os.close(fd)
            ru = resource.getrusage(resource.RUSAGE_SELF)
            b = json.dumps({"status": (rc & 0xFF) << 8, "cpu_ms": (ru.ru_utime + ru.ru_stime) * 1000,
                            "maxrss_kb": ru.ru_maxrss}).encode()
            sock.sendall(struct.pack(">I", len(b)) + b)
            sock.recv(1)  # the agent closes the socket once it has answered
        except BaseException:
            pass
        os._exit(rc)


reaped = collections.OrderedDict()  # pid -> how it ended, for "wait"


def fork_spare():
    """Forks a process for a future run and hands the agent its socket."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        ctl.close()
        spare_child(theirs)
    theirs.close()
    b = json.dumps({"op": "spare", "pid": pid}).encode()
    ctl.sendmsg([struct.pack(">I", len(b))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", ours.fileno()))])
    ctl.sendall(b)
    ours.close()


def ended(pid, status, ru):
    return {"op": "waited", "pid": pid, "status": status,
            "cpu_ms": (ru.ru_utime + ru.ru_stime) * 1000, "maxrss_kb": ru.ru_maxrss}


def reap():
    """Collects the runs that have ended, keeping how the last ones did."""
    while True:
        try:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reaped[pid] = ended(pid, status, ru)
        while len(reaped) > 64:
            reaped.popitem(last=False)


def wait(pid):
    reap()
    if pid in reaped:
        send(reaped.pop(pid))
        return
    try:
        _, status, ru = os.wait4(pid, 0)
        send(ended(pid, status, ru))
    except ChildProcessError:
        send({"op": "error", "message": "no such run process %d" % pid})


# --- apps -----------------------------------------------------------------

class StorageError(Exception):
    pass


_calls = itertools.count(1)


def call(kind, **args):
    args.update(op="storage", id=next(_calls), call=kind)
    send(args)
    while True:
        m, _ = recv()
        if m.get("op") == "storage_result" and m.get("id") == args["id"]:
            break
    if m.get("error"):
        raise StorageError(m["error"])
    return m


class Cursor(list):
    """The rows of one sql.exec, as dicts, with the counts Cloudflare bills by."""

    def __init__(self, m):
        super().__init__(m.get("rows") or [])
        self.columns = m.get("columns") or []
        self.rows_read = m.get("rows_read", 0)
        self.rows_written = m.get("rows_written", 0)

    def one(self):
        if len(self) != 1:
            raise StorageError("expected exactly one row, got %d" % len(self))
        return self[0]


class SQL:
    def exec(self, query, *params):
        return Cursor(call("sql", query=query, params=list(params)))


class Storage:
    def __init__(self):
        self.sql = SQL()

    def get(self, key, default=None):
        m = call("get", key=key)
        return m["value"] if m.get("found") else default

    def put(self, key, value):
        call("put", key=key, value=value)

    def delete(self, key):
        return bool(call("delete", key=key).get("found"))

    def list(self, prefix="", limit=0):
        m = call("list", prefix=prefix, limit=limit)
        return dict(m.get("entries") or [])

    @contextlib.contextmanager
    def transaction(self):
        call("begin")
        try:
            yield self
        except BaseException:
            call("rollback")
            raise
        call("commit")


class Env:
    def __init__(self, vars):
        self.storage = Storage()
        self.vars = vars

    def __getattr__(self, name):
        try:
            return self.vars[name]
        except KeyError:
            raise AttributeError(name) from None


class Request:
    def __init__(self, r):
        self.method = r["method"]
        self.path = r["path"]
        self.url = r["url"]
        self.query = {k: v[0] for k, v in urllib.parse.parse_qs(r.get("query", ""), keep_blank_values=True).items()}
        self.headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
        self.body = base64.b64decode(r.get("body") or "")

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body or b"null")


class Response:
    def __init__(self, body=b"", status=200, headers=None):
        self.body, self.status, self.headers = body, status, dict(headers or {})

    @classmethod
    def json(cls, value, status=200, headers=None):
        h = {"content-type": "application/json"}
        h.update(headers or {})
        return cls(json.dumps(value), status, h)


def to_response(v):
    if isinstance(v, Response):
        body, status, headers = v.body, v.status, v.headers
    elif isinstance(v, dict) and ("body" in v or "status" in v):
        body, status, headers = v.get("body", b""), v.get("status", 200), v.get("headers") or {}
    elif isinstance(v, (str, bytes)):
        body, status, headers = v, 200, {}
    elif v is None:
        body, status, headers = b"", 204, {}
    else:
        body, status, headers = json.dumps(v), 200, {"content-type": "application/json"}
    if isinstance(body, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        body = body.encode()
    elif not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    return {"status": int(status), "headers": {str(k): str(v) for k, v in headers.items()},
            "body": base64.b64encode(bytes(body)).decode()}


class Capped(io.StringIO):
    """Console output of one invoke, kept up to a cap."""

    def __init__(self, cap):
        super().__init__()
        self.cap, self.size, self.truncated = cap, 0, False

    def write(self, s):
        if self.size + len(s) > self.cap:
            self.truncated = True
            s = s[: max(0, self.cap - self.size)]
        self.size += len(s)
        return super().write(s)


app = None
app_env = None


def app_init(m):
    global app, app_env
    g = {"__name__": "app", "__builtins__": builtins, "Response": Response, "Request": Request}
    os.chdir("/tmp")
    exec(compile(m["code"], "app.py", "exec"), g)
    fetch = g.get("fetch")
    if not callable(fetch):
        raise ValueError("the app defines no fetch(request, env) function")
    app = fetch
    app_env = Env(m.get("env") or {})


def invoke(m):
    logs = Capped(m.get("max_output") or 65536)
    cpu0 = time.process_time()
    try:
        with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
            v = app(Request(m["request"]), app_env)
            if asyncio.iscoroutine(v):
                v = asyncio.run(v)
            out = to_response(v)
        out["op"] = "response"
    except BaseException as e:
        logs.write(traceback.format_exc())
        out = {"op": "error", "message": "%s: %s" % (type(e).__name__, e)}
    out["logs"] = logs.getvalue()
    out["logs_truncated"] = logs.truncated
    out["cpu_ms"] = (time.process_time() - cpu0) * 1000
    send(out)


def serve():
    gc.collect()
    gc.freeze()
    send({"op": "ready", "pid": os.getpid()})
    for _ in range(2):  # two, so that the one a run takes is long ready
        fork_spare()
    while True:
        try:
            m, _ = recv()
        except EOFError:
            return
        reap()
        op = m.get("op")
        if op == "fork":
            fork_spare()
        elif op == "wait":
            wait(m.get("pid"))
        elif op == "app_init":
            try:
                app_init(m)
                send({"op": "ready"})
            except BaseException as e:
                send({"op": "error", "message": "".join(traceback.format_exception_only(type(e), e)).strip()})
        elif op == "invoke":
            invoke(m)
        else:
            send({"op": "error", "message": "unknown op %r" % op})


serve()
