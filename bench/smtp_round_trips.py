"""Letters to a distant SMTP server, with PIPELINING and without: what two round trips a letter instead of four buy,
and one instead of two (each letter's text carrying the next letter's commands, as the deliverer's workers send).

    .venv/bin/python bench/smtp_round_trips.py [--letters 400] [--connections 8] [--distance-ms 20] [--rounds 3]

A loopback server (``tests.servers.ScriptedSmtp``) answers every command (holding a pipelined group's replies until
its DATA, as a real server may) but sends each answer ``--distance-ms`` after the command's arrival, as a server
that far away would be heard; the bot's ``SmtpTransport`` sends the same letters over the same number of
connections: the server offering PIPELINING or not, and with PIPELINING each letter by itself or naming the next
(``send``'s ``following``), alternating. Prints letters a second and this process's CPU a letter for each.
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


async def one_round(mode: str, letters: int, connections: int, distance: float) -> tuple[float, float]:
    """``mode``: "one" (no PIPELINING), "group" (PIPELINING, each letter alone) or "following" (PIPELINING, each
    connection's letters in turn, each naming the next)."""
    raw = (b"From: complaints@1mm.org.uk\r\nTo: jane@example.org\r\nSubject: Your complaint\r\n\r\n"
           + b"A line of the letter's text, as long as the bot's lines are.\r\n" * 60)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedSmtp(mode != "one", distance=distance, gap=0), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transports = [SmtpTransport("127.0.0.1", port, "none") for _ in range(connections)]
    for transport in transports:
        await transport.sign_in()
    # Each connection's letters, dealt out in turn (the deliverer's workers take theirs from one queue).
    dealt = [[(bytes(raw), "complaints@1mm.org.uk", [f"c{n}@example.org"]) for n in range(k, letters, connections)]
             for k in range(connections)]

    async def send_all(transport: SmtpTransport, mine: list[tuple[bytes, str, list[str]]]) -> None:
        for n, letter in enumerate(mine):
            following = mine[n + 1] if mode == "following" and n + 1 < len(mine) else None
            assert await transport.send(*letter, following=following) is None

    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    await asyncio.gather(*(send_all(transport, mine) for transport, mine in zip(transports, dealt)))
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
    modes = ["one", "group", "following"]
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for n in range(args.rounds):
        for mode in (modes if n % 2 == 0 else modes[::-1]):
            results[mode].append(asyncio.run(one_round(mode, args.letters, args.connections,
                                                       args.distance_ms / 1000)))
    print(f"{args.letters} letters over {args.connections} connections to a server {args.distance_ms:g} ms away, "
          f"{args.rounds} alternating rounds (median (each round))")
    for mode, label in (("one", "one command at a time"), ("group", "PIPELINING"),
                        ("following", "PIPELINING, next named")):
        rates = [rate for rate, _ in results[mode]]
        cpus = [cpu for _, cpu in results[mode]]
        print(f"  {label:22s} {statistics.median(rates):7.1f} letters/s ({', '.join(f'{r:.1f}' for r in rates)}); "
              f"CPU a letter, client and server {statistics.median(cpus):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
