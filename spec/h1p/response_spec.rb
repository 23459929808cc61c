# frozen_string_literal: true

require 'stringio'
require 'h1p'

RSpec.describe 'H1P response writers' do
  let(:io) { StringIO.new }

  it 'send_response writes the status line, fields, a Content-Length and the body' do
    written = H1P.send_response(io, { ':status' => 201, 'Content-Type' => 'text/plain' }, 'hello')
    expect(io.string).to eq("HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    expect(written).to eq(io.string.bytesize)
  end

  it 'keeps the Content-Length the caller gave, and sends Array values as repeated fields' do
    H1P.send_response(io, { 'content-length' => '5', 'Set-Cookie' => %w[a=1 b=2] }, 'hello')
    expect(io.string).to eq("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello")
  end

  it 'frames a response without a body, except where the status forbids a body' do
    H1P.send_response(io, {})
    expect(io.string).to eq("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    not_modified = StringIO.new
    H1P.send_response(not_modified, { ':status' => 304, 'ETag' => '"x"' })
    expect(not_modified.string).to eq("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
  end

  it 'refuses CR, LF and NUL in values and non-token names: no response splitting' do
    expect { H1P.send_response(io, { 'X-A' => "1\r\nSet-Cookie: evil=1" }) }
      .to raise_error(H1P::Error, /X-A has CR, LF or NUL/)
    expect { H1P.send_response(io, { "X-A\r\nEvil" => '1' }) }.to raise_error(H1P::Error, /invalid header name/)
    expect { H1P.send_response(io, { 'Bad Name' => '1' }) }.to raise_error(H1P::Error, /invalid header name/)
    expect { H1P.send_response(io, { ':status' => 'abc' }) }.to raise_error(H1P::Error, /invalid :status/)
    expect(io.string).to eq('')
  end

  describe 'Parser#respond' do
    # Answers `request` (the raw request) with the Rack response; returns [bytes, keep-alive].
    def answer(request, status = 200, headers = {}, body = %w[hel lo], closing: false)
      parser = H1P::Parser.new(StringIO.new(request))
      parser.parse_rack_env({})
      out = StringIO.new
      keep_alive = parser.respond(out, status, headers, body, closing)
      expect(parser.bytes_sent).to eq(out.string.bytesize)
      [out.string, keep_alive]
    end

    let(:ok) { "HTTP/1.1 200 OK\r\n" }
    let(:get) { "GET / HTTP/1.1\r\nHost: a\r\n\r\n" }

    it 'sends an Array body in one go with the Connection field the request and the response call for' do
      expect(answer(get, 200, { 'Content-Type' => 'text/plain', 'Set-Cookie' => "a=1\nb=2" }))
        .to eq(["#{ok}Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello", true])
      expect(answer("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        .to eq(["#{ok}Content-Length: 5\r\nConnection: close\r\n\r\nhello", false])
      expect(answer(get, 200, { 'Connection' => 'Close' }))
        .to eq(["#{ok}Connection: Close\r\nContent-Length: 5\r\n\r\nhello", false])
      expect(answer(get, closing: true)).to eq(["#{ok}Content-Length: 5\r\nConnection: close\r\n\r\nhello", false])
      expect(answer("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        .to eq(["#{ok}Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello", true])
      expect(answer("GET / HTTP/1.0\r\n\r\n")).to eq(["#{ok}Content-Length: 5\r\nConnection: close\r\n\r\nhello", false])
      expect(answer(get, '404', { 'Content-Length' => '9' }, ['not found']))
        .to eq(["HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", true])
      expect(answer(get, 200, { 'rack.session' => 'x' }, [:sym, 1])).to eq(["#{ok}Content-Length: 4\r\n\r\nsym1", true])
    end

    it 'answers HEAD with the head a GET would get, and nothing after it' do
      expect(answer("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")).to eq(["#{ok}Content-Length: 5\r\n\r\n", true])
      expect(answer("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 200, {}, Enumerator.new { |y| y << 'x' }))
        .to eq(["#{ok}Transfer-Encoding: chunked\r\n\r\n", true])
      expect(answer("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 200, { 'Content-Length' => '42' }, []))
        .to eq(["#{ok}Content-Length: 42\r\n\r\n", true])
    end

    it 'iterates a body whose to_ary answers nil (Rails 6.1), and closes it' do
      body = Class.new do
        attr_reader :closed

        def to_ary
          nil
        end

        def each(&block)
          %w[he llo].each(&block)
        end

        def close
          @closed = true
        end
      end.new
      expect(answer(get, 200, {}, body))
        .to eq(["#{ok}Transfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", true])
      expect(body.closed).to be(true)
      expect(answer(get, 200, { 'Content-Length' => '5' }, body)).to eq(["#{ok}Content-Length: 5\r\n\r\nhello", true])
      # HTTP/1.0 has no chunked coding: the body ends with the connection.
      expect(answer("GET / HTTP/1.0\r\n\r\n", 200, {}, body)).to eq(["#{ok}Connection: close\r\n\r\nhello", false])
    end

    it 'sends a chunked body with the trailers its body gives' do
      body = Struct.new(:trailers) do
        def each
          yield 'data'
        end
      end.new({ 'X-Checksum' => '42' })
      expect(answer(get, 200, {}, body))
        .to eq(["#{ok}Transfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\nX-Checksum: 42\r\n\r\n", true])
    end

    it 'answers an invalid response with a 500 and raises H1P::InvalidResponse, never sending a split head' do
      internal = "HTTP/1.1 500 Internal Server Error\r\n"
      [[2000, {}, []], ['abc', {}, []], [100, {}, []], [nil, {}, []], [200, nil, []], [200, {}, nil],
       [200, { 'X-A' => "1\r\nSet-Cookie: evil=1" }, []], [200, { 'Bad Name' => '1' }, []],
       [200, { 'X-A' => "a\0b" }, []], [200, { 'Content-Length' => '10' }, ['short']],
       [200, { 'Content-Length' => 'x' }, ['short']]].each do |status, headers, body|
        parser = H1P::Parser.new(StringIO.new(get))
        parser.parse_rack_env({})
        out = StringIO.new
        expect { parser.respond(out, status, headers, body) }.to raise_error(H1P::InvalidResponse)
        expect(out.string).to start_with(internal).and include("Connection: close\r\n")
      end
    end

    it 'sends no more than the Content-Length announced, and ends the connection when the body breaks it' do
      parser = H1P::Parser.new(StringIO.new(get))
      parser.parse_rack_env({})
      out = StringIO.new
      expect { parser.respond(out, 200, { 'Content-Length' => '3' }, ['hello']) }
        .to raise_error(H1P::InvalidResponse, /longer than its Content-Length/)
      expect(out.string).to eq("#{ok}Content-Length: 3\r\nConnection: close\r\n\r\nhel")
      streamed = Enumerator.new { |y| y << 'he' << 'llo' }
      parser = H1P::Parser.new(StringIO.new(get))
      parser.parse_rack_env({})
      out = StringIO.new
      expect { parser.respond(out, 200, { 'Content-Length' => '9' }, streamed) }
        .to raise_error(H1P::InvalidResponse, /says 9 bytes, the body has 5/)
      expect(out.string).to eq("#{ok}Content-Length: 9\r\n\r\nhello")
    end

    it 'answers with a 500 a body that raises before its first piece' do
      parser = H1P::Parser.new(StringIO.new(get))
      parser.parse_rack_env({})
      out = StringIO.new
      failing = Enumerator.new { |_| raise ArgumentError, 'oops' }
      expect { parser.respond(out, 200, {}, failing) }.to raise_error(ArgumentError, 'oops')
      expect(out.string).to start_with("HTTP/1.1 500 Internal Server Error\r\n")
    end

    it 'hands the socket to a partial hijack after the head as given' do
      parser = H1P::Parser.new(StringIO.new(get))
      parser.parse_rack_env({})
      out = StringIO.new
      hijack = ->(io) { io.write('raw') }
      expect(parser.respond(out, 101, { 'Upgrade' => 'x', 'Connection' => 'Upgrade', 'rack.hijack' => hijack }, []))
        .to be_nil
      expect(out.string).to eq("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nraw")
    end
  end

  it 'send_chunked_response sends what the block returns until nil, then the last chunk' do
    chunks = ['abc', '', 'defgh']
    H1P.send_chunked_response(io, { 'Content-Type' => 'text/plain' }) { chunks.shift }
    expect(io.string).to eq(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" \
      "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"
    )
    parsed = H1P::Parser.new(StringIO.new(io.string), :client)
    parsed.parse_headers
    expect(parsed.read_body).to eq('abcdefgh')
  end

  it 'send_body_chunk sends one chunk, and the last chunk for nil' do
    H1P.send_body_chunk(io, 'hello world')
    H1P.send_body_chunk(io, nil)
    expect(io.string).to eq("b\r\nhello world\r\n0\r\n\r\n")
  end

  it 'send_body_chunk ends the body with trailer fields, checked as header fields are' do
    H1P.send_body_chunk(io, nil, 'X-Checksum' => '42', 'Server-Timing' => %w[a b])
    expect(io.string).to eq("0\r\nX-Checksum: 42\r\nServer-Timing: a\r\nServer-Timing: b\r\n\r\n")
    expect { H1P.send_body_chunk(io, nil, 'X-A' => "1\r\nX-B: 2") }.to raise_error(H1P::Error, /CR, LF or NUL/)
    expect { H1P.send_body_chunk(io, nil, 'Content-Length' => '5') }.to raise_error(H1P::Error, /cannot frame/)
    expect { H1P.send_body_chunk(io, 'data', 'X-A' => '1') }.to raise_error(H1P::Error, /last chunk/)
  end

  it 'send_head writes the head as given, with nothing added' do
    H1P.send_head(io, { ':status' => 200, 'Connection' => 'close' })
    expect(io.string).to eq("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
  end

  it 'raises H1P::TooLarge naming the limit and its value' do
    parser = H1P::Parser.new(StringIO.new("GET /#{'a' * 100} HTTP/1.1\r\n\r\n"), max_target: 50)
    expect { parser.parse_headers }.to raise_error(H1P::TooLarge) { |e| expect([e.limit, e.max]).to eq([:target, 50]) }
    head = "GET / HTTP/1.1\r\n#{(1..20).map { |i| "X-#{i}: #{'v' * 100}\r\n" }.join}\r\n"
    parser = H1P::Parser.new(StringIO.new(head), max_head: 1000)
    expect { parser.parse_headers }.to raise_error(H1P::TooLarge) { |e| expect([e.limit, e.max]).to eq([:head, 1000]) }
  end
end
