"""
test_upstream_faults — an upstream, or its DNS, failing in the middle of
things: it stalls mid-DATA (the body read and no answer; or the body half
sent and no more read), resets the connection mid-DATA, answers garbage at
the greeting or after MAIL FROM; a domain's MX or an upstream's host name
cannot be looked up because DNS does not answer.  Each time the message is
deferred with a reason an admin can read, stays queued (no loss), and goes
out exactly once when the upstream is back (no duplicate); relayd keeps
serving its clients meanwhile.
"""
import ctypes
import os
import socket
import threading
import time

from harness import Client, Relayd, Skip, running, run, test, wait_for
from rawpeer import PeerGone, RawUpstream, raw_conf

MSG = "From: a@relay.test\r\nTo: b@example.org\r\nSubject: faults\r\n\r\nbody\r\n"
ALIVE = "Subject: meanwhile\r\n\r\nanother client\r\n"


def submit(r, body=MSG, timeout=10):
    c = Client(r.port, timeout=timeout)
    c.hello()
    qid = c.send_message("alice@relay.test", ["bob@example.org"], body)
    c.cmd("QUIT", 221)
    return qid


def lines_for(r, qid):
    return [l for l in r.log_text().splitlines() if "%s: to=<bob@example.org>" % qid in l]


def first_then_normal(first):
    """Connection 0 runs first(p); every later one is a normal server."""
    def script(p):
        if p.n == 0:
            first(p)
            return
        p.send(b"220 raw.test ESMTP\r\n")
        p.serve()
    return script


def to_data(p):
    """Greet, and answer EHLO, MAIL, RCPT and DATA (pipelined or not) like a server."""
    p.send(b"220 raw.test ESMTP\r\n")
    p.line()
    p.send(p.ehlo_reply())
    for reply in (b"250 2.1.0 Ok\r\n", b"250 2.1.5 Ok\r\n", b"354 go ahead\r\n"):
        p.line()
        p.send(reply)


def deferred_then_sent_once(first, why, block="", body=MSG, timeout=40, rcvbuf=None):
    with RawUpstream(first_then_normal(first), rcvbuf=rcvbuf) as u:
        with running(extra=raw_conf(u.port, block=block)) as r:
            qid = submit(r, body, timeout=60)
            wait_for(lambda: lines_for(r, qid), timeout, what="a first attempt")
            first_line = lines_for(r, qid)[0]
            assert "status=deferred" in first_line and why in first_line, first_line
            assert r.queued_ids() == [qid]                     # no loss
            submit(r, ALIVE)                                   # still serving clients
            wait_for(lambda: any("status=sent" in l for l in lines_for(r, qid)), timeout,
                     what="%s to be sent" % qid)
            wait_for(lambda: r.queued_ids() == [], 20, what="an empty queue")
            whole = [d for _, d in u.messages() if d.endswith(body.encode() + b".\r\n")]
            assert len(whole) == 1, len(whole)                 # no duplicate
            assert not u.errors, u.errors
            return first_line


# --- stalls and resets mid-DATA -----------------------------------------------------------

@test
def test_upstream_stalling_after_the_body_meets_timeout_data():
    """DATA accepted, the whole body read, then nothing: timeout_data ends the wait."""
    def stall(p):
        to_data(p)
        p.read_data()
        p.idle(30)
    t0 = time.monotonic()
    line = deferred_then_sent_once(stall, "dsn=4.4.2", block=" timeout_data 2s\n")
    assert "timed out after the end of data" in line, line
    assert time.monotonic() - t0 < 30


@test
def test_upstream_stalling_mid_body_meets_the_write_timeout():
    """DATA accepted, a little of an 8 MB body read, then nothing read at all: the
    body cannot go out, and timeout_command (every write of it) ends the attempt."""
    body = "Subject: big\r\n\r\n" + ("y" * 998 + "\r\n") * 8000

    def stall(p):
        to_data(p)
        p.read_some(100000)
        p.idle(60)
    line = deferred_then_sent_once(stall, "dsn=4.4.2", block=" timeout_command 2s\n",
                                   body=body, timeout=60, rcvbuf=32768)
    assert "timed out while sending the message body" in line, line


@test
def test_upstream_resetting_mid_data_is_deferred_then_sent():
    """DATA accepted, part of the body read, then a TCP reset."""
    body = "Subject: reset\r\n\r\n" + ("z" * 78 + "\r\n") * 4000

    def reset(p):
        to_data(p)
        p.read_some(20000)
        p.reset()
    line = deferred_then_sent_once(reset, "dsn=4.4.2", body=body)
    assert "lost connection" in line, line


