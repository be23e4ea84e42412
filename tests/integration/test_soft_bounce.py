"""
test_soft_bounce — `soft_bounce yes`, the safety net while changing upstreams
and routes: an upstream's 550 is deferred (dsn 4.x.x, "soft_bounce" in the
log) and delivered once the upstream is fixed and relayctl flush runs; no
route at RCPT is 450 4.4.4; the end of queue_lifetime keeps the message;
relayctl and the status page say it is on; a reload turns it off and the
next 550 bounces as usual.
"""
import os
import re
import signal
import time
import urllib.request

from harness import Client, free_port, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import BODY, sent_line, submit

SLOW = "retry_min 1h\nretry_max 2h\n"


def conf(port, soft="yes", extra=""):
    return ("soft_bounce %s\nupstream up {\n host 127.0.0.1\n port %d\n tls none\n}\n"
            "route example.com up\n%s%s" % (soft, port, SLOW, extra))


@test
def test_550_deferred_then_delivered_after_the_fix():
    http = free_port()
    with Upstream(rcpt_replies={"bob@example.com": ["550 5.1.1 no such user", "DEFAULT"]}) as u:
        with running(extra=conf(u.port, extra="http 127.0.0.1:%d\n" % http)) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="a first try")
            line = sent_line(r, qid, "bob@example.com")[0]
            assert "dsn=4.1.1, status=deferred (" in line and "; soft_bounce)" in line, line
            assert "550 5.1.1 no such user" in line, line
            assert "notification" not in r.log_text()       # nothing went to the sender
            assert r.queued_ids() == [qid]
            rc, out, err = r.relayctl("queue")
            assert out.startswith("soft_bounce is on"), out
            page = urllib.request.urlopen("http://127.0.0.1:%d/" % http, timeout=10).read()
            assert b'id="soft_bounce">soft_bounce is on' in page, page
            rc, out, err = r.relayctl("flush")
            assert rc == 0, out + err
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 20, what="delivery")
            assert len(u.messages(accepted=True)) == 1
            assert "status=sent" in sent_line(r, qid, "bob@example.com")[-1]


@test
def test_no_route_is_450_and_expiry_keeps_the_message():
    port = free_port()                  # nothing listens: every try is a 4xx
    with running(extra=conf(port, extra="queue_lifetime 1s\n")) as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<alice@relay.test>", 250)
        c.cmd("RCPT TO:<carol@elsewhere.test>", 450, "4.4.4")
        c.cmd("QUIT", 221)
        assert "450 4.4.4 <carol@elsewhere.test>: no route; from=<alice@relay.test> " \
               "(soft_bounce)" in r.log_text()
        qid = submit(r, ["bob@example.com"], BODY)
        wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="a first try")
        time.sleep(1.2)                 # past queue_lifetime
        r.relayctl("flush")
        wait_for(lambda: len(sent_line(r, qid, "bob@example.com")) == 2, 20, what="a second try")
        line = sent_line(r, qid, "bob@example.com")[1]
        assert "status=deferred" in line and "soft_bounce: queue_lifetime is over" in line, line
        assert r.queued_ids() == [qid] and "notification" not in r.log_text()
        rc, out, err = r.relayctl("route", "carol@elsewhere.test")
        assert "450 4.4.4 (soft_bounce)" in out, out


@test
def test_sender_rules_refuse_with_4xx():
    with running(extra=conf(free_port(), extra="deny_sender @spam.test\n")) as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<x@spam.test>", 453, "4.7.1 Sender address rejected: Access denied")
        c.cmd("QUIT", 221)
        assert "453 4.7.1 Sender address rejected" in r.log_text()
        assert "(soft_bounce)" in r.log_text()


@test
def test_reload_turns_it_off():
    replies = {"bob@example.com": ["550 5.1.1 no such user"]}
    with Upstream(rcpt_replies=replies) as u:
        with running(extra=conf(u.port)) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: sent_line(r, qid, "bob@example.com"), 20, what="a first try")
            assert "status=deferred" in sent_line(r, qid, "bob@example.com")[0]
            with open(r.conf) as f:
                text = f.read()
            with open(r.conf, "w") as f:
                f.write(text.replace("soft_bounce yes", "soft_bounce no"))
            os.kill(r.proc.pid, signal.SIGHUP)
            wait_for(lambda: "reload" in r.log_text(), 10, what="the reload")
            rc, out, err = r.relayctl("flush")
            wait_for(lambda: "%s: removed" % qid in r.log_text(), 20, what="the bounce")
            line = sent_line(r, qid, "bob@example.com")[-1]
            assert "dsn=5.1.1, status=bounced (550 5.1.1 no such user)" in line, line
            assert "non-delivery notification" in r.log_text()


if __name__ == "__main__":
    run()
