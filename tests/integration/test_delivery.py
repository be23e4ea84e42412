"""
test_delivery — swaks → relayd → an aiosmtpd upstream (tests/integration/
upstream.py): byte-exact forwarding, STARTTLS and implicit TLS with
verification, AUTH, retries, bounces, and the delivery log line for every
attempt.
"""
import re
import subprocess
import tempfile
import time

from harness import Relayd, auth_running, certs, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import (BODY, PASSWORD, json_text, report_fields, sent_line, submit,
                              upstream_conf)


@test
def test_plain_delivery_is_byte_exact_and_logged():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d) as u:
        with running(extra=upstream_conf(u)) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            msgs = u.wait_messages(1, 20)
            m = msgs[0]
            assert m["mail_from"] == "alice@relay.test", m
            assert m["rcpt_tos"] == ["bob@example.com"], m
            data = m["data"]
            assert data.startswith(b"Received: "), data[:200]
            assert data.endswith(BODY.encode()), data
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 10, what="removal")
            log = r.log_text()
            line = [l for l in log.splitlines() if "to=<bob@example.com>" in l][0]
            assert re.search(r"%s: to=<bob@example.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                             r"upstream=up, delay=[0-9.e-]+, delays=[0-9.e/-]+, dsn=2\.0\.0, "
                             r"status=sent \(250 " % (qid, u.port), line), line
            assert r.queued_ids() == []


@test
def test_swaks_to_relayd_to_a_tls_auth_upstream_delivers_retries_and_bounces():
    """The issue's "done when": a client logs in to relayd over STARTTLS with swaks;
    relayd forwards over verified STARTTLS with AUTH, retries a greylisted recipient,
    returns a refused one to the sender, and the log tells each story."""
    c = certs()
    d = tempfile.mkdtemp(prefix="upstream-")
    replies = {"grey@example.com": ["451 4.7.1 Greylisted, come back later", "250 2.1.5 Ok"],
               "gone@example.com": ["550 5.1.1 <gone@example.com>: no such user"]}
    with Upstream(d, tls="starttls", require_tls=True, rcpt_replies=replies,
                  auth={"user": "relay", "password": PASSWORD}) as u:
        conf = upstream_conf(u, tls="starttls", user="relay", ca=c["ca"])
        with auth_running(extra=conf, password="client pass") as r:
            out = subprocess.run(
                ["swaks", "-s", "127.0.0.1:%d" % r.port, "--tls", "-a", "PLAIN", "-au", "bob",
                 "-ap", "client pass", "-f", "alice@relay.test",
                 "-t", "grey@example.com,gone@example.com", "--header", "Subject: e2e"],
                capture_output=True, timeout=60)
            text = out.stdout.decode()
            assert out.returncode == 0, text
            qid = re.search(r"queued as ([0-9A-F]{12})", text).group(1)
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 30, what="the end")
            grey = sent_line(r, qid, "grey@example.com")
            assert ["status=deferred" in grey[0], "status=sent" in grey[1]] == [True, True], grey
            assert "Greylisted" in grey[0] and "dsn=4.7.1" in grey[0], grey
            gone = sent_line(r, qid, "gone@example.com")
            assert len(gone) == 1 and "status=bounced" in gone[0] and "dsn=5.1.1" in gone[0]
            assert "no such user" in gone[0] and "upstream=up" in gone[0], gone
            got = u.messages(accepted=True)
            orig = [m for m in got if m["mail_from"] == "alice@relay.test"]
            assert [m["rcpt_tos"] for m in orig] == [["grey@example.com"]], got
            assert orig[0]["tls"] and orig[0]["auth"] == "relay", orig
            assert b"Subject: e2e" in orig[0]["data"]
            dsn = [m for m in got if m["mail_from"] == ""]
            assert len(dsn) == 1 and dsn[0]["rcpt_tos"] == ["alice@relay.test"], got
            fields = report_fields(dsn[0])
            assert "Final-Recipient: rfc822; gone@example.com" in fields, fields
            assert "grey@example.com" not in fields, fields


@test
def test_starttls_with_verification_and_auth():
    c = certs()
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, tls="starttls", require_tls=True,
                  auth={"user": "relay", "password": PASSWORD}) as u:
        with running(extra=upstream_conf(u, tls="starttls", user="relay", ca=c["ca"])) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            m = u.wait_messages(1, 20)[0]
            assert m["auth"] == "relay" and m["tls"], m
            assert m["data"].endswith(BODY.encode())
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 10, what="removal")


@test
def test_implicit_tls():
    c = certs()
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, tls="implicit") as u:
        with running(extra=upstream_conf(u, tls="tls", ca=c["ca"])) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            m = u.wait_messages(1, 20)[0]
            assert m["tls"], m
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 10, what="removal")