# --- garbage instead of SMTP ----------------------------------------------------------------

@test
def test_upstream_garbage_at_the_greeting_is_deferred():
    """Not an SMTP server at all (an SSH daemon on the port, then binary noise)."""
    def garbage(p):
        p.send(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x01\xfc\x06\x14\xa7\x9e")
        p.idle(10)
    line = deferred_then_sent_once(garbage, "malformed reply from the upstream")
    assert "dsn=4.5.0" in line, line


@test
def test_upstream_garbage_after_mail_from_is_deferred():
    def garbage(p):
        p.send(b"220 raw.test ESMTP\r\n")
        p.line()
        p.send(p.ehlo_reply())
        p.line()
        p.send(b"\x16\x03\x03\x00\x02\x02\x28" + os.urandom(64) + b"\r\n")
        p.idle(10)
    line = deferred_then_sent_once(garbage, "malformed reply from the upstream")
    assert "dsn=4.5.0" in line, line


# --- DNS that does not answer ----------------------------------------------------------------

class DeadDns:
    """A UDP port on 127.0.0.1 that takes DNS queries and never answers; counts them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                continue
            except OSError:
                return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()
        return False


def served_promptly(r):
    """A whole client transaction while delivery waits on DNS: relayd is not stuck."""
    t0 = time.monotonic()
    submit(r, ALIVE)
    took = time.monotonic() - t0
    assert took < 5, "a transaction took %.1fs while DNS hung" % took


@test
def test_dns_timeout_for_a_domains_mx_defers_and_keeps_the_message():
    """Direct delivery, `resolver` pointing at a port where nothing answers."""
    with DeadDns() as dns:
        extra = "resolver 127.0.0.1:%d\nroute * direct\nretry_min 1h\n" % dns.port
        with running(extra=extra) as r:
            qid = submit(r)
            wait_for(lambda: dns.queries > 0, 10, what="a DNS query")
            served_promptly(r)
            wait_for(lambda: lines_for(r, qid), 30, what="the attempt to end")
            line = lines_for(r, qid)[0]
            assert "status=deferred" in line and "dsn=4.4.3" in line, line
            assert "cannot look up the MX of example.org: example.org MX: DNS timeout" in line, line
            assert qid in r.queued_ids()


CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
# Looked up before any fork: the child only calls them.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


def _own_mounts():
    return _libc.unshare(CLONE_NEWNS) == 0 and \
        _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0


def private_resolv_conf(path):
    """preexec_fn: relayd alone (its own mount namespace) sees path as /etc/resolv.conf."""
    src = path.encode()

    def setup():
        if not _own_mounts() or _libc.mount(src, b"/etc/resolv.conf", None, MS_BIND, None):
            os._exit(97)
    return setup


def can_make_a_mount_namespace():
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _own_mounts() else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@test
def test_dns_timeout_for_an_upstream_host_name_defers_and_keeps_the_message():
    """An upstream named by host name; the system resolver (seen by relayd alone,
    through a mount namespace) points at a port where nothing answers."""
    if not can_make_a_mount_namespace():
        raise Skip("cannot make a mount namespace here (needs root / CAP_SYS_ADMIN) to give "
                   "relayd its own resolv.conf; the `resolver` form above still ran")
    with DeadDns() as dns:
        extra = ("upstream named {\n host upstream.dns-timeout.test\n port 25\n tls none\n}\n"
                 "route * named\nretry_min 1h\n")
        r = Relayd(extra=extra)
        try:
            conf = os.path.join(r.dir, "resolv.conf")
            with open(conf, "w") as f:
                f.write("nameserver 127.0.0.1:%d\noptions timeout:1 attempts:2\n" % dns.port)
            r.start(preexec_fn=private_resolv_conf(conf))
            qid = submit(r)
            wait_for(lambda: dns.queries > 0, 10, what="a DNS query")
            served_promptly(r)
            wait_for(lambda: lines_for(r, qid), 30, what="the attempt to end")
            line = lines_for(r, qid)[0]
            assert "status=deferred" in line and "dsn=4.4.3" in line, line
            assert "cannot resolve upstream.dns-timeout.test: no answer from DNS (timeout " \
                "or server failure)" in line, line
            assert qid in r.queued_ids()
            r.stop()
        finally:
            r.cleanup()


if __name__ == "__main__":
    run()
