"""
test_routing — routes with several upstreams (aiosmtpd upstreams on loopback,
tests/integration/upstream.py): which route a recipient takes, failover to the
next upstream on a refused connection, a 451 or a failover_on 5xx, upstreams
passed over while marked down, the refusal of a recipient no route covers,
null_sender, envelope_from and opportunistic TLS.
"""
import re
import signal
import time

from harness import Client, Relayd, free_port, running, run, test, wait_for
from upstream import Upstream
from delivery_helpers import BODY, report_fields, sent_line, submit

GMAIL = ("550-5.7.1 [127.0.0.1] The IP you're using to send mail is not authorized to\n"
         "550-5.7.1 send email directly to our servers. Please use the SMTP relay at your\n"
         "550 5.7.1 service provider instead. https://support.google.com/mail/?p=NotAuthorizedError")


def block(name, port, extra=""):
    return "upstream %s {\n host 127.0.0.1\n port %d\n tls none\n%s}\n" % (name, port, extra)


def conf(blocks, routes):
    return "".join(blocks) + routes + "retry_min 1s\nretry_max 2s\n"


def statuses(r, qid, rcpt):
    """[(upstream, status)] of every log line about rcpt in qid."""
    return [(re.search(r"upstream=(\S+),", l).group(1), re.search(r"status=(\w+)", l).group(1))
            for l in sent_line(r, qid, rcpt)]


def removed(r, qid, timeout=20):
    wait_for(lambda: "%s: removed" % qid in r.log_text(), timeout, what="%s removed" % qid)


@test
def test_routes_by_recipient_domain_and_sender():
    with Upstream() as a, Upstream() as b, Upstream() as c:
        text = conf([block("a", a.port), block("b", b.port), block("c", c.port)],
                    "route * a\nroute example.com b\nroute .example.org c\n"
                    "route_sender shop.example.net c\nroute_sender boss@example.net b\n")
        with running(extra=text) as r:
            cases = [("alice@relay.test", "x@example.com", b),     # exact domain
                     ("alice@relay.test", "x@mx.example.org", c),  # under .example.org
                     ("alice@relay.test", "x@gmail.com", a),       # the default
                     ("y@shop.example.net", "x@gmail.com", c),     # the sender's route
                     ("boss@example.net", "x@gmail.com", b),       # a sender address
                     ("y@shop.example.net", "x@example.com", b)]   # recipient route first
            for sender, rcpt, _ in cases:
                removed(r, submit(r, [rcpt], BODY, sender=sender))
            for sender, rcpt, up in cases:
                got = [(m["mail_from"], m["rcpt_tos"]) for m in up.messages()]
                assert (sender, [rcpt]) in got, (sender, rcpt, got)
            assert len(a.messages()) + len(b.messages()) + len(c.messages()) == len(cases)


@test
def test_quota_sends_the_rest_to_the_next_upstream_and_survives_a_restart():
    with Upstream() as a, Upstream() as b:
        text = conf([block("a", a.port, " max_per_hour 2\n"), block("b", b.port)],
                    "route * a b\n")
        r = Relayd(extra=text)
        try:
            r.start()
            qids = []
            for i in range(3):
                qids.append(submit(r, ["x%d@example.com" % i], BODY))
                removed(r, qids[-1])
            assert [len(a.messages()), len(b.messages())] == [2, 1]
            line = sent_line(r, qids[2], "x2@example.com")[0]
            assert "status=failover" in line and "over its quota (max_per_hour 2)" in line, line
            r.stop()
            r.start()               # the count is in the queue, not in memory
            q = submit(r, ["y@example.com"], BODY)
            removed(r, q)
            assert [len(a.messages()), len(b.messages())] == [2, 2]
            r.stop()
        finally:
            r.cleanup()


