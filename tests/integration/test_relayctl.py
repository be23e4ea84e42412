"""
test_relayctl — an admin with a stuck message, with relayctl alone: the
upstream is down, `queue` shows the message with its last reply, the hint and
the next try, `show` explains it, the upstream comes back, `flush` sends it
now; `hold`/`release`, `delete`, `--domain`, and what a wrong request gets.
"""
import os
import re
import stat
import time

from harness import certs, free_port, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import BODY, PASSWORD, sent_line, submit, upstream_conf

SLOW = "retry_min 1h\nretry_max 2h\n"      # nothing is retried by itself during a test


def conf(port):
    return ("upstream up {\n host 127.0.0.1\n port %d\n tls none\n}\nroute * up\n%s" %
            (port, SLOW))


def removed(r, qid, timeout=20):
    wait_for(lambda: "%s: removed" % qid in r.log_text(), timeout, what="%s removed" % qid)


def ctl(r, *args):
    rc, out, err = r.relayctl(*args)
    return rc, out + err


@test
def test_stuck_message_found_explained_flushed():
    port = free_port()                      # the upstream is down: nothing listens
    with running(extra=conf(port)) as r:
        qid = submit(r, ["bob@example.com"], BODY)
        wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="a first try")
        rc, out = ctl(r, "queue")
        assert rc == 0 and qid in out, out
        assert "Connection refused" in out and "hint: nothing listens" in out, out
        assert "next try:" in out, out
        rc, out = ctl(r, "show", qid)
        assert "  last: connect to 127.0.0.1[127.0.0.1]:%d: Connection refused" % port in out
        assert "  hint: nothing listens at that host and port" in out, out
        sock = os.path.join(r.dir, "queue", "control")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        rc, out = ctl(r, "flush")           # still down: a second try, in the history
        wait_for(lambda: r.log_text().count("%s: to=<bob@example.com>" % qid) == 2, 20,
                 what="a second try")
        rc, out = ctl(r, "show", qid)
        tries = re.findall(r"^  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d deferred upstream=up "
                           r"relay=\S+ dsn=4\.\d\.\d \(.*Connection refused\)$", out, re.M)
        assert len(tries) == 2, out
        with Upstream(port=port) as u:      # fixed: the upstream is back
            rc, out = ctl(r, "flush")
            assert rc == 0 and "flush: 1 message(s)" in out, out
            removed(r, qid)
            assert len(u.messages()) == 1
        assert r.queued_ids() == []
        assert "relayctl: flush (all)" in r.log_text()
        rc, out = ctl(r, "stats")           # the totals outlive the message
        assert re.search(r"^upstream +sent +deferred +bounced +failover$", out, re.M), out
        assert re.search(r"^up +1 +2 +0 +0$", out, re.M), out


@test
def test_hold_release_delete_and_domain():
    port = free_port()
    with running(extra=conf(port)) as r:
        q1 = submit(r, ["a@one.example"], BODY)
        q2 = submit(r, ["b@two.example"], BODY)
        q3 = submit(r, ["c@two.example"], BODY)
        for q, a in ((q1, "a@one.example"), (q2, "b@two.example"), (q3, "c@two.example")):
            wait_for(lambda: sent_line(r, q, a), 20, what="a first try")
        rc, out = ctl(r, "hold", q1)
        assert rc == 0 and "hold: 1 message(s)" in out, out
        rc, out = ctl(r, "queue")
        assert re.search(r"^%s!" % q1, out, re.M) and "(held: relayctl release %s)" % q1 in out
        rc, out = ctl(r, "hold", q1)        # held already
        assert "not queued, or held" in out, out
        with Upstream(port=port) as u:
            rc, out = ctl(r, "flush", "--domain", "two.example")
            assert rc == 0 and "flush: 2 message(s)" in out, out
            removed(r, q2)
            removed(r, q3)
            rc, out = ctl(r, "flush")       # the held one stays
            assert "flush: 0 message(s)" in out, out
            time.sleep(0.5)
            assert sorted(m["rcpt_tos"][0] for m in u.messages()) == ["b@two.example",
                                                                       "c@two.example"]
            rc, out = ctl(r, "release", q1)
            assert "release: 1 message(s)" in out, out
            removed(r, q1)
        q4 = submit(r, ["d@one.example"], BODY)
        wait_for(lambda: sent_line(r, q4, "d@one.example"), 20, what="a first try")
        rc, out = ctl(r, "delete", q4)
        assert rc == 0 and "delete: 1 message(s)" in out, out
        assert r.queued_ids() == []
        assert "notification" not in r.log_text()       # deleted, not bounced


