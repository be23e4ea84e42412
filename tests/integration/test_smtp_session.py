"""
test_smtp_session — the SMTP dialogue as a client sees it, one behaviour per
test, against the real relayd on a loopback port: replies, sequence, syntax,
limits, relay denial, pipelining, timeouts and the acceptance log line.
"""
import os
import re
import resource
import signal
import socket
import subprocess
import time

from harness import RELAYD, Client, Relayd, running, run, test, wait_for

MSG = "Subject: hello\r\nFrom: a@example.com\r\nTo: b@example.org\r\n\r\nbody line\r\n"


@test
def test_greeting_and_ehlo_extensions():
    with running() as r:
        c = Client(r.port)
        assert "relay.test ESMTP" in c.expect(220)
        text = c.cmd("EHLO client.test", 250)
        for ext in ("PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES",
                    "DSN", "SMTPUTF8"):
            assert ext in text.split("\n"), (ext, text)
        c.cmd("HELO client.test", 250, "relay.test")
        c.cmd("NOOP", 250, "2.0.0")
        c.cmd("VRFY bob", 252, "2.0.0")
        c.cmd("HELP", 214, "2.0.0")
        c.cmd("QUIT", 221, "2.0.0")
        assert c.closed()


@test
def test_message_is_queued_with_id_and_logged():
    with running() as r:
        c = Client(r.port)
        c.hello()
        qid = c.send_message("alice@example.com", ["bob@example.org", "carol@example.net"], MSG)
        assert re.fullmatch(r"[0-9A-F]{12}", qid), qid
        c.cmd("QUIT", 221)
        assert r.queued_ids() == [qid]
        log = r.log_text()
        assert re.search(r"%s: client=\[127\.0\.0\.1\]:\d+, helo=<client.test>, "
                         r"from=<alice@example.com>, size=\d+, nrcpt=2" % qid, log), log


@test
def test_bad_sequence_is_503():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        c.cmd("MAIL FROM:<a@example.com>", 503, "5.5.1")
        c.cmd("EHLO x", 250)
        c.cmd("RCPT TO:<b@example.org>", 503, "5.5.1")
        c.cmd("DATA", 503, "5.5.1")
        c.cmd("MAIL FROM:<a@example.com>", 250, "2.1.0")
        c.cmd("MAIL FROM:<a@example.com>", 503, "5.5.1")
        c.cmd("DATA", 503, "5.5.1")
        c.cmd("RSET", 250, "2.0.0")
        c.cmd("RCPT TO:<b@example.org>", 503, "5.5.1")
        c.cmd("QUIT", 221)


@test
def test_syntax_errors_are_501_and_unknown_is_500():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("FOO bar", 500, "5.5.2")
        c.cmd("EHLO", 501, "5.5.4")
        c.cmd("MAIL FROM:a@example.com", 501, "5.5.4")
        c.cmd("MAIL FROM:<a@@example.com>", 501, "5.1.7")
        c.cmd("MAIL FROM:<a@example.com> SIZE=abc", 501, "5.5.4")
        c.cmd("MAIL FROM:<a@example.com> FROBNICATE=1", 555, "5.5.4")
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:b@example.org", 501, "5.5.4")
        c.cmd("RCPT TO:<b@>", 501, "5.1.3")
        c.cmd("RCPT TO:<b@example.org> NOTIFY=MAYBE", 501, "5.5.4")
        c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
        c.cmd("DATA extra", 501, "5.5.4")
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)


@test
def test_every_reply_has_an_enhanced_code():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        for line in ("HELO", "EHLO x", "XYZZY", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>",
                     "DATA", "RSET", "NOOP", "VRFY x", "HELP", "EXPN list", "QUIT"):
            c.send(line + "\r\n")
            code, lines = c.reply()
            if code != 354 and line.split()[0] not in ("HELO", "EHLO"):   # RFC 2034 §3
                assert re.match(r"[245]\.\d{1,3}\.\d{1,3} ", lines[-1]), (line, code, lines)
            if line == "DATA":
                c.send(".\r\n")
                code, lines = c.reply()


@test
def test_too_many_recipients_is_452():
    with running(extra="max_recipients 3\n") as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        for i in range(3):
            c.cmd("RCPT TO:<r%d@example.org>" % i, 250)
        c.cmd("RCPT TO:<r3@example.org>", 452, "4.5.3")
        c.cmd("DATA", 354)
        c.send(MSG + ".\r\n")
        c.expect(250, "queued as")
        c.cmd("QUIT", 221)


