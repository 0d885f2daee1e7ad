#!/usr/bin/env python3
"""A minimal NBD server (fixed newstyle handshake, no data) on a unix socket
that answers its first client and stalls its later ones.

Usage: nbd_stall_server.py SOCKET SIZE STALL

The first connection gets a whole handshake: its meta contexts are answered
with base:allocation only (never a dirty bitmap), NBD_OPT_GO with an export
of SIZE bytes; it is then held until the client hangs up. Every later
connection gets the greeting, and then never an answer: at the first option
(STALL=option) or at NBD_OPT_LIST_META_CONTEXT (STALL=list). What a server
at its client limit or a stalled one does to a client that lists meta
contexts (nbdkit never calls a plugin for that, so its filters cannot).
"""
import socket
import struct
import sys
import threading

OPT_MAGIC = 0x3E889045565A9
OPT_EXPORT_NAME, OPT_ABORT, OPT_GO, OPT_INFO = 1, 2, 7, 6
OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META = 8, 9, 10
REP_ACK, REP_INFO, REP_META = 1, 3, 4
REP_ERR_UNSUP = 0x80000001


def recv_all(c, n):
    out = b""
    while len(out) < n:
        got = c.recv(n - len(out))
        if not got:
            raise EOFError
        out += got
    return out


def reply(c, opt, kind, data=b""):
    c.sendall(struct.pack(">QIII", OPT_MAGIC, opt, kind, len(data)) + data)


def serve(c, first, size, stall):
    try:
        # Greeting: fixed newstyle, no zeroes; the client's flags.
        c.sendall(b"NBDMAGIC" + b"IHAVEOPT" + struct.pack(">H", 3))
        recv_all(c, 4)
        while True:
            _, opt, length = struct.unpack(">QII", recv_all(c, 16))
            data = recv_all(c, length)
            if not first and (stall == "option" or opt == OPT_LIST_META):
                threading.Event().wait()  # never answers
            if opt == OPT_SET_META:
                name_len = struct.unpack(">I", data[:4])[0]
                at = 4 + name_len
                count = struct.unpack(">I", data[at:at + 4])[0]
                at += 4
                for _ in range(count):
                    qlen = struct.unpack(">I", data[at:at + 4])[0]
                    query = data[at + 4:at + 4 + qlen]
                    at += 4 + qlen
                    if query == b"base:allocation":
                        reply(c, opt, REP_META, struct.pack(">I", 1) + query)
                reply(c, opt, REP_ACK)
            elif opt in (OPT_GO, OPT_INFO):
                # NBD_INFO_EXPORT: size; flags HAS_FLAGS | READ_ONLY.
                reply(c, opt, REP_INFO, struct.pack(">HQH", 0, size, 3))
                reply(c, opt, REP_ACK)
                if opt == OPT_GO:
                    while c.recv(65536):  # transmission: held until hung up
                        pass
                    return
            elif opt == OPT_STRUCTURED_REPLY:
                reply(c, opt, REP_ACK)
            elif opt == OPT_ABORT:
                reply(c, opt, REP_ACK)
                return
            else:
                reply(c, opt, REP_ERR_UNSUP)
    except (EOFError, OSError):
        pass
    finally:
        c.close()


def main():
    path, size, stall = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    first = True
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, first, size, stall), daemon=True).start()
        first = False


if __name__ == "__main__":
    main()
