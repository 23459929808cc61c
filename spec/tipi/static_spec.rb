# frozen_string_literal: true

require 'socket'
require 'tmpdir'
require 'h1p'
require 'time'

# `tipi DIRECTORY` serves static files; the real command, talked to with curl and sockets.
RSpec.describe 'tipi serving a directory' do
  before(:all) do
    @dir = Dir.mktmpdir
    File.write(File.join(@dir, 'hello.txt'), "hello static\n")
    File.binwrite(File.join(@dir, 'big.bin'), @big = Random.bytes(3_000_000))
    Dir.mkdir(File.join(@dir, 'sub'))
    File.write(File.join(@dir, 'sub', 'index.html'), "<h1>index</h1>\n")
    File.symlink('/etc/passwd', File.join(@dir, 'escape'))
    @tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', @dir)
    @port = @tipi.port
  end

  after(:all) do
    @tipi.stop
    FileUtils.rm_rf(@dir)
  end

  def request(head)
    socket = TCPSocket.new('127.0.0.1', @port)
    socket.write("#{head}\r\nHost: x\r\nConnection: close\r\n\r\n")
    parser = H1P::Parser.new(socket, :client)
    headers = parser.parse_headers
    [headers, parser.read_body].tap { socket.close }
  end

  it 'serves files with their type, ETag and Last-Modified, and directories by index.html' do
    headers, body = request('GET /hello.txt HTTP/1.1')
    expect(headers).to include(':status' => 200, 'content-type' => 'text/plain', 'content-length' => '13')
    expect(headers['etag']).to match(/\A"\h+-\h+"\z/)
    expect(headers['last-modified']).to eq(File.mtime(File.join(@dir, 'hello.txt')).httpdate)
    expect(body).to eq("hello static\n")
    expect(request('GET /sub/ HTTP/1.1').last).to eq("<h1>index</h1>\n")
  end

  it 'sends a large file whole (by splice) and intact' do
    headers, body = request('GET /big.bin HTTP/1.1')
    expect(headers['content-length']).to eq(@big.bytesize.to_s)
    expect(body).to eq(@big)
  end

  it 'answers 304 to If-None-Match and If-Modified-Since' do
    etag = request('GET /hello.txt HTTP/1.1').first['etag']
    expect(request("GET /hello.txt HTTP/1.1\r\nIf-None-Match: #{etag}").first[':status']).to eq(304)
    since = (File.mtime(File.join(@dir, 'hello.txt')) + 10).httpdate
    expect(request("GET /hello.txt HTTP/1.1\r\nIf-Modified-Since: #{since}").first[':status']).to eq(304)
    expect(request("GET /hello.txt HTTP/1.1\r\nIf-None-Match: \"other\"").first[':status']).to eq(200)
  end

  it 'serves ranges: one (206), several (multipart), none satisfiable (416)' do
    headers, body = request("GET /hello.txt HTTP/1.1\r\nRange: bytes=0-4")
    expect([headers[':status'], headers['content-range'], body]).to eq([206, 'bytes 0-4/13', 'hello'])
    headers, body = request("GET /hello.txt HTTP/1.1\r\nRange: bytes=0-4,6-11")
    expect(headers[':status']).to eq(206)
    expect(headers['content-type']).to start_with('multipart/byteranges; boundary=')
    expect(body).to include("Content-Range: bytes 0-4/13\r\n\r\nhello\r\n", "Content-Range: bytes 6-11/13\r\n\r\nstatic\r\n")
    headers, = request("GET /hello.txt HTTP/1.1\r\nRange: bytes=100-200")
    expect([headers[':status'], headers['content-range']]).to eq([416, 'bytes */13'])
  end

  it 'compares If-None-Match weakly: W/"tag" matches (RFC 9110 13.1.2)' do
    etag = request('GET /hello.txt HTTP/1.1').first['etag']
    expect(request("GET /hello.txt HTTP/1.1\r\nIf-None-Match: \"x\", W/#{etag}").first[':status']).to eq(304)
  end

  it 'serves the whole file (200) when If-Range names another version, the range when it names this one' do
    headers, = request('GET /hello.txt HTTP/1.1')
    etag, modified = headers.values_at('etag', 'last-modified')
    stale = [%("0-0"), "W/#{etag}", (Time.httpdate(modified) - 60).httpdate]
    stale.each do |validator|
      headers, body = request("GET /hello.txt HTTP/1.1\r\nRange: bytes=0-4\r\nIf-Range: #{validator}")
      expect([headers[':status'], body]).to eq([200, "hello static\n"]), validator
    end
    [etag, modified].each do |validator|
      headers, body = request("GET /hello.txt HTTP/1.1\r\nRange: bytes=0-4\r\nIf-Range: #{validator}")
      expect([headers[':status'], body]).to eq([206, 'hello']), validator
    end
  end

  it 'reads a large range as the client takes it, not into memory whole' do
    headers, body = request("GET /big.bin HTTP/1.1\r\nRange: bytes=1-2999990")
    expect([headers[':status'], headers['content-length']]).to eq([206, '2999990'])
    expect(body).to eq(@big[1..2_999_990])
    headers, body = request("GET /big.bin HTTP/1.1\r\nRange: bytes=0-0,-1")
    expect(headers[':status']).to eq(206)
    expect(body).to end_with("\r\n\r\n#{@big[-1]}\r\n--#{headers['content-type'][/boundary=(.*)/, 1]}--\r\n".b)
    expect(headers['content-length']).to eq(body.bytesize.to_s)
  end

  it 'answers HEAD with the headers only' do
    socket = TCPSocket.new('127.0.0.1', @port)
    socket.write("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = socket.read
    expect(response).to start_with("HTTP/1.1 200 OK\r\n")
    expect(response).to include("Content-Length: 13\r\n")
    expect(response).to end_with("\r\n\r\n")
  end

  it 'lets nothing outside the root out: .., encoded slashes, symlinks out, missing files' do
    expect(request('GET /../etc/passwd HTTP/1.1').first[':status']).to eq(404)
    expect(request('GET /sub/%2e%2e/%2e%2e/etc/passwd HTTP/1.1').first[':status']).to eq(404)
    expect(request('GET /sub%2Findex.html HTTP/1.1').first[':status']).to eq(404)
    expect(request('GET /escape HTTP/1.1').first[':status']).to eq(404)
    expect(request('GET /nothing-here HTTP/1.1').first[':status']).to eq(404)
    expect(request('POST /hello.txt HTTP/1.1').first[':status']).to eq(405)
  end
end