@test
def test_relayctl_route_explains_the_path():
    with Upstream() as a:
        text = conf([block("a", a.port, " max_per_day 5\n failover_on 5.7.1 5.7.26\n"),
                     block("b", 2525, " null_sender no\n")],
                    "route * a b\nroute .example.org b\nroute_sender shop.example.net b\n")
        with running(extra=text) as r:
            removed(r, submit(r, ["x@gmail.com"], BODY))
            # The count reaches the queue within a second of the delivery.
            out = wait_for(lambda: (lambda o: "1 of 5 today" in o and o)(
                r.relayctl("route", "x@gmail.com")[1]), 10, what="the count")
            lines = out.splitlines()
            assert re.fullmatch(r"<x@gmail.com>: route \* \(%s:\d+\)" % re.escape(r.conf),
                                lines[0]), lines
            assert lines[1].startswith("  1. a: 127.0.0.1:%d tls none" % a.port), lines
            assert lines[2] == "      failover_on 5.7.1 5.7.26", lines
            assert lines[3] == "      quota: 1 of 5 today", lines
            assert lines[4].startswith("  2. b: 127.0.0.1:2525 tls none, no bounces"), lines
            rc, out, _ = r.relayctl("route", "x@gmail.com", "--from", "y@shop.example.net")
            assert out.startswith("<x@gmail.com> from <y@shop.example.net>: route_sender "
                                  "shop.example.net"), out
            rc, out, _ = r.relayctl("route", "x@mx.example.org")
            assert "route .example.org" in out and "1. b:" in out, out
        text = conf([block("a", a.port)], "route example.com a\n")
        with running(extra=text) as r:
            rc, out, _ = r.relayctl("route", "x@gmail.com")
            assert rc == 1 and "no route: refused at RCPT with 550 5.4.4" in out, out


@test
def test_quota_on_every_upstream_defers_until_the_window_opens():
    with Upstream() as a:
        with running(extra=conf([block("a", a.port, " max_per_day 1\n")], "route * a\n")) as r:
            removed(r, submit(r, ["x@example.com"], BODY))
            q = submit(r, ["y@example.com"], BODY)
            line = wait_for(lambda: sent_line(r, q, "y@example.com"), 20, what="a try")[0]
            assert "status=deferred" in line and "dsn=4.7.0" in line, line
            assert "over its quota" in line and "until" in line, line
            time.sleep(2)           # retry_min is 1s: the window, not the backoff, decides
            assert len(sent_line(r, q, "y@example.com")) == 1
            assert len(a.messages()) == 1 and r.queued_ids() == [q]


@test
def test_recipient_without_a_route_is_refused_at_rcpt():
    with Upstream() as a:
        with running(extra=conf([block("a", a.port)], "route example.com a\n")) as r:
            c = Client(r.port)
            c.hello()
            c.cmd("MAIL FROM:<alice@relay.test>", 250)
            c.cmd("RCPT TO:<x@example.org>", 550, "5.4.4")
            c.cmd("RCPT TO:<x@example.com>", 250)
            c.cmd("QUIT", 221)
            assert "550 5.4.4 <x@example.org>: no route" in r.log_text()


@test
def test_failover_on_refused_connection_then_passed_over_while_down():
    dead = free_port()          # nothing listens there
    with Upstream() as b:
        text = conf([block("dead", dead), block("b", b.port)], "route * dead b\n")
        with running(extra=text) as r:
            q1 = submit(r, ["x@example.com"], BODY)
            removed(r, q1)
            assert statuses(r, q1, "x@example.com") == [("dead", "failover"), ("b", "sent")]
            first = sent_line(r, q1, "x@example.com")[0]
            assert "dsn=4.4.1" in first and "connect to" in first, first
            assert "upstream dead: marked down for 10s" in r.log_text()
            # While it is down, the next message does not wait for a connection to it.
            q2 = submit(r, ["y@example.com"], BODY)
            removed(r, q2)
            line = sent_line(r, q2, "y@example.com")[0]
            assert "status=failover" in line and "relay=none" in line, line
            assert "marked down for" in line, line
            assert len(b.messages()) == 2


@test
def test_failover_on_451_and_deferral_when_every_upstream_fails():
    with Upstream(rcpt_replies={"*": ["451 4.3.0 busy"]}) as a, \
            Upstream(rcpt_replies={"late@example.com": ["452 4.2.2 full", "250 2.1.5 Ok"]}) as b:
        text = conf([block("a", a.port), block("b", b.port)], "route * a b\n")
        with running(extra=text) as r:
            qid = submit(r, ["x@example.com", "late@example.com"], BODY)
            removed(r, qid, 30)
            assert statuses(r, qid, "x@example.com") == [("a", "failover"), ("b", "sent")]
            # Both fail it: deferred (on b's words), then both tried again in order.
            assert statuses(r, qid, "late@example.com") == [
                ("a", "failover"), ("b", "deferred"), ("a", "failover"), ("b", "sent")]
            assert a.messages() == []
            assert sorted(m["rcpt_tos"][0] for m in b.messages()) == \
                ["late@example.com", "x@example.com"]


