"""
test_doctor — `relayctl doctor` against a local DNS server (dnsmasq): an IP
with a PTR that resolves back and one without, a Spamhaus-style PBL listing
explained, SPF that includes the upstream's provider or not, DMARC present or
missing, MX listed.
"""
from harness import running, run, test
from dnsfix import Dns

PASSWORD_FILE = None


def conf(dns, extra=""):
    return ("resolver 127.0.0.1:%d\ndnsbl zen.test\n%s" % (dns.port, extra))


def mailgun_block(r):
    import os
    path = os.path.join(r.dir, "secret")
    with open(path, "w") as f:
        f.write("x\n")
    os.chmod(path, 0o600)
    return ("upstream mailgun {\n preset mailgun\n user postmaster@mg.example.test\n"
            " password_file %s\n}\nroute * mailgun\n" % path)


def doctor(r, *args):
    rc, out, err = r.relayctl("doctor", *args)
    return rc, out + err


@test
def test_a_good_sender():
    with Dns(mx=[("good.test", "mx.good.test", 10)],
             hosts=[("mail.good.test", "192.0.2.10"), ("mx.good.test", "192.0.2.11")],
             ptr=[("192.0.2.10", "mail.good.test")],
             txt=[("good.test", "v=spf1 include:mailgun.org -all"),
                  ("_dmarc.good.test", "v=DMARC1; p=reject")]) as dns:
        with running(extra=conf(dns)) as r:
            with open(r.conf, "a") as f:
                f.write(mailgun_block(r))
            rc, out = doctor(r, "--ip", "192.0.2.10", "--domain", "good.test")
            lines = out.splitlines()
            assert rc == 0, out
            assert "OK   PTR       192.0.2.10 is mail.good.test, which resolves back" in out
            assert "OK   dnsbl     192.0.2.10 is not listed in zen.test" in out, out
            assert "OK   MX        good.test: 10 mx.good.test" in out, out
            assert "OK   SPF       includes mailgun.org (upstream mailgun)" in out, out
            assert "OK   DMARC     v=DMARC1; p=reject" in out, out
            assert lines[-1] == "no failures", lines


@test
def test_a_vps_that_must_not_send_directly():
    with Dns(hosts=[("7.113.0.203.zen.test", "127.0.0.11")],
             txt=[("bad.test", "v=spf1 a -all"), ("bad.test", "v=spf1 mx -all")]) as dns:
        with running(extra=conf(dns)) as r:
            with open(r.conf, "a") as f:
                f.write(mailgun_block(r))
            rc, out = doctor(r, "--ip", "203.0.113.7", "--domain", "bad.test")
            assert rc == 1, out
            assert "FAIL PTR       203.0.113.7 has no reverse DNS" in out, out
            assert "FAIL dnsbl     203.0.113.7 is listed in zen.test (127.0.0.11): PBL" in out
            assert "use an upstream" in out, out
            assert "WARN MX        bad.test has no MX record" in out, out
            assert "FAIL SPF       bad.test has 2 SPF records" in out, out
            assert "WARN DMARC     bad.test has no DMARC record" in out, out
            assert out.splitlines()[-1].startswith("FAILED"), out


@test
def test_spf_without_the_upstream():
    with Dns(txt=[("other.test", "v=spf1 include:_spf.google.com ~all")]) as dns:
        with running(extra=conf(dns)) as r:
            with open(r.conf, "a") as f:
                f.write(mailgun_block(r))
            rc, out = doctor(r, "--domain", "other.test")
            assert "WARN SPF       does not mention mailgun.org (upstream mailgun)" in out, out


if __name__ == "__main__":
    run()
