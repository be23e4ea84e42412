"""
idle — COUNT SMTP sessions that say EHLO and then sit idle, the way a
connection cache or a slow client holds them open.

    /usr/bin/python3 idle.py PORT COUNT

Opens them at most 200 at a time (each one waits for its 220 and its EHLO
reply), prints "ready N SECONDS" (N sessions that got their EHLO reply), then
holds them until its standard input closes (at most an hour) and closes them.
The benchmark gives it a high enough open file limit.
"""
import asyncio
import sys
import time

from latency import TIMEOUT, reply

PARALLEL = 200
HOLD_MAX = 3600


async def one(port, gate, held):
    async with gate:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                TIMEOUT)
        try:
            if await reply(reader) != 220:
                raise RuntimeError("no 220")
            writer.write(b"EHLO idle.bench\r\n")
            if await reply(reader) != 250:
                raise RuntimeError("EHLO refused")
        except BaseException:
            writer.close()
            raise
        held.append(writer)


async def main(port, count):
    gate = asyncio.Semaphore(PARALLEL)
    held = []
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(port, gate, held) for _ in range(count)),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    print("ready %d %.3f%s" % (len(held), time.monotonic() - t0,
                               " first error: %r" % errors[0] if errors else ""), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), HOLD_MAX)
    finally:
        for w in held:
            w.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))


def measure(binary, dir, port, count, idle_seconds=10):
    """relayd alone with count idle sessions: its RSS per session, how long opening
    them took, and the CPU it spends while they sit idle."""
    import os
    import select
    import subprocess
    import procs
    from relayd_relay import Relayd

    r = Relayd(binary, dir, port, extra="max_clients %d\n" % (count + 100),
               nofile=2 * count + 1000)
    r.start()
    script = os.path.abspath(__file__)

    def hold(n):
        p = procs.spawn([sys.executable, script, str(port), str(n)], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, log=os.path.join(dir, "idle-client.log"),
                        preexec_fn=procs.raise_nofile(n + 1000))
        ready, _, _ = select.select([p.stdout], [], [], 600)
        line = p.stdout.readline().decode().split() if ready else []
        if len(line) < 3 or line[0] != "ready":
            procs.stop(p)
            raise RuntimeError("idle client: %r" % line)
        return p, int(line[1]), float(line[2])

    try:
        # A first few, closed again: one-time allocations are not per-session costs (and
        # so few that memory they leave to malloc hardly lowers the count below).
        p, _, _ = hold(10)
        p.stdin.close()
        p.wait(120)
        time.sleep(2)
        before = r.rss_kb()
        p, held, secs = hold(count)
        time.sleep(2)
        after = r.rss_kb()
        cpu0 = r.cpu()
        time.sleep(idle_seconds)
        idle_cpu = r.cpu() - cpu0
        p.stdin.close()
        p.wait(120)
        return {"count": count, "held": held, "open_seconds": secs, "rss_before_kb": before,
                "rss_after_kb": after, "per_session_kb": (after - before) / max(1, held),
                "idle_cpu_seconds": idle_cpu, "idle_seconds": idle_seconds}
    finally:
        r.stop()
