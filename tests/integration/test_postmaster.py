"""
test_postmaster — relayd's words to the postmaster: a bounce that cannot be
delivered goes to the postmaster once and no further (never a loop, never
retried forever); `notify bounce` and `notify delay` send copies of reports
(headers only); `notify resource` warns once when the queue passes queue_warn.
"""
import email
import re
import time

from harness import Client, free_port, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import BODY, submit

PM = "pm@example.com"


def conf(port, extra="", retry="retry_min 1s\nretry_max 2s\n"):
    return ("postmaster %s\nupstream up {\n host 127.0.0.1\n port %d\n tls none\n}\n"
            "route * up\n%s%s" % (PM, port, retry, extra))


def to(m):
    return m["rcpt_tos"][0]


def subject(m):
    return email.message_from_bytes(m["data"])["Subject"]


@test
def test_undeliverable_bounce_reaches_the_postmaster_once():
    replies = {"bob@example.com": ["550 5.1.1 no such user"]}
    with Upstream(rcpt_replies=replies) as u:
        with running(extra=conf(u.port)) as r:
            c = Client(r.port)
            c.hello()
            qid = c.send_message("", ["bob@example.com"], BODY)     # someone's bounce
            c.cmd("QUIT", 221)
            wait_for(lambda: any(to(m) == PM for m in u.messages(accepted=True)), 20,
                     what="the postmaster notice")
            wait_for(lambda: r.queued_ids() == [], 20, what="an empty queue")
            notices = [m for m in u.messages(accepted=True) if to(m) == PM]
            assert len(notices) == 1, notices
            n = notices[0]
            assert n["mail_from"] == "", n
            assert subject(n) == "Postmaster Warning: Undelivered Bounce", subject(n)
            msg = email.message_from_bytes(n["data"])
            parts = [p.get_content_type() for p in msg.walk()]
            assert "message/delivery-status" in parts and "text/rfc822-headers" in parts, parts
            assert "550 5.1.1 no such user" in n["data"].decode()
            log = r.log_text()
            assert "%s: undeliverable bounce: postmaster notice:" % qid in log, log
            assert "notification" not in log        # nothing went to the null sender


@test
def test_a_bounce_loop_ends_at_the_postmaster():
    """Everyone refuses: bob, the sender who gets the bounce, and the postmaster."""
    replies = {"bob@example.com": ["550 5.1.1 no such user"],
               "alice@relay.test": ["550 5.1.1 gone too"], PM: ["550 5.1.1 nobody here"]}
    with Upstream(rcpt_replies=replies) as u:
        with running(extra=conf(u.port)) as r:
            qid = submit(r, ["bob@example.com"], BODY)
            wait_for(lambda: "undeliverable: dropped" in r.log_text(), 30, what="the end")
            wait_for(lambda: r.queued_ids() == [], 20, what="an empty queue")
            time.sleep(1.5)                     # a loop would show by now
            log = r.log_text()
            assert log.count("non-delivery notification") == 1, log
            assert log.count("undeliverable bounce: postmaster notice") == 1, log
            assert log.count("postmaster notice to <%s> undeliverable: dropped" % PM) == 1
            assert r.queued_ids() == []
            assert "%s: removed" % qid in log


@test
def test_notify_bounce_and_delay_copy_reports_to_the_postmaster():
    replies = {"bob@example.com": ["550 5.1.1 no such user"],
               "carol@example.com": ["450 4.2.0 later"]}
    with Upstream(rcpt_replies=replies) as u:
        extra = "notify bounce delay\ndelay_warning 1s\n"
        with running(extra=conf(u.port, extra)) as r:
            q1 = submit(r, ["bob@example.com"], BODY)
            q2 = submit(r, ["carol@example.com"], BODY)
            wait_for(lambda: len([m for m in u.messages(accepted=True) if to(m) == PM]) >= 2,
                     30, what="two copies")
            copies = {subject(m): m for m in u.messages(accepted=True) if to(m) == PM}
            assert set(copies) == {"Postmaster Copy: Undelivered Mail Returned to Sender",
                                   "Postmaster Copy: Delayed Mail (still being retried)"}, \
                set(copies)
            for m in copies.values():
                parts = [p.get_content_type() for p in email.message_from_bytes(m["data"]).walk()]
                assert "text/rfc822-headers" in parts and "message/rfc822" not in parts, parts
                assert "copy for the postmaster" in m["data"].decode()
            sender = [m for m in u.messages(accepted=True) if to(m) == "alice@relay.test"]
            assert len(sender) == 2, [subject(m) for m in sender]   # and the sender's own
            log = r.log_text()
            assert "%s: postmaster copy of the non-delivery notification" % q1 in log
            assert "%s: postmaster copy of the delay notification" % q2 in log


@test
def test_notify_resource_warns_once_when_the_queue_grows():
    port = free_port()                          # down: everything stays queued
    with running(extra=conf(port, "notify resource\nqueue_warn 2\n",
                            retry="retry_min 1h\nretry_max 2h\n")) as r:
        for i in range(3):
            submit(r, ["x%d@example.com" % i], BODY)
        wait_for(lambda: "postmaster notice to <%s>: 3 messages queued (queue_warn 2)" % PM
                 in r.log_text(), 20, what="the queue warning")
        time.sleep(6)                           # another look: no second notice
        log = r.log_text()
        assert log.count("messages queued (queue_warn 2)") == 1, log
        nid = re.search(r"(\w{12}): postmaster notice to", log).group(1)
        rc, out, err = r.relayctl("show", nid)
        assert "rcpt: <%s>" % PM in out and "sender: <>" in out, out


if __name__ == "__main__":
    run()
