"""
test_http — `http ADDR:PORT`: /metrics scraped and parsed strictly (the
Prometheus text format), the status page rendered by headless Chromium (a
screenshot is kept in build/test-artifacts), everything from the network
escaped on it, and hostile HTTP answered without harm.
"""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness import RELAYD, Client, free_port, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import BODY, sent_line, submit

ARTIFACTS = os.environ.get("ARTIFACTS", "build/test-artifacts")
HOSTILE = '"<script>alert(1)</script>"@x.test'
SLOW = "retry_min 1h\nretry_max 2h\n"


def conf(up_port, http_port):
    return ("http 127.0.0.1:%d\nupstream up {\n host 127.0.0.1\n port %d\n tls none\n"
            " max_per_hour 100\n}\nroute * up\n%s" % (http_port, up_port, SLOW))


def get(port, path="/"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as f:
        return f.status, dict(f.headers), f.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})? '
                    r'(-?[0-9.e+-]+|\+Inf|NaN)$')


def parse_metrics(text):
    """{(name, labels-text): value}, asserting the exposition format as it goes."""
    assert text.endswith("\n"), text[-100:]
    types, helps, samples = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in types, "TYPE twice: " + line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), m.group(3) or "", float(m.group(5))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        family = name if name in types else base
        assert family in types and family in helps, "no TYPE/HELP before " + line
        assert (name, labels) not in samples, "sample twice: " + line
        samples[(name, labels)] = value
    for name, kind in types.items():
        if kind != "histogram":
            continue
        buckets = [(k[1], v) for k, v in samples.items() if k[0] == name + "_bucket"]
        values = [v for _, v in buckets]
        assert values == sorted(values), "buckets not cumulative: %s" % buckets
        assert buckets[-1][0] == 'le="+Inf"' and buckets[-1][1] == samples[(name + "_count", "")]
    return samples


def chromium(args, timeout=60):
    """Run headless Chromium once; its stdout.  Killed by its process group on timeout."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed (make test-deps installs it)"
    profile = tempfile.mkdtemp(prefix="relayd-chromium-")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=" + profile] + args
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, "chromium exited with %s" % p.returncode
    return out.decode()


def text_of(dom, table_id):
    """The text of one table of the rendered DOM, tags stripped."""
    m = re.search(r'<table id="%s">(.*?)</table>' % table_id, dom, re.S)
    assert m, "no table %s in the page" % table_id
    return re.sub(r"<[^>]+>", " ", m.group(1))


@test
def test_metrics_and_status_page_with_a_stuck_queue():
    up_port, http_port = free_port(), free_port()
    with running(extra=conf(up_port, http_port)) as r:
        q1 = submit(r, ["bob@example.com"], BODY)
        q2 = submit(r, ["carol@example.net"], BODY, sender=HOSTILE)
        for q, a in ((q1, "bob@example.com"), (q2, "carol@example.net")):
            wait_for(lambda: sent_line(r, q, a), 20, what="a first try")
        wait_for(lambda: "deferred\"} 2" in get(http_port, "/metrics")[2], 10,
                 what="both attempts counted")
        status, headers, text = get(http_port, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        m = parse_metrics(text)
        assert m[("relayd_messages_accepted_total", "")] == 2
        assert m[("relayd_recipients_accepted_total", "")] == 2
        assert m[("relayd_connections_total", "")] >= 2
        assert m[("relayd_commit_duration_seconds_count", "")] == 2
        assert m[("relayd_queue_messages", "")] == 2
        assert m[("relayd_queue_oldest_age_seconds", "")] > 0
        assert m[("relayd_deliveries_total", 'upstream="up",result="deferred"')] == 2
        assert m[("relayd_deliveries_total", 'upstream="up",result="sent"')] == 0
        assert m[("relayd_upstream_down", 'upstream="up"')] == 1
        assert m[("relayd_quota_limit", 'upstream="up",window="hour"')] == 100
        assert m[("relayd_quota_used", 'upstream="up",window="hour"')] == 0

        # The page, as a browser renders it.
        dom = chromium(["--dump-dom", "http://127.0.0.1:%d/" % http_port])
        assert "<script" not in dom, "markup from a sender address reached the page"
        queue = text_of(dom, "queue")
        assert q1 in queue and q2 in queue and "&lt;script&gt;alert(1)" in queue, queue
        assert "Connection refused" in queue and "nothing listens" in queue, queue
        ups = text_of(dom, "upstreams")
        assert re.search(r"\bup\b.*127\.0\.0\.1:%d.*\bdown\b" % up_port, ups, re.S), ups
        failures = text_of(dom, "failures")
        assert "carol@example.net" in failures and "4.4.1" in failures, failures
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.abspath(os.path.join(ARTIFACTS, "status-page.png"))
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(["--window-size=1400,1000", "--screenshot=" + shot,
                  "http://127.0.0.1:%d/" % http_port])
        with open(shot, "rb") as f:
            png = f.read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000, len(png)
        print("  screenshot: %s" % shot)

        # The upstream comes back: both go, and the numbers say so.
        with Upstream(port=up_port) as u:
            rc, out, err = r.relayctl("flush")
            assert rc == 0, out + err
            wait_for(lambda: len(u.messages()) == 2, 20, what="both delivered")
            wait_for(lambda: r.queued_ids() == [], 10, what="an empty queue")
        m = parse_metrics(get(http_port, "/metrics")[2])
        assert m[("relayd_deliveries_total", 'upstream="up",result="sent"')] == 2
        assert m[("relayd_delivery_duration_seconds_count", "")] == 2
        assert m[("relayd_queue_messages", "")] == 0
        assert m[("relayd_queue_oldest_age_seconds", "")] == 0
        assert m[("relayd_quota_used", 'upstream="up",window="hour"')] == 2
        dom = chromium(["--dump-dom", "http://127.0.0.1:%d/" % http_port])
        assert "The queue is empty" in dom, dom
        assert re.search(r"\bok\b", text_of(dom, "upstreams")), dom


@test
def test_status_page_shows_a_few_recipients_per_message():
    """A message may have max_recipients (1000) of them: the page lists 5 per message
    and counts the rest, so a stuck queue cannot make it megabytes long."""
    up_port, http_port = free_port(), free_port()
    with running(extra=conf(up_port, http_port)) as r:
        rcpts = ["r%d@example.com" % i for i in range(40)]
        qid = submit(r, rcpts, BODY)
        wait_for(lambda: r.log_text().count("%s: to=<" % qid) == 40, 20, what="a first try")
        status, _, page = get(http_port, "/")
        assert status == 200
        rows = re.findall(r"<tr><td><code>%s</code>" % qid, page)
        assert len(rows) == 6, len(rows)        # 5 recipients and the rest counted
        assert "and 35 more pending recipients" in page, page
        assert "relayctl show %s" % qid in page


def raw(port, data, timeout=10):
    """Send data as is; what comes back until the server closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk
    except socket.timeout:
        return got
    finally:
        s.close()


