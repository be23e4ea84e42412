"""
upstream — a scriptable upstream SMTP server on 127.0.0.1 for relayd to forward to.

Tests start it as a separate process (so it can be killed by its pid like any peer) and
read what it saw from files under its directory:

    u = Upstream(dir, port=None, tls="starttls", auth={"user": "u", "password": "p"}).start()
    ... relayd forwards to 127.0.0.1:u.port ...
    msgs = u.wait_messages(1, timeout=10)     # [{"mail_from", "rcpt_tos", "data": bytes, ...}]
    u.stop()

The server itself is aiosmtpd and runs with /usr/bin/python3 (Debian's python3-aiosmtpd);
this module is imported by tests under any python3 and only the server half imports aiosmtpd.

Options (JSON-able keyword arguments of Upstream; all optional):
  tls            "none" | "starttls" | "implicit"; cert, key: PEM paths (default: harness.certs(),
                 whose certificate names relay.test, localhost, upstream.test and 127.0.0.1)
  require_tls    with tls="starttls": MAIL/RCPT/DATA/AUTH before STARTTLS get 530 5.7.0
  auth           {"user": U, "password": P}: AUTH PLAIN LOGIN offered (after STARTTLS in
                 starttls mode) and required before MAIL (530 5.7.0); wrong password: 535 5.7.8
  size           advertise SIZE N; MAIL SIZE= above it: 552 5.3.4; DATA above it: 552
  dsn            advertise DSN and accept RET= ENVID= / NOTIFY= ORCPT= (else 555, as aiosmtpd)
  rcpt_replies   {address or "*": [reply, ...]} used in turn per recipient (last one repeats)
  mail_replies / mail_reply, data_reply   the same for MAIL FROM and for the end of DATA
  greeting_reply the banner (per connection, in turn); a 421 closes, any other non-220 refuses
                 every command but QUIT with 503
  command_replies {"STARTTLS": [...], "EHLO": [...], ...} for any other verb
  drop_after_data close the connection after the final dot without answering
  delay          seconds before each reply, or {"MAIL": s, "RCPT": s, "DOT": s (the end of
                 DATA), "GREETING": s, "*": s (any other command)}
  address        the loopback address to listen on (default 127.0.0.1; e.g. 127.0.0.2 for a
                 second MX host on the same port)
  hostname       banner/EHLO name (default upstream.test); ehlo_extra: extra EHLO keywords,
                 e.g. ["PIPELINING"]; timeout: idle timeout (default 300); debug: log dialogue
A reply is a string or a list of strings used in turn (counters live as long as the process,
across connections); "\\n" in a reply makes a multi-line reply (code prefixes are added or
fixed: "550-..." / "550 ..."); "DROP" closes the connection without answering; "DEFAULT" is
the normal answer; "{n}" in a data reply is the message number. Any 421 reply closes.

Records (written atomically: temp file, then rename), NNNN counting from 1 and continuing
when a new Upstream reuses the directory:
  DIR/messages/NNNN.eml   the exact DATA bytes (after dot-unstuffing: original_content)
  DIR/messages/NNNN.json  the envelope, written after the .eml
  DIR/sessions/NNNN.json  one per connection, rewritten after every reply
  DIR/upstream.json (options), DIR/upstream.port (written once listening), DIR/upstream.log
messages() holds every DATA received, also those answered 4xx/5xx or dropped ("reply" is the
answer or None, "dropped"); messages(accepted=True) keeps the 2xx ones.

Around aiosmtpd 1.4.3: smtp_MAIL/smtp_RCPT are replaced (DSN and AUTH= parameters, 552 5.3.4,
options kept as sent where aiosmtpd upper-cases them); handle_EHLO adds DSN and drops AUTH when
no auth is set; require_tls is ours (aiosmtpd's says 530 without 5.7.0); auth_require_tls is
False unless STARTTLS, as aiosmtpd does not count implicit TLS as TLS; commands are recorded
by wrapping the stream reader's readuntil(), so AUTH continuation lines are never seen.

Self-check:  /usr/bin/python3 upstream.py --selftest
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PYTHON = "/usr/bin/python3"
HERE = os.path.abspath(__file__)

OPTIONS = {"tls", "cert", "key", "require_tls", "auth", "size", "dsn", "rcpt_replies",
           "mail_reply", "mail_replies", "data_reply", "greeting_reply", "command_replies",
           "drop_after_data", "delay", "hostname", "ehlo_extra", "timeout", "debug", "ident",
           "address"}

_REC_NAME = re.compile(r"^(\d+)\.json$")


def _write_atomic(path, data):
    if isinstance(data, str):
        data = data.encode()
    d, base = os.path.split(path)
    tmp = os.path.join(d, ".%s.%d.tmp" % (base, os.getpid()))
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _numbered(dirpath):
    """[(n, path)] of NNNN.json records in a directory, in order."""
    try:
        names = os.listdir(dirpath)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _REC_NAME.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(dirpath, name)))
    return sorted(out)


def _load(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode())


# ----------------------------------------------------------------------------------------
# The test side: start, stop and read an upstream server.
# ----------------------------------------------------------------------------------------

class Upstream:
    """An upstream SMTP server process with its own directory of records."""

    def __init__(self, dir=None, port=None, **options):
        unknown = set(options) - OPTIONS
        if unknown:
            raise ValueError("unknown upstream options: %s" % ", ".join(sorted(unknown)))
        tls = options.get("tls", "none")
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError("tls must be none, starttls or implicit: %r" % tls)
        if tls != "none" and not options.get("cert"):
            from harness import certs
            c = certs()
            options["cert"], options["key"] = c["cert"], c["key"]
        self._own_dir = dir is None
        self.dir = os.path.abspath(dir or tempfile.mkdtemp(prefix="upstream-test-"))
        os.makedirs(self.dir, exist_ok=True)
        self.port = port
        self.options = options
        self.config = os.path.join(self.dir, "upstream.json")
        self.port_file = os.path.join(self.dir, "upstream.port")
        self.log = os.path.join(self.dir, "upstream.log")
        self.proc = None
        self._logf = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=10.0):
        cfg = dict(self.options, dir=self.dir, port=self.port or 0)
        _write_atomic(self.config, json.dumps(cfg, indent=1) + "\n")
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([PYTHON, HERE, "--config", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + min(timeout, 10.0)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("upstream exited with status %s: %s"
                                     % (self.proc.returncode, self.log_text()[-3000:]))
            try:
                with open(self.port_file) as f:
                    text = f.read()
                if text.endswith("\n"):
                    self.port = int(text)
                    return self      # written after listen(): the port accepts connections
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("upstream did not listen within %ss: %s"
                                     % (timeout, self.log_text()[-3000:]))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop by pid (SIGTERM, then SIGKILL if it lingers); returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._logf:
            self._logf.close()
            self._logf = None
        return self.proc.returncode

    def kill(self):
        """SIGKILL by pid: the peer vanishes mid-whatever."""
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if self._own_dir and not os.environ.get("KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if not self.alive():
            try:
                self.start()
            except Exception:
                self.cleanup()
                raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.cleanup()
        return False

    def __repr__(self):
        return "<Upstream 127.0.0.1:%s pid %s %s>" % (self.port, self.pid, self.dir)

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def messages(self, accepted=None):
        """Every message received, in order; "data" is the exact bytes. accepted=True keeps
        only those answered 2xx, accepted=False only the others (refused or dropped)."""
        out = []
        mdir = os.path.join(self.dir, "messages")
        for n, path in _numbered(mdir):
            rec = _load(path)
            with open(os.path.join(mdir, "%04d.eml" % n), "rb") as f:
                rec["data"] = f.read()
            ok = (rec.get("reply") or "").startswith("2")
            if accepted is None or accepted == ok:
                out.append(rec)
        return out

    def sessions(self):
        """One record per connection, in order (the last ones may still be in progress)."""
        return [_load(p) for _, p in _numbered(os.path.join(self.dir, "sessions"))]

    def _wait(self, what, get, count, timeout):
        deadline = time.monotonic() + timeout
        while True:
            got = get()
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %d upstream %s (got %d)"
                                     % (count, what, len(got)))
            time.sleep(0.05)

    def wait_messages(self, count, timeout=10.0, accepted=None):
        return self._wait("messages", lambda: self.messages(accepted), count, timeout)

    def wait_sessions(self, count, timeout=10.0):
        return self._wait("sessions", self.sessions, count, timeout)


# ----------------------------------------------------------------------------------------
# The server side: runs as "/usr/bin/python3 upstream.py --config DIR/upstream.json".
# ----------------------------------------------------------------------------------------

def format_reply(text, n=None):
    """'550 a\\nb' or '550-a\\n550 b' -> '550-a\\r\\n550 b' (push() adds the last CRLF)."""
    if n is not None:
        text = text.replace("{n}", str(n))
    lines = [l.rstrip("\r") for l in text.strip("\r\n").split("\n")]
    code = lines[0][:3]
    texts = []
    for line in lines:
        if re.match(r"^\d{3}([- ]|$)", line) and line[:3] == code:
            texts.append(line[4:])
        else:
            texts.append(line)
    esc = re.match(r"^[245]\.\d{1,3}\.\d{1,3}( |$)", texts[0])
    if esc:                                 # continuation lines repeat the enhanced code
        texts = texts[:1] + [t if re.match(r"^[245]\.\d{1,3}\.\d{1,3}( |$)", t)
                             else (esc.group(0).strip() + " " + t).rstrip() for t in texts[1:]]
    out = ["%s-%s" % (code, t) for t in texts[:-1]]
    out.append(("%s %s" % (code, texts[-1])).rstrip() if texts[-1] else code)
    return "\r\n".join(out)


def serve(config_path):
    import asyncio
    import collections
    import logging
    import ssl
    import warnings
    from aiosmtpd.smtp import SMTP, AuthResult, TLSSetupException

    with open(config_path) as f:
        cfg = json.load(f)
    unknown = set(cfg) - OPTIONS - {"dir", "port"}
    if unknown:
        sys.exit("upstream: unknown options %s" % sorted(unknown))
    d = cfg.get("dir") or os.path.dirname(os.path.abspath(config_path))
    mode = cfg.get("tls", "none")
    auth = cfg.get("auth")
    size = cfg.get("size")
    dsn = bool(cfg.get("dsn"))
    implicit = mode == "implicit"
    require_tls = bool(cfg.get("require_tls")) and mode == "starttls"
    rcpt_replies = {k.lower(): v for k, v in (cfg.get("rcpt_replies") or {}).items()}
    mail_reply = cfg.get("mail_reply", cfg.get("mail_replies"))
    data_reply = "DROP" if cfg.get("drop_after_data") else cfg.get("data_reply")
    command_replies = {k.upper(): v for k, v in (cfg.get("command_replies") or {}).items()}
    delay = cfg.get("delay") or 0

    logging.basicConfig(level=logging.DEBUG if cfg.get("debug") else logging.WARNING,
                        format="%(asctime)s upstream[%(process)d] %(levelname)s %(message)s")

    class Quiet(logging.Filter):     # aiosmtpd's per-connection noise about our own choices
        def filter(self, record):
            m = record.getMessage()
            return not ("auth_require_tls == False" in m or "login_data is deprecated" in m)
    logging.getLogger("mail.log").addFilter(Quiet())
    warnings.simplefilter("ignore")

    for sub in ("messages", "sessions"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)

    class State:
        counts = collections.Counter()
        sessions = max([n for n, _ in _numbered(os.path.join(d, "sessions"))] + [0])
        messages = max([n for n, _ in _numbered(os.path.join(d, "messages"))] + [0])

        @classmethod
        def next_reply(cls, key, replies):
            """The reply to use now from a string or a list used in turn; None = default."""
            if replies is None or replies == []:
                return None
            if isinstance(replies, str):
                replies = [replies]
            i = cls.counts[key]
            cls.counts[key] += 1
            r = replies[min(i, len(replies) - 1)]
            return None if r == "DEFAULT" else r

        @staticmethod
        def delay(key):
            if isinstance(delay, dict):
                return float(delay.get(key, 0 if key == "GREETING" else delay.get("*", 0)))
            return 0.0 if key == "GREETING" else float(delay)

    def text(s):
        """A str from aiosmtpd (surrogateescape'd UTF-8) made JSON-friendly."""
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    def authenticator(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode("utf-8", "backslashreplace")
        ok = auth_data.login == auth["user"].encode() and \
            auth_data.password == auth["password"].encode()
        if ok:
            server.rec["auth"] = login
            server.rec["auth_mechanism"] = mechanism
        else:
            server.rec["auth_failures"] += 1
        # handled=False: aiosmtpd then answers 535 5.7.8 itself
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    class Handler:
        async def handle_exception(self, error):
            log = logging.getLogger("upstream")
            if isinstance(error, TLSSetupException):          # one line, not a traceback
                log.warning("STARTTLS handshake failed: %r", error.__cause__)
                return "454 4.7.0 TLS handshake failed"       # (not sent: the link is closed)
            log.exception("SMTP session exception")
            return "500 Error: (%s) %s" % (error.__class__.__name__, error)

        async def handle_HELO(self, server, session, envelope, hostname):
            session.host_name = hostname
            server.rec["ehlo"] = text(hostname)
            return "250 %s" % server.hostname

        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            server.rec["ehlo"] = text(hostname)
            lines = [r[4:] for r in responses]
            if not auth:
                lines = [l for l in lines if not l.startswith("AUTH")]
            extra = []
            if dsn:
                extra.append("DSN")
            extra += cfg.get("ehlo_extra") or []
            lines = lines[:-1] + extra + lines[-1:]      # HELP stays last
            return ["250-" + l for l in lines[:-1]] + ["250 " + lines[-1]]

        async def handle_DATA(self, server, session, envelope):
            State.messages += 1
            n = State.messages
            r = State.next_reply("DATA", data_reply)
            reply = None if r == "DROP" else format_reply(r or "250 2.0.0 Ok: queued as {n}", n)
            data = envelope.original_content
            rec = {"n": n, "mail_from": envelope.rec_from, "mail_options": envelope.rec_mail_options,
                   "rcpt_tos": [text(a) for a in envelope.rcpt_tos],
                   "rcpt_options": envelope.rec_rcpt_options, "session": server.rec["n"],
                   "tls": server.rec["tls"], "auth": server.rec["auth"], "size": len(data),
                   "reply": reply, "dropped": reply is None, "time": time.time()}
            mdir = os.path.join(d, "messages")
            _write_atomic(os.path.join(mdir, "%04d.eml" % n), data)
            _write_atomic(os.path.join(mdir, "%04d.json" % n), json.dumps(rec, indent=1) + "\n")
            server.rec["messages"].append(n)
            await server.sleep("DOT")
            if reply is None:
                server.drop()
            return reply

    TLS_GATED = {"MAIL", "RCPT", "DATA", "AUTH", "VRFY", "EXPN"}

    class UpstreamSMTP(SMTP):
        def __init__(self, **kw):
            super().__init__(Handler(), **kw)
            # aiosmtpd's limits live in a class-wide dict that grows on every EHLO; ours are
            # per connection and leave room for DSN parameters (the reader caps lines at 1001).
            self.command_size_limits = collections.defaultdict(lambda: 512)
            self.command_size_limits.update(MAIL=1000, RCPT=1000)
            self.rec = None
            self._greeted = False
            self._refused = False
            self._overlong = False
            self._smtp_methods = {v: self._wrap(v, m) for v, m in self._smtp_methods.items()}

        # --- records ---------------------------------------------------------------------
        def save(self):
            _write_atomic(os.path.join(d, "sessions", "%04d.json" % self.rec["n"]),
                          json.dumps(self.rec, indent=1) + "\n")

        def _tls_version(self, transport):
            obj = transport.get_extra_info("ssl_object") if transport else None
            return obj.version() if obj else None

        def connection_made(self, transport):
            first = self.rec is None
            super().connection_made(transport)
            if first:
                State.sessions += 1
                peer = transport.get_extra_info("peername") or ("?", 0)
                self.rec = {"n": State.sessions, "peer": "%s:%s" % tuple(peer[:2]),
                            "ehlo": None, "tls": self._tls_version(transport) if implicit else None,
                            "starttls": False, "auth": None, "auth_mechanism": None,
                            "auth_failures": 0, "commands": [], "replies": [], "messages": [],
                            "dropped": False, "tls_error": None, "started": time.time(),
                            "ended": None}
            else:                                   # the STARTTLS handshake is done
                self.rec["tls"] = self._tls_version(transport)
                self.rec["starttls"] = True
            self.save()

        def connection_lost(self, error):
            if self.rec is not None:
                self.rec["ended"] = time.time()
                self.save()
            super().connection_lost(error)

        def _client_connected_cb(self, reader, writer):
            super()._client_connected_cb(reader, writer)
            orig = reader.readuntil

            async def readuntil(separator=None):
                # _handle_client reads commands with readuntil(); DATA passes b"\r\n" and
                # AUTH continuations use readline(): only command lines are recorded.
                if separator is not None:
                    return await orig(separator)
                try:
                    line = await orig()
                except asyncio.LimitOverrunError:
                    self._overlong = True
                    raise
                if self._overlong:                  # the tail of a line too long
                    self._overlong = False
                    self.rec["commands"].append("<command line too long>")
                    return line
                cmd = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "AUTH":
                    parts = cmd.split()
                    cmd = " ".join(parts[:2]) + (" <redacted>" if len(parts) > 2 else "")
                self.rec["commands"].append(cmd)
                await self.sleep(verb if isinstance(delay, dict) and verb in delay else "*")
                return line
            reader.readuntil = readuntil

        # --- behaviour -------------------------------------------------------------------
        async def sleep(self, key):
            s = State.delay(key)
            if s > 0:
                await asyncio.sleep(s)

        def drop(self):
            """Close the connection without a word and end this session's coroutine."""
            self.rec["dropped"] = True
            self.save()
            for t in (self.transport, self._original_transport):
                if t is not None:
                    t.abort()
            raise asyncio.CancelledError()

        async def push(self, status):
            if not self._greeted:
                self._greeted = True
                await self.sleep("GREETING")
                r = State.next_reply("GREETING", cfg.get("greeting_reply"))
                if r == "DROP":
                    self.drop()
                if r:
                    status = format_reply(r)
                    self._refused = not status.startswith(("220", "421"))
            s = status if isinstance(status, str) else status.decode("utf-8", "replace")
            self.rec["replies"].append(s)
            self.save()
            await super().push(status)
            if s.startswith("421") and self.transport is not None:
                self.transport.close()

        def _wrap(self, verb, method):
            async def call(arg):
                if self._refused and verb != "QUIT":
                    return await self.push("503 5.5.1 Error: bad sequence of commands")
                if require_tls and verb in TLS_GATED and self._tls_protocol is None:
                    return await self.push("530 5.7.0 Must issue a STARTTLS command first")
                if verb == "AUTH" and not auth:
                    return await self.push("503 5.5.1 Error: authentication not enabled")
                r = State.next_reply(verb, command_replies.get(verb))
                if r == "DROP":
                    self.drop()
                if r:
                    await self.push(format_reply(r))
                    if verb == "QUIT" and self.transport is not None:
                        self.transport.close()
                    return
                try:
                    return await method(arg)
                except TLSSetupException as e:      # aiosmtpd closes the connection
                    self.rec["tls_error"] = repr(e.__cause__)
                    self.save()
                    raise
            for a in ("__smtp_syntax__", "__smtp_syntax_when__", "__smtp_syntax_extended__"):
                if hasattr(method, a):
                    setattr(call, a, getattr(method, a))
            return call

        def _parse_params(self, arg):
            """[(KEY, value or True, original)] or None when not RFC 5321 esmtp-params."""
            out = []
            for o in arg.split():
                k, eq, v = o.partition("=")
                if not k.isalnum() or (eq and not v):
                    return None
                out.append((k.upper(), v if eq else True, o))
            return out

        async def smtp_MAIL(self, arg):
            # aiosmtpd's smtp_MAIL, with DSN/AUTH parameters, 552 5.3.4 for SIZE, the
            # options recorded as sent (aiosmtpd upper-cases them) and scripted replies.
            if await self.check_helo_needed():
                return
            if await self.check_auth_needed("MAIL"):
                return
            syntaxerr = "501 Syntax: MAIL FROM: <address>"
            if self.session.extended_smtp:
                syntaxerr += " [SP <mail-parameters>]"
            arg = self._strip_command_keyword("FROM:", arg) if arg is not None else None
            if arg is None:
                return await self.push(syntaxerr)
            address, rest = self._getaddr(arg)
            if address is None:
                return await self.push("553 5.1.3 Error: malformed address")
            if not address or (rest and not self.session.extended_smtp):
                return await self.push(syntaxerr)
            if self.envelope.mail_from:
                return await self.push("503 Error: nested MAIL command")
            params = self._parse_params(rest)
            if params is None:
                return await self.push(syntaxerr)
            allowed = {"BODY", "SIZE", "SMTPUTF8"} | ({"RET", "ENVID"} if dsn else set()) \
                | ({"AUTH"} if auth else set())
            for k, v, _ in params:
                if k not in allowed:
                    return await self.push(
                        "555 MAIL FROM parameters not recognized or not implemented")
                if k == "BODY" and (v is True or v.upper() not in ("7BIT", "8BITMIME")):
                    return await self.push("501 Error: BODY can only be one of 7BIT, 8BITMIME")
                if k == "SMTPUTF8" and v is not True:
                    return await self.push("501 Error: SMTPUTF8 takes no arguments")
                if k == "SIZE":
                    if v is True or not v.isdigit():
                        return await self.push(syntaxerr)
                    if size and int(v) > size:
                        return await self.push(
                            "552 5.3.4 Message size exceeds fixed maximum message size")
                if k == "RET" and (v is True or v.upper() not in ("FULL", "HDRS")):
                    return await self.push("501 5.5.4 Invalid RET parameter")
            r = State.next_reply("MAIL", mail_reply)
            if r == "DROP":
                self.drop()
            status = format_reply(r) if r else "250 2.1.0 Ok"
            if status.startswith("2"):
                self.envelope.mail_from = address
                self.envelope.mail_options = [k for k, _, _ in params]
                self.envelope.smtp_utf8 = any(k == "SMTPUTF8" for k, _, _ in params)
                self.envelope.rec_from = "" if address == "<>" else text(address)
                self.envelope.rec_mail_options = [text(o) for _, _, o in params]
                self.envelope.rec_rcpt_options = []
            await self.push(status)

        async def smtp_RCPT(self, arg):
            if await self.check_helo_needed():
                return
            if await self.check_auth_needed("RCPT"):
                return
            if not self.envelope.mail_from:
                return await self.push("503 Error: need MAIL command")
            syntaxerr = "501 Syntax: RCPT TO: <address>"
            if self.session.extended_smtp:
                syntaxerr += " [SP <mail-parameters>]"
            arg = self._strip_command_keyword("TO:", arg) if arg is not None else None
            if arg is None:
                return await self.push(syntaxerr)
            address, rest = self._getaddr(arg)
            if address is None:
                return await self.push("553 5.1.3 Error: malformed address")
            if not address or (rest and not self.session.extended_smtp):
                return await self.push(syntaxerr)
            params = self._parse_params(rest)
            if params is None:
                return await self.push(syntaxerr)
            for k, v, _ in params:
                if not dsn or k not in ("NOTIFY", "ORCPT"):
                    return await self.push(
                        "555 RCPT TO parameters not recognized or not implemented")
                if k == "NOTIFY":
                    vals = v.upper().split(",") if v is not True else [""]
                    if not (vals == ["NEVER"] or
                            set(vals) <= {"SUCCESS", "FAILURE", "DELAY"}):
                        return await self.push("501 5.5.4 Invalid NOTIFY parameter")
                if k == "ORCPT" and (v is True or ";" not in v):
                    return await self.push("501 5.5.4 Invalid ORCPT parameter")
            key = address.lower()
            replies = rcpt_replies.get(key, rcpt_replies.get("*"))
            r = State.next_reply("RCPT:" + key, replies)
            if r == "DROP":
                self.drop()
            status = format_reply(r) if r else "250 2.1.5 Ok"
            if status.startswith("2"):
                self.envelope.rcpt_tos.append(address)
                self.envelope.rcpt_options.extend(k for k, _, _ in params)
                self.envelope.rec_rcpt_options.append([text(o) for _, _, o in params])
            await self.push(status)

    kwargs = dict(hostname=cfg.get("hostname", "upstream.test"),
                  ident=cfg.get("ident", "ESMTP upstream (aiosmtpd)"),
                  decode_data=False, enable_SMTPUTF8=True, data_size_limit=size or None,
                  timeout=cfg.get("timeout", 300))
    ctx = None
    if mode != "none":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg["cert"], cfg["key"])
    if mode == "starttls":
        kwargs["tls_context"] = ctx
    if auth:
        # aiosmtpd counts only STARTTLS as TLS: with implicit TLS (or none) AUTH must not
        # wait for it.
        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=(mode == "starttls"))
    else:
        kwargs.update(auth_require_tls=False)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    kwargs["loop"] = loop
    server = loop.run_until_complete(loop.create_server(
        lambda: UpstreamSMTP(**kwargs), cfg.get("address") or "127.0.0.1",
        int(cfg.get("port") or 0),
        ssl=ctx if implicit else None))
    port = server.sockets[0].getsockname()[1]
    _write_atomic(os.path.join(d, "upstream.port"), "%d\n" % port)
    print("upstream[%d] listening on %s:%d (tls %s)" % (os.getpid(), cfg.get("address") or
          "127.0.0.1", port, mode), flush=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    parent = os.getppid()

    def orphan_check():                     # never outlive the test that started us
        if os.getppid() != parent:
            loop.stop()
        else:
            loop.call_later(1.0, orphan_check)
    loop.call_later(1.0, orphan_check)
    loop.run_forever()
    server.close()
    logging.shutdown()
    os._exit(0)


# ----------------------------------------------------------------------------------------
# Self-check: /usr/bin/python3 upstream.py --selftest
# ----------------------------------------------------------------------------------------

def selftest():
    import base64
    import smtplib
    import socket
    import ssl
    import traceback
    from harness import certs

    USER, PASSWORD = "alice", "s3cret-pw"
    GMAIL = ("550-5.7.1 [127.0.0.1] The IP you're using to send mail is not authorized to\n"
             "550-5.7.1 send email directly to our servers. Please use the SMTP relay at your\n"
             "550 5.7.1 service provider instead. Learn more at https://support.google.com")
    RCPT = {"Grey@Example.com": ["451 4.7.1 Greylisted, try again", "250 2.1.5 Ok"],
            "nobody@example.com": [GMAIL]}
    # Dot-stuffed as sent; a bare LF, a bare CR, 8-bit bytes and "\n.\r\n" are kept as-is.
    SENT = (b"Subject: exact\r\nX: y\r\n\r\n..leading dot\r\n..\r\n"
            b"bare\nLF and bare\rCR \xe9\xff\r\nx\n.\r\nend\r\n")
    WANT = (b"Subject: exact\r\nX: y\r\n\r\n.leading dot\r\n.\r\n"
            b"bare\nLF and bare\rCR \xe9\xff\r\nx\n.\r\nend\r\n")
    ctx = ssl.create_default_context(cafile=certs()["ca"])
    cases = []
    failed = []

    def case(fn):
        cases.append(fn)
        return fn

    def eq(got, want, what=""):
        assert got == want, "%s: got %r, want %r" % (what, got, want)

    def connect(u, mode, timeout=10):
        if mode == "implicit":
            s = smtplib.SMTP_SSL("127.0.0.1", u.port, local_hostname="selftest.example",
                                 context=ctx, timeout=timeout)
        else:
            s = smtplib.SMTP("127.0.0.1", u.port, local_hostname="selftest.example",
                             timeout=timeout)
        s.ehlo()
        if mode == "starttls":
            s.starttls(context=ctx)
            s.ehlo()
        return s

    def raw_data(s, body):
        s.putcmd("data")
        code, _ = s.getreply()
        eq(code, 354, "DATA")
        s.send(body + b".\r\n")
        return s.getreply()

    def tls_mode(mode):
        def run():
            with Upstream(None, tls=mode, require_tls=(mode == "starttls"), dsn=True,
                          size=100000, auth={"user": USER, "password": PASSWORD},
                          rcpt_replies=RCPT) as u:
                # 1st connection
                if mode == "starttls":
                    s = smtplib.SMTP("127.0.0.1", u.port, local_hostname="selftest.example",
                                     timeout=10)
                    s.ehlo()
                    assert s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
                    code, msg = s.mail("a@example.com")
                    assert code == 530 and msg.startswith(b"5.7.0"), (code, msg)
                    s.starttls(context=ctx)
                    s.ehlo()
                else:
                    s = connect(u, mode)
                assert not s.has_extn("starttls"), s.esmtp_features
                eq(sorted(s.esmtp_features["auth"].split()), ["LOGIN", "PLAIN"], "AUTH")
                eq(s.esmtp_features.get("size"), "100000", "SIZE")
                for e in ("dsn", "8bitmime", "smtputf8"):
                    assert s.has_extn(e), (e, s.esmtp_features)
                code, msg = s.mail("a@example.com")
                assert code == 530 and b"5.7.0" in msg, (code, msg)
                try:
                    s.login(USER, "wrong")                 # PLAIN, then LOGIN: both refused
                    raise AssertionError("wrong password accepted")
                except smtplib.SMTPAuthenticationError as e:
                    eq((e.smtp_code, e.smtp_error),
                       (535, b"5.7.8 Authentication credentials invalid"), "bad password")
                s.login(USER, PASSWORD)
                code, msg = s.mail("a@example.com", ["SIZE=200000"])
                assert code == 552 and msg.startswith(b"5.3.4"), (code, msg)
                eq(s.rset()[0], 250)
                eq(s.mail("sender@example.com", ["SIZE=%d" % len(WANT), "BODY=8BITMIME",
                                                 "RET=HDRS", "ENVID=Env.Id+2B1"])[0], 250)
                eq(s.rcpt("ok@example.com", ["NOTIFY=SUCCESS,FAILURE",
                                             "ORCPT=rfc822;ok@example.com"])[0], 250)
                code, msg = s.rcpt("grey@example.com")
                assert code == 451 and msg.startswith(b"4.7.1 Greylisted"), (code, msg)
                code, msg = s.rcpt("nobody@example.com")
                eq(code, 550)
                eq(len(msg.split(b"\n")), 3, "multi-line reply")
                code, msg = raw_data(s, SENT)
                eq((code, msg), (250, b"2.0.0 Ok: queued as 1"), "end of DATA")
                s.quit()
                # 2nd connection: AUTH LOGIN; the greylisted recipient is accepted now
                s = connect(u, mode)
                s.user, s.password = USER, PASSWORD
                eq(s.auth("LOGIN", s.auth_login)[0], 235, "AUTH LOGIN")
                eq(s.sendmail("<>", ["GREY@example.com"], b"Subject: 2\r\n\r\nsecond\r\n"), {})
                s.quit()
                m = u.wait_messages(2)
                eq(len(m), 2, "messages")
                tlsv = None if mode == "none" else m[0]["tls"]
                if mode != "none":
                    assert tlsv in ("TLSv1.2", "TLSv1.3"), m[0]
                eq(m[0]["data"], WANT, "exact bytes")
                eq(m[0]["mail_from"], "sender@example.com")
                eq(m[0]["mail_options"], ["SIZE=%d" % len(WANT), "BODY=8BITMIME", "RET=HDRS",
                                          "ENVID=Env.Id+2B1"])
                eq(m[0]["rcpt_tos"], ["ok@example.com"])
                eq(m[0]["rcpt_options"], [["NOTIFY=SUCCESS,FAILURE",
                                           "ORCPT=rfc822;ok@example.com"]])
                eq((m[0]["session"], m[0]["auth"], m[0]["tls"]), (1, USER, tlsv))
                eq(m[1]["mail_from"], "")
                eq(m[1]["rcpt_tos"], ["GREY@example.com"])
                eq(m[1]["data"], b"Subject: 2\r\n\r\nsecond\r\n")
                eq((m[1]["session"], m[1]["auth"], m[1]["tls"]), (2, USER, tlsv))
                ss = u.wait_sessions(2)
                eq([x["n"] for x in ss], [1, 2])
                eq(ss[0]["ehlo"], "selftest.example")
                eq((ss[0]["tls"], ss[0]["starttls"], ss[0]["auth"]),
                   (tlsv, mode == "starttls", USER))
                eq(ss[0]["auth_failures"], 2)
                assert "AUTH PLAIN <redacted>" in ss[0]["commands"], ss[0]["commands"]
                assert "AUTH LOGIN <redacted>" in ss[1]["commands"], ss[1]["commands"]
                assert "rcpt TO:<grey@example.com>" in ss[0]["commands"], ss[0]["commands"]
                assert GMAIL.replace("\n", "\r\n") in ss[0]["replies"], ss[0]["replies"]
                if mode == "starttls":
                    eq(ss[0]["commands"][:4], ["ehlo selftest.example", "mail FROM:<a@example.com>",
                                               "STARTTLS", "ehlo selftest.example"])
                secrets = [PASSWORD.encode(), base64.b64encode(PASSWORD.encode()),
                           base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())]
                for root, _, files in os.walk(u.dir):
                    for f in files:
                        if f == "upstream.json":
                            continue
                        with open(os.path.join(root, f), "rb") as fh:
                            blob = fh.read()
                        for sec in secrets:
                            assert sec not in blob, "secret in %s" % f
                pid = u.pid
                eq(u.stop(), 0, "exit status")
                try:
                    os.kill(pid, 0)
                    raise AssertionError("still running")
                except ProcessLookupError:
                    pass
        run.__name__ = "tls_" + mode
        return run

    for mode in ("none", "starttls", "implicit"):
        case(tls_mode(mode))

    @case
    def plain_defaults_and_refusals():
        with Upstream(None) as u:
            s = connect(u, "none")
            assert not s.has_extn("size") and not s.has_extn("dsn") and not s.has_extn("auth")
            assert s.has_extn("8bitmime") and s.has_extn("smtputf8"), s.esmtp_features
            eq(s.docmd("AUTH", "PLAIN AHUAcA==")[0], 503, "AUTH without auth")
            eq(s.mail("a@example.com", ["RET=HDRS"])[0], 555, "RET without dsn")
            eq(s.mail("a@example.com", ["SIZE=999999999", "BODY=8BITMIME", "SMTPUTF8"])[0], 250)
            eq(s.rcpt("b@example.com", ["NOTIFY=NEVER"])[0], 555, "NOTIFY without dsn")
            eq(s.rcpt("b@example.com")[0], 250)
            code, msg = raw_data(s, b"Subject: d\r\n\r\n\xc3\xa9\r\n")
            eq((code, msg), (250, b"2.0.0 Ok: queued as 1"))
            s.quit()
            m = u.wait_messages(1)[0]
            eq((m["tls"], m["auth"], m["data"]), (None, None, b"Subject: d\r\n\r\n\xc3\xa9\r\n"))
            eq(m["mail_options"], ["SIZE=999999999", "BODY=8BITMIME", "SMTPUTF8"])

    @case
    def greeting_mail_data_scripts_and_restart():
        d = tempfile.mkdtemp(prefix="upstream-selftest-")
        try:
            u = Upstream(d, greeting_reply=["421 4.3.2 busy", "554 5.7.1 go away", "DEFAULT"],
                         mail_reply=["451 4.3.0 try later", "DEFAULT"],
                         data_reply=["DROP", "554 5.7.1 spam\nreally", "DEFAULT"]).start()
            try:
                smtplib.SMTP("127.0.0.1", u.port, timeout=10)
                raise AssertionError("421 greeting accepted")
            except smtplib.SMTPConnectError as e:
                eq((e.smtp_code, e.smtp_error), (421, b"4.3.2 busy"))
            try:
                smtplib.SMTP("127.0.0.1", u.port, timeout=10)
                raise AssertionError("554 greeting accepted")
            except smtplib.SMTPConnectError as e:
                eq(e.smtp_code, 554)
            s = connect(u, "none")
            eq(s.mail("a@example.com")[0], 451)
            eq(s.mail("a@example.com")[0], 250)
            eq(s.rcpt("b@example.com")[0], 250)
            try:
                raw_data(s, b"Subject: lost\r\n\r\nx\r\n")
                raise AssertionError("DROP answered")
            except smtplib.SMTPServerDisconnected:
                pass
            s = connect(u, "none")
            try:
                s.sendmail("a@example.com", ["b@example.com"], b"Subject: spam\r\n\r\nx\r\n")
                raise AssertionError("554 accepted")
            except smtplib.SMTPDataError as e:
                eq((e.smtp_code, e.smtp_error), (554, b"5.7.1 spam\n5.7.1 really"))
            eq(s.sendmail("a@example.com", ["b@example.com"], b"Subject: ok\r\n\r\nx\r\n"), {})
            s.quit()
            m = u.wait_messages(3)
            eq([x["reply"] for x in m], [None, "554-5.7.1 spam\r\n554 5.7.1 really",
                                         "250 2.0.0 Ok: queued as 3"])
            eq([x["dropped"] for x in m], [True, False, False])
            eq([x["n"] for x in u.messages(accepted=True)], [3])
            ss = u.sessions()
            eq([x["n"] for x in ss], [1, 2, 3, 4])
            eq(ss[0]["replies"], ["421 4.3.2 busy"])
            assert ss[2]["dropped"] and ss[2]["ended"], ss[2]
            # restart on the same directory and port: numbering continues
            port = u.port
            eq(u.stop(), 0)
            u = Upstream(d, port=port).start()
            eq(u.port, port)
            eq(connect(u, "none").sendmail("a@example.com", ["c@example.com"], b"x\r\n"), {})
            eq(u.wait_messages(4)[3]["session"], 5)
            rc = u.kill()
            eq(rc, -signal.SIGKILL, "kill")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @case
    def drop_delay_and_command_replies():
        with Upstream(None, tls="starttls", delay={"RCPT": 1.5},
                      rcpt_replies={"drop@example.com": "DROP", "*": ["250 2.1.5 fine"]},
                      command_replies={"STARTTLS": ["454 4.7.0 TLS not available", "DEFAULT"]},
                      ehlo_extra=["PIPELINING"]) as u:
            s = smtplib.SMTP("127.0.0.1", u.port, timeout=10)
            s.ehlo()
            assert s.has_extn("pipelining"), s.esmtp_features
            try:
                s.starttls(context=ctx)
                raise AssertionError("454 STARTTLS accepted")
            except smtplib.SMTPResponseException as e:
                eq(e.smtp_code, 454)
            s.starttls(context=ctx)
            s.ehlo()
            s.mail("a@example.com")
            t0 = time.monotonic()
            eq(s.rcpt("x@example.com"), (250, b"2.1.5 fine"))
            assert time.monotonic() - t0 >= 1.4, "no delay"
            try:
                s.rcpt("drop@example.com")
                raise AssertionError("DROP answered")
            except smtplib.SMTPServerDisconnected:
                pass
            s = connect(u, "starttls", timeout=0.5)
            s.mail("a@example.com")
            try:
                s.rcpt("x@example.com")
                raise AssertionError("no client timeout")
            except smtplib.SMTPServerDisconnected as e:
                assert "timed out" in str(e), e
            s.close()
            # a failed STARTTLS handshake is recorded in the session
            with socket.create_connection(("127.0.0.1", u.port), timeout=10) as raw:
                f = raw.makefile("rb")
                f.readline()
                raw.sendall(b"STARTTLS\r\n")
                assert f.readline().startswith(b"220"), "STARTTLS"
                raw.sendall(b"EHLO not-tls\r\n")
                eq(f.readline(), b"", "after a bad handshake")
            deadline = time.monotonic() + 10        # the link closes before the record
            while not u.wait_sessions(3)[-1]["tls_error"] and time.monotonic() < deadline:
                time.sleep(0.05)
            last = u.sessions()[-1]
            assert "WRONG_VERSION_NUMBER" in (last["tls_error"] or ""), last
        with Upstream(None, drop_after_data=True) as u:
            s = connect(u, "none")
            try:
                s.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
                raise AssertionError("drop_after_data answered")
            except smtplib.SMTPServerDisconnected:
                pass
            m = u.wait_messages(1)
            eq((m[0]["dropped"], m[0]["data"]), (True, b"Subject: x\r\n\r\nx\r\n"))

    @case
    def swaks():
        if not shutil.which("swaks"):
            raise AssertionError("swaks not installed")
        for mode, flags in (("none", []), ("starttls", ["--tls"]), ("implicit", ["--tlsc"])):
            with Upstream(None, tls=mode, require_tls=(mode == "starttls"),
                          auth={"user": USER, "password": PASSWORD}) as u:
                for n, mech in ((1, "PLAIN"), (2, "LOGIN")):
                    extra = [] if mode == "none" else [
                        "--tls-verify", "--tls-ca-path", certs()["ca"], "--tls-sni",
                        "upstream.test"]
                    r = subprocess.run(
                        ["swaks", "--server", "127.0.0.1:%d" % u.port] + flags + extra +
                        ["--auth", mech, "--auth-user", USER, "--auth-password", PASSWORD,
                         "-f", "from@example.com", "-t", "to@example.com", "--timeout", "10",
                         "--body", "via swaks"], capture_output=True, timeout=60)
                    out = r.stdout.decode(errors="replace")
                    assert r.returncode == 0, "%s %s: %s" % (mode, mech, out)
                    m = u.wait_messages(n)[-1]
                    eq((m["auth"], m["mail_from"], m["rcpt_tos"]),
                       (USER, "from@example.com", ["to@example.com"]), mode)
                    assert (m["tls"] is None) == (mode == "none"), m
                    assert b"\r\n\r\nvia swaks\r\n" in m["data"], m["data"]
                    assert "queued as %d" % n in out, out
                r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % u.port] + flags +
                                   ["--auth", "PLAIN", "--auth-user", USER, "--auth-password",
                                    "nope", "-t", "to@example.com", "--timeout", "10"],
                                   capture_output=True, timeout=60)
                out = r.stdout.decode(errors="replace")
                assert r.returncode != 0 and "535 5.7.8" in out, out

    only = sys.argv[2:]
    for fn in cases:
        if only and fn.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            fn()
            print("PASS %s (%.1fs)" % (fn.__name__, time.monotonic() - t0), flush=True)
        except Exception:
            failed.append(fn.__name__)
            print("FAIL %s" % fn.__name__, flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--config":
        serve(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "--selftest":
        sys.exit(selftest())
    else:
        sys.exit("usage: %s --config DIR/upstream.json | --selftest [case ...]" % sys.argv[0])
