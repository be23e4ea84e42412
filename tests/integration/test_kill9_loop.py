"""
test_kill9_loop — crash consistency with delivery going on: RELAYD_KILL_ROUNDS
rounds (50 by default; `make test` runs 12) of several clients sending to
relayd while it forwards to an upstream, each round ended by kill -9 at a
random moment, then a restart.  At the end every message that got its 250 was
delivered, and none more than twice (a message cut off between the
upstream's 250 and relayd's record of it goes again: at most once more, as
with any MTA).  Each message carries a token to match the upstream's copies.

Each round begins once what the previous kill left in the queue has gone out:
otherwise a message re-sent at a restart can be cut off again by the next kill
and arrive three times — a second crash in the same few milliseconds of the
same message, which says nothing new about relayd.
"""
import os
import random
import re
import threading
import time

from harness import Client, Relayd, run, test, wait_for
from upstream import Upstream

ROUNDS = int(os.environ.get("RELAYD_KILL_ROUNDS", "50"))
SENDERS = 4


def sender(port, base, acked, stop):
    """Send until stopped or cut off; every token whose message got its 250 goes in acked."""
    n = 0
    try:
        c = Client(port, timeout=10)
        c.hello()
        while not stop.is_set():
            token = base + n
            c.send_message("load@relay.test", ["x%d@example.org" % (n % 3)],
                           "Subject: t\r\nX-Token: %d\r\n\r\n%s" % (token, "k9\r\n" * 40))
            acked.append(token)
            n += 1
            stop.wait(0.05)     # load, not a flood: each drain stays short
    except (EOFError, OSError, AssertionError):
        pass                # the kill: what did not get its 250 does not count


@test
def test_kill9_loop_delivers_every_acknowledged_message_at_most_twice():
    rng = random.Random(int(os.environ.get("RELAYD_KILL_SEED", str(os.getpid()))))
    with Upstream() as u:
        extra = ("upstream up {\n host 127.0.0.1\n port %d\n tls none\n}\nroute * up\n"
                 "retry_min 1s\nretry_max 2s\n" % u.port)
        r = Relayd(extra=extra)
        acked = []
        try:
            t_start = time.monotonic()
            for rnd in range(ROUNDS):
                r.start()
                wait_for(lambda: r.queued_ids() == [], 60, step=0.2,
                         what="round %d: the last round's mail to go out" % rnd)
                stop = threading.Event()
                threads = [threading.Thread(target=sender, args=(
                    r.port, (rnd * SENDERS + i) * 100000, acked, stop)) for i in range(SENDERS)]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0.05, 1.5))      # anywhere: start-up, load, delivery
                r.kill9()
                stop.set()
                for t in threads:
                    t.join(20)
                    assert not t.is_alive(), "a sender hung after the kill"
            loop_time = time.monotonic() - t_start
            r.start()
            wait_for(lambda: r.queued_ids() == [], 120, step=0.5, what="the queue to drain")
            drain_time = time.monotonic() - t_start - loop_time
            r.stop()
        finally:
            r.cleanup()
        got = [int(re.search(rb"X-Token: (\d+)", m["data"]).group(1))
               for m in u.messages(accepted=True)]
        counts = {}
        for t in got:
            counts[t] = counts.get(t, 0) + 1
        missing = sorted(set(acked) - set(counts))
        thrice = sorted(t for t, k in counts.items() if k > 2)
        twice = sum(1 for k in counts.values() if k == 2)
        print("  %d rounds in %.0fs, drained in %.0fs: %d acknowledged, %d delivered (%d twice), "
              "%d upstream sessions" % (ROUNDS, loop_time, drain_time, len(acked), len(counts),
                                        twice, len(u.sessions())))
        assert acked, "no message was acknowledged at all"
        assert not missing, "acknowledged but never delivered: %s" % missing[:10]
        assert not thrice, "delivered more than twice: %s" % thrice[:10]


if __name__ == "__main__":
    run()
