"""Writers and verifying readers for the load and fault tests (tests/load.rs, tests/faults.rs).

Every message is a 20-byte header followed by a random body:

    magic b"MQT1" | writer u32 | seq u32 | total length u32 | crc32 u32     (little endian)

The crc covers the first 16 header bytes and the body, so a reader detects a message that
was cut, merged with another, altered or misdelivered. Writer W sends its message K to
stream number (W + K) % S of the stream list it is given, with a length that depends only
on (W, K) (see `length`), so every reader knows exactly what it must receive.

Roles (each prints one JSON line on stdout when done; exit status 0 means every check held):

  writer  --id W --count N --streams P1,P2,.. [--big] [--retry-enospc] [--pause-at K]
          [--tell-at K]
          Writes N messages (N = -1: until killed). --pause-at K: after K messages, prints
          "paused" and waits for a line on stdin before going on. --tell-at K: prints "wrote K"
          after K messages. --retry-enospc: a write
          failing with ENOSPC is retried after a short pause (counted); any other error fails.

  reader  --path P --index S --streams-count S_TOTAL --buf B --writers W1,W2.. --count N
          [--prefix-writers V1,V2..] [--coalesce] [--wait-go [--full-reads]] [--big]
          Reads P until end-of-file (the test removes the stream) with B-byte reads and checks,
          for each writer, that it got exactly its messages for this stream, in order, intact:
          all N for --writers, a gap-free prefix for --prefix-writers (writers killed midway).
          Message mode: no read spans two messages, and a read at a message start with a
          buffer that fits the message returns all of it. --coalesce: reads cross message
          boundaries. --wait-go: the reader opens, then waits for "go" on stdin before its first
          read; with --full-reads (coalesce, sent "go" once the writers are done) every read
          must then fill its buffer until the backlog is drained. After EOF it reads stdin to
          its end before reporting.

  order   --group G --streams N1,N2.. --writers W1,W2.. --count N [--coalesce] [--big]
          Opens G/order and one cursor on each stream before the writers start; for each
          name `order` delivers, reads the next message of that stream and checks that the
          names and messages agree and that each writer's messages appear in the order it
          wrote them across streams. After the total count, waits for stdin to close (the
          writers are done) and checks that nothing more is in `order`.

  blocker --path P --threads T
          Opens P T times and blocks a thread in read(2) on each descriptor; prints "ready".
"""

import errno
import fcntl
import json
import os
import random
import struct
import sys
import threading
import time
import zlib

MAGIC = b"MQT1"
HEADER = struct.Struct("<4sIIII")
BIG_EVERY = 150


def length(writer, seq, big):
    """The total length of message `seq` of `writer` (header included). Writers 1000-1999 send
    only messages of 1.1 to 3.1 MB (several FUSE requests each), writers from 2000 only
    messages of about 64 KiB; the others mostly small ones and, with `big`, one in 150 over
    1 MiB."""
    if 1000 <= writer < 2000:
        return 1_100_000 + (writer * 7919 + seq * 104729) % 2_000_000
    if writer >= 2000:
        return 60_000 + (writer * 7919 + seq * 104729) % 10_000
    if big and seq % BIG_EVERY == 77:
        return 1_100_000 + (writer * 7919 + seq * 104729) % 500_000  # several FUSE requests
    r = random.Random(writer * 1_000_003 + seq)
    x = r.random()
    if x < 0.6:
        return r.randint(HEADER.size, 300)
    if x < 0.9:
        return r.randint(1000, 9000)  # straddles 4 KiB buffers
    return r.randint(9000, 70000)  # crosses 64 KiB segments


def make(writer, seq, big):
    total = length(writer, seq, big)
    body = os.urandom(total - HEADER.size)
    head = struct.pack("<4sIII", MAGIC, writer, seq, total)
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + struct.pack("<I", crc) + body


def args(argv):
    opts = {}
    i = 0
    while i < len(argv):
        key = argv[i][2:]
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            opts[key] = argv[i + 1]
            i += 2
        else:
            opts[key] = True
            i += 1
    return opts


def ints(text):
    return [int(x) for x in text.split(",") if x] if text else []


def report(summary, errors):
    summary["ok"] = not errors
    summary["errors"] = errors[:10]
    print(json.dumps(summary), flush=True)
    sys.exit(0 if not errors else 1)


