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

  it 'send_rack_response writes an Array-bodied Rack response in one go, and declines other bodies' do
    headers = { 'Content-Type' => 'text/plain', 'Set-Cookie' => "a=1\nb=2" }
    written = H1P.send_rack_response(io, 200, headers, %w[hel lo], false, 'keep-alive')
    expect(io.string).to eq("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n" \
                            "Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello")
    expect(written).to eq(io.string.bytesize)

    head = StringIO.new
    H1P.send_rack_response(head, '404', { 'Content-Length' => '9', 'connection' => 'close' }, ['not found'], true, 'keep-alive')
    expect(head.string).to eq("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nconnection: close\r\n\r\n")
    head = StringIO.new # HEAD: the length a GET would get, not 0
    H1P.send_rack_response(head, 200, {}, %w[hel lo], true, nil)
    expect(head.string).to eq("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")

    untouched = StringIO.new
    expect(H1P.send_rack_response(untouched, 200, {}, Enumerator.new { |y| y << 'x' }, false, nil)).to be_nil
    expect(untouched.string).to eq('')
    expect { H1P.send_rack_response(io, 200, { 'X-A' => "1\r\n" }, [], false, nil) }.to raise_error(H1P::Error, /CR, LF/)
  end

  it "Parser#send_rack_response answers the parsed request with the Connection field it calls for" do
    # Each request in turn; returns [what was written, whether the connection goes on].
    answer = lambda do |request, headers = {}, body = %w[hel lo], closing: false|
      parser = H1P::Parser.new(StringIO.new(request))
      parser.parse_rack_env({})
      out = StringIO.new
      keep_alive = parser.send_rack_response(out, 200, headers, body, closing)
      [out.string, keep_alive]
    end
    ok = "HTTP/1.1 200 OK\r\n"
    expect(answer.call("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).to eq(["#{ok}Content-Length: 5\r\n\r\nhello", true])
    expect(answer.call("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
      .to eq(["#{ok}Connection: close\r\nContent-Length: 5\r\n\r\nhello", false])
    expect(answer.call("GET / HTTP/1.1\r\n\r\n", { 'Connection' => 'Close' }))
      .to eq(["#{ok}Connection: Close\r\nContent-Length: 5\r\n\r\nhello", false])
    expect(answer.call("GET / HTTP/1.1\r\n\r\n", closing: true))
      .to eq(["#{ok}Connection: close\r\nContent-Length: 5\r\n\r\nhello", false])
    expect(answer.call("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
      .to eq(["#{ok}Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", true])
    expect(answer.call("GET / HTTP/1.0\r\n\r\n")).to eq(["#{ok}Connection: close\r\nContent-Length: 5\r\n\r\nhello", false])
    expect(answer.call("HEAD / HTTP/1.1\r\n\r\n")).to eq(["#{ok}Content-Length: 5\r\n\r\n", true])
    # Not an Array of Strings: nothing written, for the caller to write.
    expect(answer.call("GET / HTTP/1.1\r\n\r\n", {}, [:sym])).to eq(['', nil])
    expect(answer.call("GET / HTTP/1.1\r\n\r\n", {}, Enumerator.new { |y| y << 'x' })).to eq(['', nil])
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

  it 'tells whether response fields ask to close the connection' do
    expect(H1P.connection_close?('Connection' => 'close')).to be true
    expect(H1P.connection_close?('content-type' => 'text/plain', 'CONNECTION' => 'Upgrade, Close')).to be true
    expect(H1P.connection_close?('Connection' => 'keep-alive')).to be false
    expect(H1P.connection_close?('X-Connection' => 'close', :connection => 'close')).to be false
    expect(H1P.connection_close?({})).to be false
  end
end
