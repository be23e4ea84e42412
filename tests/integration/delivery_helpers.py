"""
delivery_helpers — what the delivery tests share: an upstream block for a
test upstream (upstream.py), submitting a message, and reading the delivery
log and the DSNs that come back.
"""
import email
import json
import os
import re

from harness import Client

PASSWORD = "upstream secret"


def upstream_conf(u, tls="none", user=None, ca=None, verify="yes", extra="", block=""):
    """The upstream block for u (block: more lines inside it), route * to it, fast retries."""
    text = "upstream up {\n host 127.0.0.1\n port %d\n tls %s\n verify %s\n%s" % (
        u.port, tls, verify, block)
    if ca:
        text += " ca_file %s\n" % ca
    if user:
        path = os.path.join(u.dir, "password")
        with open(path, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(path, 0o600)
        text += " user %s\n password_file %s\n" % (user, path)
    return text + "}\nroute * up\nretry_min 1s\nretry_max 2s\n" + extra


def stuffed(body):
    return re.sub(r"(?m)^\.", "..", body)


def submit(r, rcpts, body, sender="alice@relay.test", mail_params=""):
    c = Client(r.port)
    c.hello()
    qid = c.send_message(sender, rcpts, stuffed(body), mail_params=mail_params)
    c.cmd("QUIT", 221)
    return qid


BODY = ("From: alice@relay.test\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\n"
        "line one\r\n.leading dot\r\n..two dots\r\nlast line\r\n")


def sent_line(r, qid, rcpt):
    lines = [l for l in r.log_text().splitlines() if "%s: to=<%s>" % (qid, rcpt) in l]
    return lines


def report_fields(msg):
    """The message/delivery-status fields of a DSN, as one text."""
    report = email.message_from_bytes(msg["data"])
    assert report.get_content_type() == "multipart/report", msg
    return "\n".join(str(p) for p in report.get_payload()[1].get_payload())


def json_text(m):
    return json.dumps({k: v for k, v in m.items() if k != "data"})
