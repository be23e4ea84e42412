"""
test_queue_durability — a 250 means the message is on disk: messages survive
a restart and kill -9 under load, a 50 MB message streams through, and the
admin's own tools (swaks, Postfix's smtp-source) are served.
"""
import os
import random
import re
import subprocess
import threading
import time

from harness import RELAYD, Client, Relayd, running, run, test, wait_for

MSG = "Subject: durable\r\n\r\nhello\r\n"


@test
def test_restart_keeps_queued_messages():
    r = Relayd()
    try:
        r.start()
        c = Client(r.port)
        c.hello()
        first = [c.send_message("a@example.com", ["b@example.org"], MSG) for _ in range(3)]
        c.cmd("QUIT", 221)
        r.stop()
        r.start()
        assert r.queued_ids() == first
        c = Client(r.port)
        c.hello()
        later = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        assert later > first[-1], (later, first)      # ids keep increasing across restarts
        assert r.queued_ids() == first + [later]
        r.stop()
    finally:
        r.cleanup()


def sender(port, acked, stop, errors):
    """Send messages until told to stop; remember every id that got its 250."""
    try:
        c = Client(port, timeout=20)
        c.hello()
        while not stop.is_set():
            qid = c.send_message("load@example.com", ["x@example.org"], MSG * 20)
            acked.append(qid)
    except (EOFError, OSError, AssertionError) as e:
        if not stop.is_set():
            errors.append(repr(e))


@test
def test_kill9_under_load_loses_no_acknowledged_message():
    r = Relayd()
    try:
        for round_ in range(5):
            r.start()
            acked, errors, stop = [], [], threading.Event()
            threads = [threading.Thread(target=sender, args=(r.port, acked, stop, errors))
                       for _ in range(8)]
            for t in threads:
                t.start()
            wait_for(lambda: len(acked) >= 100, 60, what="load")
            time.sleep(random.uniform(0, 0.3))
            r.kill9()
            stop.set()
            for t in threads:
                t.join(30)
            r.start()
            queued = set(r.queued_ids())
            missing = [q for q in acked if q not in queued]
            assert not missing, "acknowledged but lost: %s" % missing[:10]
            r.stop()
    finally:
        r.cleanup()


def token_sender(port, n0, acked, stop, errors):
    """Like sender, with a token in each message so the upstream's copies can be matched."""
    try:
        c = Client(port, timeout=20)
        c.hello()
        n = n0
        while not stop.is_set():
            c.send_message("load@example.com", ["x@example.org"],
                           "Subject: t\r\nX-Token: %d\r\n\r\n%s" % (n, "hello\r\n" * 50))
            acked.append(n)
            n += 1
    except (EOFError, OSError, AssertionError) as e:
        if not stop.is_set():
            errors.append(repr(e))


@test
def test_sigterm_under_load_loses_and_repeats_nothing():
    """Clients sending, delivery busy, SIGTERM: exit 0; after a restart every acknowledged
    message reaches the upstream exactly once (a graceful stop lets deliveries finish)."""
    from upstream import Upstream
    with Upstream(delay={"DOT": 0.05}) as u:
        extra = ("upstream up {\n host 127.0.0.1\n port %d\n tls none\n}\nroute * up\n"
                 "retry_min 1s\nretry_max 2s\n" % u.port)
        r = Relayd(extra=extra)
        try:
            r.start()
            acked, errors, stop = [], [], threading.Event()
            threads = [threading.Thread(target=token_sender,
                                        args=(r.port, i * 1000000, acked, stop, errors))
                       for i in range(6)]
            for t in threads:
                t.start()
            wait_for(lambda: len(acked) >= 150 and len(u.messages()) >= 20, 60, what="load")
            assert r.stop() == 0        # graceful: exit 0, no sanitizer report
            stop.set()
            for t in threads:
                t.join(30)
            # Clients cut off by the stop (421, closed) just stop: what counts is acked.
            r.start()
            wait_for(lambda: r.queued_ids() == [], 120, what="the queue to drain")
            r.stop()
            got = [int(re.search(rb"X-Token: (\d+)", m["data"]).group(1))
                   for m in u.messages(accepted=True)]
            missing = set(acked) - set(got)
            twice = sorted(t for t in set(got) if got.count(t) > 1)
            assert not missing, "acknowledged but never delivered: %s" % sorted(missing)[:10]
            assert not twice, "delivered twice: %s" % twice[:10]
            assert "SIGTERM" in r.log_text()
        finally:
            r.cleanup()


