# frozen_string_literal: true

require 'socket'

# Idle keep-alive connections wait without a fiber (Polyphony::Parking): parked after a short
# pause, served again when the client sends, closed after --timeout or at a stop, and nothing
# a client sends is lost on the way.
RSpec.describe 'tipi: idle keep-alive connections' do
  REQUEST = "GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"

  after { @tipi&.stop }

  def start(*args)
    @tipi = TipiProcess.new('-w', '1', '-l', '127.0.0.1:0', *args, TIPI_APP)
  end

  # One response read off `socket` (a Content-Length one): its status line and body.
  def response(socket)
    head = +''
    head << socket.readpartial(1) until head.end_with?("\r\n\r\n")
    length = head[/content-length: (\d+)/i, 1].to_i
    [head.lines.first.chomp, length.zero? ? '' : socket.read(length)]
  end

  def stats
    socket = TCPSocket.new('127.0.0.1', @tipi.port)
    socket.write("GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response(socket).last.split.to_h { |pair| pair.split('=').then { |k, v| [k.to_sym, v.to_i] } }
  ensure
    socket&.close
  end

  it 'parks them (no fiber each), serves them again when they send, and loses nothing' do
    start
    clients = Array.new(300) { TCPSocket.new('127.0.0.1', @tipi.port) }
    clients.each { |c| c.write(REQUEST) }
    expect(clients.map { |c| response(c).first }.uniq).to eq(['HTTP/1.1 200 OK'])
    expect(wait_for { stats[:parked] == 300 }).to be(true), "parked: #{stats}"
    # (At most the spare fibers kept for new connections: 64, not one per connection.)
    expect(stats[:fibers]).to be <= 76

    # Pipelined, split at every byte, or sent at once after the pause: all answered, in order.
    pipelined = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none" \
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
    clients[0].write(pipelined)
    expect([response(clients[0]), response(clients[0])]).to eq([['HTTP/1.1 200 OK', 'one'], ['HTTP/1.1 200 OK', 'two']])
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nslowl".each_char do |char|
      clients[1].write(char)
      sleep 0.002
    end
    expect(response(clients[1])).to eq(['HTTP/1.1 200 OK', 'slowl'])
    clients.drop(2).each_with_index { |c, i| c.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: #{i.to_s.size}\r\n\r\n#{i}") }
    expect(clients.drop(2).map { |c| response(c).last }).to eq(Array.new(298) { |i| i.to_s })

    # Parked again after the pause; a client that leaves takes its connection with it, and
    # costs no fiber (no switch to one, no read buffer): fewer switches than clients for them
    # all (some 20, plus the server's timers and these stats requests while it takes), where
    # serving each on a fiber took three each.
    expect(wait_for { stats[:parked] == 300 }).to be(true), "parked: #{stats}"
    switches = stats[:switches]
    clients.first(200).each(&:close)
    expect(wait_for { stats[:parked] == 100 }).to be(true), "parked: #{stats}"
    expect(stats[:switches] - switches).to be < 200
  ensure
    clients&.each(&:close)
  end

  it 'holds few fibers at once through a burst of clients, or a flood, that send a request then pause' do
    Process.setrlimit(:NOFILE, Process.getrlimit(:NOFILE)[1])
    start
    # One after the other, as fast as this client goes; then 500 at once: all connected, all
    # their requests sent, then all their responses read.
    clients = Array.new(300) { TCPSocket.new('127.0.0.1', @tipi.port).tap { |c| c.write(REQUEST) && response(c) } }
    flood = Array.new(500) { TCPSocket.new('127.0.0.1', @tipi.port) }
    flood.each { |c| c.write(REQUEST) }
    expect(flood.map { |c| response(c).first }.uniq).to eq(['HTTP/1.1 200 OK'])
    clients.concat(flood)
    # Ruby keeps the stacks of the most fibers ever alive at once (each spun one with its
    # launcher's): that most, not one per connection. (With a fiber waiting per connection
    # until the next look for idle ones, 529 to 551 were alive at once.)
    expect(stats[:launchers]).to be <= 256
    expect(wait_for { stats[:parked] == 800 }).to be(true), "parked: #{stats}"
    clients.each_with_index { |c, i| c.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: #{i.to_s.size}\r\n\r\n#{i}") }
    expect(clients.map { |c| response(c).last }).to eq(Array.new(800) { |i| i.to_s })
    expect(stats[:launchers]).to be <= 256
  ensure
    clients&.each(&:close)
    flood&.each(&:close)
  end

  it 'serves on while a crowd of connections keep their fibers for fibers their app left running' do
    start
    # Each leaves a fiber running (the connection's child), so each connection keeps its fiber:
    # 140 fibers alive, no spare: a crowd, whose next reads are not let wait.
    clients = []
    served = 0
    70.times do
      clients << (client = TCPSocket.new('127.0.0.1', @tipi.port))
      client.write("GET /fiber HTTP/1.1\r\nHost: x\r\n\r\n")
      break unless client.wait_readable(10) # (a worker stuck at the crowd answers no more)

      served += 1 if response(client).first == 'HTTP/1.1 200 OK'
    end
    expect(served).to eq(70)
    sleep 0.2
    started = monotonic
    fresh = TCPSocket.new('127.0.0.1', @tipi.port)
    fresh.write(REQUEST)
    expect(fresh.wait_readable(10) && response(fresh).first).to eq('HTTP/1.1 200 OK')
    expect(monotonic - started).to be < 2
    # Those connections are served on too.
    clients.first(3).each { |c| c.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok") }
    expect(clients.first(3).map { |c| c.wait_readable(10) && response(c).last }).to eq(%w[ok ok ok])
  ensure
    clients&.each(&:close)
    fresh&.close
  end

  it 'parks TLS connections too, and serves them again' do
    require 'openssl'
    start('-s', '127.0.0.1:0') # (and its self-signed certificate)
    port = @tipi.lines.grep(%r{listening on https://}).first[/:(\d+) /, 1].to_i
    context = OpenSSL::SSL::SSLContext.new
    context.verify_mode = OpenSSL::SSL::VERIFY_NONE
    clients = Array.new(20) do
      OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), context).tap do |ssl|
        ssl.sync_close = true
        ssl.connect
      end
    end
    clients.each { |c| c.write(REQUEST) && response(c) }
    expect(wait_for { stats[:parked] == 20 }).to be(true), "parked: #{stats}"
    clients.each_with_index { |c, i| c.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: #{i.to_s.size}\r\n\r\n#{i}") }
    expect(clients.map { |c| response(c).last }).to eq(Array.new(20) { |i| i.to_s })
  ensure
    clients&.each(&:close)
  end

  it 'closes a parked connection after --timeout, and all of them at a graceful stop' do
    start('--timeout', '1')
    idle = TCPSocket.new('127.0.0.1', @tipi.port)
    idle.write(REQUEST)
    response(idle)
    started = monotonic
    expect(idle.wait_readable(5) && idle.read(1)).to be_nil # the server closed it
    expect(monotonic - started).to be_between(0.9, 3.5)

    others = Array.new(3) { TCPSocket.new('127.0.0.1', @tipi.port) }
    others.each { |c| c.write(REQUEST) && response(c) }
    expect(wait_for { stats[:parked] == 3 }).to be(true)
    @tipi.signal('TERM')
    expect(others.map { |c| c.wait_readable(3) && c.read(1) }).to eq([nil, nil, nil])
  ensure
    others&.each(&:close)
    idle&.close
  end
end
