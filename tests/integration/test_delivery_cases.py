"""
test_delivery_cases — relayd's delivery engine against a scriptable aiosmtpd
upstream (upstream.py) in the cases a relay meets every day: DSN requests
honoured and passed on, SIZE, a 20 MB message, connection reuse, kill -9 in
the middle of a delivery, lost connections and 421s, the HELO fallback, delay
warnings and a sender refused at MAIL FROM.
"""
import email
import re
import time

from harness import Client, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import BODY, sent_line, stuffed, submit, upstream_conf


def conf(u, back=None, block="", extra=""):
    """upstream_conf(u) with `block` lines inside its upstream block; with back, a
    second upstream that carries mail for relay.test (the sender: DSNs), so a DSN
    never meets the first upstream's scripted refusals or limits."""
    text = upstream_conf(u, extra=extra, block=block)
    if back:
        text += ("upstream back {\n host 127.0.0.1\n port %d\n tls none\n}\n"
                 "route relay.test back\n" % back.port)
    return text


def transaction(r, mail, rcpts, body):
    """One transaction with raw parameters: mail "FROM:<a> RET=HDRS", rcpts "TO:<b> …"."""
    c = Client(r.port)
    c.hello()
    c.cmd("MAIL " + mail, 250)
    for rc in rcpts:
        c.cmd("RCPT " + rc, 250)
    c.cmd("DATA", 354)
    c.send(stuffed(body).encode() + b".\r\n")
    qid = re.search(r"queued as ([0-9A-F]{12})", c.expect(250)).group(1)
    c.cmd("QUIT", 221)
    return qid


def line_for(r, qid, rcpt, timeout=20):
    """The first delivery log line about rcpt in qid, once there is one."""
    return wait_for(lambda: sent_line(r, qid, rcpt), timeout, what="%s %s" % (qid, rcpt))[0]


def removed(r, qid, timeout=20):
    wait_for(lambda: "%s: removed" % qid in r.log_text(), timeout, what="%s removed" % qid)


def report(m):
    """(the whole DSN, its delivery-status fields as text) of an upstream message."""
    rep = email.message_from_bytes(m["data"])
    assert rep.get_content_type() == "multipart/report", m["data"][:500]
    assert rep.get_param("report-type") == "delivery-status", rep["Content-Type"]
    status = rep.get_payload()[1]
    return rep, "\n".join(str(p) for p in status.get_payload())


def dsns(u):
    return [m for m in u.messages() if m["mail_from"] == ""]


