"""Hostile HTTP/2 clients for spec/tipi/http2_limits_spec.rb (Python's h2 for the framing,
raw frames for the floods), over plain TCP. Each prints one JSON object with what it saw.

  h2_flood.py stalled PORT PATH STREAMS SECONDS [PING_EVERY]
                                                 streams whose window stays at 0: the client
                                                 never opens it, and holds the connection
                                                 (sending a PING every PING_EVERY seconds)
  h2_flood.py upload PORT PATH SIZE SECONDS [LENGTH]
                                                 a POST of SIZE bytes (declaring LENGTH as its
                                                 content-length, if given), sent as fast as
                                                 flow control lets it, for at most SECONDS
  h2_flood.py wsstalled PORT PATH SECONDS         a WebSocket by extended CONNECT whose stream
                                                 window stays at 0
  h2_flood.py ping PORT COUNT                    COUNT PINGs sent without reading
  h2_flood.py settings PORT COUNT                COUNT SETTINGS frames sent without reading
  h2_flood.py frame PORT KIND                    a request the server must refuse: KIND is
                                                 nopath, trailerpath or spaces
"""

import json
import select
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port, settings=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return sock, conn


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def read_events(sock, conn, seconds):
    """Reads for `seconds` (or until the server closes); returns the events."""
    events = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            data = sock.recv(1 << 20)
        except (ConnectionResetError, socket.timeout):
            events.append("closed")
            break
        if not data:
            events.append("closed")
            break
        try:
            events.extend(conn.receive_data(data))
        except h2.exceptions.ProtocolError as e:
            events.append("protocol error: %s" % e)
            break
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                pass
    return events


def summary(events):
    """What a spec looks at: statuses, resets, GOAWAY, closing."""
    result = {"statuses": {}, "resets": {}, "goaway": None, "closed": "closed" in events, "data": {}}
    for e in events:
        if isinstance(e, h2.events.ResponseReceived):
            result["statuses"][e.stream_id] = int(dict(e.headers)[":status"])
        elif isinstance(e, h2.events.StreamReset):
            result["resets"][e.stream_id] = h2.errors.ErrorCodes(e.error_code).name
        elif isinstance(e, h2.events.ConnectionTerminated):
            result["goaway"] = h2.errors.ErrorCodes(e.error_code).name
        elif isinstance(e, h2.events.DataReceived):
            result["data"][e.stream_id] = result["data"].get(e.stream_id, 0) + len(e.data)
    return result


def read_without_window_updates(sock, conn, seconds, ping_every=None):
    """Reads for `seconds` (so that the server's writes never block on the socket) but never
    acknowledges data with WINDOW_UPDATE: what h2 would send back is dropped. With
    `ping_every`, a PING goes out that often."""
    events = []
    deadline = time.monotonic() + seconds
    next_ping = time.monotonic() + ping_every if ping_every else None
    pings = 0
    while time.monotonic() < deadline:
        if next_ping and time.monotonic() >= next_ping:
            pings += 1
            sock.sendall(frame(0x6, 0, 0, struct.pack(">Q", pings)))
            next_ping += ping_every
        ready, _, _ = select.select([sock], [], [], 0.2 if not ping_every else min(0.2, ping_every))
        if ready:
            data = sock.recv(1 << 20)
            if not data:
                events.append("closed")
                break
            events.extend(conn.receive_data(data))
            conn.data_to_send()  # dropped: no WINDOW_UPDATE
    return events


def stalled(port, path, streams, seconds, ping_every=None):
    # A stream window of 0: the server may send HEADERS, no DATA. The connection window is
    # left at its 65,535 (nobody opens it either).
    sock, conn = connect(port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    for i in range(streams):
        conn.send_headers(1 + 2 * i, [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path)],
                          end_stream=True)
    sock.sendall(conn.data_to_send())
    print(json.dumps(summary(read_without_window_updates(sock, conn, seconds, ping_every))))
    sock.close()


def wsstalled(port, path, seconds):
    sock, conn = connect(port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    events = read_events(sock, conn, 0.5)  # (the server's SETTINGS: extended CONNECT allowed)
    conn.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                          (":path", path), (":authority", "127.0.0.1"), ("sec-websocket-version", "13")])
    sock.sendall(conn.data_to_send())
    events.extend(read_without_window_updates(sock, conn, seconds))
    print(json.dumps(summary(events)))
    sock.close()


def upload(port, path, size, seconds, length=None):
    sock, conn = connect(port)
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", path)]
    if length is not None:
        headers.append(("content-length", str(length)))
    conn.send_headers(1, headers)
    sock.sendall(conn.data_to_send())
    sent = 0
    events = []
    piece = b"u" * 16384
    deadline = time.monotonic() + seconds
    ended = False
    while time.monotonic() < deadline and not ended:
        try:
            window = conn.local_flow_control_window(1)
        except h2.exceptions.StreamClosedError:
            break
        if window > 0 and sent < size:
            n = min(window, len(piece), size - sent, conn.max_outbound_frame_size)
            conn.send_data(1, piece[:n], end_stream=(sent + n == size))
            sent += n
            sock.sendall(conn.data_to_send())
            continue
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            data = sock.recv(1 << 20)
            if not data:
                events.append("closed")
                break
            new = conn.receive_data(data)
            events.extend(new)
            ended = any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in new)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    events.extend(read_events(sock, conn, 0.5))
    result = summary(events)
    result["sent"] = sent
    print(json.dumps(result))
    sock.close()


