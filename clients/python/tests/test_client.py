"""The Python client against a real bothy (BOTHY_URL, BOTHY_KEY):
e2e/python_test.go starts one and runs these with unittest."""

import io
import os
import tarfile
import unittest
import uuid

import bothy
from bothy import Client, InvalidArgument, NotFound, Unauthenticated

IMAGE = os.environ.get("BOTHY_TEST_IMAGE", "")


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Client()
        cls.sb = cls.c.create_sandbox(IMAGE, labels={"suite": "python"}, env={"GREETING": "hi"})

    @classmethod
    def tearDownClass(cls):
        cls.sb.delete()

    def test_create_get_list(self):
        self.assertEqual(self.sb.info.state, "running")
        again = self.c.sandbox(self.sb.id)
        self.assertEqual(again.info.labels, {"suite": "python"})
        self.assertIn("GREETING", again.info.env_keys)
        ids = [s.id for s in self.c.list_sandboxes(labels={"suite": "python"})]
        self.assertEqual(ids, [self.sb.id])
        self.assertEqual(self.sb.update(labels={"suite": "python", "x": "1"}).info.labels["x"], "1")
        self.sb.update(labels={"suite": "python"})

    def test_exec(self):
        r = self.sb.exec("python3 -c 'print(6*7)'")
        self.assertEqual((r.exit_code, r.stdout), (0, "42\n"))
        r = self.sb.exec(["sh", "-c", "echo $GREETING $0; exit 3", "there"], env={"GREETING": "hello"})
        self.assertEqual((r.exit_code, r.stdout), (3, "hello there\n"))
        r = self.sb.exec("cat", stdin="from stdin")
        self.assertEqual(r.stdout, "from stdin")
        r = self.sb.exec("printf '\\000\\377'")
        self.assertEqual(r.stdout_bytes, b"\x00\xff")

    def test_exec_stream(self):
        events = list(self.sb.exec_stream("for i in 1 2 3; do echo $i; done; echo err >&2"))
        out = b"".join(e.data for e in events if e.type == "stdout")
        err = b"".join(e.data for e in events if e.type == "stderr")
        self.assertEqual((out, err), (b"1\n2\n3\n", b"err\n"))
        self.assertEqual(events[-1].type, "exit")
        self.assertEqual(events[-1].result.exit_code, 0)

    def test_files(self):
        f = self.sb.files
        info = f.write("/tmp/py/deep/a.txt", "hello")
        self.assertEqual((info.type, info.size), ("file", 5))
        self.assertEqual(f.read_text("/tmp/py/deep/a.txt"), "hello")
        self.assertEqual(f.read("/tmp/py/deep/a.txt", offset=1, length=3), b"ell")
        f.write("/tmp/py/bin.dat", bytes(range(256)), mode="0600")
        self.assertEqual(f.read("/tmp/py/bin.dat"), bytes(range(256)))
        self.assertEqual(f.stat("/tmp/py/bin.dat").mode, "0600")
        self.assertEqual(f.chmod("/tmp/py/bin.dat", "0644").mode, "0644")
        f.mkdir("/tmp/py/made")
        f.move("/tmp/py/bin.dat", "/tmp/py/made/moved.dat")
        names = sorted(e.name for e in f.list("/tmp/py").entries)
        self.assertEqual(names, ["deep", "made"])
        self.assertTrue(f.exists("/tmp/py/made/moved.dat"))
        self.assertFalse(f.exists("/tmp/py/bin.dat"))
        with self.assertRaises(NotFound):
            f.read("/tmp/py/nope")

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in {"proj/main.py": b"print('up')\n", "proj/README": b"readme\n"}.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
        res = f.upload_archive("/tmp/up", buf.getvalue())
        self.assertEqual(res.files, 2)
        self.assertEqual(self.sb.exec("python3 /tmp/up/proj/main.py").stdout, "up\n")
        with tarfile.open(fileobj=io.BytesIO(f.download_archive("/tmp/up")), mode="r") as tar:
            self.assertIn("proj/README", [m.name.lstrip("./") for m in tar.getmembers()])
        f.remove("/tmp/py", recursive=True)
        self.assertFalse(f.exists("/tmp/py"))

    def test_processes_and_ports(self):
        p = self.sb.processes
        proc = p.start("echo started; exec cat", tag="py-cat", stdin=True)
        self.assertEqual(proc.state, "running")
        self.assertEqual([x.pid for x in p.list(tag="py-cat")], [proc.pid])
        p.write_stdin(proc.pid, "typed\n")
        p.close_stdin(proc.pid)
        done = p.wait(proc.pid, timeout_ms=30000)
        self.assertEqual((done.state, done.exit_code), ("exited", 0))
        records = list(p.logs(proc.pid, follow=True))
        out = b"".join(r.data for r in records if r.type == "output")
        self.assertEqual(out, b"started\ntyped\n")
        self.assertEqual(records[-1].type, "end")
        self.assertEqual(records[-1].process.exit_code, 0)

        srv = p.start(["python3", "-m", "http.server", "8000", "--directory", "/tmp/www"], tag="web")
        self.sb.files.write("/tmp/www/index.html", "<h1>from python</h1>")
        self.sb.ports.wait(8000, timeout_ms=30000)
        port = self.sb.ports.expose(8000)
        self.assertTrue(port.token)
        self.assertEqual([x.port for x in self.sb.ports.list()], [8000])
        status, body = self.sb.ports.request(8000, "/index.html")
        self.assertEqual((status, body), (200, b"<h1>from python</h1>"))
        self.sb.ports.unexpose(8000)
        self.assertEqual(p.kill(srv.pid).pid, srv.pid)

    def test_snapshots(self):
        self.sb.files.write("/tmp/snap.txt", "before")
        snap = self.sb.snapshot(name="py-" + uuid.uuid4().hex[:6], labels={"suite": "python"})
        try:
            self.assertEqual(self.c.get_snapshot(snap.id).sandbox_id, self.sb.id)
            self.assertIn(snap.id, [s.id for s in self.c.list_snapshots(self.sb.id)])
            self.sb.files.write("/tmp/snap.txt", "after")
            changed = [d.path for d in self.c.diff_snapshot(snap.id, self.sb.id)]
            self.assertIn("/tmp/snap.txt", changed)
            self.sb.restore(snap.id, paths=["/tmp/snap.txt"])
            self.assertEqual(self.sb.files.read_text("/tmp/snap.txt"), "before")
            exported = b"".join(self.c.export_snapshot(snap.id))
            self.assertGreater(len(exported), 0)
        finally:
            self.c.delete_snapshot(snap.id)
        with self.assertRaises(NotFound):
            self.c.get_snapshot(snap.id)

    def test_fork(self):
        self.sb.files.write("/tmp/fork.txt", "shared")
        forks = self.sb.fork(2, labels={"suite": "python-fork"})
        try:
            self.assertEqual(len({f.id for f in forks} | {self.sb.id}), 3)
            for f in forks:
                self.assertEqual(f.files.read_text("/tmp/fork.txt"), "shared")
                self.assertEqual(f.info.labels, {"suite": "python-fork"})
        finally:
            for f in forks:
                f.delete()

    def test_run_and_apps(self):
        r = self.c.run("python", "import sys; print(sum(range(10)), file=sys.stdout)")
        self.assertEqual((r.exit_code, r.stdout), (0, "45\n"))
        name = "py-" + uuid.uuid4().hex[:8]
        app = self.c.deploy_app(name, "python", "def fetch(request, env):\n    return 'hello ' + request.path\n")
        try:
            self.assertEqual(app.version, 1)
            self.assertIn(name, [a.name for a in self.c.list_apps()])
            res = self.c.invoke_app(name, "/there")
            self.assertEqual((res.status, res.text()), (200, "hello /there"))
            self.assertIn("fetch", self.c.get_app(name).code)
        finally:
            self.c.delete_app(name)
        with self.assertRaises(NotFound):
            self.c.invoke_app(name)

    def test_errors(self):
        with self.assertRaises(NotFound) as cm:
            self.c.sandbox("sb-doesnotexist")
        self.assertEqual(cm.exception.status, 404)
        self.assertTrue(cm.exception.request_id)
        with self.assertRaises(InvalidArgument):
            self.c.create_sandbox(IMAGE, memory_mb=-1)
        with self.assertRaises(Unauthenticated):
            Client(key="bothy_wrong").sandbox(self.sb.id)
        self.assertTrue(issubclass(NotFound, bothy.BothyError))


if __name__ == "__main__":
    unittest.main()
