#!/usr/bin/env python3
"""readprobe.py: the timed reads of bench/remote.sh, the same code for every mount.

    readprobe.py first FILE ORIGIN        open FILE, read its first 4 KiB; prints the seconds
    readprobe.py seq FILE [PID...]        read FILE whole, 1 MiB at a time; prints "BYTES SECONDS",
                                          then for each PID the CPU time (ns) it and its
                                          descendants used during the read, then the machine's
                                          busy CPU time (ns) during the read
    readprobe.py random FILE ORIGIN N SIZE SEED
                                          N preads of SIZE bytes at random 4 KiB-aligned offsets
                                          (POSIX_FADV_RANDOM, so the kernel reads no more than
                                          asked); prints "MEDIAN P99 ASKED UNIQUE" (seconds,
                                          bytes)
    readprobe.py offsets FILE N SIZE SEED
                                          prints the offsets `random` reads, one per line (for
                                          other probes that read the same bytes)
    readprobe.py wait-quiet PORT [QUIET_S] [TIMEOUT_S]
                                          waits until the bytes the server on PORT has sent
                                          (bench/wirecount.py) have grown by less than 32 KiB
                                          over QUIET_S seconds (default 1.5); prints them

Timing covers only the reads (not Python's start-up). Every read is compared with the same
bytes of ORIGIN (the file on the server's disk) after the timing, so a wrong byte fails the run.
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wirecount  # noqa: E402


def fail(msg):
    sys.exit(f"readprobe: {msg}")


def first(path, origin):
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    data = os.read(fd, 4096)
    t1 = time.perf_counter()
    os.close(fd)
    with open(origin, "rb") as f:
        if f.read(4096) != data:
            fail(f"{path}: the first 4 KiB differ from the origin's")
    print(f"{t1 - t0:.6f}")


def seq(path, pids):
    buf = bytearray(1 << 20)
    total = 0
    cpu0 = cpu_used(pids)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            total += n
    t1 = time.perf_counter()
    cpu1 = cpu_used(pids)
    print(f"{total} {t1 - t0:.6f}", *(b - a for a, b in zip(cpu0, cpu1)))


def cpu_used(pids):
    """CPU time (ns) used so far by each PID with its descendants, then the machine's busy time."""
    if not pids:
        return []
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))

    def used(pid):
        total = 0
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass  # gone meanwhile
        return total + sum(used(c) for c in children.get(pid, []))

    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy_ns = (sum(fields[:8]) - idle) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return [used(int(p)) for p in pids] + [busy_ns]


def random_offsets(path, n, size, seed):
    file_size = os.stat(path).st_size
    rng = random.Random(seed)
    return [rng.randrange(0, (file_size - size) // 4096) * 4096 for _ in range(n)]


def random_reads(path, origin, n, size, seed):
    offsets = random_offsets(path, n, size, seed)
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    took, got = [], []
    for off in offsets:
        t0 = time.perf_counter()
        data = os.pread(fd, size, off)
        took.append(time.perf_counter() - t0)
        got.append(data)
    os.close(fd)
    with open(origin, "rb") as f:
        for off, data in zip(offsets, got):
            f.seek(off)
            if f.read(size) != data:
                fail(f"{path}: {size} bytes at {off} differ from the origin's")
    took.sort()
    median = took[len(took) // 2]
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    pages = set()
    for off in offsets:
        pages.update(range(off // 4096, (off + size) // 4096))
    print(f"{median:.6f} {p99:.6f} {n * size} {len(pages) * 4096}")


def wait_quiet(port, quiet=1.5, timeout=120.0):
    deadline = time.monotonic() + timeout
    history = []  # (time, down)
    while True:
        now, count = time.monotonic(), wirecount.read(port)[0]
        history.append((now, count))
        old = [c for t, c in history if t <= now - quiet]
        if old and count - old[-1] < 32 << 10:
            print(count)
            return
        if now > deadline:
            print(f"readprobe: still transferring after {timeout:.0f} s", file=sys.stderr)
            print(count)
            return
        time.sleep(0.1)


def main():
    args = sys.argv[1:]
    if not args:
        fail(__doc__)
    cmd, rest = args[0], args[1:]
    if cmd == "first" and len(rest) == 2:
        first(*rest)
    elif cmd == "seq" and rest:
        seq(rest[0], rest[1:])
    elif cmd == "random" and len(rest) == 5:
        random_reads(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
    elif cmd == "offsets" and len(rest) == 4:
        print("\n".join(map(str, random_offsets(rest[0], int(rest[1]), int(rest[2]), int(rest[3])))))
    elif cmd == "wait-quiet" and 1 <= len(rest) <= 3:
        wait_quiet(int(rest[0]), *map(float, rest[1:]))
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
