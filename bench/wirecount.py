#!/usr/bin/env python3
"""wirecount.py start|read|stop PORT: bytes a TCP server on 127.0.0.1:PORT sends and receives,
counted by the kernel (an nftables table of its own, `inet musicfs_wire_PORT`).

    wirecount.py start PORT   adds the table: counters for packets from PORT and to PORT
    wirecount.py read PORT    prints "DOWN UP": TCP payload bytes the server sent (what its
                              clients pulled over the wire) and received
    wirecount.py stop PORT    removes the table

Nothing sits between the clients and the server, so counting costs them no time. The counters
see whole packets; a packet's payload is its length less 52 bytes of IPv4 and TCP headers
(loopback TCP always carries timestamps). Only connection set-up packets carry more options, so
a count is high by 8 bytes per connection. Used by bench/remote.sh.
"""

import json
import subprocess
import sys

HEADERS = 20 + 32  # IPv4 header, TCP header with the timestamp option


def nft(*args):
    done = subprocess.run(["nft", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"wirecount: nft {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def table(port):
    return f"musicfs_wire_{port}"


def start(port):
    t = table(port)
    # A table left by a run that was killed, on a port used again, would count twice.
    subprocess.run(["nft", "delete", "table", "inet", t], capture_output=True)
    nft("add", "table", "inet", t)
    for counter in ("down", "up"):
        nft("add", "counter", "inet", t, counter)
    nft("add", "chain", "inet", t, "out", "{ type filter hook output priority 0; policy accept; }")
    nft("add", "rule", "inet", t, "out", "ip", "saddr", "127.0.0.1", "tcp", "sport", str(port),
        "counter", "name", "down")
    nft("add", "rule", "inet", t, "out", "ip", "daddr", "127.0.0.1", "tcp", "dport", str(port),
        "counter", "name", "up")


def read(port):
    """(down, up) payload bytes so far."""
    listing = json.loads(nft("-j", "list", "counters", "table", "inet", table(port)))
    counters = {o["counter"]["name"]: o["counter"] for o in listing["nftables"] if "counter" in o}
    payload = lambda c: c["bytes"] - HEADERS * c["packets"]
    return payload(counters["down"]), payload(counters["up"])


def stop(port):
    nft("delete", "table", "inet", table(port))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "read", "stop"):
        sys.exit(__doc__)
    command, port = sys.argv[1], int(sys.argv[2])
    if command == "start":
        start(port)
    elif command == "read":
        print(*read(port))
    else:
        stop(port)


if __name__ == "__main__":
    main()
