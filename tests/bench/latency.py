"""
latency — the benchmark's own load client: SESSIONS connections, each sending
MESSAGES messages of SIZE bytes one after the other (EHLO once, then MAIL,
RCPT, DATA, each awaited), timing every message from the moment its final
".\\r\\n" is handed to the kernel to the moment its 250 has been read. The
body and the dot go out in one write (asyncio sets TCP_NODELAY), so the clock
starts when the relay has everything it needs to commit.

    /usr/bin/python3 latency.py PORT SESSIONS MESSAGES SIZE

prints one JSON object: samples, errors, p50_ms, p99_ms, max_ms.
As a module, run() starts it as a process of its own, so it never competes
with the benchmark's bookkeeping for the interpreter.
"""
import asyncio
import json
import os
import subprocess
import sys
import time

TIMEOUT = 60            # seconds for any one reply


async def reply(reader):
    """One whole SMTP reply; its code."""
    while True:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        if len(line) < 4:
            raise EOFError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def expect(reader, code, what):
    got = await reply(reader)
    if got != code:
        raise RuntimeError("%s: %d, not %d" % (what, got, code))


async def session(port, messages, body, samples):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                            TIMEOUT)
    try:
        await expect(reader, 220, "greeting")
        writer.write(b"EHLO latency.bench\r\n")
        await expect(reader, 250, "EHLO")
        for _ in range(messages):
            writer.write(b"MAIL FROM:<latency@example.com>\r\n")
            await expect(reader, 250, "MAIL")
            writer.write(b"RCPT TO:<rcpt@example.org>\r\n")
            await expect(reader, 250, "RCPT")
            writer.write(b"DATA\r\n")
            await expect(reader, 354, "DATA")
            writer.write(body)
            t0 = time.perf_counter()
            await expect(reader, 250, "end of DATA")
            samples.append(time.perf_counter() - t0)
        writer.write(b"QUIT\r\n")
        await reply(reader)
    finally:
        writer.close()


def make_body(size):
    head = b"From: latency@example.com\r\nTo: rcpt@example.org\r\nSubject: latency\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    return head + line * max(1, size // len(line)) + b".\r\n"


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p % of the samples at or below it."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


async def main(port, sessions, messages, size):
    samples = []
    body = make_body(size)
    results = await asyncio.gather(*(session(port, messages, body, samples)
                                     for _ in range(sessions)), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    s = sorted(samples)
    ms = lambda v: None if v is None else round(v * 1000, 3)
    return {"samples": len(s), "errors": errors[:5], "p50_ms": ms(percentile(s, 50)),
            "p99_ms": ms(percentile(s, 99)), "max_ms": ms(s[-1] if s else None)}


def run(port, sessions, messages, size, timeout=300):
    """The client as a process of its own; its JSON result as a dict."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), str(port), str(sessions),
                        str(messages), str(size)], capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("latency client: %s" % r.stderr.decode(errors="replace")[-2000:])
    return json.loads(r.stdout)


if __name__ == "__main__":
    port, sessions, messages, size = (int(a) for a in sys.argv[1:5])
    print(json.dumps(asyncio.run(main(port, sessions, messages, size))))