def writer(o):
    w, count = int(o["id"]), int(o["count"])
    paths = o["streams"].split(",")
    big = "big" in o
    retry = "retry-enospc" in o
    pause_at = int(o.get("pause-at", -1))
    tell_at = int(o.get("tell-at", -1))
    fds = [os.open(p, os.O_WRONLY) for p in paths]
    enospc = 0
    seq = 0
    errors = []
    while count < 0 or seq < count:
        if seq == tell_at:
            print(f"wrote {seq}", flush=True)
        if seq == pause_at:
            print("paused", flush=True)
            sys.stdin.readline()
        msg = make(w, seq, big)
        fd = fds[(w + seq) % len(fds)]
        try:
            n = os.write(fd, msg)
        except OSError as e:
            if e.errno == errno.ENOSPC and retry:
                if enospc == 0:
                    print("enospc", flush=True)
                enospc += 1
                time.sleep(0.002)
                continue
            errors.append(f"write {seq}: {errno.errorcode.get(e.errno, e.errno)}")
            break
        if n != len(msg):
            errors.append(f"write {seq}: short write {n} of {len(msg)}")
            break
        seq += 1
    report({"role": "writer", "id": w, "written": seq, "enospc": enospc}, errors)


class Verifier:
    """Checks the messages of one stream as a reader receives them."""

    def __init__(self, index, streams_count, writers, prefix_writers, count, big):
        self.big = big
        self.full = set(writers)
        self.prefix = set(prefix_writers)
        self.errors = []
        # The sequence numbers each writer sends to this stream, and how far each got.
        self.expected = {}
        for w in self.full:
            self.expected[w] = [k for k in range(count) if (w + k) % streams_count == index]
        self.streams_count = streams_count
        self.index = index
        self.got = {w: 0 for w in self.full | self.prefix}
        self.last = {w: -1 for w in self.full | self.prefix}
        self.messages = 0
        self.bytes = 0

    def error(self, text):
        if len(self.errors) < 10:
            self.errors.append(text)

    def check(self, msg):
        """One complete message."""
        self.messages += 1
        self.bytes += len(msg)
        magic, w, seq, total, crc = HEADER.unpack_from(msg)
        if magic != MAGIC or total != len(msg):
            return self.error(f"message {self.messages}: bad header {msg[:20]!r} length {len(msg)}")
        if zlib.crc32(msg[HEADER.size :], zlib.crc32(msg[:16])) != crc:
            return self.error(f"writer {w} seq {seq}: checksum mismatch (bytes altered)")
        if w not in self.got:
            return self.error(f"writer {w} seq {seq}: from an unexpected writer")
        if (w + seq) % self.streams_count != self.index:
            return self.error(f"writer {w} seq {seq}: belongs to another stream")
        if total != length(w, seq, self.big):
            return self.error(f"writer {w} seq {seq}: wrong length {total}")
        if w in self.full:
            i = self.got[w]
            want = self.expected[w][i] if i < len(self.expected[w]) else None
            if seq != want:
                kind = "duplicate or reordered" if want is None or seq < want else "lost messages"
                return self.error(f"writer {w}: got seq {seq}, expected {want} ({kind})")
        else:
            want = self.last[w] + 1
            while want % self.streams_count != (self.index - w) % self.streams_count:
                want += 1
            if seq != want:
                return self.error(f"killed writer {w}: got seq {seq}, expected {want} (gap or reorder)")
        self.got[w] += 1
        self.last[w] = seq

    def finish(self):
        for w in self.full:
            if self.got[w] != len(self.expected[w]):
                self.error(f"writer {w}: got {self.got[w]} of {len(self.expected[w])} messages")


class Splitter:
    """Cuts the bytes of successive reads into messages (by the length in each header)."""

    def __init__(self):
        self.buf = bytearray()

    def pending(self):
        """Bytes still missing from the message being received (0 at a boundary), or None
        if its header is not complete yet."""
        if not self.buf:
            return 0
        if len(self.buf) < HEADER.size:
            return None
        return HEADER.unpack_from(self.buf)[3] - len(self.buf)

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= HEADER.size:
            total = HEADER.unpack_from(self.buf)[3]
            if total < HEADER.size:
                total = len(self.buf)  # garbage: let the verifier report it
            if len(self.buf) < total:
                break
            out.append(bytes(self.buf[:total]))
            del self.buf[:total]
        return out