@test
def test_wrong_ca_defers_and_sends_nothing():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, tls="starttls", require_tls=True) as u:
        # The system store does not know the test CA.
        with running(extra=upstream_conf(u, tls="starttls")) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="an attempt")
            line = sent_line(r, qid, "bob@example.com")[0]
            assert "status=deferred" in line and "certificate verification failed" in line, line
            assert u.messages() == []
            assert r.queued_ids() == [qid]


@test
def test_wrong_password_defers_with_the_535_in_the_log():
    c = certs()
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, tls="starttls", auth={"user": "relay", "password": "other"}) as u:
        with running(extra=upstream_conf(u, tls="starttls", user="relay", ca=c["ca"])) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="an attempt")
            line = sent_line(r, qid, "bob@example.com")[0]
            assert "status=deferred" in line and "535" in line and "dsn=4.7.8" in line, line
            assert 'hint="the upstream refused the login' in line, line
            assert u.messages() == []
            # relayctl show quotes the last reply and the same hint.
            rc, out, _ = r.relayctl("show", qid)
            assert "  last: AUTH failed: 535" in out and "  hint: the upstream refused" in out, out


@test
def test_greylisting_succeeds_on_the_third_try():
    d = tempfile.mkdtemp(prefix="upstream-")
    grey = ["451 4.7.1 Greylisted, try again", "451 4.7.1 Greylisted", "250 2.1.5 Ok"]
    with Upstream(d, rcpt_replies={"grey@example.com": grey}) as u:
        with running(extra=upstream_conf(u)) as r:
            qid = submit(r, ["grey@example.com"], BODY)
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 30, what="delivery")
            lines = sent_line(r, qid, "grey@example.com")
            assert [("deferred" in l, "sent" in l) for l in lines] == \
                [(True, False), (True, False), (False, True)], lines
            assert "dsn=4.7.1" in lines[0] and "Greylisted" in lines[0]
            assert len(u.messages()) == 1


@test
def test_permanent_reject_bounces_to_the_sender():
    d = tempfile.mkdtemp(prefix="upstream-")
    gmail = ("550-5.7.1 [127.0.0.1] The IP you're using to send mail is not authorized\n"
             "550 5.7.1 to send email directly to our servers.")
    with Upstream(d, rcpt_replies={"nobody@example.com": [gmail]}) as u:
        with running(extra=upstream_conf(u)) as r:
            qid = submit(r, ["nobody@example.com", "bob@example.com"], BODY)
            # bob is delivered; the DSN about nobody goes back through the same upstream.
            msgs = u.wait_messages(2, 20)
            dsn = [m for m in msgs if m["mail_from"] == ""]
            assert len(dsn) == 1, msgs
            assert dsn[0]["rcpt_tos"] == ["alice@relay.test"]
            import email
            report = email.message_from_bytes(dsn[0]["data"])
            assert report.get_content_type() == "multipart/report"
            parts = report.get_payload()
            status = parts[1].get_payload()
            fields = "\n".join(str(p) for p in status)
            assert "Final-Recipient: rfc822; nobody@example.com" in fields, fields
            assert "Status: 5.7.1" in fields and "Action: failed" in fields, fields
            line = sent_line(r, qid, "nobody@example.com")[0]
            assert "status=bounced" in line and "not authorized" in line, line
            text = parts[0].get_payload(decode=True).decode()
            assert "Hint: " in text, text      # 5.7.1 "IP not authorized": Gmail-like
            assert "%s: sender non-delivery notification: " % qid in r.log_text()


@test
def test_null_sender_is_never_bounced():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, rcpt_replies={"nobody@example.com": ["550 5.1.1 no such user"]}) as u:
        with running(extra=upstream_conf(u)) as r:
            qid = submit(r, ["nobody@example.com"], BODY, sender="")
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 20, what="removal")
            time.sleep(0.5)
            # Only the postmaster hears of it (test_postmaster.py), never the null sender.
            assert [m["rcpt_tos"] for m in u.messages()] == [["postmaster@relay.test"]]
            assert "notification" not in r.log_text()


@test
def test_recipient_expires_and_is_returned():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, rcpt_replies={"slow@example.com": ["451 4.2.0 try later"]}) as u:
        with running(extra=upstream_conf(u, extra="queue_lifetime 3s\n")) as r:
            qid = submit(r, ["slow@example.com"], BODY)
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 30, what="expiry")
            lines = sent_line(r, qid, "slow@example.com")
            assert "status=expired" in lines[-1], lines
            dsn = u.wait_messages(1, 20)
            assert dsn[0]["mail_from"] == "" and dsn[0]["rcpt_tos"] == ["alice@relay.test"]


