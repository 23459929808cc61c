# frozen_string_literal: true

require 'socket'
require 'stringio'
require 'h1p'

RSpec.describe H1P::Parser do
  let(:get) { "GET /foo?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: a\r\nAccept: b\r\n\r\n" }
  let(:post) { "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello" }

  it 'parses requests from an IO, keep-alive and pipelined, and returns nil at a clean EOF' do
    reader, writer = IO.pipe
    writer << get << post << get
    writer.close
    parser = described_class.new(reader)
    expect(parser.parse_headers).to eq(
      ':method' => 'GET', ':path' => '/foo?q=1', ':protocol' => 'http/1.1',
      'host' => 'example.com', 'accept' => %w[a b], ':rx' => get.bytesize
    )
    expect(parser.read_body).to be_nil
    expect(parser.complete?).to be(true)
    expect(parser.parse_headers).to include(':method' => 'POST', 'content-length' => '5')
    expect(parser.complete?).to be(false)
    expect(parser.read_body).to eq('hello')
    expect(parser.complete?).to be(true)
    expect(parser.parse_headers[':path']).to eq('/foo?q=1')
    expect(parser.parse_headers).to be_nil
  end

  it 'skips an unread body before the next request' do
    parser = described_class.new(StringIO.new(post + get))
    parser.parse_headers
    expect(parser.parse_headers[':method']).to eq('GET')
  end

  it 'reads from a block, a callable and anything answering readpartial' do
    chunks = get.chars
    expect(described_class.new { chunks.shift }.parse_headers[':path']).to eq('/foo?q=1')
    callable = [get].method(:shift)
    expect(described_class.new(callable).parse_headers['host']).to eq('example.com')
    pieces = ['', get[0, 10], '', get[10..]] # an empty String is no end
    expect(described_class.new { pieces.shift }.parse_headers[':path']).to eq('/foo?q=1')
    socket_pair = UNIXSocket.pair
    socket_pair[0] << get
    expect(described_class.new(socket_pair[1]).parse_headers[':method']).to eq('GET')
  end

  it 'parses responses in client mode, with chunked bodies read piece by piece' do
    response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    parser = described_class.new(StringIO.new(response), :client)
    expect(parser.parse_headers).to eq(
      ':protocol' => 'http/1.1', ':status' => 200, ':status_message' => 'OK',
      'transfer-encoding' => 'chunked', ':rx' => 47
    )
    expect([parser.read_body_chunk, parser.read_body_chunk, parser.read_body_chunk]).to eq(['abc', 'de', nil])
    expect(parser.complete?).to be(true)
  end

  it "keeps a chunked body's trailer fields for its message, once the body is read" do
    request = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" \
              "X-Checksum: 42\r\nServer-Timing: a\r\nserver-timing: b\r\n\r\n"
    parser = described_class.new(StringIO.new(request + post + request))
    parser.parse_headers
    expect(parser.trailers).to be_nil
    expect(parser.read_body).to eq('abc')
    expect(parser.trailers).to eq('x-checksum' => '42', 'server-timing' => %w[a b])
    parser.parse_headers
    expect(parser.trailers).to be_nil # a Content-Length body has none
    parser.parse_headers # the third request's body is not read: skipped, its trailers kept
    expect(parser.parse_headers).to be_nil
    expect(parser.trailers).to be_nil
    bad = described_class.new(StringIO.new("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A : 1\r\n\r\n"))
    bad.parse_headers
    expect { bad.read_body }.to raise_error(H1P::Error, /whitespace between header name and colon/)
  end

  it 'returns only buffered body bytes when asked to' do
    reader, writer = IO.pipe
    writer << "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"
    parser = described_class.new(reader)
    parser.parse_headers
    expect(parser.read_body_chunk(true)).to eq('abc')
    expect(parser.read_body_chunk(true)).to be_nil
    writer << 'defghij'
    expect(parser.read_body_chunk(false)).to eq('defghij')
    expect(parser.complete?).to be(true)
  end

  it 'writes the body into another IO with splice_body_to' do
    parser = described_class.new(StringIO.new(post))
    parser.parse_headers
    out = StringIO.new
    expect(parser.splice_body_to(out)).to eq(5)
    expect(out.string).to eq('hello')
  end

  it 'says what is wrong with a malformed request, then refuses to go on' do
    parser = described_class.new(StringIO.new("GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"))
    expect { parser.parse_headers }.to raise_error(H1P::Error, 'whitespace between header name and colon')
    expect { parser.parse_headers }.to raise_error(H1P::Error, /whitespace/)
    truncated = described_class.new(StringIO.new("GET / HTTP/1.1\r\nHost: a\r\n"))
    expect { truncated.parse_headers }.to raise_error(H1P::Error, /closed inside the message head/)
    short = described_class.new(StringIO.new("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"))
    short.parse_headers
    expect { short.read_body }.to raise_error(H1P::Error, /closed inside the body \(6 bytes missing\)/)
  end

  it 'enforces limits, configurable by keyword' do
    long = "GET /#{'a' * 5000} HTTP/1.1\r\n\r\n"
    expect { described_class.new(StringIO.new(long)).parse_headers }
      .to raise_error(H1P::Error, 'target length exceeds the limit of 4096')
    parser = described_class.new(StringIO.new(post), max_body: 4)
    parser.parse_headers
    expect { parser.read_body }.to raise_error(H1P::Error, 'body size exceeds the limit of 4')
    parser = described_class.new(StringIO.new(get), max_headers: 2)
    expect { parser.parse_headers }.to raise_error(H1P::Error, 'header count exceeds the limit of 2')
  end

  it 'starts over on another source with __renew__ (Tipi\'s connections), keeping its limits' do
    first = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /next HTTP/1.1\r\n\r\n"
    parser = described_class.new(StringIO.new(first), max_body: 4)
    expect(parser.parse_headers[':path']).to eq('/a') # its body unread, the next head buffered
    parser.__renew__(StringIO.new("POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345"))
    expect(parser.buffered).to eq('')
    expect(parser.parse_headers[':path']).to eq('/b')
    expect { parser.read_body }.to raise_error(H1P::Error, 'body size exceeds the limit of 4')
    parser.__renew__(StringIO.new("GET /c HTTP/1.1\r\n\r\n")) # a failed parser too
    expect(parser.parse_headers[':path']).to eq('/c')
    expect(parser.parse_headers).to be_nil
    expect { parser.__renew__(42) }.to raise_error(TypeError, /needs an IO/)
  end

  it 'raises H1P::Error for calls out of order and calls from its own source' do
    expect { described_class.new(StringIO.new('')).read_body }.to raise_error(H1P::Error, /parse_headers first/)
    parser = nil
    parser = described_class.new { parser.parse_headers }
    expect { parser.parse_headers }.to raise_error(H1P::Error, /called from its own source/)
    bad = described_class.new { 42 }
    expect { bad.parse_headers }.to raise_error(H1P::Error, /must return a String or nil, not Integer/)
    # __in_use__ (what Tipi asks before it answers) says so without raising.
    seen = nil
    busy = described_class.new do
      seen = busy.__in_use__
      nil # (the end of the source)
    end
    expect(busy.__in_use__).to be(false)
    busy.parse_headers
    expect([seen, busy.__in_use__]).to eq([true, false])
  end

  it 'refuses bad arguments with clear errors' do
    expect { described_class.new(42) }.to raise_error(TypeError, /needs an IO.*got Integer/)
    expect { described_class.new(StringIO.new, :proxy) }.to raise_error(ArgumentError, /:server or :client/)
    expect { described_class.new(StringIO.new, max_foo: 1) }.to raise_error(ArgumentError, /max_foo/)
    expect { described_class.new }.to raise_error(ArgumentError)
  end

  it 'lets source errors through as they are' do
    parser = described_class.new { raise Errno::ECONNRESET }
    expect { parser.parse_headers }.to raise_error(Errno::ECONNRESET)
  end

  it 'interns common header names and allocates few objects per request' do
    raw = File.binread(File.join(__dir__, '..', '..', 'bench', 'request.bin'))
    parser = described_class.new { raw }
    first = parser.parse_headers
    second = parser.parse_headers
    expect(first.keys.first(2)).to all(be_frozen)
    expect(first.keys.map(&:object_id)).to eq(second.keys.map(&:object_id))
    GC.disable
    before = GC.stat(:total_allocated_objects)
    1000.times { parser.parse_headers }
    per_request = (GC.stat(:total_allocated_objects) - before) / 1000.0
    GC.enable
    # The Hash, the path and 8 values; the block's String is the caller's. http_parser.rb
    # allocates 20.
    expect(per_request).to be < 10.1
  end

  it 'gathers a repeated field in any case into an Array, in arrival order, common names or not' do
    raw = "GET / HTTP/1.1\r\nAccept: a\r\nX-Thing: 1\r\nACCEPT: b\r\nx-thing: 2\r\nX-THING: 3\r\n" \
          "X-Other: 4\r\naccept: c\r\nX-Thin: 5\r\n\r\n"
    headers = described_class.new { raw }.parse_headers
    expect(headers).to include('accept' => %w[a b c], 'x-thing' => %w[1 2 3], 'x-other' => '4', 'x-thin' => '5')
    expect(headers.keys).to eq([':protocol', ':method', ':path', 'accept', 'x-thing', 'x-other', 'x-thin', ':rx'])
    # The same with more fields than are gathered on the stack (another code path).
    many = raw.sub("\r\n\r\n", "\r\n#{Array.new(100) { |i| "F-#{i}: #{i}\r\n" }.join}\r\n")
    headers = described_class.new { many }.parse_headers
    expect(headers).to include('accept' => %w[a b c], 'x-thing' => %w[1 2 3], 'x-other' => '4', 'f-99' => '99')
    expect(headers.size).to eq(8 + 100)
  end
  it 'hands back the bytes it read and did not consume, those of a refused message included' do
    parser = H1P::Parser.new(StringIO.new("GET /a HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
    expect(parser.parse_headers[':path']).to eq('/a')
    expect { parser.parse_headers }.to raise_error(H1P::Error, /invalid protocol/)
    expect(parser.buffered).to eq("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
  end
end
