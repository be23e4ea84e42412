"""
test_direct — `direct` delivery to each domain's MX hosts, against a local
DNS server (dnsmasq, tests/integration/dnsfix.py) and aiosmtpd upstreams
standing in for MX hosts on a loopback port (direct_port): preference order
and the fall to the second MX, an implicit MX, null MX and NXDOMAIN
bounces, a failover from direct to a relay on Gmail's 550 5.7.1, and a
qmail smtproutes file.
"""
import os
import re
import tempfile

from harness import running, run, test, wait_for
from upstream import Upstream
from dnsfix import Dns
from delivery_helpers import BODY, report_fields, sent_line, submit

GMAIL = ("550-5.7.1 [127.0.0.1] The IP you're using to send mail is not authorized to\n"
         "550 5.7.1 send email directly to our servers. NotAuthorizedError")


def removed(r, qid, timeout=30):
    wait_for(lambda: "%s: removed" % qid in r.log_text(), timeout, what="%s removed" % qid)


def direct_conf(dns, port, extra=""):
    return ("resolver 127.0.0.1:%d\ndirect_port %d\nretry_min 1s\nretry_max 2s\n%s" %
            (dns.port, port, extra))


def zone(port_host="127.0.0.1"):
    """example.test: MX 10 at 127.0.0.2 (nobody listens there), MX 20 at 127.0.0.1."""
    return dict(mx=[("example.test", "mx1.example.test", 10),
                    ("example.test", "mx2.example.test", 20)],
                hosts=[("mx1.example.test", "127.0.0.2"), ("mx2.example.test", port_host),
                       ("implicit.test", "127.0.0.1")],
                null_mx=["nullmx.test"])


@test
def test_direct_tries_mx_hosts_in_preference_order():
    with Upstream() as mx, Dns(**zone()) as dns:
        with running(extra=direct_conf(dns, mx.port, "route * direct\n")) as r:
            qid = submit(r, ["bob@example.test"], BODY)
            removed(r, qid)
            line = sent_line(r, qid, "bob@example.test")[0]
            assert "relay=mx2.example.test[127.0.0.1]:%d" % mx.port in line, line
            assert "upstream=direct" in line and "status=sent" in line, line
            assert [m["rcpt_tos"] for m in mx.messages()] == [["bob@example.test"]]


@test
def test_direct_goes_to_the_next_mx_when_the_first_will_not_talk():
    with Upstream() as mx2:
        with Upstream(address="127.0.0.2", port=mx2.port,
                      greeting_reply=["421 4.3.2 busy"]) as mx1, \
                Dns(mx=[("example.test", "mx1.example.test", 10),
                        ("example.test", "mx2.example.test", 20)],
                    hosts=[("mx1.example.test", "127.0.0.2"),
                           ("mx2.example.test", "127.0.0.1")]) as dns:
            with running(extra=direct_conf(dns, mx2.port, "route * direct\n")) as r:
                qid = submit(r, ["bob@example.test"], BODY)
                removed(r, qid)
                line = sent_line(r, qid, "bob@example.test")[0]
                assert "relay=mx2.example.test[127.0.0.1]" in line, line
                assert "status=sent" in line, line
                assert "trying the next address" in r.log_text()
                assert mx1.messages() == []


@test
def test_direct_without_mx_uses_the_domain_itself():
    with Upstream() as mx, Dns(**zone()) as dns:
        with running(extra=direct_conf(dns, mx.port, "route * direct\n")) as r:
            qid = submit(r, ["bob@implicit.test"], BODY)
            removed(r, qid)
            line = sent_line(r, qid, "bob@implicit.test")[0]
            assert "relay=implicit.test[127.0.0.1]" in line and "status=sent" in line, line


@test
def test_null_mx_and_nxdomain_bounce_at_once():
    with Upstream() as mx, Dns(**zone()) as dns:
        # The sender's own domain goes to the upstream, so the DSNs can be read there.
        extra = "upstream back {\n host 127.0.0.1\n port %d\n tls none\n}\n" \
                "route relay.test back\nroute * direct\n" % mx.port
        with running(extra=direct_conf(dns, mx.port, extra)) as r:
            qid = submit(r, ["a@nullmx.test", "b@nosuch.test"], BODY)
            removed(r, qid)
            null = sent_line(r, qid, "a@nullmx.test")[0]
            assert "status=bounced" in null and "dsn=5.1.10" in null, null
            assert "null MX" in null, null
            nx = sent_line(r, qid, "b@nosuch.test")[0]
            assert "status=bounced" in nx and "dsn=5.1.2" in nx, nx
            dsn = mx.wait_messages(1, 20)[0]
            fields = report_fields(dsn)
            assert "Status: 5.1.10" in fields and "Status: 5.1.2" in fields, fields


@test
def test_direct_fails_over_to_a_relay_on_gmail_550_5_7_1():
    with Upstream(rcpt_replies={"*": [GMAIL]}) as mx, Upstream() as relay, \
            Dns(**zone()) as dns:
        extra = ("upstream direct {\n failover_on 5.7.1\n}\n"
                 "upstream relay {\n host 127.0.0.1\n port %d\n tls none\n}\n"
                 "route * direct relay\n" % relay.port)
        with running(extra=direct_conf(dns, mx.port, extra)) as r:
            qid = submit(r, ["bob@example.test"], BODY)
            removed(r, qid)
            lines = sent_line(r, qid, "bob@example.test")
            assert "upstream=direct" in lines[0] and "status=failover" in lines[0], lines
            assert "NotAuthorizedError" in lines[0], lines
            assert "upstream=relay" in lines[1] and "status=sent" in lines[1], lines
            assert [m["rcpt_tos"] for m in relay.messages()] == [["bob@example.test"]]


@test
def test_qmail_smtproutes_file():
    with Upstream() as mx, Upstream() as smarthost, Dns(**zone()) as dns:
        d = tempfile.mkdtemp(prefix="smtproutes-")
        path = os.path.join(d, "smtproutes")
        with open(path, "w") as f:
            f.write(".example.test:\n"                      # subdomains: their own MX
                    "example.test:\n"
                    ":[127.0.0.1]:%d\n" % smarthost.port)   # the rest: a smarthost
        extra = "routes_file %s\n" % path
        with running(extra=direct_conf(dns, mx.port, extra)) as r:
            q1 = submit(r, ["a@example.test"], BODY)
            q2 = submit(r, ["b@elsewhere.example"], BODY)
            removed(r, q1)
            removed(r, q2)
            assert "upstream=direct" in sent_line(r, q1, "a@example.test")[0]
            line = sent_line(r, q2, "b@elsewhere.example")[0]
            assert re.search(r"upstream=127\.0\.0\.1:%d, .*status=sent" % smarthost.port,
                             line), line
            assert [m["rcpt_tos"] for m in smarthost.messages()] == [["b@elsewhere.example"]]
            rc, out, _ = r.relayctl("route", "x@mx.example.test")
            assert ".example.test (%s:1)" % path in out and "1. direct:" in out, out


if __name__ == "__main__":
    run()