@test
def test_queue_json_and_stats():
    import json
    port = free_port()
    with running(extra=conf(port)) as r:
        q1 = submit(r, ["a@one.example", "b@two.example"], BODY)
        q2 = submit(r, ["c@two.example"], BODY, sender="")
        for q, a in ((q1, "b@two.example"), (q2, "c@two.example")):
            wait_for(lambda: sent_line(r, q, a), 20, what="a first try")
        rc, out = ctl(r, "queue", "--json")
        assert rc == 0, out
        msgs = {m["id"]: m for m in json.loads(out)}
        assert set(msgs) == {q1, q2}, msgs
        assert msgs[q2]["sender"] == "" and not msgs[q1]["held"]
        rcpt = msgs[q1]["recipients"][0]
        assert rcpt["address"] == "a@one.example" and rcpt["attempts"] == 1, rcpt
        assert "Connection refused" in rcpt["last_reply"] and rcpt["hint"], rcpt
        assert rcpt["next_attempt"] > time.time(), rcpt
        rc, out = ctl(r, "stats")
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["domain", "T", "5"], lines
        assert lines[1].split()[:3] == ["TOTAL", "3", "3"], lines
        assert lines[2].split()[:2] == ["two.example", "2"], lines
        assert lines[3].split()[:2] == ["one.example", "1"], lines
        rc, out = ctl(r, "stats", "--by", "upstream")
        assert out.splitlines()[2].split()[:2] == ["up", "3"], out
        rc, out = ctl(r, "stats", "--by", "sender")
        assert "<>" in out and "alice@relay.test" in out, out


@test
def test_check_walks_an_upstream_step_by_step():
    c = certs()
    with Upstream(tls="starttls", require_tls=True,
                  auth={"user": "relay", "password": PASSWORD},
                  rcpt_replies={"gone@example.com": ["550 5.1.1 no such user"]}) as u:
        with running(extra=upstream_conf(u, tls="starttls", user="relay", ca=c["ca"])) as r:
            rc, out = ctl(r, "check", "up", "--from", "a@relay.test", "--to", "b@example.com")
            assert rc == 0, out
            steps = [l.split()[:2] for l in out.splitlines()[:-1]]
            assert steps == [["OK", "connect"], ["OK", "greeting"], ["OK", "EHLO"],
                             ["OK", "STARTTLS"], ["OK", "TLS"], ["OK", "verify"],
                             ["OK", "EHLO"], ["OK", "AUTH"], ["OK", "MAIL"], ["OK", "RCPT"]], out
            assert "TLSv1.3" in out and "CN=relayd test CA" in out, out
            assert out.splitlines()[-1] == "all steps OK"
            rc, out = ctl(r, "check", "up", "--from", "a@relay.test", "--to", "gone@example.com")
            assert rc == 1 and "FAIL RCPT      550 5.1.1 no such user" in out, out
    # Wrong password, CA and port: each says which step and why.
    with Upstream(tls="starttls", auth={"user": "relay", "password": "other"}) as u:
        with running(extra=upstream_conf(u, tls="starttls", user="relay", ca=c["ca"])) as r:
            rc, out = ctl(r, "check", "up")
            assert rc == 1 and "FAIL AUTH" in out and "535" in out, out
            assert "hint" not in out
    with Upstream(tls="starttls") as u:
        with running(extra=upstream_conf(u, tls="starttls")) as r:     # system CA store
            rc, out = ctl(r, "check", "up")
            assert rc == 1 and "FAIL verify" in out, out
    with running(extra=upstream_conf(type("U", (), {"port": free_port(), "dir": "/tmp"})())) as r:
        rc, out = ctl(r, "check", "up")
        assert rc == 1 and "FAIL connect" in out and "Connection refused" in out, out
        rc, out = ctl(r, "check", "nosuch")
        assert rc == 2 and "no upstream of that name" in out, out


@test
def test_delete_or_flush_while_the_message_is_out():
    # Deleted in the middle of a delivery: the upstream must not get a cut (empty) message;
    # flushed in the middle: relayctl says it is out, rather than scheduling it twice.
    with Upstream(delay={"RCPT": 2}) as u:
        with running(extra=conf(u.port)) as r:
            q1 = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: u.sessions(), 10, what="the delivery")
            rc, out = ctl(r, "flush", q1)
            assert rc == 1 and "being delivered right now" in out, out
            rc, out = ctl(r, "delete", q1)
            assert rc == 0 and "delete: 1 message(s)" in out, out
            wait_for(lambda: sent_line(r, q1, "bob@example.com"), 20, what="the end")
            time.sleep(0.5)
            assert u.messages(accepted=True) == [], u.messages()
            assert r.queued_ids() == []


@test
def test_hint_by_code_in_show():
    with Upstream(rcpt_replies={"*": ["452 4.2.2 Mailbox over quota"]}) as u:
        with running(extra=conf(u.port)) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="a try")
            rc, out = ctl(r, "show", qid)
            assert "  hint: the recipient's mailbox is full" in out, out


@test
def test_wrong_requests_are_answered():
    with running(extra=conf(free_port())) as r:
        rc, out = ctl(r, "delete", "NOTANID")
        assert rc == 1 and "no such queue id" in out, out
        rc, out = ctl(r, "release", "0123456789AB")
        assert rc == 0 and "not queued, or not held" in out, out
        rc, out = ctl(r, "hold")
        assert rc == 2, out                 # usage
        r.stop()                            # relayd gone: relayctl says so
        rc, out = ctl(r, "flush")
        assert rc == 1 and "is relayd running?" in out, out


if __name__ == "__main__":
    run()
