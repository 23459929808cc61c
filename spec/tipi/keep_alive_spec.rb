# frozen_string_literal: true

require 'socket'

# Array-bodied responses (the common case, served in H1P's loop with the Connection field the
# request and the app call for): the connection goes on, or ends, as the response says; what
# the loop cannot serve goes to Tipi's Ruby path and back.
RSpec.describe 'tipi keep-alive' do
  PLAIN_APP = File.join(ROOT, 'spec', 'fixtures', 'tipi', 'plain.ru')

  before(:all) do
    @tipi = TipiProcess.new('-q', '--timeout', '1', '-l', '127.0.0.1:0', PLAIN_APP)
  end

  after(:all) do
    @tipi.stop
  end

  # Sends `requests` on a new connection, its sending side left open; returns what came back
  # and whether the server closed the connection (within `wait` seconds of the last byte; the
  # first may take 5 s, on a busy machine).
  def exchange(requests, wait: 0.3, port: @tipi.port)
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write(requests)
    received = +''
    while IO.select([socket], nil, nil, received.empty? ? [wait, 5].max : wait)
      chunk = socket.read_nonblock(65_536, exception: false)
      return [received, true] if chunk.nil?

      received << chunk unless chunk == :wait_readable
    end
    [received, false]
  ensure
    socket&.close
  end

  it 'answers pipelined requests in order and keeps the connection' do
    response, closed = exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(response).to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nGET /a" \
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nGET /b")
    expect(closed).to be(false)
  end

  it 'closes after a request that asks for it, or an app that does' do
    response, closed = exchange("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n", wait: 5)
    expect(response).to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nGET /a")
    expect(closed).to be(true)
    response, closed = exchange("GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n", wait: 5)
    expect(response).to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
    expect(closed).to be(true)
  end

  it 'keeps an HTTP/1.0 connection only when asked, and says so' do
    response, closed = exchange("GET /a HTTP/1.0\r\n\r\n", wait: 5)
    expect(response).to include("\r\nConnection: close\r\n")
    expect(closed).to be(true)
    response, closed = exchange("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    expect(response).to include("\r\nConnection: keep-alive\r\n").and end_with("\r\n\r\nGET /a")
    expect(closed).to be(false)
  end

  it "answers HEAD with the length a GET would get, and no body" do
    response, = exchange("HEAD /abc HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(response).to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n")
  end

  it 'hands a request with a body, or a streamed response, to the Ruby path and goes on' do
    response, closed = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbodyGET /a HTTP/1.1\r\nHost: x\r\n\r\n" \
                                "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(response).to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbody" \
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nGET /a" \
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" \
                           "1\r\na\r\n1\r\nb\r\n0\r\n\r\n" \
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nGET /b")
    expect(closed).to be(false)
  end

  it 'sends what it writes at once: connections have TCP_NODELAY (no wait for a delayed ACK)' do
    # (Tipi sets it on the listener and checks on a first connection that it carries over.)
    2.times do
      response, closed = exchange("GET /nodelay HTTP/1.1\r\nHost: x\r\n\r\n")
      expect([response.split("\r\n\r\n", 2).last, closed]).to eq(['1', true])
    end
  end

  it 'cuts a head that does not arrive within the timeout, first or between requests' do
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    response, closed = exchange("GET /a HTTP/1.1\r\nHo", wait: 5)
    expect([response, closed]).to eq(['', true])
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be_between(0.9, 3)
    response, closed = exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", wait: 5)
    expect(response).to end_with('GET /a')
    expect(closed).to be(true) # idle after its request
  end

  it 'writes the access log line of each request it serves' do
    tipi = TipiProcess.new('-l', '127.0.0.1:0', PLAIN_APP)
    response, = exchange("GET /logged?x=1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n", port: tipi.port)
    expect(response).to include('GET /logged')
    expect(tipi.read_until(/logged/))
      .to match(%r{\A127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /logged\?x=1 HTTP/1\.1" 200 \d+ \d+\.\d{4}\n\z})
    expect(tipi.read_until(/HEAD/)).to match(%r{\A127\.0\.0\.1 - - \[.*\] "HEAD /b HTTP/1\.1" 200 })
  ensure
    tipi&.stop
  end

  it 'closes an idle connection at a graceful stop, and the server exits' do
    tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', PLAIN_APP)
    socket = TCPSocket.new('127.0.0.1', tipi.port)
    socket.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(socket.readpartial(1000)).to end_with('GET /a')
    expect(tipi.stop.success?).to be(true)
    expect(IO.select([socket], nil, nil, 5) && socket.read).to eq('')
  ensure
    socket&.close
  end
end
