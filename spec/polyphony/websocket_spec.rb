# frozen_string_literal: true

# Polyphony::WebSocket over a socket pair (the opening handshake is Tipi's or WebSocket.connect's;
# spec/tipi/websocket_spec.rb covers those with real clients).
RSpec.describe Polyphony::WebSocket do
  let(:pair) { UNIXSocket.pair }
  let(:server) { described_class.new(pair[0]) }
  let(:client) { described_class.new(pair[1], client: true) }

  after { pair.each { |io| io.close unless io.closed? } }

  it 'carries text as UTF-8 and binary as ASCII-8BIT, converting other encodings' do
    client << 'héllo' << "\x00\xff".b << "caf\xE9".dup.force_encoding('ISO-8859-1')
    expect([server.recv, server.recv, server.recv]).to eq(["héllo", "\x00\xff".b, 'café'])
    server << 'back'
    expect(client.recv).to eq('back').and(have_attributes(encoding: Encoding::UTF_8))
  end

  it 'refuses invalid text and sends on a closed WebSocket with clear errors' do
    expect { client << "\xff".dup.force_encoding('UTF-8') }.to raise_error(ArgumentError, /valid UTF-8/)
    expect { client.ping('x' * 126) }.to raise_error(ArgumentError, /125 bytes/)
    spin { server.recv }
    client.close(4000, 'bye')
    expect(client.close_code).to eq(4000)
    expect { client << 'late' }.to raise_error(Polyphony::WebSocket::ClosedError)
  end

  it 'does the close handshake both ways and reports the peer code' do
    reader = spin { [server.recv, server.close_code, server.close_reason] }
    snooze
    client.close(1001, 'going')
    expect(reader.await).to eq([nil, 1001, 'going'])
    expect(client).to be_closed
    expect(pair[0]).to be_closed # the server side closes its socket after the handshake
  end

  it 'cuts a peer that never answers its Close frame, also while another fiber reads' do
    ws = described_class.new(pair[0], close_timeout: 0.1)
    reader = spin { ws.recv }
    snooze
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    ws.close(1001, 'bye') # the peer (pair[1]) reads nothing and answers nothing
    expect(reader.await).to be_nil
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be_between(0.09, 1)
    expect(ws).to be_closed
    expect(pair[0]).to be_closed
    # The same with no reader: close itself waits, then gives up.
    a, _b = UNIXSocket.pair
    lone = described_class.new(a, close_timeout: 0.1)
    lone.close
    expect(lone).to be_closed
  end

  it 'closes with 1002 a peer that breaks the protocol, and with 1006 one that vanishes' do
    raw = pair[1]
    raw.write("\x81\x02hi") # an unmasked frame from a client
    expect(server.recv).to be_nil
    expect([server.close_code, server.close_reason]).to eq([1002, "a client's frame is not masked"])
    expect(raw.read).to eq("\x88\x20\x03\xEA".b + "a client's frame is not masked".b)

    a, b = UNIXSocket.pair
    ws = described_class.new(a)
    b.close
    expect(ws.recv).to be_nil
    expect(ws.close_code).to eq(1006)
  end

  it 'never interleaves the frames of messages sent by several fibers at once' do
    big = Array.new(4) { |i| (i.to_s * 300_000).b }
    senders = big.map { |message| spin { client << message } }
    received = Array.new(4) { server.recv }
    Fiber.await(*senders)
    expect(received.sort).to eq(big.sort)
  end

  it 'takes bytes read past the handshake as its first frames' do
    frame = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58".b # RFC 6455's masked "Hello"
    ws = described_class.new(pair[0], buffered: frame)
    expect(ws.recv).to eq('Hello')
  end
end
