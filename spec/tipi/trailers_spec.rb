# frozen_string_literal: true

require 'json'
require 'digest'

# Trailer fields both ways, over HTTP/1.1 (chunked) and HTTP/2 (a HEADERS frame after the
# DATA): a request's reach the app once it has read the body, a response body's (Rack 3's
# body.trailers) go out after it; a body the app chunked itself (Rack::Chunked) is not chunked
# twice, nor sent chunked over HTTP/2.
RSpec.describe 'tipi and trailer fields' do
  before(:all) do
    @tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'extras.ru'))
    @port = @tipi.port
  end

  after(:all) { @tipi.stop }

  def nghttp(path)
    out, err, status = run_command('nghttp', '-v', "http://127.0.0.1:#{@port}#{path}")
    expect(status).to be_success, err
    out
  end

  let(:checksum) { Digest::SHA256.hexdigest("part 1\npart 2\n")[0, 16] }

  it "gives a chunked HTTP/1.1 request's trailers to the app once it read the body" do
    body = '0123456789' * 5000
    chunks = body.scan(/.{1,7000}/m).map { |piece| "#{piece.bytesize.to_s(16)}\r\n#{piece}\r\n" }.join
    response = @tipi.raw("POST /request_trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" \
                         "#{chunks}0\r\nX-Checksum: 42\r\nX-Many: 1\r\nx-many: 2\r\n\r\n" \
                         "POST /request_trailers HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    first, second = response.split(%r{(?=HTTP/1\.1 200)}).map { |answer| JSON.parse(answer.split("\r\n\r\n", 2).last) }
    expect(first).to eq('size' => 50_000, 'sha256' => Digest::SHA256.hexdigest(body), 'before' => false,
                        'trailers' => { 'x-checksum' => '42', 'x-many' => %w[1 2] })
    expect(second).to include('size' => 2, 'trailers' => nil) # the next request has none of them
  end

  it "gives an HTTP/2 request's trailers to the app, also after no DATA at all" do
    answers = h2_client('trailers', @port, '/request_trailers')
    expect(answers).to eq(
      [[200, { 'size' => 100_000, 'sha256' => Digest::SHA256.hexdigest('0123456789' * 10_000), 'before' => false,
               'trailers' => { 'x-checksum' => '42', 'x-many' => %w[1 2] } }],
       [200, { 'size' => 0, 'sha256' => Digest::SHA256.hexdigest(''), 'before' => false,
               'trailers' => { 'x-checksum' => '42', 'x-many' => %w[1 2] } }]]
    )
  end

  it "sends a response body's trailers, known only after it was iterated, over HTTP/1.1 and HTTP/2" do
    response = @tipi.raw("GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
    expect(response).to include("Transfer-Encoding: chunked\r\n")
    expect(response).to end_with("7\r\npart 1\n\r\n7\r\npart 2\n\r\n0\r\nX-Checksum: #{checksum}\r\nX-Parts: 2\r\n" \
                                 "X-Many: a\r\nX-Many: b\r\n\r\n")
    out = nghttp('/trailers')
    expect(out).to include("part 1\n", "part 2\n")
    expect(out).to match(/recv \(stream_id=\d+\) x-checksum: #{checksum}/).and match(/x-parts: 2/)
    expect(out.scan(/recv \(stream_id=\d+\) x-many: (\w)/).flatten).to eq(%w[a b])
  end

  it 'answers HEAD for a body of unknown length with the framing a GET gets, not Content-Length: 0' do
    head = @tipi.raw("HEAD /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(head).to include("Transfer-Encoding: chunked\r\n").and end_with("\r\n\r\n")
    expect(head).not_to include('Content-Length')
    head = @tipi.raw("HEAD /trailers HTTP/1.0\r\n\r\n")
    expect(head).to include("Connection: close\r\n").and end_with("\r\n\r\n")
    expect(head).not_to include('Content-Length', 'Transfer-Encoding')
  end

  it 'sends a body Rack::Chunked encoded as it is over HTTP/1.1, and decoded over HTTP/2' do
    response = @tipi.raw("GET /rack_chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(response).to end_with("\r\n\r\n6\r\nHello \r\n6\r\nWorld\n\r\n0\r\nExpires: tomorrow\r\n\r\n")
    out = nghttp('/rack_chunked')
    expect(out).to include('Hello ', "World\n").and match(/recv \(stream_id=\d+\) expires: tomorrow/)
    expect(out).not_to include("6\r\n")
  end

  it 'cuts the stream of a body that fails while it is sent, and goes on with the connection' do
    out, err, status = run_command('nghttp', '-v', "http://127.0.0.1:#{@port}/failing",
                                   "http://127.0.0.1:#{@port}/echo")
    expect(status.exitstatus).to be <= 1, err # nghttp fails for the stream that was reset
    expect(out).to match(/recv RST_STREAM frame <length=4, flags=0x00, stream_id=13>\s+\(error_code=INTERNAL_ERROR/)
    expect(out).to match(/recv \(stream_id=15\) :status: 200/).and match(/recv DATA frame <[^>]*stream_id=15>\s+; END_STREAM/)
    expect(@tipi.read_until(/the body broke/)).to include('RuntimeError')
  end
end
