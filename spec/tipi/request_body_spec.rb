# frozen_string_literal: true

require 'socket'
require 'tmpdir'

# Request bodies as clients send them: Expect: 100-continue, malformed chunked bodies read or
# left unread by the app, and clients that go away mid-body.
RSpec.describe 'tipi and request bodies' do
  before(:all) do
    @tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru'))
    @port = @tipi.port
  end

  after(:all) { @tipi.stop }

  # Sends `request`, then reads until the server closes (or `wait` seconds pass); returns what
  # came and whether the server closed.
  def exchange(request, wait: 5)
    socket = TCPSocket.new('127.0.0.1', @port)
    socket.write(request)
    response = +''
    while socket.wait_readable(wait)
      chunk = socket.readpartial(65_536)
      response << chunk
    end
    [response, false]
  rescue EOFError, Errno::ECONNRESET
    [response, true]
  ensure
    socket&.close
  end

  it 'sends 100 Continue when the app reads the body: a 2 MB curl upload takes no second' do
    Dir.mktmpdir do |dir|
      file = File.join(dir, 'upload')
      File.binwrite(file, Random.bytes(2 << 20))
      out, err, status = run_command('curl', '-s', '-w', ' %{time_total}', '-H', 'Expect: 100-continue',
                                     '--data-binary', "@#{file}", "http://127.0.0.1:#{@port}/upload")
      expect(status).to be_success, err
      size, _digest, _again, seconds = out.split(' ')
      expect(size.to_i).to eq(2 << 20)
      expect(seconds.to_f).to be < 0.8 # curl waits 1 s for a 100 that does not come
    end
  end

  it 'sends no 100 Continue to a request the app answers unread, and closes after the answer' do
    response, closed = exchange("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    expect(response).to start_with("HTTP/1.1 200 OK\r\n").and include("Connection: close\r\n")
    expect(response).not_to include('100 Continue')
    expect(closed).to be(true)
  end

  it 'answers one 400 to a malformed chunked body, whether the app reads it or not' do
    bad = "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    ['/echo', '/a'].each do |path| # /echo reads the body, /a does not
      response, closed = exchange("POST #{path} HTTP/1.1\r\nHost: x\r\n#{bad}GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
      expect(response).to start_with("HTTP/1.1 400 Bad Request\r\n"), "#{path}: #{response}"
      expect(response.scan(%r{^HTTP/1\.1 }).size).to eq(1)
      expect(closed).to be(true)
    end
  end

  it 'answers an unread body that has not all come, and closes the connection after the answer' do
    response, closed = exchange("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n#{'x' * 1000}")
    expect(response).to start_with("HTTP/1.1 200 OK\r\n").and include("Connection: close\r\n")
    expect(closed).to be(true)
  end

  it 'logs one line, no backtrace, when a client resets while the app reads its body' do
    tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'app.ru'))
    socket = TCPSocket.new('127.0.0.1', tipi.port)
    socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n#{'x' * 1000}")
    sleep 0.2
    socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack('ii')) # close with a reset
    socket.close
    line = tipi.read_until(/^tipi: /)
    expect(line).to match(/the client went away during the request body \(Connection reset by peer\)/)
    expect(tipi.raw("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).to start_with('HTTP/1.1 200')
    expect(tipi.lines.join).not_to match(/^\t/) # no backtrace
  ensure
    tipi&.stop
  end
end