@test
def test_hostile_http_is_answered_and_harmless():
    http_port = free_port()
    with running(extra="http 127.0.0.1:%d\n" % http_port) as r:
        for method in ("POST", "PUT", "DELETE"):
            req = urllib.request.Request("http://127.0.0.1:%d/" % http_port, method=method,
                                         data=b"x")
            try:
                urllib.request.urlopen(req, timeout=10)
                assert False, method + " was served"
            except urllib.error.HTTPError as e:
                assert e.code in (405, 413, 501), (method, e.code)
        try:
            get(http_port, "/etc/passwd")
            assert False, "an unknown path was served"
        except urllib.error.HTTPError as e:
            assert e.code == 404
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert not raw(http_port, big).startswith(b"HTTP/1.1 200"), "huge headers served"
        assert raw(http_port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")[:12] != b"HTTP/1.1 200"
        # DNS rebinding: a page whose own name points at 127.0.0.1 is refused.
        for host, ok in (("evil.example", False), ("evil.example:%d" % http_port, False),
                         ("127.0.0.1:%d" % http_port, True), ("LOCALHOST", True),
                         ("relay.test", True), ("[::1]:80", True), ("[::1", False),
                         ("127.0.0.1.evil.example", False)):
            got = raw(http_port, b"GET /metrics HTTP/1.1\r\nHost: " + host.encode() +
                      b"\r\nConnection: close\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 200" if ok else b"HTTP/1.1 403"), (host, got[:80])
        status, headers, page = get(http_port, "/")
        assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
        assert "The queue is empty" in page and "None since relayd started" in page
        assert get(http_port, "/metrics")[0] == 200
        assert "http: /metrics and the status page on 127.0.0.1:%d" % http_port in r.log_text()


def sockets_of(pid, port=None):
    """How many sockets the process holds open (with port: TCP ones on that local port,
    the listener included), so sockets relayd opens for other reasons do not count."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    if port is None:
        return len(inodes)
    on_port = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port:
                    on_port.add(cols[9])
    return len(inodes & on_port)


def cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@test
def test_http_connections_bounded_and_trickling_cut_off():
    """A client opening many connections holds at most 32 descriptors (the SMTP side
    keeps answering), and one sending its headers a byte at a time is cut off at 15 s."""
    http_port = free_port()
    with running(extra="http 127.0.0.1:%d\n" % http_port) as r:
        before = sockets_of(r.proc.pid, http_port)      # the listener
        idle = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(200)]
        try:
            time.sleep(1)
            held = sockets_of(r.proc.pid, http_port) - before
            assert held <= 34, "%d sockets for 200 idle http clients" % held  # 32, some slack
            c = socket.create_connection(("127.0.0.1", r.port), timeout=5)
            assert c.recv(100).startswith(b"220 "), "SMTP starved by HTTP connections"
            c.close()
        finally:
            for s in idle:
                s.close()
        wait_for(lambda: sockets_of(r.proc.pid, http_port) <= before, 30,
                 what="the http sockets closed")
        assert get(http_port, "/metrics")[0] == 200     # the backlog has drained
        slow = socket.create_connection(("127.0.0.1", http_port))
        slow.settimeout(2)
        t0, closed = time.monotonic(), None
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for i in range(len(request)):
            try:
                slow.sendall(request[i:i + 1])
                if slow.recv(100) == b"":
                    closed = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = time.monotonic() - t0
                break
        slow.close()
        assert closed and 14 <= closed <= 20, "a trickling client kept its connection: %s" % closed
        assert get(http_port, "/metrics")[0] == 200


@test
def test_http_out_of_descriptors_pauses_instead_of_spinning():
    http_port = free_port()
    r = running(extra="http 127.0.0.1:%d\n" % http_port).r
    try:
        r.start(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
        conns = []
        for _ in range(80):
            try:
                conns.append(socket.create_connection(("127.0.0.1", http_port), timeout=2))
            except OSError:
                break
        wait_for(lambda: "http: accept: Too many open files" in r.log_text(), 10,
                 what="the accept error logged")
        t = cpu_of(r.proc.pid)
        time.sleep(2)
        assert cpu_of(r.proc.pid) - t < 0.5, "the event loop spins on EMFILE"
        for s in conns:
            s.close()
        r.stop()
    finally:
        r.cleanup()


ROUNDS = 30
BIG_BODY = "".join("line %05d %s\r\n" % (i, "x" * 64) for i in range(1400))     # ~105 KB


@test
def test_smtp_session_after_an_http_request_keeps_all_its_bytes():
    """GET /metrics (or a request evhttp refuses with 400), and at once an SMTP session
    sending a 100 KB message, 30 times: each message gets its 250 within 5 s and is
    stored whole.  The SMTP session mostly gets the descriptor number the HTTP
    connection has just closed; an event of the finished HTTP connection left on that
    number read part of the session's bytes (the 250 never came, or came for a
    message with holes in it)."""
    up_port, http_port = free_port(), free_port()
    with running(extra=conf(up_port, http_port)) as r:
        deadline = time.monotonic() + 120
        lost, qids = [], []
        for i in range(1, ROUNDS + 1):
            assert time.monotonic() < deadline, "%d rounds took over 120 s" % i
            if i % 2:
                assert get(http_port, "/metrics")[0] == 200
            else:   # refused by evhttp itself: our request callback never sees it
                assert raw(http_port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
            c = Client(r.port, timeout=5)
            try:
                c.hello()
                qid = c.send_message("alice@relay.test", ["bob@example.com"], BIG_BODY)
                qids.append((i, qid))
                c.cmd("QUIT", 221)
            except socket.timeout:
                lost.append((i, "no reply in 5 s"))
            finally:
                c.close()
        for i, qid in qids:
            _, body = r.body(qid)
            if not body.endswith(BIG_BODY.encode()):
                lost.append((i, "%s stored as %d bytes (Received: included) for %d sent" %
                                 (qid, len(body), len(BIG_BODY))))
        assert not lost, "%d of %d rounds lost bytes:\n%s" % (
            len(lost), ROUNDS, "\n".join("round %d: %s" % x for x in sorted(lost)))


@test
def test_refusals_are_counted_by_reason():
    http_port = free_port()
    extra = ("http 127.0.0.1:%d\nupstream up {\n host 127.0.0.1\n port %d\n tls none\n}\n"
             "route example.com up\ndeny_sender @spam.test\n" % (http_port, free_port()))
    with running(extra=extra) as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<x@spam.test>", 553)
        c.cmd("MAIL FROM:<a@relay.test>", 250)
        c.cmd("RCPT TO:<b@elsewhere.test>", 550, "5.4.4")
        c.cmd("RCPT TO:<c@elsewhere.test>", 550, "5.4.4")
        c.cmd("QUIT", 221)
        m = parse_metrics(get(http_port, "/metrics")[2])
        assert m[("relayd_smtp_refused_total", 'reason="no_route"')] == 2
        assert m[("relayd_smtp_refused_total", 'reason="sender_rule"')] == 1
        assert m[("relayd_smtp_refused_total", 'reason="rate_limit"')] == 0


@test
def test_http_address_checked_and_restart_only():
    http_port = free_port()
    with running(extra="http 127.0.0.1:%d\n" % http_port) as r:
        with open(r.conf) as f:
            text = f.read()
        with open(r.conf, "w") as f:
            f.write(text.replace("http 127.0.0.1:%d" % http_port,
                                 "http 127.0.0.1:%d" % free_port()))
        os.kill(r.proc.pid, signal.SIGHUP)
        wait_for(lambda: "http" in r.log_text() and "restart" in r.log_text(), 10,
                 what="the reload refused")
        assert get(http_port, "/metrics")[0] == 200
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("http nowhere\n")
        f.flush()
        bad = subprocess.run([RELAYD, "-n", "-c", f.name], capture_output=True, timeout=30)
    assert bad.returncode != 0 and b"http: bad address" in bad.stderr, bad.stderr


if __name__ == "__main__":
    run()