@test
def test_no_failover_when_the_data_went_out_and_no_answer_came():
    # a may have the message: sending it through b too would deliver it twice.
    with Upstream(drop_after_data=True) as a, Upstream() as b:
        text = conf([block("a", a.port), block("b", b.port)], "route * a b\n")
        with running(extra=text) as r:
            qid = submit(r, ["x@example.com"], BODY)
            line = wait_for(lambda: sent_line(r, qid, "x@example.com"), 20, what="a try")[0]
            assert "upstream=a" in line and "status=deferred" in line, line
            assert "may have the message" in line, line
            assert b.messages() == []


@test
def test_quota_is_counted_per_recipient_within_one_message():
    with Upstream() as a, Upstream() as b:
        text = conf([block("a", a.port, " max_per_hour 2\n"), block("b", b.port)],
                    "route * a b\n")
        with running(extra=text) as r:
            rcpts = ["r%d@example.com" % i for i in range(5)]
            removed(r, submit(r, rcpts, BODY))
            assert len(a.messages()[0]["rcpt_tos"]) == 2, a.messages()
            assert len(b.messages()[0]["rcpt_tos"]) == 3, b.messages()


@test
def test_a_refused_extra_connection_only_lowers_the_concurrency():
    # The second connection is turned away while the first is busy: the waiting
    # message goes over the first one afterwards, without a deferral.
    with Upstream(greeting_reply=["DEFAULT", "421 4.7.0 too many connections", "DEFAULT"],
                  delay={"DOT": 1}) as a:
        text = conf([block("a", a.port, " max_connections 2\n")], "route * a\n")
        with running(extra=text) as r:
            q1 = submit(r, ["x@example.com"], BODY)
            q2 = submit(r, ["y@example.com"], BODY)
            removed(r, q1)
            removed(r, q2)
            for q, rcpt in ((q1, "x@example.com"), (q2, "y@example.com")):
                assert statuses(r, q, rcpt) == [("a", "sent")], sent_line(r, q, rcpt)
            assert "at most 1 connection(s)" in r.log_text()
            assert "marked down" not in r.log_text()


@test
def test_failover_on_gmail_550_5_7_1_instead_of_a_bounce():
    with Upstream(rcpt_replies={"*": [GMAIL]}) as mx, Upstream() as relay:
        text = conf([block("mx", mx.port, " failover_on 5.7.1\n"),
                     block("relay", relay.port)], "route * mx relay\n")
        with running(extra=text) as r:
            qid = submit(r, ["bob@gmail.com"], BODY)
            removed(r, qid)
            assert statuses(r, qid, "bob@gmail.com") == [("mx", "failover"),
                                                          ("relay", "sent")]
            line = sent_line(r, qid, "bob@gmail.com")[0]
            assert "dsn=5.7.1" in line and "NotAuthorizedError" in line, line
            assert [m["rcpt_tos"] for m in relay.messages()] == [["bob@gmail.com"]]
            assert "notification" not in r.log_text()


@test
def test_a_5xx_without_failover_on_bounces_at_once():
    with Upstream(rcpt_replies={"bob@gmail.com": [GMAIL]}) as mx, Upstream() as relay:
        text = conf([block("mx", mx.port), block("relay", relay.port)],
                    "route * mx relay\n")
        with running(extra=text) as r:
            qid = submit(r, ["bob@gmail.com"], BODY)
            removed(r, qid)
            assert statuses(r, qid, "bob@gmail.com") == [("mx", "bounced")]
            dsn = wait_for(lambda: [m for m in mx.messages() if m["mail_from"] == ""], 20,
                           what="the DSN")[0]
            assert "Status: 5.7.1" in report_fields(dsn)
            assert [m for m in relay.messages() if m["mail_from"]] == []


@test
def test_null_sender_no_sends_bounces_through_the_next_upstream():
    with Upstream(rcpt_replies={"gone@example.com": ["550 5.1.1 no such user"]}) as yandex, \
            Upstream() as other:
        text = conf([block("yandex", yandex.port, " null_sender no\n"),
                     block("other", other.port)], "route * yandex other\n")
        with running(extra=text) as r:
            qid = submit(r, ["gone@example.com"], BODY)
            removed(r, qid)
            dsn = other.wait_messages(1, 20)[0]
            assert dsn["mail_from"] == "" and dsn["rcpt_tos"] == ["alice@relay.test"], dsn
            mails = [c for s in yandex.sessions() for c in s["commands"] if c.startswith("MAIL")]
            assert len(mails) == 1 and "<alice@relay.test>" in mails[0], mails  # no <> there
            bounce_id = re.search(r"%s: sender non-delivery notification: (\w+)" % qid,
                                  r.log_text()).group(1)
            removed(r, bounce_id)
            assert statuses(r, bounce_id, "alice@relay.test") == [("other", "sent")]


