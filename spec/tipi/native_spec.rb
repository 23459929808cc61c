# frozen_string_literal: true

require 'socket'
require 'json'
require 'digest'
require 'h1p'

# Tipi's own request API, for apps that want no Rack: `tipi app.rb` and Tipi.serve.
RSpec.describe 'tipi with a Tipi-native handler' do
  before(:all) do
    @tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'native.rb'))
    @port = @tipi.port
  end

  after(:all) { @tipi.stop }

  def raw(request)
    @tipi.raw(request)
  end

  it 'answers with respond: query, body, status, Content-Length; keep-alive and pipelining' do
    response = raw("GET /hello?name=tipi HTTP/1.1\r\nHost: x\r\n\r\n" \
                   "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" \
                   "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(response).to start_with("HTTP/1.1 200 OK\r\n")
    expect(response).to include("Content-Type: text/plain\r\n", "Content-Length: 11\r\n\r\nHello tipi\n")
    expect(response).to include("HTTP/1.1 201 Created\r\nContent-Length: 12\r\n\r\nPOST 5 hello")
    expect(response).to end_with("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 9\r\n\r\nnot found")
  end

  it 'streams with send_headers, send_chunk and finish (chunked), and HEAD gets no body' do
    out, _err, status = run_command('curl', '-s', '--max-time', '10', "http://127.0.0.1:#{@port}/stream")
    expect(status).to be_success
    expect(out).to eq("chunk 0\nchunk 1\nchunk 2\n")
    response = raw("GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(response).to include("Transfer-Encoding: chunked\r\n")
    # To HTTP/1.0 (no chunked coding): as it comes, and the connection's end ends it.
    head, body = raw("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.0\r\n\r\n")
                 .split("\r\n\r\n", 2)
    expect(head).to include("\r\nConnection: close")
    expect(head).not_to include('Transfer-Encoding', 'Content-Length')
    expect(body).to eq("chunk 0\nchunk 1\nchunk 2\n")
    head = raw("HEAD /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(head).to include("Transfer-Encoding: chunked\r\n").and end_with("\r\n\r\n")
    expect(head).not_to include('Content-Length', 'chunk 0')
    expect(raw("HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      .to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 7\r\n\r\n")
  end

  it 'reads nothing more of a request\'s body once its handler has returned' do
    # Kept by the app unread, it must not read a later request's body: on a connection that
    # serves one socket after another, that can be another client's.
    raw("POST /stash HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nfirst body")
    response = raw("POST /stashed HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nsecond body")
    expect(response).to end_with("\r\n\r\n|second body")
  end

  it 'ends a connection whose body a fiber the handler left running still reads' do
    # The answer is sent, saying the connection closes; the connection's parser is that
    # fiber's: the connection ends there (before: a 400 "called from its own source"
    # followed), and the next one is served.
    stale = TCPSocket.new('127.0.0.1', @port)
    stale.write("POST /stale-reader HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
    response = +''
    while stale.wait_readable(1) && (chunk = stale.read_nonblock(4096, exception: false)).is_a?(String)
      response << chunk
    end
    expect(response).to start_with("HTTP/1.1 200 OK\r\n").and end_with("\r\n\r\nok")
    expect(response).to include("\r\nConnection: close\r\n") # (the client sends nothing more on it)
    2.times { expect(raw("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).to end_with("Hello \n") }
  ensure
    stale&.close
  end

  it 'answers 400 to an HTTP/1.1 request without Host or with two, before the handler sees it' do
    expect(raw("GET /hello HTTP/1.1\r\n\r\n")).to start_with("HTTP/1.1 400 Bad Request\r\n")
    expect(raw("GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")).to start_with("HTTP/1.1 400 Bad Request\r\n")
  end

  it 'refuses a second answer, and answers 500 for a handler that answered nothing' do
    expect(raw("GET /twice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).to end_with("\r\n\r\nonce")
    expect(@tipi.read_until(/tipi spec:/)).to include('the response has begun already')
    expect(raw("GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")).to start_with("HTTP/1.1 500 Internal Server Error\r\n")
    expect(@tipi.read_until(/answered nothing/)).to include('GET /silent')
  end

  it 'serves the same handler over HTTP/2 (h2c, Upgrade: h2c): respond, streaming, bodies, 500 for no answer' do
    # `how`: curl's --http2-prior-knowledge, or --http2 (Upgrade: h2c).
    h2 = lambda do |how, path, *args|
      out, err, status = run_command('curl', '-sS', '--max-time', '10', how, *args,
                                     '-w', ' [%{http_code} %{http_version}]', "http://127.0.0.1:#{@port}#{path}")
      expect(status).to be_success, err
      out
    end
    h2c = ->(path, *args) { h2.call('--http2-prior-knowledge', path, *args) }
    upgrade = ->(path, *args) { h2.call('--http2', path, *args) }
    expect(h2c.call('/hello?name=h2')).to eq("Hello h2\n [200 2]")
    expect(h2c.call('/echo', '-d', 'hello')).to eq('POST 5 hello [201 2]')
    expect(h2c.call('/stream')).to eq("chunk 0\nchunk 1\nchunk 2\n [200 2]")
    expect(h2c.call('/silent')).to end_with(' [500 2]')
    expect(upgrade.call('/hello?name=upgraded')).to eq("Hello upgraded\n [200 2]") # Upgrade: h2c
    expect(upgrade.call('/echo', '-d', 'body first')).to eq('POST 10 body first [201 2]')
    expect(@tipi.read_until(%r{"GET /stream HTTP/2" 200})).to include('127.0.0.1')
  end

  it "gives a request's trailer fields once the body is read, over HTTP/1.1 and HTTP/2" do
    response = raw("POST /request_trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" \
                   "Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 42\r\n\r\n")
    expect(JSON.parse(response.split("\r\n\r\n", 2).last))
      .to eq('size' => 5, 'sha256' => Digest::SHA256.hexdigest('hello'), 'before' => false,
             'trailers' => { 'x-checksum' => '42' })
    trailers = { 'x-checksum' => '42', 'x-many' => %w[1 2] }
    expect(h2_client('trailers', @port, '/request_trailers').map { |_status, answer| answer.values_at('size', 'trailers') })
      .to eq([[100_000, trailers], [0, trailers]])
  end

  it 'serves a block in-process with Tipi.serve' do
    out, err, status = run_ruby(<<~RUBY)
      require 'tipi'
      server = spin { Tipi.serve('127.0.0.1', 0) { |req| req.respond("in-process \#{req.path}") } }
      snooze
      port = ObjectSpace.each_object(TCPServer).find { |s| !s.closed? }.local_address.ip_port
      socket = TCPSocket.new('127.0.0.1', port)
      socket.write("GET /x HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
      print socket.read.split("\\r\\n\\r\\n").last
      server.stop
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq('in-process /x')
  end
end
