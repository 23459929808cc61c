# frozen_string_literal: true

require 'socket'
require 'timeout'
require 'net/http'

RSpec.describe 'I/O on fibers' do
  def fd_count
    Dir.children('/proc/self/fd').size
  end

  it 'runs stock IO and socket methods concurrently in spun fibers' do
    reader, writer = IO.pipe
    server = TCPServer.new('127.0.0.1', 0)
    echo = spin do
      conn = server.accept
      line = conn.gets
      conn.puts line.upcase
      conn.close
      :echoed
    end
    client = spin do
      socket = TCPSocket.new('127.0.0.1', server.addr[1])
      socket.puts 'ping'
      socket.gets.tap { socket.close }
    end
    piped = spin { reader.read(5) }
    spin { sleep 0.02; writer << 'hello' }
    expect(Fiber.await(echo, client, piped)).to eq([:echoed, "PING\n", 'hello'])
  ensure
    [reader, writer, server].each { |io| io&.close }
  end

  it "lets the root fiber wait in the backend with Polyphony's IO methods" do
    server = TCPServer.new('127.0.0.1', 0)
    acceptor = spin do
      server.accept_loop do |conn|
        spin { conn.read_loop { |data| conn.poly_write(data.upcase) }; conn.close }
      end
    end
    results = Array.new(3) do |i|
      spin do
        socket = TCPSocket.new('127.0.0.1', server.addr[1])
        socket.poly_write("hi #{i}")
        socket.close_write
        socket.read.tap { socket.close }
      end
    end
    expect(Fiber.await(results)).to eq(['HI 0', 'HI 1', 'HI 2'])

    a, b = UNIXSocket.pair
    spin { 3.times { |i| sleep 0.01; b.poly_write("m#{i} ") }; b.close }
    received = []
    a.read_loop { |data| received << data } # in the root fiber, while the writer runs
    expect(received.join).to eq('m0 m1 m2 ')
    expect(a.poly_wait(IO::READABLE, 0.01)).to eq(a) # EOF is readable
  ensure
    acceptor&.stop
    server&.close
  end

  it "reads and writes Ruby's IO buffers through the scheduler's io_read and io_write hooks" do
    calls = Hash.new(0)
    trace = TracePoint.new(:call) { |tp| calls[tp.method_id] += 1 if tp.defined_class == Polyphony::Scheduler }
    reader, writer = IO.pipe
    fiber = spin { [reader.read(5), reader.gets] }
    spin { sleep 0.01; writer.write('hello'); writer.puts('line') }
    trace.enable { expect(fiber.await).to eq(["hello", "line\n"]) }
    expect(calls[:io_read]).to be >= 2
    expect(calls[:io_write]).to be >= 1
  ensure
    [reader, writer].each { |io| io&.close }
  end

  it 'feeds what it reads to a receiver' do
    a, b = UNIXSocket.pair
    b << 'abc'
    b.close
    sizes = []
    a.feed_loop(->(data) { data.size }) { |size| sizes << size }
    expect(sizes.sum).to eq(3)
  end

  it 'parks fibers on Thread::Queue, Mutex and ConditionVariable, woken from other threads' do
    queue = Thread::Queue.new
    mutex = Mutex.new
    ticks = []
    popper = spin { queue.pop }
    ticker = spin { 3.times { |i| sleep 0.01; ticks << i } }
    Thread.new { Kernel.sleep 0.05; queue << :from_thread }
    expect(popper.await).to eq(:from_thread)
    ticker.await
    expect(ticks).to eq([0, 1, 2]) # ticked while the popper waited

    holder = spin { mutex.synchronize { sleep 0.03; :held } }
    waiter = spin { sleep 0.005; mutex.synchronize { :got_it } }
    expect(Fiber.await(holder, waiter)).to eq(%i[held got_it])

    condition = ConditionVariable.new
    ready = false
    signalled = spin { mutex.synchronize { condition.wait(mutex) until ready; :signalled } }
    Thread.new { Kernel.sleep 0.02; mutex.synchronize { ready = true; condition.signal } }
    expect(signalled.await).to eq(:signalled)
  end

  it 'runs Timeout.timeout, Process.wait and DNS lookups without blocking other fibers' do
    reader, writer = IO.pipe
    timed_out = spin { Timeout.timeout(0.05) { reader.read } rescue $!.class }
    pid = spawn('sleep', '0.05')
    waited = spin { Process.wait(pid); $?.success? }
    resolved = spin { Addrinfo.getaddrinfo('localhost', 80).any? }
    ticks = spin { 5.times.map { sleep 0.005 } .size }
    expect(Fiber.await(timed_out, waited, resolved, ticks)).to eq([Timeout::Error, true, true, 5])
  ensure
    [reader, writer].each { |io| io&.close }
  end

  it 'runs Net::HTTP in a fiber against a server in another fiber' do
    server = TCPServer.new('127.0.0.1', 0)
    acceptor = spin do
      server.accept_loop do |conn|
        spin do
          conn.gets("\r\n\r\n")
          conn.poly_write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
          conn.close
        end
      end
    end
    body = spin { Net::HTTP.get(URI("http://127.0.0.1:#{server.addr[1]}/")) }.await
    expect(body).to eq('ok')
  ensure
    acceptor&.stop
    server&.close
  end

  it 'never drops a connection when a fiber in poly_accept(polled: true) is stopped' do
    server = TCPServer.new('127.0.0.1', 0)
    clients = []
    accepted = 0
    200.times do
      acceptor = spin do
        server.poly_accept(polled: true).close
        accepted += 1
      end
      snooze # the acceptor waits for readiness
      clients << TCPSocket.new('127.0.0.1', server.addr[1])
      acceptor.stop
    end
    # Every connection is either accepted by an acceptor or still waiting in the backlog.
    accepted += 1 while IO.select([server], nil, nil, 0.5) && server.accept.close.nil?
    expect(accepted).to eq(200)
  ensure
    clients&.each(&:close)
    server&.close
  end

  it 'cancels 10,000 accepts and reads, closing what a cancelled accept got: no fd leaks' do
    server = TCPServer.new('127.0.0.1', 0)
    a, b = UNIXSocket.pair
    GC.start
    before = fd_count
    clients = []
    10_000.times do |i|
      accepting = spin do
        fd = Polyphony.__io_accept__(server.fileno, false)
        IO.for_fd(fd).close if fd.is_a?(Integer)
      end
      reading = spin { Polyphony.__io_read__(a.fileno, 4096, nil) }
      snooze # both ops are now in the kernel
      # Every 10th time a client connects just before the cancel: the accept may complete
      # with nobody left to take it, and the backend must close that connection.
      clients << TCPSocket.new('127.0.0.1', server.addr[1]) if (i % 10).zero?
      accepting.stop
      reading.stop
      clients.shift.close while clients.size > 20
    end
    clients.each(&:close)
    sleep 0.05 # the cancels' completions come back
    expect(Polyphony.__stats__[:ops]).to eq(0)
    GC.start
    expect(fd_count).to eq(before)
  ensure
    [server, a, b].each { |io| io&.close }
  end
end
