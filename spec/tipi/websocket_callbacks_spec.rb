# frozen_string_literal: true

require 'socket'

# WebSockets served by callbacks (ws.on_message): an idle one waits parked, without a fiber,
# and a pooled fiber runs its callback when a message comes; pings, closes by another fiber,
# a failing callback and a graceful stop all still work.
RSpec.describe 'tipi: WebSockets served by callbacks' do
  APP = File.join(ROOT, 'spec', 'fixtures', 'tipi', 'websocket.rb')
  HANDSHAKE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" \
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

  before { @tipi = TipiProcess.new('-w', '1', '-l', '127.0.0.1:0', APP) }
  after { @tipi.stop unless @tipi.stopped? }

  def connect(query = '')
    Polyphony::WebSocket.connect("ws://127.0.0.1:#{@tipi.port}/callbacks#{query}", ping_interval: nil)
  end

  # The worker's figures: parked connections, live spun fibers, open WebSockets, close codes.
  def stats
    body = @tipi.raw("GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").split("\r\n\r\n", 2).last
    body.split.to_h { |pair| pair.split('=', 2) }.transform_keys(&:to_sym)
  end

  it 'parks idle ones (no fiber each), runs the callback as messages come, and loses nothing' do
    sockets = Array.new(200) { connect }
    sockets.each_with_index { |ws, i| ws << "first #{i}" }
    expect(sockets.map(&:recv)).to eq(Array.new(200) { |i| "first #{i}" })
    expect(wait_for { stats[:parked] == '200' }).to be(true), "stats: #{stats}"
    # (At most the spare fibers kept for new connections: 64, not one per WebSocket.)
    expect(stats[:fibers].to_i).to be <= 76

    # After the pause: each served again, a large message (many reads) and a binary one whole.
    large = 'x' * 300_000
    sockets[0] << large
    sockets[1] << "\x00\xFF".b
    expect([sockets[0].recv, sockets[1].recv]).to eq([large, "\x00\xFF".b])
    sockets.drop(2).each_with_index { |ws, i| ws << "again #{i}" }
    expect(sockets.drop(2).map(&:recv)).to eq(Array.new(198) { |i| "again #{i}" })
    expect(wait_for { stats[:parked] == '200' }).to be(true), "stats: #{stats}"

    # Closed by another fiber (the first one's callback) while parked: each gets its Close
    # frame, answers, and is gone; on_close runs for each.
    sockets[0] << 'kick'
    expect(sockets[0].recv).to eq('kick')
    expect(sockets.drop(1).map { |ws| [ws.recv, ws.close_code, ws.close_reason] }.uniq).to eq([[nil, 4000, 'kicked']])
    expect(wait_for { stats[:closed] == '4000:199' }).to be(true), "stats: #{stats}"

    # A callback that raises: close code 1011, the error logged, the server goes on.
    sockets[0] << 'fail'
    expect([sockets[0].recv, sockets[0].close_code]).to eq([nil, 1011])
    expect(@tipi.read_until(/callback failure/)).to include('RuntimeError')
    expect(wait_for { stats.values_at(:open, :parked, :closed) == %w[0 0 1011:1,4000:199] }).to be(true),
                                                                                                "stats: #{stats}"
  ensure
    sockets&.each { |ws| ws.io.close unless ws.io.closed? }
  end

  it 'runs the callbacks on the handler\'s fiber over HTTP/2 (a stream has no socket to park)' do
    expect(h2_client('websocket', @tipi.port, '/callbacks')).to include('status' => '200', 'echo' => 'hello over h2',
                                                                       'close' => [0x88, 2, 0x03, 0xe8], 'ended' => true)
    expect(wait_for { stats[:closed] == '1000:1' }).to be(true), "stats: #{stats}"
  end

  it 'keeps one without pings parked past --timeout, which is for idle HTTP connections' do
    @tipi.stop
    @tipi = TipiProcess.new('-w', '1', '-l', '127.0.0.1:0', '--timeout', '1', APP)
    ws = connect
    ws << 'before'
    expect(ws.recv).to eq('before')
    expect(wait_for { stats[:parked] == '1' }).to be(true), "stats: #{stats}"
    sleep 2 # (the sweeper closes idle keep-alive connections after 1 to 1.25 s)
    ws << 'after'
    expect(ws.recv).to eq('after')
    expect(stats[:closed]).to eq('')
  end

  it 'goes on when the handler raises after the upgrade, and when on_close raises' do
    ws = Polyphony::WebSocket.connect("ws://127.0.0.1:#{@tipi.port}/callbacks_then_raise", ping_interval: nil)
    expect(@tipi.read_until(/handler failure after the upgrade/)).to include('RuntimeError')
    ws << 'served'
    expect(ws.recv).to eq('served')
    ws.close
    ws = connect
    ws << 'fail on close'
    expect(ws.recv).to eq('fail on close')
    ws.close
    expect(ws.close_code).to eq(1000)
    expect(@tipi.read_until(/on_close failure/)).to include('WebSocket#on_close: RuntimeError')
    expect(wait_for { stats.values_at(:open, :closed) == %w[0 1000:1] }).to be(true), "stats: #{stats}"
    expect(@tipi.stop).to be_success
  end

  # A client that keeps its socket full of small messages: each read brings thousands, and the
  # handler's fiber would find the next read ready at once, forever.
  FLOOD = <<~'RUBY'
    require 'socket'
    port, path, seconds = ARGV[0].to_i, ARGV[1], ARGV[2].to_f
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    socket.gets("\r\n\r\n")
    Thread.new { loop { socket.readpartial(1 << 20) } rescue nil }
    frames = "\x81\x82\x00\x00\x00\x00hi".b * 5000
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    socket.write(frames) while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
  RUBY

  it 'does not let a client flooding messages hold up the others' do
    # Three times each: on epoll, a new connection's first read, interrupted to park it before
    # epoll had tried it, used to be parked and woken again and again, for up to 6 s, one
    # time in three or so (the driver now tries such a read before giving it up).
    %w[/callbacks /echo].product([1, 2, 3]).each do |path, round|
      flood = spawn(RbConfig.ruby, '-e', FLOOD, @tipi.port.to_s, path, '12', out: File::NULL, err: File::NULL)
      sleep 1 # (flooding)
      started = monotonic
      ws = connect # a handshake, then a message each way, then an HTTP request
      ws << 'through'
      expect(ws.recv).to eq('through')
      expect(stats[:open].to_i).to be >= 1
      # (Some 30-90 ms here; before, all waited for the flood to end.)
      expect(monotonic - started).to be < 2, "#{path}, round #{round}: #{monotonic - started} s"
      ws.close
      Process.kill('KILL', flood)
      Process.wait(flood)
    end
  end

  it 'pings parked ones, cuts those that do not answer, and closes them with 1001 at a stop' do
    ws = connect('?ping=0.1')
    reader = spin { ws.recv } # answers the server's pings while it waits
    expect(wait_for { stats[:parked] == '1' }).to be(true), "stats: #{stats}"
    sleep 0.5 # five ping intervals, parked between them
    expect(ws).to be_open
    ws << 'still here'
    expect(reader.await).to eq('still here')
    reader = spin { ws.recv } # (still answering pings meanwhile)

    # A peer that reads nothing and answers no ping: cut after two intervals.
    silent = TCPSocket.new('127.0.0.1', @tipi.port)
    silent.write("GET /callbacks?ping=0.1 HTTP/1.1\r\nHost: x\r\n#{HANDSHAKE}")
    started = monotonic
    expect(silent.gets("\r\n\r\n")).to start_with('HTTP/1.1 101 Switching Protocols')
    begin
      nil while silent.readpartial(1024) # the pings it never answers, then the end
    rescue EOFError, Errno::ECONNRESET
      expect(monotonic - started).to be_between(0.15, 3)
    end
    expect(wait_for { stats[:closed] == '1006:1' }).to be(true), "stats: #{stats}"

    # A graceful stop: the parked WebSocket gets 1001, and the server exits.
    expect(wait_for { stats[:parked] == '1' }).to be(true), "stats: #{stats}"
    @tipi.signal('TERM')
    expect(reader.await).to be_nil
    expect([ws.close_code, ws.close_reason]).to eq([1001, 'server shutting down'])
    expect(@tipi.stop).to be_success
  ensure
    silent&.close
  end
end