def flood(port, count, make):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(PREFACE + frame(0x4, 0, 0, b""))
    sock.setblocking(False)
    batch = b"".join(make(i) for i in range(1000))
    sent = 0
    blocked_since = None
    pending = b""
    while sent < count:
        if not pending:
            pending = batch
            sent += 1000
        try:
            n = sock.send(pending)
            pending = pending[n:]
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 0.3:
                break
            select.select([], [sock], [], 0.2)
        except OSError:
            break
    sock.setblocking(True)
    sock.settimeout(10)
    # Now read everything the server sent (ACKs, then perhaps a GOAWAY) until it closes.
    received = b""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except (OSError, socket.timeout):
            break
        if not data:
            break
        received += data
        if len(received) > 200 << 20:
            break
    goaway = None
    offset = 0
    while offset + 9 <= len(received):
        length = int.from_bytes(received[offset:offset + 3], "big")
        kind = received[offset + 3]
        if kind == 0x7 and offset + 9 + 8 <= len(received):
            code = int.from_bytes(received[offset + 13:offset + 17], "big")
            goaway = h2.errors.ErrorCodes(code).name
        offset += 9 + length
    kinds = {}
    offset = 0
    while offset + 9 <= len(received):
        kinds[received[offset + 3]] = kinds.get(received[offset + 3], 0) + 1
        offset += 9 + int.from_bytes(received[offset:offset + 3], "big")
    print(json.dumps({"sent": sent, "received": len(received), "goaway": goaway, "kinds": kinds}))


def refused(port, kind):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    encoder = hpack.Encoder()
    sock.sendall(PREFACE + frame(0x4, 0, 0, b""))
    head = [(":method", "GET"), (":scheme", "http"), (":authority", "x")]
    if kind == "nopath":
        sock.sendall(frame(0x1, 0x4 | 0x1, 1, encoder.encode(head)))
    elif kind == "spaces":
        sock.sendall(frame(0x1, 0x4 | 0x1, 1, encoder.encode(head + [(":path", "/pid"), ("x-padded", " value ")])))
    elif kind == "trailerpath":
        post = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/echo")]
        sock.sendall(frame(0x1, 0x4, 1, encoder.encode(post)) + frame(0x0, 0, 1, b"body"))
        sock.sendall(frame(0x1, 0x4 | 0x1, 1, encoder.encode([(":path", "/other")])))
    # Then an ordinary request on the same connection: it must still be answered.
    sock.sendall(frame(0x1, 0x4 | 0x1, 3, encoder.encode(head + [(":path", "/pid")])))
    decoder = hpack.Decoder()
    received = b""
    result = {"statuses": {}, "resets": {}, "goaway": None, "closed": False}
    deadline = time.monotonic() + 5
    offset = 0
    while time.monotonic() < deadline and "3" not in result["statuses"]:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        data = sock.recv(1 << 20)
        if not data:
            result["closed"] = True
            break
        received += data
        while offset + 9 <= len(received):
            length = int.from_bytes(received[offset:offset + 3], "big")
            if offset + 9 + length > len(received):
                break
            kind_byte, stream = received[offset + 3], int.from_bytes(received[offset + 5:offset + 9], "big") & 0x7FFFFFFF
            payload = received[offset + 9:offset + 9 + length]
            if kind_byte == 0x1:
                fields = dict(decoder.decode(payload))
                result["statuses"][str(stream)] = int(fields[":status"])
            elif kind_byte == 0x3:
                result["resets"][str(stream)] = h2.errors.ErrorCodes(int.from_bytes(payload[:4], "big")).name
            elif kind_byte == 0x7:
                result["goaway"] = h2.errors.ErrorCodes(int.from_bytes(payload[4:8], "big")).name
            elif kind_byte == 0x4 and not received[offset + 4] & 1:
                sock.sendall(frame(0x4, 0x1, 0, b""))
            offset += 9 + length
    print(json.dumps(result))


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "stalled":
        stalled(port, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]) if len(sys.argv) > 6 else None)
    elif mode == "wsstalled":
        wsstalled(port, sys.argv[3], float(sys.argv[4]))
    elif mode == "upload":
        upload(port, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]) if len(sys.argv) > 6 else None)
    elif mode == "ping":
        flood(port, int(sys.argv[3]), lambda i: frame(0x6, 0, 0, struct.pack(">Q", i)))
    elif mode == "settings":
        flood(port, int(sys.argv[3]), lambda i: frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100)))
    elif mode == "frame":
        refused(port, sys.argv[3])
