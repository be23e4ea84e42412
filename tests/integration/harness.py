"""
harness — what every integration test needs: a real relayd started on a free
loopback port with its own config and queue, a raw SMTP client that speaks
byte for byte, and a runner printing "PASS name" / "FAIL name" lines.
Every process a test starts is stopped by its pid when the test ends.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELAYD = os.path.abspath(os.path.join(ROOT, os.environ.get("RELAYD", "build/asan/relayd")))
RELAYCTL = os.path.abspath(os.path.join(ROOT, os.environ.get("RELAYCTL", "build/asan/relayctl")))

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


class Skip(Exception):
    """Raised by a test that cannot run here (say why): reported as "SKIP name (why)",
    which is neither a PASS nor a FAIL."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


class Relayd:
    """A relayd process with its own directory, config and log file."""

    def __init__(self, extra="", allow="127.0.0.0/8 ::1", port=None, dir=None):
        self.dir = dir or tempfile.mkdtemp(prefix="relayd-test-")
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "relayd.conf")
        self.log = os.path.join(self.dir, "relayd.log")
        self.queue = os.path.join(self.dir, "queue")
        with open(self.conf, "w") as f:
            f.write("hostname relay.test\n")
            f.write("queue %s\n" % self.queue)
            f.write("log %s\n" % self.log)
            f.write("listen 127.0.0.1:%d\n" % self.port)
            if allow:
                f.write("allow %s\n" % allow)
            f.write(extra)
        self.proc = None
        self.stderr_path = os.path.join(self.dir, "stderr")

    def start(self, preexec_fn=None):
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([RELAYD, "-d", "-c", self.conf], preexec_fn=preexec_fn,
                                     stdout=self.stderr, stderr=self.stderr)
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("relayd exited: %s" % self.stderr_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, what="relayd to listen")
        return self

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop by pid; a graceful stop must exit 0 without sanitizer reports."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("relayd did not stop within %ds" % timeout)
        self.stderr.close()
        err = self.stderr_text()
        if sig != signal.SIGKILL:
            assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
            assert rc == 0, "relayd exit status %d: %s" % (rc, err[-2000:])
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not os.environ.get("KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def relayctl(self, *args):
        r = subprocess.run([RELAYCTL, "-c", self.conf] + list(args),
                           capture_output=True, timeout=60)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def queued_ids(self):
        rc, out, err = self.relayctl("queue")
        assert rc == 0, err
        return re.findall(r"^([0-9A-F]{12})[ !]", out, re.M)    # "!": held

    def body(self, qid):
        r = subprocess.run([RELAYCTL, "-c", self.conf, "show", qid, "--body"],
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        head, _, body = r.stdout.partition(b"\n\n")
        return head.decode(errors="replace"), body


class Client:
    """A raw SMTP client: sends exact bytes, reads exact replies."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def reply(self):
        """One whole (possibly multi-line) reply: (code, [texts])."""
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def expect(self, code, contains=None):
        got, lines = self.reply()
        text = "\n".join(lines)
        assert got == code, "expected %d, got %d %s" % (code, got, text)
        if contains:
            assert contains in text, "expected %r in %d %s" % (contains, got, text)
        return text

    def cmd(self, line, code, contains=None):
        self.send(line + "\r\n")
        return self.expect(code, contains)

    def closed(self, timeout=10):
        """True when the server has closed the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()

    def hello(self):
        self.expect(220)
        return self.cmd("EHLO client.test", 250)

    def send_message(self, sender, rcpts, body, code=250, mail_params=""):
        """A whole transaction; returns the queue id from the final reply.
        A recipient is an address or (address, "NOTIFY=… ORCPT=…")."""
        self.cmd("MAIL FROM:<%s>%s" % (sender, " " + mail_params if mail_params else ""), 250)
        for r in rcpts:
            addr, params = r if isinstance(r, tuple) else (r, "")
            self.cmd("RCPT TO:<%s>%s" % (addr, " " + params if params else ""), 250)
        self.cmd("DATA", 354)
        if isinstance(body, str):
            body = body.encode()
        self.send(body + b".\r\n")
        text = self.expect(code)
        m = re.search(r"queued as ([0-9A-F]{12})", text)
        return m.group(1) if m else None


def run():
    """Run every @test; each gets its own fresh state and is reported by name."""
    only = sys.argv[1:]
    passed = failed = 0
    for fn in _tests:
        if only and fn.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            fn()
            print("PASS %s (%.1fs)" % (fn.__name__, time.monotonic() - t0), flush=True)
            passed += 1
        except Skip as e:
            print("SKIP %s (%s)" % (fn.__name__, e), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (fn.__name__, time.monotonic() - t0), flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


class running:
    """with running(extra=…) as r: — a started relayd, stopped cleanly and removed after."""

    def __init__(self, **kw):
        self.r = Relayd(**kw)

    def __enter__(self):
        try:
            return self.r.start()
        except Exception:
            self.r.cleanup()
            raise

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.r.stop()
        finally:
            self.r.cleanup()
        return False


_certs = None


def certs():
    """A test CA and a server certificate for relay.test, localhost and 127.0.0.1,
    made once per test program with openssl; returns a dict of file paths."""
    global _certs
    if _certs:
        return _certs
    import atexit
    d = tempfile.mkdtemp(prefix="relayd-certs-")
    atexit.register(shutil.rmtree, d, True)
    p = {k: os.path.join(d, k + ".pem") for k in ("ca", "ca_key", "cert", "key", "other_key")}
    def ssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca_key"], "-out", p["ca"],
        "-days", "2", "-subj", "/CN=relayd test CA")
    csr = os.path.join(d, "server.csr")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p["key"], "-out", csr,
        "-subj", "/CN=relay.test")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName = DNS:relay.test, DNS:localhost, DNS:upstream.test, IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
        "-out", p["cert"], "-days", "2", "-extfile", ext)
    ssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p["other_key"])
    for k in ("key", "other_key", "ca_key"):
        os.chmod(p[k], 0o600)
    _certs = p
    return p


def sasldb(dir, users=(("bob", "s3cret pass"),)):
    """A Cyrus sasldb in dir with these users (realm relay.test); returns its path."""
    path = os.path.join(dir, "sasldb2")
    for user, password in users:
        subprocess.run(["saslpasswd2", "-p", "-f", path, "-u", "relay.test", "-c", user],
                       input=password.encode(), check=True, capture_output=True, timeout=30)
    os.chmod(path, 0o640)
    return path


def auth_running(extra="", allow="10.0.0.0/8", password="s3cret pass"):
    """running() with TLS and a sasldb holding bob; 127.0.0.1 is outside allow, so it
    relays only after logging in."""
    r = running(extra=tls_conf() + extra, allow=allow)
    try:
        path = sasldb(r.r.dir, (("bob", password),))
        with open(r.r.conf, "a") as f:
            f.write("auth_sasldb %s\n" % path)
    except BaseException:
        r.r.cleanup()
        raise
    return r


def tls_conf():
    c = certs()
    return "tls_cert %s\ntls_key %s\n" % (c["cert"], c["key"])


def client_tls_context():
    import ssl
    ctx = ssl.create_default_context(cafile=certs()["ca"])
    return ctx


def starttls(c, hostname="relay.test"):
    """STARTTLS on a raw Client: 220, then the handshake; the client talks TLS after."""
    c.cmd("STARTTLS", 220, "2.0.0")
    assert c.buf == b"", c.buf
    c.sock = client_tls_context().wrap_socket(c.sock, server_hostname=hostname)
    return c
