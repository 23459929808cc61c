# frozen_string_literal: true

require 'json'
require 'digest'
require 'socket'
require 'h1p'

# The real `tipi` command on 127.0.0.1, talked to with curl and raw sockets.
RSpec.describe 'tipi' do
  before(:all) do
    @tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru'))
    @port = @tipi.port
  end

  after(:all) do
    @tipi.stop
  end

  def curl(*args)
    out, _err, status = run_command('curl', '-s', '--max-time', '10', *args)
    expect(status).to be_success
    out
  end

  def url(path)
    "http://127.0.0.1:#{@port}#{path}"
  end

  def raw(request)
    @tipi.raw(request)
  end

  it 'gives the app a complete Rack env, under Rack::Lint' do
    env = JSON.parse(curl('-H', 'X-Test: yes', url('/some/path?a=1&b=2')))
    expect(env).to include(
      'REQUEST_METHOD' => 'GET', 'SCRIPT_NAME' => '', 'PATH_INFO' => '/some/path', 'QUERY_STRING' => 'a=1&b=2',
      'SERVER_NAME' => '127.0.0.1', 'SERVER_PORT' => @port.to_s, 'SERVER_PROTOCOL' => 'HTTP/1.1',
      'REMOTE_ADDR' => '127.0.0.1', 'HTTP_HOST' => "127.0.0.1:#{@port}", 'HTTP_X_TEST' => 'yes',
      'rack.url_scheme' => 'http'
    )
    # REMOTE_ADDR is the client's address (any of 127/8 reaches a loopback listener).
    client = Socket.tcp('127.0.0.1', @port, '127.0.0.5')
    client.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(client.read).to include('"REMOTE_ADDR":"127.0.0.5"')
  ensure
    client&.close
  end

  it 'reads request bodies (Content-Length and chunked)' do
    expect(curl('--data-binary', 'hello body', url('/echo'))).to eq('hello body')
    expect(curl('-H', 'Transfer-Encoding: chunked', '--data-binary', 'chunked body', url('/echo'))).to eq('chunked body')
  end

  it 'streams the request body into rack.input (gets, each, read, rewind)' do
    body = (1..500).map { |i| "line #{i}\n" }.join
    expect(curl('-H', 'Transfer-Encoding: chunked', '--data-binary', body, url('/lines')))
      .to eq("line 1|500|#{body.bytesize}|\"\"")
    socket = TCPSocket.new('127.0.0.1', @port)
    socket.write("POST /lines HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\nConnection: close\r\n\r\nfirst\n")
    sleep 0.1 # the rest arrives later: the app waits for it in gets/each
    socket.write("second\n\n")
    expect(socket.read).to end_with("first|3|14|\"\"")
  end

  it 'streams a body of unknown length chunked, and to an HTTP/1.0 client as it comes, then closes' do
    head = raw("GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(head).to include("Transfer-Encoding: chunked\r\n")
    expect(curl(url('/stream'))).to eq("part 0\npart 1\npart 2\n")
    # HTTP/1.0 has no chunked coding: the end of the connection ends the body, also for a
    # client that asked to keep it alive (the second request gets no answer).
    response = raw("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /a HTTP/1.0\r\n\r\n")
    head, body = response.split("\r\n\r\n", 2)
    expect(head).to include("\r\nConnection: close")
    expect(head).not_to include('Transfer-Encoding', 'Content-Length', 'keep-alive')
    expect(body).to eq("part 0\npart 1\npart 2\n")
    expect(curl('--http1.0', url('/stream'))).to eq("part 0\npart 1\npart 2\n")
  end

  it 'keeps connections alive and answers pipelined requests in order' do
    response = raw("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n" \
                   "xyzGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(response.scan(%r{HTTP/1.1 200 OK}).size).to eq(3)
    expect(response).to include("\r\n\r\nxyz")
    expect(response.index('"/a"')).to be < response.index('"/c"')
  end

  it 'serves a new connection on a spare fiber with nothing left of the last one but its ivars' do
    peers = %w[127.0.0.1 127.0.0.5 127.0.0.1 127.0.0.5]
    seen = peers.map { |peer| JSON.parse(curl('--interface', peer, '-H', 'Connection: close', url('/fiber'))) }
    # Each connection's fiber is free for the next once it closes (curl starts well after that),
    # and so is its Tipi::Connection, which then has the new peer's address.
    expect(seen.map { |s| s['fiber'] }.uniq.size).to be < seen.size
    expect(seen.map { |s| s['remote_addr'] }).to eq(peers)
    # Its fiber-local variables start empty; fibers the app spun and left running ended with
    # their connection.
    expect(seen.map { |s| s['local'] }).to all(be_nil)
    expect(seen.map { |s| s['left_running'] }).to all(eq(0))
  end

  it 'reads nothing more from a request\'s rack.input once its response is sent' do
    # Kept by the app unread, it must not read a later request's body: on a connection that
    # serves one socket after another, that can be another client's.
    curl('-H', 'Connection: close', '--data-binary', 'first body', url('/stash'))
    expect(curl('-H', 'Connection: close', '--data-binary', 'second body', url('/stashed'))).to eq('|second body')
  end

  it 'hijacks nothing through an env kept from a connection that has ended' do
    curl('-H', 'Connection: close', url('/keep-env'))
    expect(curl('-H', 'Connection: close', url('/stale-hijack'))).to eq('rack.hijack called after its connection ended')
    # The same from a connection served meanwhile by another fiber, while the ended one's waits
    # as a spare (not renewed yet).
    other = TCPSocket.new('127.0.0.1', @port)
    parser = H1P::Parser.new(other, :client)
    other.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(parser.parse_headers[':status']).to eq(200)
    parser.read_body
    curl('-H', 'Connection: close', url('/keep-env'))
    other.write("GET /stale-hijack HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(parser.parse_headers[':status']).to eq(200)
    expect(parser.read_body).to eq('rack.hijack called after its connection ended')
  ensure
    other&.close
  end

  it 'serves the next connection when the last one left an app\'s fiber reading its body' do
    # The connection's parser is still in use by that reader: the response is sent all the
    # same, the connection then closes, and the one that serves the next socket makes a parser
    # of its own. (Before: a 400 "called from its own source", then the server ended.)
    stale = ['', '?stream'].map do |query|
      socket = TCPSocket.new('127.0.0.1', @port)
      socket.write("POST /stale-reader#{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
      response = +''
      response << socket.readpartial(4096) until response.end_with?('ok') || !socket.wait_readable(5)
      expect(response).to start_with("HTTP/1.1 200 OK\r\n").and include("\r\nConnection: close\r\n")
      expect(response).to end_with("\r\n\r\nok")
      2.times { expect(JSON.parse(curl(url('/next')))['PATH_INFO']).to eq('/next') }
      socket
    end
  ensure
    stale&.each(&:close)
  end

  it 'answers 400 to an HTTP/1.1 request without Host, with two, or with an invalid one (RFC 9112 3.2)' do
    ["GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
     "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
     "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"].each do |request|
      expect(raw(request)).to start_with("HTTP/1.1 400 Bad Request\r\n").and(include('Host')), request
    end
    expect(JSON.parse(raw("GET /ten HTTP/1.0\r\n\r\n").split("\r\n\r\n", 2).last)).to include('PATH_INFO' => '/ten')
  end

  it 'takes path, query and host from an absolute-form target, over Host (RFC 9112 3.2.2)' do
    env = JSON.parse(raw("GET http://example.com:8080/a/b?c=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n")
                     .split("\r\n\r\n", 2).last)
    expect(env).to include('PATH_INFO' => '/a/b', 'QUERY_STRING' => 'c=1', 'SERVER_NAME' => 'example.com',
                           'HTTP_HOST' => 'example.com:8080')
    expect(env['SERVER_PORT']).to eq(@port.to_s) # (the listener's: where the request came)
    expect(raw("GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n")).to start_with("HTTP/1.1 400 Bad Request\r\n")
  end

  it 'gives OPTIONS * to the app with an env Rack::Lint accepts' do
    response = raw("OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(response).to start_with("HTTP/1.1 200 OK\r\n") # (Lint's complaint would be a 500)
    expect(JSON.parse(response.split("\r\n\r\n", 2).last)).to include('REQUEST_METHOD' => 'OPTIONS', 'PATH_INFO' => '')
  end

  it 'says Connection: close when it will close, and keep-alive to an HTTP/1.0 client that asked' do
    expect(raw("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).to include("\r\nConnection: close\r\n")
    expect(raw("GET /a HTTP/1.0\r\n\r\n")).to include("\r\nConnection: close\r\n")
    response = raw("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    expect(response.scan(/^Connection: (.*)\r$/).flatten).to eq(%w[keep-alive close])
  end

  it 'sends Rack\'s "\n"-joined header values as repeated fields' do
    head = raw("GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(head).to include("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n")
  end

  it 'answers HEAD without a body' do
    response = raw("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(response).to start_with("HTTP/1.1 200 OK\r\n")
    expect(response).to end_with("\r\n\r\n")
  end

  it 'answers 400 to a malformed request and closes, and 500 when the app fails' do
    response = raw("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    expect(response).to start_with("HTTP/1.1 400 Bad Request\r\n")
    expect(response).to end_with("repeated Content-Length\n")
    out = curl('-i', url('/boom'))
    expect(out).to start_with("HTTP/1.1 500 Internal Server Error\r\n")
    expect(curl(url('/still-up')).size).to be > 0
  end

  it 'hands the socket to the app: full hijack (its fibers run on) and partial hijack' do
    expect(raw("GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")).to eq(
      "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked"
    )
    response = raw("GET /partial HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(response).to start_with("HTTP/1.1 200 OK\r\n")
    head, body = response.split("\r\n\r\n", 2)
    expect(head).to include("Content-Type: text/plain\r\nConnection: close")
    expect(head).not_to match(/Content-Length|Transfer-Encoding|rack\.hijack/i)
    expect(body).to eq('partial hijack')
  end

  it 'takes a 20 MB upload in pieces, rewindable, with the server kept small' do
    body = Random.bytes(20_000_000)
    digest = Digest::SHA256.hexdigest(body)
    peak_kb = -> { File.read("/proc/#{@tipi.pid}/status")[/VmHWM:\s+(\d+)/, 1].to_i }
    before = peak_kb.call
    socket = TCPSocket.new('127.0.0.1', @port)
    socket.write("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n")
    socket.write(body)
    expect(socket.read).to end_with("\r\n\r\n20000000 #{digest} #{digest}")
    expect(peak_kb.call - before).to be < 10_000 # the body went to a temporary file, not to memory
  end

  it 'refuses bad arguments with a clear message' do
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', 'no-such-app.ru')
    expect(status).not_to be_success
    expect(err).to include('no such app file no-such-app.ru')
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-l', 'nowhere', 'examples/hello.ru')
    expect(status).not_to be_success
    expect(err).to include('bad listen address "nowhere"')
  end
end

RSpec.describe 'tipi limits' do
  def start(*options)
    io = TipiProcess.new('-q', '-l', '127.0.0.1:0', *options, File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru'))
    [io, io.port]
  end

  def stop(io)
    io.stop
  end

  it 'answers 413 to a body over --max-body and 431 to headers over their limits' do
    io, port = start('--max-body', '10')
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
    expect(socket.read).to start_with("HTTP/1.1 413 Content Too Large\r\n")
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write("GET / HTTP/1.1\r\nX-Big: #{'v' * 13_000}\r\n\r\n")
    expect(socket.read).to start_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write("GET /#{'a' * 13_000} HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(socket.read).to start_with("HTTP/1.1 414 URI Too Long\r\n")
  ensure
    stop(io) if io
  end

  it 'cuts a client that stops reading its response, and its memory stays bounded' do
    io, port = start('--timeout', '1')
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write("GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
    sleep 4 # not reading: the server's writes stop making progress
    rss = File.read("/proc/#{io.pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i
    received = 0
    closed = begin
      received += socket.readpartial(1 << 20).bytesize while socket.wait_readable(5)
      false
    rescue EOFError, Errno::ECONNRESET
      true
    end
    expect(closed).to be(true)
    expect(received).to be < 30_000_000 # of 100 MB: the rest was never made
    expect(rss).to be < 200_000 # KiB
  ensure
    socket&.close
    stop(io) if io
  end

  it 'cuts a client that sends its head too slowly, or idles between requests (slowloris)' do
    io, port = start('--timeout', '0.3')
    slow = TCPSocket.new('127.0.0.1', port)
    slow.write("GET / HTTP/1.1\r\n")
    started = monotonic
    expect(slow.read).to eq('') # closed, without a response
    expect(monotonic - started).to be_between(0.25, 3)
    idle = TCPSocket.new('127.0.0.1', port)
    idle.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    responses = H1P::Parser.new(idle, :client)
    expect(responses.parse_headers[':status']).to eq(200)
    responses.read_body
    started = monotonic
    expect(responses.parse_headers).to be_nil # closed after the idle timeout
    expect(monotonic - started).to be_between(0.2, 3)
  ensure
    stop(io) if io
  end

  it 'goes on when out of descriptors: connections wait to be accepted, and stderr says why' do
    io = TipiProcess.new('-l', '127.0.0.1:0', TIPI_APP, spawn: { rlimit_nofile: 20 })
    held = Array.new(16) { TCPSocket.new('127.0.0.1', io.port) } # more than it has descriptors for
    waiting = held.pop
    waiting.write("GET /waited HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    io.read_until(/cannot accept connections for now \(Too many open files\)/, limit: 10)
    expect(IO.select([waiting], nil, nil, 0.3)).to be_nil
    held.each(&:close)
    expect(IO.select([waiting], nil, nil, 5)).not_to be_nil
    expect(waiting.read).to include('/waited')
  ensure
    stop(io) if io
  end

  it 'serves at most --max-connections at once; an idle keep-alive connection is closed to make room' do
    io, port = start('--max-connections', '1')
    busy = TCPSocket.new('127.0.0.1', port)
    busy.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") # answered after 0.5 s, then kept alive
    sleep 0.1
    second = TCPSocket.new('127.0.0.1', port)
    second.write("GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(IO.select([second], nil, nil, 0.2)).to be_nil # not served while the first is busy
    expect(IO.select([second], nil, nil, 3)).not_to be_nil # the first, idle now, made room
    expect(second.read).to include('/second')
    expect(busy.read).to end_with('slow') # answered, then closed
  ensure
    stop(io) if io
  end
end