@test
def test_envelope_from_rewrites_mail_from_only():
    with Upstream(dsn=True) as gmail:
        text = conf([block("gmail", gmail.port, " envelope_from login@gmail.example\n")],
                    "route * gmail\n")
        with running(extra=text) as r:
            qid = submit(r, [("x@example.com", "NOTIFY=SUCCESS")], BODY,
                         sender="alice@relay.test", mail_params="RET=HDRS ENVID=e1")
            removed(r, qid)
            m = [m for m in gmail.messages() if m["mail_from"]][0]
            assert m["mail_from"] == "login@gmail.example", m
            assert b"From: alice@relay.test" in m["data"], m["data"][:200]
            # Its reports would go to the account: relayd keeps DSN to itself, and tells
            # the real sender that the message was relayed.
            assert m["mail_options"] == [] or all(not o.startswith(("RET", "ENVID"))
                                                  for o in m["mail_options"]), m
            assert m["rcpt_options"] == [[]], m
            dsn = wait_for(lambda: [d for d in gmail.messages() if d["mail_from"] == ""], 20,
                           what="the relayed report")[0]
            assert dsn["rcpt_tos"] == ["alice@relay.test"], dsn
            assert "Action: relayed" in report_fields(dsn)


@test
def test_tls_may_uses_starttls_when_offered_without_verifying():
    with Upstream(tls="starttls") as withtls, Upstream() as plain:
        # No ca_file: the test CA is unknown, and `may` does not verify.
        text = conf([block("withtls", withtls.port).replace("tls none", "tls may"),
                     block("plain", plain.port).replace("tls none", "tls may")],
                    "route example.com withtls\nroute * plain\n")
        with running(extra=text) as r:
            removed(r, submit(r, ["x@example.com"], BODY))
            removed(r, submit(r, ["x@example.org"], BODY))
            assert withtls.messages()[0]["tls"], withtls.messages()
            assert not plain.messages()[0]["tls"], plain.messages()


def rewrite(r, text):
    """Replace relayd's config with the harness lines plus text, as an admin would edit it."""
    with open(r.conf) as f:
        lines = f.read().splitlines(True)
    base = [l for l in lines if l.split(" ", 1)[0] in ("hostname", "queue", "log", "listen",
                                                       "allow")]
    with open(r.conf, "w") as f:
        f.write("".join(base) + text)


@test
def test_reload_switches_a_route_while_mail_is_deferred():
    with Upstream(rcpt_replies={"*": ["451 4.3.0 not today"]}) as a, Upstream() as b:
        with running(extra=conf([block("a", a.port)], "route * a\n")) as r:
            q = submit(r, ["x@example.com"], BODY)
            wait_for(lambda: sent_line(r, q, "x@example.com"), 20, what="a first try")
            # A broken file is reported and changes nothing.
            rewrite(r, conf([block("a", a.port)], "route * a nosuch\n"))
            r.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "keeping the running configuration" in r.log_text(), 10,
                     what="the refusal")
            assert 'no upstream block named "nosuch"' in r.log_text()
            # So is one that changes what needs a restart.
            rewrite(r, conf([block("a", a.port)], "route * a\n").replace(
                "retry_min", "max_clients 7\nretry_min"))
            r.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "max_clients changed, which needs a restart" in r.log_text(), 10,
                     what="the restart notice")
            # A good one: the deferred message goes the new way at its next try.
            rewrite(r, conf([block("a", a.port), block("b", b.port)], "route * b\n"))
            r.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload: %s: 2 upstream(s), 1 route(s)" % r.conf in r.log_text(),
                     10, what="the reload")
            removed(r, q, 30)
            assert statuses(r, q, "x@example.com")[-1] == ("b", "sent")
            assert [m["rcpt_tos"] for m in b.messages()] == [["x@example.com"]]
            # And new mail takes the new route from the start.
            q2 = submit(r, ["y@example.com"], BODY)
            removed(r, q2)
            assert statuses(r, q2, "y@example.com") == [("b", "sent")]
            assert len(b.messages()) == 2


if __name__ == "__main__":
    run()
