"""
test_sender_rules — who may use which envelope sender, against the real relayd
with swaks: deny_sender and qmail's badmailfrom file refuse listed senders to
everyone (553 5.7.1 Sender address rejected: Access denied); sender_login holds
a SASL login to its own senders (553 5.7.1 <addr>: Sender address rejected: not
owned by user USER, the login as Cyrus names it: bob@relay.test), strictly with
sender_login_strict; clients in `allow` that
do not log in, and the null sender, pass; each refusal is one log line; a
SIGHUP reads the files again, and a bad line keeps the running rules.
"""
import base64
import os
import re
import signal
import subprocess

from harness import (RELAYD, Client, Relayd, auth_running, run, running, sasldb, starttls,
                     test, tls_conf, wait_for)

PASSWORD = "s3cret pass"
BADMAILFROM = ("# qmail's control/badmailfrom\n"
               "\n"
               "spam@example.com\n"
               "@bulk.example\n")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def swaks(r, sender, user=None, rcpt="rcpt@example.org"):
    """One message from sender, logged in as user (over STARTTLS) or not: (ok, dialogue)."""
    args = ["swaks", "-s", "127.0.0.1:%d" % r.port, "-f", sender, "-t", rcpt]
    if user:
        args += ["--tls", "-a", "PLAIN", "-au", user, "-ap", PASSWORD]
    out = subprocess.run(args, capture_output=True, timeout=60)
    return out.returncode == 0, out.stdout.decode(errors="replace")


def accepted(r, sender, user=None):
    ok, text = swaks(r, sender, user)
    assert ok and "250 2.0.0 Ok: queued as" in text, (sender, user, text)


def refused(r, sender, reply, user=None):
    ok, text = swaks(r, sender, user)
    assert not ok, (sender, user, text)
    # swaks marks an error reply "<**", or "<~*" inside TLS.
    assert re.search(r"^<(\*\*|~\*) 553 5\.7\.1 %s$" % re.escape(reply), text, re.M), \
        (sender, user, text)
    assert "RCPT TO" not in text, text                  # refused at MAIL FROM


def reject_lines(r):
    return [l for l in r.log_text().splitlines() if "reject: MAIL from" in l]


def auth_relayd(extra, allow="10.0.0.0/8", users=()):
    """auth_running() (bob logs in, 127.0.0.1 is outside allow) with more users."""
    r = auth_running(extra, allow, PASSWORD)
    try:
        sasldb(r.r.dir, tuple((u, PASSWORD) for u in users))
    except BaseException:
        r.r.cleanup()
        raise
    return r


@test
def test_badmailfrom_file_refuses_an_address_and_a_domain():
    r = Relayd()
    try:
        path = write(os.path.join(r.dir, "badmailfrom"), BADMAILFROM)
        with open(r.conf, "a") as f:
            f.write("deny_sender_file %s\n" % path)
        r.start()
        refused(r, "spam@example.com", "Sender address rejected: Access denied")
        refused(r, "SPAM@Example.COM", "Sender address rejected: Access denied")
        refused(r, "anyone@bulk.example", "Sender address rejected: Access denied")
        accepted(r, "ham@example.com")
        accepted(r, "anyone@sub.bulk.example")          # @domain is that domain only
        accepted(r, "spam@example.com.example")
        lines = reject_lines(r)
        assert len(lines) == 3, lines
        assert re.search(r"reject: MAIL from \[127\.0\.0\.1\]:\d+: 553 5\.7\.1 Sender address "
                         r"rejected: Access denied; from=<spam@example\.com>, "
                         r"rule=deny_sender %s:3$" % re.escape(path), lines[0]), lines[0]
        assert "from=<anyone@bulk.example>, rule=deny_sender %s:4" % path in lines[2], lines
        assert len(r.queued_ids()) == 3
        r.stop()
    finally:
        r.cleanup()


@test
def test_deny_sender_inline_and_a_quoted_local_part():
    with running(extra="deny_sender blocked@example.com @spam.example\n") as r:
        refused(r, "blocked@example.com", "Sender address rejected: Access denied")
        refused(r, "x@spam.example", "Sender address rejected: Access denied")
        accepted(r, "fine@example.com")
        c = Client(r.port)
        c.hello()
        c.cmd('MAIL FROM:<"blocked"@Example.com>', 553,
              "5.7.1 Sender address rejected: Access denied")
        c.cmd("MAIL FROM:<x@пример.рф> SMTPUTF8", 250)  # not listed: goes on
        c.cmd("QUIT", 221)
        assert "rule=deny_sender %s:6" % r.conf in reject_lines(r)[0]


@test
def test_idn_sender_meets_an_a_label_rule():
    with running(extra="deny_sender @xn--e1afmkfd.xn--p1ai\n") as r:   # @пример.рф
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<x@ПРИМЕР.рф> SMTPUTF8", 553, "Access denied")
        c.cmd("MAIL FROM:<x@xn--e1afmkfd.xn--p1ai>", 553, "Access denied")
        c.cmd("MAIL FROM:<x@example.com>", 250)
        c.cmd("QUIT", 221)


