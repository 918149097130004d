"""Letters to a distant SMTP server, with PIPELINING and without: what two round trips a letter instead of four buy.

    .venv/bin/python bench/smtp_round_trips.py [--letters 400] [--connections 8] [--distance-ms 20] [--rounds 3]

A loopback server (``tests.servers.ScriptedSmtp``) answers every command (holding a pipelined group's replies until
its DATA, as a real server may) but sends each answer ``--distance-ms`` after the command's arrival, as a server
that far away would be heard; the bot's ``SmtpTransport`` sends the same letters over the same number of
connections, the server offering PIPELINING or not, alternating. Prints letters a second and this process's CPU a
letter for each.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mailbot.mail.smtp import SmtpTransport  # noqa: E402
from tests.servers import ScriptedSmtp  # noqa: E402


async def one_round(pipelining: bool, letters: int, connections: int, distance: float) -> tuple[float, float]:
    raw = (b"From: complaints@1mm.org.uk\r\nTo: jane@example.org\r\nSubject: Your complaint\r\n\r\n"
           + b"A line of the letter's text, as long as the bot's lines are.\r\n" * 60)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedSmtp(pipelining, distance=distance, gap=0), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transports = [SmtpTransport("127.0.0.1", port, "none") for _ in range(connections)]
    free: asyncio.Queue[SmtpTransport] = asyncio.Queue()
    for transport in transports:
        await transport.sign_in()
        free.put_nowait(transport)

    async def send(n: int) -> None:
        transport = await free.get()
        try:
            assert await transport.send(raw, "complaints@1mm.org.uk", [f"c{n}@example.org"]) is None
        finally:
            free.put_nowait(transport)

    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    await asyncio.gather(*(send(n) for n in range(letters)))
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    for transport in transports:
        await transport.close()
    server.close()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime  # the server's share included
    return letters / wall, cpu / letters * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=400)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--distance-ms", type=float, default=20.0, help="the delay before each answer")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for n in range(args.rounds):
        for pipelining in ((True, False) if n % 2 == 0 else (False, True)):
            results[pipelining].append(asyncio.run(one_round(pipelining, args.letters, args.connections,
                                                             args.distance_ms / 1000)))
    print(f"{args.letters} letters over {args.connections} connections to a server {args.distance_ms:g} ms away, "
          f"{args.rounds} alternating rounds (median (each round))")
    for pipelining, label in ((False, "one command at a time"), (True, "PIPELINING")):
        rates = [rate for rate, _ in results[pipelining]]
        cpus = [cpu for _, cpu in results[pipelining]]
        print(f"  {label:22s} {statistics.median(rates):7.1f} letters/s ({', '.join(f'{r:.1f}' for r in rates)}); "
              f"CPU a letter, client and server {statistics.median(cpus):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
