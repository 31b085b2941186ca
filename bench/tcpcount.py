#!/usr/bin/env python3
"""tcpcount.py LISTEN_PORT TARGET_PORT COUNTFILE: a byte-counting TCP proxy on 127.0.0.1.

Every connection to LISTEN_PORT is forwarded to TARGET_PORT; the bytes moved are counted per
direction. COUNTFILE is rewritten (atomically) whenever the totals change, at most every 50 ms,
and on SIGUSR1, as one line:

    DOWN UP CONNECTIONS

DOWN counts bytes from the target to clients (server -> client: what a client pulls over the
wire), UP the other way, CONNECTIONS the connections accepted so far. Used by bench/remote.sh to
measure what sshfs, rclone and MusicFS transfer through the same sshd.
"""

import asyncio
import os
import signal
import sys

HIGH_WATER = 4 << 20  # bytes buffered towards a slow side before the other side is paused


class Totals:
    def __init__(self, path):
        self.path = path
        self.down = 0
        self.up = 0
        self.connections = 0
        self.written = None

    def write(self):
        line = f"{self.down} {self.up} {self.connections}\n"
        if line == self.written:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(line)
        os.replace(tmp, self.path)
        self.written = line


class Half(asyncio.Protocol):
    """One side of a proxied connection; what it receives goes to its peer's transport."""

    def __init__(self, totals, downstream):
        self.totals = totals
        self.downstream = downstream  # True: this side is the server, its data flows to the client
        self.transport = None
        self.peer = None
        self.pending = []  # data received before the peer is connected

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def attach(self, peer):
        self.peer = peer
        for data in self.pending:
            peer.transport.write(data)
        self.pending = []

    def data_received(self, data):
        if self.downstream:
            self.totals.down += len(data)
        else:
            self.totals.up += len(data)
        if self.peer is None:
            self.pending.append(data)
        else:
            self.peer.transport.write(data)

    def eof_received(self):
        if self.peer is not None and self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
            return True  # keep the other direction open
        return False

    def connection_lost(self, exc):
        if self.peer is not None:
            self.peer.transport.close()

    # Flow control: when our outgoing buffer is full, stop reading from the peer.
    def pause_writing(self):
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self):
        if self.peer is not None:
            self.peer.transport.resume_reading()


async def main():
    listen_port, target_port, count_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    loop = asyncio.get_running_loop()
    totals = Totals(count_path)
    totals.write()
    loop.add_signal_handler(signal.SIGUSR1, totals.write)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)

    def client_side():
        client = Half(totals, downstream=False)

        async def connect():
            try:
                _, server = await loop.create_connection(
                    lambda: Half(totals, downstream=True), "127.0.0.1", target_port
                )
            except OSError:
                client.transport.close()
                return
            server.attach(client)
            client.attach(server)

        totals.connections += 1
        loop.create_task(connect())
        return client

    server = await loop.create_server(client_side, "127.0.0.1", listen_port, reuse_address=True)
    async with server:
        while True:
            totals.write()
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except RuntimeError:
        pass  # loop stopped by a signal