@test
def test_relay_denied_outside_allow():
    with running(allow="10.0.0.0/8 192.168.0.0/16") as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<victim@example.org>", 554, "5.7.1 <victim@example.org>: Relay access denied")
        c.cmd("DATA", 503, "5.5.1")
        c.cmd("QUIT", 221)
        assert "Relay access denied" in r.log_text()
        assert r.queued_ids() == []


@test
def test_config_where_nobody_may_relay_is_refused():
    r = Relayd(allow=None)
    try:
        for args in (["-n"], ["-d"]):
            out = subprocess.run([RELAYD] + args + ["-c", r.conf], capture_output=True, timeout=30)
            assert out.returncode == 1, out
            assert b"nobody may relay" in out.stderr, out.stderr
    finally:
        r.cleanup()


@test
def test_size_is_checked_at_mail_and_during_data():
    with running(extra="max_message_size 10K\n") as r:
        c = Client(r.port)
        text = c.hello()
        assert "SIZE 10240" in text
        c.cmd("MAIL FROM:<a@example.com> SIZE=20000", 552, "5.3.4")
        c.cmd("MAIL FROM:<a@example.com> SIZE=1000", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(("x" * 70 + "\r\n") * 200 + ".\r\n")
        c.expect(552, "5.3.4")
        # The session goes on: a small message still works.
        assert c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        assert len(r.queued_ids()) == 1


@test
def test_command_line_over_512_octets_is_refused():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("NOOP " + "x" * 600, 500, "5.5.2")
        c.cmd("NOOP " + "x" * 5000, 500, "5.5.2")
        c.cmd("NOOP " + "x" * 500, 250)   # 507 octets with CRLF: fine
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("QUIT", 221)


@test
def test_text_line_over_1000_octets_is_refused():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send("Subject: x\r\n\r\n" + "y" * 998 + "\r\n" + "z" * 1500 + "\r\n.\r\n")
        c.expect(550, "5.6.0")
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send("Subject: x\r\n\r\n" + "y" * 998 + "\r\n.\r\n")   # exactly 1000 with CRLF
        c.expect(250)
        c.cmd("QUIT", 221)
        assert len(r.queued_ids()) == 1


@test
def test_pipelined_session():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        c.send("EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
               "RCPT TO:<c@example.org>\r\nDATA\r\n")
        c.expect(250)
        c.expect(250, "2.1.0")
        c.expect(250, "2.1.5")
        c.expect(250, "2.1.5")
        c.expect(354)
        # Two whole messages and QUIT in one write.
        c.send(MSG + ".\r\nMAIL FROM:<d@example.com>\r\nRCPT TO:<e@example.org>\r\nDATA\r\n"
               + MSG + ".\r\nQUIT\r\n")
        c.expect(250, "queued as")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        c.expect(250, "queued as")
        c.expect(221)
        assert c.closed()
        assert len(r.queued_ids()) == 2


@test
def test_endless_garbage_is_disconnected():
    with running(extra="max_errors 5\n") as r:
        c = Client(r.port)
        c.expect(220)
        for _ in range(4):
            c.cmd("GARBAGE", 500)
        c.send("GARBAGE\r\n")
        c.expect(500)
        c.expect(421, "4.7.0")
        assert c.closed()


@test
def test_http_request_is_dropped():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        c.send("GET / HTTP/1.1\r\nHost: relay.test\r\n\r\n")
        c.expect(521)
        assert c.closed()


@test
def test_idle_timeout():
    with running(extra="timeout_idle 1s\n") as r:
        c = Client(r.port)
        c.hello()
        t0 = time.monotonic()
        c.expect(421, "4.4.2")
        assert c.closed()
        assert time.monotonic() - t0 < 8


@test
def test_command_timeout_for_a_line_that_never_ends():
    with running(extra="timeout_command 1s\n") as r:
        c = Client(r.port)
        c.hello()
        c.send("NOOP")
        try:
            for _ in range(4):      # a byte now and then keeps the idle timer happy
                time.sleep(0.4)
                c.send("O")
        except OSError:
            pass                    # closed on us: the 421 is waiting to be read
        c.expect(421, "4.4.2")
        assert c.closed()


@test
def test_max_clients():
    with running(extra="max_clients 2\n") as r:
        wait_for(lambda: "disconnect from" in r.log_text(), what="the start-up probe to go")
        a, b = Client(r.port), Client(r.port)
        a.expect(220)
        b.expect(220)
        c = Client(r.port)
        c.expect(421, "4.7.0")
        assert c.closed()
        a.cmd("QUIT", 221)
        assert a.closed()
        time.sleep(0.2)
        d = Client(r.port)
        d.expect(220)
        d.cmd("QUIT", 221)


@test
def test_dot_unstuffing_and_received_header():
    with running() as r:
        c = Client(r.port)
        c.hello()
        body = "Subject: dots\r\n\r\n..leading dot\r\n...two\r\n.\t\r\nend\r\n"
        qid = c.send_message("a@example.com", ["b@example.org"], body)
        c.cmd("QUIT", 221)
        head, stored = r.body(qid)
        assert stored.startswith(b"Received: from client.test ([127.0.0.1])\r\n\tby relay.test "
                                 b"(relayd) with ESMTP id " + qid.encode() +
                                 b"\r\n\tfor <b@example.org>;"), stored[:300]
        assert stored.endswith(b"\r\n\r\n.leading dot\r\n..two\r\n\t\r\nend\r\n"), stored


@test
def test_dsn_parameters_are_stored():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B314 BODY=8BITMIME", 250)
        c.cmd("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org", 250)
        c.cmd("RCPT TO:<c@example.org> NOTIFY=NEVER", 250)
        c.cmd("DATA", 354)
        c.send(MSG + ".\r\n")
        qid = re.search(r"queued as (\w+)", c.expect(250)).group(1)
        c.cmd("QUIT", 221)
        rc, out, err = r.relayctl("show", qid)
        assert rc == 0, err
        assert "envid: QQ+2B314" in out and "ret: HDRS" in out and "body: 8BITMIME" in out, out
        # No route: the scheduler may already have made (and deferred) an attempt.
        assert re.search(r"rcpt: <b@example.org> state=pending attempts=\d+ "
                         r"notify=SUCCESS,FAILURE, orcpt=rfc822;b@example.org", out), out
        assert re.search(r"rcpt: <c@example.org> state=pending attempts=\d+ notify=NEVER",
                         out), out


@test
def test_smtputf8_addresses():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<jürgen@bücher.example>", 553, "5.6.7")
        c.cmd("MAIL FROM:<jürgen@bücher.example> SMTPUTF8", 250)
        c.cmd("RCPT TO:<пользователь@пример.рф>", 250)
        c.cmd("DATA", 354)
        c.send(MSG + ".\r\n")
        c.expect(250, "queued as")
        c.cmd("QUIT", 221)


@test
def test_ipv6_listener_and_allow():
    port6 = free_port6()
    with running(extra="listen [::1]:%d\n" % port6, allow="::1") as r:
        s = socket.create_connection(("::1", port6), timeout=10)
        c = Client.__new__(Client)
        c.sock, c.buf = s, b""
        c.hello()
        qid = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        head, body = r.body(qid)
        assert b"([IPv6:::1])" in body.split(b"\r\n")[0], body[:200]
        # The IPv4 listener's client (127.0.0.1) is outside "allow ::1".
        c4 = Client(r.port)
        c4.hello()
        c4.cmd("MAIL FROM:<a@example.com>", 250)
        c4.cmd("RCPT TO:<b@example.org>", 554, "5.7.1")
        c4.cmd("QUIT", 221)


def free_port6():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


@test
def test_sighup_reopens_the_log_file():
    with running() as r:
        os.rename(r.log, r.log + ".1")
        r.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(r.log) and "reopened" in r.log_text(), what="new log")
        c = Client(r.port)
        c.hello()
        c.cmd("QUIT", 221)
        wait_for(lambda: "disconnect from" in r.log_text(), what="log line in the new file")