@test
def test_50mb_message_streams_to_the_queue():
    with running(extra="max_message_size 60M\n") as r:
        c = Client(r.port, timeout=120)
        c.hello()
        c.cmd("MAIL FROM:<big@example.com> SIZE=52428800", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        line = b"0123456789" * 7 + b"\r\n"           # 72 octets
        chunk = line * 1024
        total = 0
        c.send(b"Subject: big\r\n\r\n")
        while total < 50 * 1024 * 1024:
            c.send(chunk)
            total += len(chunk)
        c.send(b".\r\n")
        text = c.expect(250)
        qid = re.search(r"queued as (\w+)", text).group(1)
        c.cmd("QUIT", 221)
        rc, out, err = r.relayctl("show", qid)
        size = int(re.search(r"^size: (\d+)", out, re.M).group(1))
        assert size > total, (size, total)
        # The daemon never held the message in memory (spooled to disk, then LMDB).
        with open("/proc/%d/status" % r.proc.pid) as f:
            rss_kb = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        assert rss_kb < 200 * 1024 + 50 * 1024, rss_kb


@test
def test_swaks_sends_a_message():
    with running() as r:
        out = subprocess.run(["swaks", "-s", "127.0.0.1:%d" % r.port, "-f", "alice@example.com",
                              "-t", "bob@example.org", "--helo", "swaks.test",
                              "--header", "Subject: from swaks"],
                             capture_output=True, timeout=60)
        text = out.stdout.decode()
        assert out.returncode == 0, text
        m = re.search(r"<[-~]\s+250 2\.0\.0 Ok: queued as ([0-9A-F]{12})", text)
        assert m, text
        assert r.queued_ids() == [m.group(1)]


@test
def test_swaks_pipelining():
    with running() as r:
        out = subprocess.run(["swaks", "-s", "127.0.0.1:%d" % r.port, "-f", "a@example.com",
                              "-t", "b@example.org,c@example.org", "--pipeline"],
                             capture_output=True, timeout=60)
        assert out.returncode == 0, out.stdout.decode()
        assert len(r.queued_ids()) == 1


@test
def test_smtp_source_load():
    with running() as r:
        for extra in ([], ["-d"]):
            subprocess.run(["smtp-source", "-s", "10", "-m", "200", "-l", "1024"] + extra +
                           ["-f", "src@example.com", "-t", "dst@example.org",
                            "127.0.0.1:%d" % r.port],
                           check=True, capture_output=True, timeout=300)
        assert len(r.queued_ids()) == 400
        assert r.log_text().count("nrcpt=1") == 400


@test
def test_concurrent_sessions_share_a_commit():
    r = Relayd()
    try:
        r.start()
        subprocess.run(["smtp-source", "-s", "20", "-m", "600", "-l", "1024", "-f", "s@example.com",
                        "-t", "d@example.org", "127.0.0.1:%d" % r.port],
                       check=True, capture_output=True, timeout=300)
        r.stop()
        m = re.search(r"queue: (\d+) messages committed in (\d+) transactions, 0 refused",
                      r.log_text())
        assert m, r.log_text()[-2000:]
        messages, transactions = int(m.group(1)), int(m.group(2))
        assert messages == 600, messages
        assert transactions < messages, (messages, transactions)
        print("  group commit: %d messages in %d transactions" % (messages, transactions))
    finally:
        r.cleanup()


@test
def test_full_map_is_452_and_loses_nothing():
    # A map that cannot grow past 1 MiB: a 2 MiB message cannot fit, smaller ones still do.
    with running(extra="queue_map_size 1M\nqueue_max_size 1M\n") as r:
        c = Client(r.port, timeout=60)
        c.hello()
        small = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(("z" * 998 + "\r\n") * 2048 + ".\r\n")
        c.expect(452, "4.3.1")
        after = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        assert r.queued_ids() == [small, after]
        assert "452 4.3.1" in r.log_text()


@test
def test_user_drops_privileges_and_keeps_the_queue():
    if os.geteuid() != 0:
        print("  (not root: nothing to drop)")
        return
    r = Relayd()
    try:
        os.chmod(r.dir, 0o755)            # nobody must reach its queue below
        r.start()                         # first run as root creates the queue
        c = Client(r.port)
        c.hello()
        first = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        r.stop()
        with open(r.conf, "a") as f:
            f.write("user nobody\n")
        r.start()

        def uids():
            with open("/proc/%d/status" % r.proc.pid) as f:
                return re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
        # The kernel completes connections on the bound socket before the drop: wait for it.
        wait_for(lambda: all(int(u) == 65534 for u in uids()), 10, what="uid nobody")
        c = Client(r.port)
        c.hello()
        second = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        r.stop()
        assert r.queued_ids() == [first, second]
    finally:
        r.cleanup()


@test
def test_config_check():
    r = Relayd()
    try:
        out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        with open(r.conf, "a") as f:
            f.write("max_recipients 10\nfrobnicate yes\n")
        out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode != 0
        lines = open(r.conf).read().count("\n")
        assert ("%s:%d:" % (r.conf, lines)) in out.stderr.decode(), out.stderr
    finally:
        r.cleanup()


if __name__ == "__main__":
    run()