def reader(o):
    path = o["path"]
    buf = int(o["buf"])
    coalesce = "coalesce" in o
    big = "big" in o
    v = Verifier(
        int(o["index"]), int(o["streams-count"]), ints(o.get("writers")), ints(o.get("prefix-writers")),
        int(o.get("count", 0)), big,
    )
    fd = os.open(path, os.O_RDONLY)
    print("open", flush=True)
    full_reads = None
    if "wait-go" in o:
        sys.stdin.readline()
    if "full-reads" in o:
        # The writers are done: the whole backlog is there, so every read fills its buffer.
        full_reads = sum(length(w, k, big) for w in v.full for k in v.expected[w])
    s = Splitter()
    reads = split = multi = 0
    while True:
        at_start = s.pending()
        data = os.read(fd, buf)
        if not data:
            break
        reads += 1
        if full_reads is not None and full_reads > 0:
            want = min(buf, full_reads)
            if len(data) != want:
                v.error(f"coalesce read {reads} of a {full_reads}-byte backlog returned {len(data)}, not {want}")
            full_reads -= len(data)
        if not coalesce:
            if at_start == 0:
                total = HEADER.unpack_from(data)[3] if len(data) >= HEADER.size else None
                if total is None or len(data) > total or (total <= buf and len(data) != total):
                    v.error(f"read {reads}: {len(data)} bytes at a message start (message {total}, buffer {buf})")
            elif at_start is not None and len(data) > at_start:
                v.error(f"read {reads}: {len(data)} bytes but only {at_start} left of the message")
            if at_start:
                split += 1
        msgs = s.feed(data)
        if len(msgs) > 1:
            multi += 1
        for m in msgs:
            v.check(m)
    if s.buf:
        v.error(f"{len(s.buf)} bytes of an incomplete message before end-of-file")
    v.finish()
    sys.stdin.read()
    report(
        {"role": "reader", "path": path, "buf": buf, "messages": v.messages, "bytes": v.bytes, "reads": reads,
         "split_reads": split, "multi_reads": multi, "got": {str(w): n for w, n in v.got.items()}},
        v.errors,
    )


def order(o):
    group = o["group"]
    names = o["streams"].split(",")
    writers = ints(o["writers"])
    count = int(o["count"])
    big = "big" in o
    S = len(names)
    ofd = os.open(os.path.join(group, "order"), os.O_RDONLY)
    fds = {n.encode(): os.open(os.path.join(group, n), os.O_RDONLY) for n in names}
    splitters = {n: Splitter() for n in fds}
    ready = {n: [] for n in fds}
    print("open", flush=True)
    errors = []
    last = {w: -1 for w in writers}
    total = len(writers) * count
    seen = 0
    pending = b""
    while seen < total and len(errors) < 10:
        data = os.read(ofd, 65536)
        if not data:
            errors.append("order reached end-of-file")
            break
        pending += data
        *entries, pending = pending.split(b"\n")
        for name in entries:
            seen += 1
            if name not in fds:
                errors.append(f"order entry {seen}: unknown stream {name!r}")
                continue
            while not ready[name]:
                chunk = os.read(fds[name], 1 << 21)
                if not chunk:
                    errors.append(f"stream {name!r} ended before its message")
                    break
                ready[name].extend(splitters[name].feed(chunk))
            if not ready[name]:
                continue
            msg = ready[name].pop(0)
            _, w, seq, total_len, _ = HEADER.unpack_from(msg)
            if names[(w + seq) % S].encode() != name:
                errors.append(f"order entry {seen}: {name!r} holds writer {w} seq {seq}, meant for another stream")
            elif last.get(w) != seq - 1:
                errors.append(f"order entry {seen}: writer {w} seq {seq} after seq {last.get(w)}")
            last[w] = seq
    sys.stdin.read()
    fcntl.fcntl(ofd, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        extra = os.read(ofd, 65536)
        errors.append(f"order holds more than the {total} writes: {extra[:100]!r}")
    except BlockingIOError:
        pass
    if pending:
        errors.append(f"order left an incomplete entry {pending!r}")
    for n in fds:
        if ready[n] or splitters[n].buf:
            errors.append(f"stream {n!r} delivered messages order does not name")
    report({"role": "order", "group": group, "entries": seen}, errors)


def blocker(o):
    threading.stack_size(64 * 1024)
    path, n = o["path"], int(o["threads"])
    fds = [os.open(path, os.O_RDONLY) for _ in range(n)]

    def block(fd):
        try:
            os.read(fd, 4096)
        except OSError:
            pass

    for fd in fds:
        threading.Thread(target=block, args=(fd,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    role = sys.argv[1]
    {"writer": writer, "reader": reader, "order": order, "blocker": blocker}[role](args(sys.argv[2:]))