@test
def test_notify_success_through_an_upstream_without_dsn_is_reported_relayed():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d) as u:
        with running(extra=upstream_conf(u)) as r:
            qid = submit(r, [("bob@example.com", "NOTIFY=SUCCESS,FAILURE")], BODY,
                         mail_params="RET=FULL ENVID=env-1")
            msgs = u.wait_messages(2, 20)
            orig = [m for m in msgs if m["mail_from"]][0]
            assert "NOTIFY=SUCCESS,FAILURE" not in str(orig), orig    # not offered: not sent
            dsn = [m for m in msgs if m["mail_from"] == ""][0]
            assert dsn["rcpt_tos"] == ["alice@relay.test"], dsn
            fields = report_fields(dsn)
            assert "Action: relayed" in fields and "Status: 2.0.0" in fields, fields
            assert "Original-Envelope-Id: env-1" in dsn["data"].decode(), dsn["data"]
            wait_for(lambda: "%s: sender success notification: " % qid in r.log_text(), 10,
                     what="the log line")


@test
def test_notify_success_goes_on_to_an_upstream_with_dsn():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, dsn=True) as u:
        with running(extra=upstream_conf(u)) as r:
            qid = submit(r, [("bob@example.com", "NOTIFY=SUCCESS ORCPT=rfc822;bob@example.com")],
                         BODY, mail_params="RET=HDRS ENVID=env-2")
            m = u.wait_messages(1, 20)[0]
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 10, what="removal")
            time.sleep(0.5)
            assert len(u.messages()) == 1, u.messages()      # the upstream reports success
            assert "notification" not in r.log_text()
            text = json_text(m)
            for want in ("NOTIFY=SUCCESS", "ORCPT=rfc822;bob@example.com", "RET=HDRS",
                         "ENVID=env-2"):
                assert want in text, (want, m)


@test
def test_upstream_silence_times_out_and_defers():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, delay={"RCPT": 4}) as u:
        with running(extra=upstream_conf(u, block=" timeout_command 1s\n")) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="an attempt")
            line = sent_line(r, qid, "bob@example.com")[0]
            assert "status=deferred" in line and "dsn=4.4.2" in line, line
            assert "conversation timed out after RCPT TO" in line, line
            assert r.queued_ids() == [qid]


@test
def test_sigterm_lets_the_transaction_in_flight_finish():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, delay={"DOT": 2}) as u:
        r = Relayd(extra=upstream_conf(u))
        try:
            r.start()
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: u.sessions(), 10, what="a connection")
            time.sleep(0.8)             # inside the 2 s wait for the final reply
            t = time.monotonic()
            r.stop()
            assert time.monotonic() - t < 8, "the stop waited for more than the transaction"
            line = sent_line(r, qid, "bob@example.com")
            assert line and "status=sent" in line[0], r.log_text()
            r.start()                   # the result was written: nothing to send again
            time.sleep(1.5)
            assert len(u.messages()) == 1 and r.queued_ids() == []
            r.stop()
        finally:
            r.cleanup()


@test
def test_sigterm_cuts_off_a_stuck_transaction_and_keeps_the_message():
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, delay={"DOT": 60}) as u:
        r = Relayd(extra=upstream_conf(u))
        try:
            r.start()
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: u.sessions(), 10, what="a connection")
            time.sleep(0.5)
            t = time.monotonic()
            r.stop()
            took = time.monotonic() - t
            assert 9 < took < 15, took      # DELIVERY_STOP_GRACE is 10 s
            assert "cut off" in r.log_text() and not sent_line(r, qid, "bob@example.com")
            u.stop()                    # the next attempt finds nobody: stays queued
            r.start()
            assert r.queued_ids() == [qid]
            r.stop()
        finally:
            r.cleanup()


@test
def test_delays_count_a_wait_for_a_busy_connection_in_b_not_c():
    """delays=a/b/c/d: a message that waited for the one connection (busy with another)
    has that wait in b; c is the setup of a connection, and this one was set up already;
    a counts from the arrival to the microsecond."""
    d = tempfile.mkdtemp(prefix="upstream-")
    with Upstream(d, delay={"DOT": 1.5}) as u:
        with running(extra=upstream_conf(u, block=" max_connections 1\n")) as r:
            first = submit(r, ["one@example.com"], BODY)
            second = submit(r, ["two@example.com"], BODY)
            u.wait_messages(2, 30)
            wait_for(lambda: "%s: removed" % second in r.log_text(), 20, what="removal")
            delays = {}
            for qid, rcpt in ((first, "one@example.com"), (second, "two@example.com")):
                line = sent_line(r, qid, rcpt)[0]
                m = re.search(r"delays=([0-9.e-]+)/([0-9.e-]+)/([0-9.e-]+)/([0-9.e-]+),", line)
                assert m, line
                delays[rcpt] = [float(x) for x in m.groups()]
            b, c = delays["two@example.com"][1:3]
            assert b >= 1.0 and c < 0.5, delays
            # a: from arrival, kept to the microsecond, to the scheduler: no whole second.
            assert delays["one@example.com"][0] < 0.5, delays
            assert delays["one@example.com"][3] >= 1.4, delays


if __name__ == "__main__":
    run()