@test
def test_sigusr1_reopens_the_log_file_without_a_reload():
    with running() as r:
        os.rename(r.log, r.log + ".1")
        r.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(r.log) and "SIGUSR1" in r.log_text(), what="new log")
        assert "reload" not in r.log_text()


@test
def test_systemd_notify_and_pid_file():
    """Type=notify: READY=1 once listening, RELOADING/READY around SIGHUP, STOPPING=1
    at SIGTERM, on the datagram socket named in NOTIFY_SOCKET; and the pid file."""
    r = Relayd()
    sock_path = os.path.join(r.dir, "notify")
    pid_path = os.path.join(r.dir, "relayd.pid")
    with open(r.conf, "a") as f:
        f.write("pid_file %s\n" % pid_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(10)
    os.environ["NOTIFY_SOCKET"] = sock_path
    try:
        r.start()
        assert s.recv(200).startswith(b"READY=1")
        with open(pid_path) as f:
            assert int(f.read()) == r.proc.pid
        r.proc.send_signal(signal.SIGHUP)
        assert s.recv(200) == b"RELOADING=1" and s.recv(200) == b"READY=1"
        r.stop()
        assert s.recv(200) == b"STOPPING=1"
        assert not os.path.exists(pid_path)
    finally:
        del os.environ["NOTIFY_SOCKET"]
        s.close()
        r.cleanup()


@test
def test_half_closed_client_still_gets_its_250():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        c.send("EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        for code in (250, 250, 250, 354):
            c.expect(code)
        c.send(MSG + ".\r\nMAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.org>\r\nDATA\r\n"
               + MSG + ".\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        first = c.expect(250, "queued as")
        for code in (250, 250, 354):
            c.expect(code)
        second = c.expect(250, "queued as")
        assert c.closed()
        assert len(r.queued_ids()) == 2, (first, second)


@test
def test_postmaster_without_domain():
    with running() as r:                    # default: postmaster@HOSTNAME
        c = Client(r.port)
        c.hello()
        qid = c.send_message("a@example.com", ["Postmaster"], MSG)
        c.cmd("QUIT", 221)
        rc, out, err = r.relayctl("show", qid)
        assert "rcpt: <postmaster@relay.test>" in out, out
    with running(extra="postmaster admin@example.net\n") as r:
        c = Client(r.port)
        c.hello()
        qid = c.send_message("a@example.com", ["postmaster"], MSG)
        c.cmd("QUIT", 221)
        rc, out, err = r.relayctl("show", qid)
        assert "rcpt: <admin@example.net>" in out, out


@test
def test_size_beyond_64_bits_is_552():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com> SIZE=99999999999999999999", 552, "5.3.4")
        c.cmd("QUIT", 221)


@test
def test_received_header_keeps_utf8_recipient():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com> SMTPUTF8", 250)
        c.cmd("RCPT TO:<jürgen@bücher.example>", 250)
        c.cmd("DATA", 354)
        c.send(MSG + ".\r\n")
        qid = re.search(r"queued as (\w+)", c.expect(250)).group(1)
        c.cmd("QUIT", 221)
        _, body = r.body(qid)
        assert "for <jürgen@bücher.example>;".encode() in body, body[:300]
        assert b"with UTF8SMTP id" in body


@test
def test_second_term_does_not_wait_for_a_client_that_never_reads():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.settimeout(0.5)
        try:                                 # fill every buffer until our send blocks
            for _ in range(20000):
                c.send("NOOP\r\n" * 100)
        except (socket.timeout, OSError):
            pass
        r.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert r.proc.poll() is None         # still flushing its 421 to us
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        r.proc.wait(10)
        assert time.monotonic() - t0 < 5
        assert r.proc.returncode == 0, r.stderr_text()[-2000:]


@test
def test_out_of_descriptors_does_not_spin():
    r = Relayd()
    try:
        r.start(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40)))
        clients = []
        for _ in range(45):
            clients.append(socket.create_connection(("127.0.0.1", r.port), timeout=5))
        time.sleep(2)
        pauses = r.log_text().count("accept: ")
        assert 1 <= pauses < 10, pauses         # it ran out, and did not spin
        for s in clients:
            s.close()
        time.sleep(1.5)
        c = wait_for(lambda: _greeted(r.port), 10, what="accepting again")
        c.cmd("QUIT", 221)
        r.stop()
    finally:
        r.cleanup()


def _greeted(port):
    try:
        c = Client(port, timeout=2)
        c.expect(220)
        return c
    except (AssertionError, OSError, EOFError):
        return None


@test
def test_graceful_stop_tells_idle_clients_421():
    with running() as r:
        c = Client(r.port)
        c.hello()
        rc = r.stop()
        assert rc == 0
        c.expect(421, "4.3.2")
        assert c.closed()


if __name__ == "__main__":
    run()