@test
def test_login_may_send_only_as_what_it_owns():
    conf = ("sender_login bob bob@example.com\n"
            "sender_login bob @bob.example\n"          # entries for one user add up
            "deny_sender bob@bob.example\n")
    with auth_relayd(conf, users=("carol",)) as r:
        accepted(r, "bob@example.com", user="bob")
        accepted(r, "Bob@Example.com", user="bob")
        accepted(r, "shop@bob.example", user="bob")
        refused(r, "alice@example.com",
                "<alice@example.com>: Sender address rejected: not owned by user "
                "bob@relay.test", user="bob")
        # deny_sender comes first, whoever owns the address.
        refused(r, "bob@bob.example", "Sender address rejected: Access denied", user="bob")
        # carol has no entry: without sender_login_strict she sends as anyone.
        accepted(r, "alice@example.com", user="carol")
        lines = reject_lines(r)
        assert len(lines) == 2, lines
        assert re.search(r"reject: MAIL from \[127\.0\.0\.1\]:\d+: 553 5\.7\.1 "
                         r"<alice@example\.com>: Sender address rejected: not owned by user "
                         r"bob@relay\.test; from=<alice@example\.com>, "
                         r"sasl_username=bob@relay\.test$", lines[0]), lines
        assert ("from=<bob@bob.example>, sasl_username=bob@relay.test, rule=deny_sender %s:"
                % r.conf
                in lines[1]), lines


@test
def test_strict_login_without_an_entry_is_refused():
    with auth_relayd("sender_login bob bob@example.com\nsender_login_strict yes\n",
                     users=("carol",)) as r:
        refused(r, "carol@example.com",
                "<carol@example.com>: Sender address rejected: not owned by user "
                "carol@relay.test", user="carol")
        accepted(r, "bob@example.com", user="bob")
        lines = reject_lines(r)
        assert len(lines) == 1 and lines[0].endswith(
            "from=<carol@example.com>, sasl_username=carol@relay.test, "
            "rule=sender_login_strict (no sender_login entry)"), lines


@test
def test_null_sender_always_passes():
    with auth_relayd("sender_login bob bob@example.com\nsender_login_strict yes\n"
                     "deny_sender @example.com\n", users=("carol",)) as r:
        for user in ("bob", "carol"):
            c = Client(r.port)
            c.hello()
            starttls(c)
            c.cmd("EHLO client.test", 250)
            c.cmd("AUTH PLAIN " + base64.b64encode(
                ("\0%s\0%s" % (user, PASSWORD)).encode()).decode(), 235)
            c.cmd("MAIL FROM:<someone@example.org>", 553, "not owned by user " + user)
            assert c.send_message("", ["rcpt@example.org"], "Subject: bounce\r\n\r\nx\r\n")
            c.cmd("QUIT", 221)


@test
def test_allowed_network_client_that_does_not_log_in_is_unaffected():
    with auth_relayd("sender_login bob bob@example.com\nsender_login_strict yes\n",
                     allow="127.0.0.0/8") as r:
        accepted(r, "alice@example.com")                # no login: no sender_login
        refused(r, "alice@example.com",                 # logged in: bob's rules
                "<alice@example.com>: Sender address rejected: not owned by user "
                "bob@relay.test", user="bob")


@test
def test_sighup_reads_the_rules_again():
    r = auth_relayd("", allow="127.0.0.0/8", users=("carol",)).r
    try:
        bmf = write(os.path.join(r.dir, "badmailfrom"), "old@example.com\n")
        logins = write(os.path.join(r.dir, "sender_login"),
                       "# user: senders\nbob: bob@example.com\n")
        with open(r.conf, "a") as f:
            f.write("deny_sender_file %s\nsender_login_file %s\n" % (bmf, logins))
        r.start()
        refused(r, "old@example.com", "Sender address rejected: Access denied")
        accepted(r, "new@example.com")
        refused(r, "bob@example.org", "<bob@example.org>: Sender address rejected: not "
                "owned by user bob@relay.test", user="bob")

        def reload(what):
            n = r.log_text().count("reload: ")
            r.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: r.log_text().count("reload: ") > n, 10, what=what)
            return [l for l in r.log_text().splitlines() if "reload: " in l][-1]

        # The files change: the next MAIL FROM sees the new rules.
        write(bmf, "new@example.com\n")
        write(logins, "bob: bob@example.com @example.org\ncarol: carol@example.com\n")
        assert "keeping" not in reload("the reload")
        accepted(r, "old@example.com")
        refused(r, "new@example.com", "Sender address rejected: Access denied")
        accepted(r, "bob@example.org", user="bob")
        refused(r, "bob@example.org", "<bob@example.org>: Sender address rejected: not "
                "owned by user carol@relay.test", user="carol")

        # A bad line is reported with its place, and the running rules stay.
        write(bmf, "new@example.com\nnot an address\n")
        line = reload("the refusal")
        assert ('reload: %s:2: deny_sender_file: "not an address" is not an address or '
                "@domain" % bmf) in line and "keeping the running configuration" in line, line
        refused(r, "new@example.com", "Sender address rejected: Access denied")
        # So is a file that went away.
        write(bmf, "new@example.com\n")
        os.unlink(logins)
        line = reload("the refusal")
        assert "sender_login_file %s: No such file or directory" % logins in line, line
        accepted(r, "bob@example.org", user="bob")
        r.stop()
    finally:
        r.cleanup()


@test
def test_config_check_names_the_bad_line():
    r = Relayd(extra=tls_conf())
    try:
        path = sasldb(r.dir)
        logins = write(os.path.join(r.dir, "sender_login"),
                       "bob: bob@example.com\n\nalice alice@example.com\n")
        with open(r.conf, "a") as f:
            f.write("auth_sasldb %s\nsender_login_file %s\n" % (path, logins))
        out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 1, out
        assert ('%s:3: sender_login_file: "alice alice@example.com" is not user: address '
                "@domain" % logins) in out.stderr.decode(), out
        write(logins, "bob: bob@example.com\n\nalice: alice@example.com\n")
        out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 0 and b"configuration ok" in out.stdout, out
    finally:
        r.cleanup()


if __name__ == "__main__":
    run()
