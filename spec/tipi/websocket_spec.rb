# frozen_string_literal: true

require 'json'
require 'tmpdir'
require 'websocket/driver'

# WebSocket in Tipi: the native upgrade_to_websocket, and Rack apps that hijack the socket
# (websocket-driver, faye-websocket), talked to by real clients: Python's websockets, Ruby's
# websocket-driver, and Polyphony::WebSocket.
RSpec.describe 'tipi serving WebSockets' do
  PYTHON = '/usr/bin/python3' # Debian's, with python3-websockets (not a pyenv one)
  WS_CLIENT = File.join(ROOT, 'spec', 'support', 'ws_client.py')
  FIXTURES = File.join(ROOT, 'spec', 'fixtures', 'tipi')

  def python(*args)
    out, err, status = run_command(PYTHON, WS_CLIENT, *args, limit: 120)
    raise "ws_client.py #{args.join(' ')} failed:\n#{err}" unless status.success?

    JSON.parse(out)
  end

  # Messages through Ruby's websocket-driver as a client (on a plain socket): sends `messages`
  # once open, closes after as many replies; returns the replies and the close code.
  def driver_exchange(url, messages)
    uri = URI(url)
    socket = TCPSocket.new(uri.host, uri.port)
    wrapper = Struct.new(:url, :socket) do
      def write(data)
        socket.write(data)
      end
    end.new(url, socket)
    driver = WebSocket::Driver.client(wrapper)
    replies = []
    code = nil
    driver.on(:open) { messages.each { |m| m.is_a?(Array) ? driver.binary(m) : driver.text(m) } }
    driver.on(:message) do |event|
      replies << event.data
      driver.close if replies.size == messages.size
    end
    driver.on(:close) { |event| code = event.code }
    driver.start
    driver.parse(socket.readpartial(65_536)) until code
    [replies, code]
  rescue EOFError
    [replies, code]
  ensure
    socket&.close
  end

  def expect_echo_from_clients(port)
    seen = python('echo', "ws://127.0.0.1:#{port}/echo")
    expect(seen).to include('text' => 'héllo', 'binary' => ['bytes', 256_000, true],
                            'fragmented' => 'fragmented message', 'pong' => true, 'close_code' => 1000)
    replies, code = driver_exchange("ws://127.0.0.1:#{port}/echo", ['über', [0, 255, 1], 'x' * 70_000])
    expect(replies).to eq(['über', [0, 255, 1], 'x' * 70_000])
    expect(code).to eq(1000)
    seen
  end

  context 'with the native API (req.upgrade_to_websocket)' do
    before(:all) do
      @tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(FIXTURES, 'websocket.rb'))
      @port = @tipi.port
    end

    after(:all) { @tipi.stop }

    it 'echoes text, binary and fragmented messages, answers pings, agrees on a subprotocol' do
      expect(expect_echo_from_clients(@port)['subprotocol']).to eq('chat')
      expect(@tipi.read_until(%r{GET /echo})).to include('101')
    end

    it 'closes with the code the handler gives, 1011 when it raises, 1009 for a message over its limit' do
      ws = Polyphony::WebSocket.connect("ws://127.0.0.1:#{@port}/greet")
      expect(Array.new(4) { ws.recv }).to eq(['greeting 0', 'greeting 1', 'greeting 2', nil])
      expect([ws.close_code, ws.close_reason]).to eq([4001, 'enough'])
      ws = Polyphony::WebSocket.connect("ws://127.0.0.1:#{@port}/fail")
      expect(ws.recv).to be_nil
      expect(ws.close_code).to eq(1011)
      expect(@tipi.read_until(/handler failure/)).to include('RuntimeError')
      expect(python('limit', "ws://127.0.0.1:#{@port}/small"))
        .to eq('close_code' => 1009, 'reason' => 'message larger than the limit')
    end

    it 'refuses what is no valid handshake: 400, and 426 naming version 13' do
      handshake = lambda do |fields|
        @tipi.raw("GET /echo HTTP/1.1\r\nHost: x\r\n#{fields}Connection: close\r\n\r\n")
      end
      key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      expect(handshake.call('')).to start_with("HTTP/1.1 400 Bad Request\r\n")
      expect(handshake.call("Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\n#{key}"))
        .to start_with("HTTP/1.1 400 Bad Request\r\n") # Connection: close has no "upgrade"
      response = @tipi.raw("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                           "Sec-WebSocket-Version: 8\r\n#{key}\r\n")
      expect(response).to start_with("HTTP/1.1 426 Upgrade Required\r\n")
      expect(response).to include("Sec-WebSocket-Version: 13\r\n")
      response = @tipi.raw("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n")
      expect(response).to start_with("HTTP/1.1 400 Bad Request\r\n")
      expect(response).to include('Bad Sec-WebSocket-Key')
    end

    it 'keeps a reading peer alive with pings and cuts one that does not answer' do
      ws = Polyphony::WebSocket.connect("ws://127.0.0.1:#{@port}/ping")
      reader = spin { ws.recv } # answers the server's pings while it waits
      sleep 0.4 # eight ping intervals
      expect(ws).to be_open
      ws << 'still here'
      expect(reader.await).to eq('still here')
      ws.close
      # A peer that completed the handshake and then reads nothing: cut after two intervals.
      silent = TCPSocket.new('127.0.0.1', @port)
      silent.write("GET /ping HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect(silent.gets("\r\n\r\n")).to start_with('HTTP/1.1 101 Switching Protocols')
      nil while silent.readpartial(1024) # the pings it never answers, then the end
    rescue EOFError
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be_between(0.09, 2)
    ensure
      silent&.close
    end

    it 'speaks WebSocket over HTTP/2 by extended CONNECT (RFC 8441)' do
      expect(h2_client('websocket', @port)).to eq('enabled' => 1, 'status' => '200', 'protocol' => 'chat',
                                                  'echo' => 'hello over h2', 'close' => [0x88, 2, 0x03, 0xe8],
                                                  'ended' => true)
      expect(@tipi.read_until(%r{CONNECT /echo HTTP/2})).to include('200')
    end

    it 'holds 1,000 WebSockets at once, each echoing' do
      result = python('many', "ws://127.0.0.1:#{@port}/echo", '1000')
      expect(result).to eq('held' => 1000, 'echoed' => 1000, 'close_codes' => [1000])
      rss = File.read("/proc/#{@tipi.pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i
      expect(rss).to be < 400_000 # KiB; about 120 MB here
    end
  end

  it 'closes WebSockets with 1001 on a graceful stop, and exits' do
    tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(FIXTURES, 'websocket.rb'))
    ws = Polyphony::WebSocket.connect("ws://127.0.0.1:#{tipi.port}/echo")
    ws << 'before'
    expect(ws.recv).to eq('before')
    tipi.signal('TERM')
    expect(ws.recv).to be_nil
    expect([ws.close_code, ws.close_reason]).to eq([1001, 'server shutting down'])
    expect(tipi.stop).to be_success
  end

  it 'speaks wss:// on an HTTPS listener' do
    Dir.mktmpdir do |dir|
      cert, key = Polyphony::TLS.self_signed(['localhost'])
      File.write(cert_file = File.join(dir, 'cert.pem'), cert)
      File.write(key_file = File.join(dir, 'key.pem'), key)
      tipi = TipiProcess.new('-s', '127.0.0.1:0', '--cert', cert_file, '--key', key_file,
                             File.join(FIXTURES, 'websocket.rb'))
      port = tipi.lines.grep(%r{listening on https://}).first[%r{https://[^:]+:(\d+)}, 1]
      ws = Polyphony::WebSocket.connect("wss://localhost:#{port}/echo", ca_file: cert_file)
      ws << 'over TLS'
      expect(ws.recv).to eq('over TLS')
      ws.close
      expect(ws.close_code).to eq(1000)
      # Served by callbacks (parked while idle), over TLS too.
      ws = Polyphony::WebSocket.connect("wss://localhost:#{port}/callbacks", ca_file: cert_file)
      ws << 'by callbacks'
      expect(ws.recv).to eq('by callbacks')
      sleep 0.2 # (parked meanwhile)
      ws << 'again'
      expect(ws.recv).to eq('again')
      ws.close
      expect(ws.close_code).to eq(1000)
      expect(tipi.stop).to be_success
    end
  end

  context 'with Rack apps that hijack the socket, unmodified' do
    %w[websocket_driver faye].each do |app|
      it "serves #{app}.ru" do
        tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(FIXTURES, "#{app}.ru"))
        expect_echo_from_clients(tipi.port)
        if app == 'faye' # its reactor thread is stopped before the process exits
          tipi.signal('TERM')
          expect(tipi.read_until(/reactor running at exit/)).to include('false')
        end
        expect(tipi.stop).to be_success
      end
    end
  end
end
