"""HTTP/2 protocol edge cases for spec/tipi/http2_spec.rb, on Python's `h2` (Debian's
python3-h2), over plain TCP. Prints one JSON object with what the client saw.

  h2_client.py upgrade PORT       HTTP/1.1 Upgrade: h2c with a body, then a second stream
  h2_client.py window PORT        a 1 KiB flow-control window, opened a little at a time
  h2_client.py reset PORT         RST_STREAM on a slow request, then another on the connection
  h2_client.py headers PORT       a header list larger than the server's limit
  h2_client.py preface PORT       a bad connection preface
  h2_client.py websocket PORT [PATH]  a WebSocket by extended CONNECT (RFC 8441): echo, then close
  h2_client.py trailers PORT PATH a POST whose body ends with trailer fields; also one with
                                  trailers and no DATA at all
"""

import json
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    return sock, conn


def flush(sock, conn):
    data = conn.data_to_send()
    if data:
        sock.sendall(data)


def pump(sock, conn, until, on_data=None):
    """Reads and handles events until `until(events_so_far)` is true or the server closes."""
    seen = []
    while not until(seen):
        data = sock.recv(65536)
        if not data:
            seen.append("closed")
            break
        for event in conn.receive_data(data):
            seen.append(event)
            if isinstance(event, h2.events.DataReceived) and on_data:
                on_data(event)
        flush(sock, conn)
    return seen


def ended(stream_id):
    return lambda seen: any(
        isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == stream_id for e in seen
    ) or "closed" in seen


def response(seen, stream_id):
    status, body = None, b""
    for e in seen:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id:
            status = int(dict(e.headers)[":status"])
        if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id:
            body += e.data
    return status, body


def request(conn, path, body=None, extra=()):
    stream_id = conn.get_next_available_stream_id()
    headers = [(":method", "POST" if body else "GET"), (":path", path), (":scheme", "http"),
               (":authority", "127.0.0.1"), *extra]
    conn.send_headers(stream_id, headers, end_stream=body is None)
    if body:
        size = conn.max_outbound_frame_size
        for at in range(0, len(body), size):
            conn.send_data(stream_id, body[at:at + size], end_stream=at + size >= len(body))
    return stream_id


def upgrade(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    settings = conn.initiate_upgrade_connection().decode()
    body = b"upgraded body " * 1000
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings.encode() + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    flush(sock, conn)  # the preface
    seen = pump(sock, conn, ended(1))
    status1, body1 = response(seen, 1)
    stream = request(conn, "/echo", b"second")
    flush(sock, conn)
    status2, body2 = response(pump(sock, conn, ended(stream)), stream)
    return {"switching": head.split(b"\r\n")[0].decode(), "stream1": [status1, body1 == body],
            "stream3": [stream, status2, body2.decode()]}


def window(port):
    sock, conn = connect(port)
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    body = bytes(range(256)) * 240  # 60 KiB (within the first connection window): 60 windows of 1 KiB
    stream = request(conn, "/echo", body)
    flush(sock, conn)
    largest = [0]

    def acknowledge(event):
        # At most the window in each DATA frame; opened again by what was read.
        largest[0] = max(largest[0], len(event.data))
        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    seen = pump(sock, conn, ended(stream), on_data=acknowledge)
    status, got = response(seen, stream)
    return {"status": status, "same": got == body, "largest_frame": largest[0]}


def reset(port):
    sock, conn = connect(port)
    conn.initiate_connection()
    slow = request(conn, "/slow")
    flush(sock, conn)
    conn.reset_stream(slow, error_code=h2.errors.ErrorCodes.CANCEL)
    after = request(conn, "/echo", b"after the reset")
    flush(sock, conn)
    seen = pump(sock, conn, ended(after))
    return {"after": list(response(seen, after)[0:1]) + [response(seen, after)[1].decode()],
            "slow_answered": response(seen, slow)[0]}


def headers(port):
    sock, conn = connect(port)
    conn.initiate_connection()
    big = [("x-big-%d" % i, "v" * 1000) for i in range(100)]  # 100 KB of fields
    stream = request(conn, "/", extra=big)
    flush(sock, conn)
    seen = pump(sock, conn, ended(stream))
    resets = [e.error_code for e in seen if isinstance(e, h2.events.StreamReset)]
    after = request(conn, "/echo", b"still open")
    flush(sock, conn)
    seen2 = pump(sock, conn, ended(after))
    return {"status": response(seen, stream)[0], "reset": [int(c) for c in resets],
            "after": response(seen2, after)[1].decode()}


def preface(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\0" * 9)
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        received += data
    # Frames the server sent before closing: (type, error code of a GOAWAY)
    frames, at = [], 0
    while at + 9 <= len(received):
        length = int.from_bytes(received[at:at + 3], "big")
        kind = received[at + 3]
        payload = received[at + 9:at + 9 + length]
        frames.append([kind, int.from_bytes(payload[4:8], "big")] if kind == 7 else [kind])
        at += 9 + length
    return {"frames": frames, "closed": True}


def masked(opcode, payload, mask=b"\x01\x02\x03\x04"):
    """A client's WebSocket frame (short payloads only)."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def websocket(port, path="/echo"):
    sock, conn = connect(port)
    conn.initiate_connection()
    flush(sock, conn)
    pump(sock, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
    enabled = conn.remote_settings.enable_connect_protocol
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                               (":path", path), (":authority", "127.0.0.1"), ("sec-websocket-version", "13"),
                               ("sec-websocket-protocol", "chat")])
    flush(sock, conn)
    seen = pump(sock, conn, lambda seen: any(isinstance(e, h2.events.ResponseReceived) for e in seen))
    head = dict(next(e for e in seen if isinstance(e, h2.events.ResponseReceived)).headers)
    received = bytearray()

    def collect(event):
        received.extend(event.data)
        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    conn.send_data(stream, masked(0x1, b"hello over h2"))
    flush(sock, conn)
    pump(sock, conn, lambda seen: len(received) >= 2 + 13, on_data=collect)
    echo = bytes(received[2:2 + received[1]]).decode()
    del received[:2 + 13]
    conn.send_data(stream, masked(0x8, (1000).to_bytes(2, "big")))
    flush(sock, conn)
    seen = pump(sock, conn, ended(stream), on_data=collect)
    return {"enabled": enabled, "status": head[":status"], "protocol": head.get("sec-websocket-protocol"),
            "echo": echo, "close": list(received), "ended": any(isinstance(e, h2.events.StreamEnded) for e in seen)}


def trailers(port, path):
    sock, conn = connect(port)
    conn.initiate_connection()
    answers = []
    for body in (b"0123456789" * 10000, b""):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "POST"), (":path", path), (":scheme", "http"),
                                   (":authority", "127.0.0.1"), ("te", "trailers")])
        for at in range(0, len(body), 16384):
            flush(sock, conn)
            while conn.local_flow_control_window(stream) < 16384:
                pump(sock, conn, lambda seen: bool(seen))
            conn.send_data(stream, body[at:at + 16384])
        conn.send_headers(stream, [("x-checksum", "42"), ("x-many", "1"), ("x-many", "2")], end_stream=True)
        flush(sock, conn)
        status, got = response(pump(sock, conn, ended(stream)), stream)
        answers.append([status, json.loads(got)])
    return answers


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    print(json.dumps(globals()[mode](port, *sys.argv[3:])))


import h2.errors  # noqa: E402  (after the helpers, which name it lazily)

main()