def subject_body(subject, size=0):
    body = "From: alice@relay.test\r\nTo: bob@example.com\r\nSubject: %s\r\n\r\n" % subject
    return body + ("x" * 70 + "\r\n") * (size // 72) + "end\r\n"


def subjects(u):
    out = []
    for m in u.messages():
        s = re.search(rb"^Subject: (.*?)\r$", m["data"], re.M)
        out.append(s.group(1).decode() if s else None)
    return out


# --- 1. NOTIFY=NEVER / no FAILURE: a bounce, but no DSN ---------------------------------

@test
def test_notify_never_or_without_failure_bounces_without_dsn():
    with Upstream(rcpt_replies={"x@example.com": ["550 5.1.1 no such user"]}) as u, \
            Upstream() as back:
        with running(extra=conf(u, back)) as r:
            q_never = transaction(r, "FROM:<alice@relay.test>",
                                  ["TO:<x@example.com> NOTIFY=NEVER"], BODY)
            q_nofail = transaction(r, "FROM:<alice@relay.test>",
                                   ["TO:<x@example.com> NOTIFY=SUCCESS,DELAY"], BODY)
            # The control: with FAILURE a DSN is due; once it has come, so would the others.
            q_fail = transaction(r, "FROM:<alice@relay.test>",
                                 ["TO:<x@example.com> NOTIFY=FAILURE"], BODY)
            for q in (q_never, q_nofail, q_fail):
                line = line_for(r, q, "x@example.com")
                assert "dsn=5.1.1, status=bounced" in line, line
                removed(r, q)
            got = back.wait_messages(1, 20)
            time.sleep(1)
            got = back.messages()
            assert len(got) == 1, [(m["mail_from"], m["data"][:300]) for m in got]
            assert got[0]["mail_from"] == "" and got[0]["rcpt_tos"] == ["alice@relay.test"]
            _, fields = report(got[0])
            assert "X-Relayd-Queue-ID: %s" % q_fail in fields, fields
            log = r.log_text()
            for q in (q_never, q_nofail):
                assert "%s: sender non-delivery notification" % q not in log, log
            assert u.messages() == []


# --- 2. DSN parameters passed on only to an upstream that offers DSN ---------------------

DSN_MAIL = "FROM:<alice@relay.test> RET=HDRS ENVID=QQ+2B314@relay.test"
DSN_RCPT = "TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@example.com"


@test
def test_dsn_parameters_pass_through_to_a_dsn_upstream():
    with Upstream(dsn=True) as u:
        with running(extra=conf(u)) as r:
            qid = transaction(r, DSN_MAIL, [DSN_RCPT], BODY)
            m = u.wait_messages(1, 20)[0]
            assert "RET=HDRS" in m["mail_options"], m
            assert "ENVID=QQ+2B314@relay.test" in m["mail_options"], m
            assert m["rcpt_tos"] == ["bob@example.com"], m
            assert len(m["rcpt_options"]) == 1, m
            opts = dict(o.split("=", 1) for o in m["rcpt_options"][0])
            assert set(opts["NOTIFY"].split(",")) == {"SUCCESS", "FAILURE"}, m
            assert opts["ORCPT"] == "rfc822;bob+2Bx@example.com", m
            assert m["data"].endswith(BODY.encode())
            removed(r, qid)
            time.sleep(0.5)      # the next hop does DSN: no success report from relayd
            assert dsns(u) == [] and "notification" not in r.log_text()


@test
def test_dsn_parameters_withheld_from_an_upstream_without_dsn():
    with Upstream() as u:
        with running(extra=conf(u)) as r:
            qid = transaction(r, DSN_MAIL, [DSN_RCPT.replace("SUCCESS,", "")], BODY)
            m = u.wait_messages(1, 20)[0]
            assert not [o for o in m["mail_options"] if o.split("=")[0] in ("RET", "ENVID")], m
            assert m["rcpt_options"] == [[]], m
            line = line_for(r, qid, "bob@example.com")
            assert "status=sent" in line, line
            removed(r, qid)


# --- 3. SIZE ----------------------------------------------------------------------------

@test
def test_size_limit_bounces_without_data_and_smaller_mail_passes():
    with Upstream(size=1000) as u, Upstream() as back:
        with running(extra=conf(u, back)) as r:
            big = subject_body("big", 5000)
            qid = submit(r, ["bob@example.com"], big)
            line = line_for(r, qid, "bob@example.com")
            assert "dsn=5.3.4, status=bounced" in line, line
            dsn = back.wait_messages(1, 20)[0]
            assert dsn["mail_from"] == "" and dsn["rcpt_tos"] == ["alice@relay.test"], dsn
            _, fields = report(dsn)
            assert "Status: 5.3.4" in fields and "Action: failed" in fields, fields
            removed(r, qid)
            cmds = [c.upper() for s in u.sessions() for c in s["commands"]]
            assert u.messages() == [] and "DATA" not in cmds, cmds
            small = subject_body("small")
            qid2 = submit(r, ["bob@example.com"], small)
            m = u.wait_messages(1, 20)[0]
            assert m["data"].endswith(small.encode()) and len(m["data"]) < 1000, m
            assert "status=sent" in line_for(r, qid2, "bob@example.com")


# --- 4. 20 MB, byte-exact ----------------------------------------------------------------

@test
def test_20mb_message_is_delivered_byte_exact():
    head = b"From: alice@relay.test\r\nTo: bob@example.com\r\nSubject: big\r\n\r\n"
    # 76 octets + CRLF; every 997th line starts with a dot (stuffed both ways).
    lines = [(b"." if i % 997 == 0 else b"L") + b"%08d " % i + b"y" * 66 + b"\r\n"
             for i in range(20 * 1024 * 1024 // 78)]
    body = head + b"".join(lines)
    assert len(body) > 20 * 1024 * 1024 - 100, len(body)
    with Upstream() as u:
        with running(extra=conf(u)) as r:
            c = Client(r.port, timeout=120)
            c.hello()
            c.cmd("MAIL FROM:<alice@relay.test> SIZE=%d" % len(body), 250)
            c.cmd("RCPT TO:<bob@example.com>", 250)
            c.cmd("DATA", 354)
            c.send(re.sub(rb"(?m)^\.", b"..", body) + b".\r\n")
            qid = re.search(r"queued as ([0-9A-F]{12})", c.expect(250)).group(1)
            c.cmd("QUIT", 221)
            data = u.wait_messages(1, 90)[0]["data"]
            trace = data[:len(data) - len(body)]
            assert data.endswith(body), (len(data), len(body))
            # What precedes the message is relayd's own Received: header, and nothing else.
            assert re.fullmatch(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", trace), trace
            assert qid.encode() in trace, trace
            removed(r, qid, 30)


# --- 5. one connection, a dozen messages -------------------------------------------------

@test
def test_twelve_messages_over_one_reused_connection():
    with Upstream() as u:
        with running(extra=conf(u, block=" max_connections 1\n")) as r:
            c = Client(r.port)
            c.hello()
            qids = [c.send_message("alice@relay.test", ["bob@example.com"],
                                   stuffed(subject_body("m%02d" % i))) for i in range(12)]
            c.cmd("QUIT", 221)
            msgs = u.wait_messages(12, 30)
            assert sorted(subjects(u)) == ["m%02d" % i for i in range(12)], subjects(u)
            for q in qids:
                removed(r, q)
            ss = u.sessions()
            assert len(ss) == 1, [(s["n"], s["commands"][:2], s["messages"]) for s in ss]
            assert {m["session"] for m in msgs} == {1}
            assert ss[0]["commands"].count("RSET") == 0, ss[0]["commands"]


# --- 6. kill -9 in the middle of deliveries ---------------------------------------------

@test
def test_kill9_during_delivery_then_restart_delivers_each_once_or_twice():
    # One connection, so one message at a time: k0 acknowledged, k1 in flight, k2 waiting.
    with Upstream(delay={"DOT": 2}) as u:
        with running(extra=conf(u, block=" max_connections 1\n")) as r:
            c = Client(r.port)
            c.hello()
            names = ["k0", "k1", "k2"]
            for n in names:
                c.send_message("alice@relay.test", ["bob@example.com"], stuffed(subject_body(n)))
            c.cmd("QUIT", 221)
            wait_for(lambda: "k1" in subjects(u), 20, what="k1's DATA")
            time.sleep(0.3)                  # k0's 250 is long in; k1's is 1.7 s away
            r.kill9()
            time.sleep(0.5)                  # what was already sent reaches the upstream
            in_flight = set(subjects(u))
            assert in_flight == {"k0", "k1"}, in_flight
            r.start()
            wait_for(lambda: set(subjects(u)) >= set(names), 40, what="every message")
            wait_for(lambda: r.queued_ids() == [], 30, what="an empty queue")
            got = subjects(u)
            for n in names:
                assert 1 <= got.count(n) <= 2, got
                assert got.count(n) == 1 or n in in_flight, (got, in_flight)
            assert got.count("k0") == 1, got       # acknowledged before the kill: never again


# --- 7. connection lost or closed in flight: deferred, then sent -------------------------

def deferred_then_sent(u, why):
    with running(extra=conf(u)) as r:
        qid = submit(r, ["bob@example.com"], BODY)
        first = line_for(r, qid, "bob@example.com")
        assert "status=deferred" in first and why in first, first
        removed(r, qid, 30)
        lines = sent_line(r, qid, "bob@example.com")
        assert len(lines) == 2 and "status=sent" in lines[1], lines
        assert [m["data"].endswith(BODY.encode()) for m in u.messages(accepted=True)] == [True]
        assert r.queued_ids() == []


@test
def test_connection_dropped_after_data_is_deferred_then_sent():
    with Upstream(data_reply=["DROP", "DEFAULT"]) as u:
        deferred_then_sent(u, "lost connection")


@test
def test_421_after_data_is_deferred_then_sent():
    with Upstream(data_reply=["421 4.3.0 closing", "DEFAULT"]) as u:
        deferred_then_sent(u, "dsn=4.3.0")


@test
def test_421_greeting_is_deferred_then_sent():
    with Upstream(greeting_reply=["421 4.3.2 busy", "DEFAULT"]) as u:
        deferred_then_sent(u, "busy")


@test
def test_421_after_data_does_not_reuse_the_closing_connection():
    # A 421 closes the connection (RFC 5321 §3.8): the next message waiting for the
    # same connection must not be started on it and be deferred as "lost".
    with Upstream(data_reply=["421 4.3.0 closing", "DEFAULT"], delay={"DOT": 0.5}) as u:
        with running(extra=conf(u, block=" max_connections 1\n")) as r:
            c = Client(r.port)
            c.hello()
            qids = [c.send_message("alice@relay.test", ["bob@example.com"],
                                   stuffed(subject_body("c%d" % i))) for i in range(2)]
            c.cmd("QUIT", 221)
            for q in qids:
                removed(r, q, 30)
            first = sent_line(r, qids[0], "bob@example.com")
            second = sent_line(r, qids[1], "bob@example.com")
            assert "status=deferred" in first[0] and "4.3.0" in first[0], first
            assert len(second) == 1 and "status=sent" in second[0], second


# --- 8. EHLO refused: HELO ---------------------------------------------------------------

@test
def test_ehlo_refused_falls_back_to_helo():
    with Upstream(command_replies={"EHLO": ["502 5.5.2 no"]}) as u:
        with running(extra=conf(u)) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            m = u.wait_messages(1, 20)[0]
            assert m["data"].endswith(BODY.encode())
            assert m["mail_options"] == [], m          # nothing ESMTP after HELO
            line = line_for(r, qid, "bob@example.com")
            assert "status=sent" in line, line
            cmds = u.sessions()[0]["commands"]
            assert cmds[:2] == ["EHLO relay.test", "HELO relay.test"], cmds


# --- 9. delay_warning --------------------------------------------------------------------

@test
def test_delay_warning_once_and_the_message_stays_queued():
    with Upstream(rcpt_replies={"slow@example.com": ["451 4.2.0 try later"]}) as u:
        extra = "delay_warning 2s\nqueue_lifetime 30s\n"
        with running(extra=conf(u, extra=extra)) as r:
            t0 = time.monotonic()
            qid = submit(r, ["slow@example.com"], BODY)
            warn = wait_for(lambda: dsns(u), 15, what="the delay warning")[0]
            # "2s" against whole-second arrival times: at least 1 s of real time.
            assert 1 <= time.monotonic() - t0 <= 10, time.monotonic() - t0
            assert warn["rcpt_tos"] == ["alice@relay.test"], warn
            rep, fields = report(warn)
            assert "Action: delayed" in fields and "Final-Recipient: rfc822; slow@example.com" \
                in fields, fields
            assert "Delayed Mail" in rep["Subject"], rep["Subject"]
            # Two more attempts after the warning: still only the one.
            n = len(sent_line(r, qid, "slow@example.com"))
            wait_for(lambda: len(sent_line(r, qid, "slow@example.com")) >= n + 2, 15,
                     what="two more attempts")
            assert len(dsns(u)) == 1, [m["data"][:300] for m in dsns(u)]
            lines = sent_line(r, qid, "slow@example.com")
            assert all("status=deferred" in l for l in lines), lines
            assert r.log_text().count("%s: sender delay notification" % qid) == 1
            assert r.queued_ids() == [qid]


# --- 10. MAIL FROM refused: every recipient bounced, one DSN -----------------------------

@test
def test_mail_from_refused_bounces_every_recipient_in_one_dsn():
    rcpts = ["a@example.com", "b@example.com", "c@example.com"]
    with Upstream(mail_reply="550 5.7.1 sender rejected") as u, Upstream() as back:
        with running(extra=conf(u, back)) as r:
            qid = submit(r, rcpts, BODY)
            for a in rcpts:
                line = line_for(r, qid, a)
                assert "dsn=5.7.1, status=bounced" in line and "sender rejected" in line, line
            removed(r, qid)
            got = back.wait_messages(1, 20)
            time.sleep(0.5)
            assert len(back.messages()) == 1, back.messages()
            _, fields = report(got[0])
            for a in rcpts:
                assert "Final-Recipient: rfc822; %s" % a in fields, fields
            assert fields.count("Action: failed") == 3 and fields.count("Status: 5.7.1") == 3
            assert u.messages() == []


if __name__ == "__main__":
    run()
