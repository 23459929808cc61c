# frozen_string_literal: true

require 'json'
require 'digest'
require 'tmpdir'

# `tipi` serving HTTP/2: h2c with prior knowledge on a plain port, ALPN h2 on an HTTPS one, next
# to HTTP/1.1 on the same ports. curl, one URL per call (Debian's 7.88 mishandles reusing
# prior-knowledge connections).
RSpec.describe 'tipi over HTTP/2' do
  before(:all) do
    @tipi = TipiProcess.new('-l', '127.0.0.1:0', '-s', '127.0.0.1:0', TIPI_APP)
    @port = @tipi.port
    @tls_port = @tipi.lines.grep(%r{listening on https://}).first[/:(\d+) /, 1].to_i
  end

  after(:all) do
    @tipi.stop
  end

  def curl(*args)
    out, err, status = run_command('curl', '-sS', '--max-time', '10', *args)
    expect(status).to be_success, err
    out
  end

  def h2c(path, *args)
    curl('--http2-prior-knowledge', *args, "http://127.0.0.1:#{@port}#{path}")
  end

  it 'serves the Rack app over h2c, with an HTTP/2 env, under Rack::Lint' do
    out = h2c('/some/path?a=1', '-H', 'X-Test: yes', '-w', '\n%{http_version}')
    env, version = out.split("\n")
    expect(version).to eq('2')
    expect(JSON.parse(env)).to include('REQUEST_METHOD' => 'GET', 'PATH_INFO' => '/some/path', 'QUERY_STRING' => 'a=1',
                                       'SERVER_PROTOCOL' => 'HTTP/2', 'HTTP_HOST' => "127.0.0.1:#{@port}",
                                       'HTTP_X_TEST' => 'yes', 'SERVER_NAME' => '127.0.0.1')
    expect(@tipi.read_until(%r{"GET /some/path\?a=1 HTTP/2" 200})).to include('127.0.0.1')
  end

  it 'streams request bodies into rack.input and response bodies out' do
    Dir.mktmpdir do |dir|
      body = Random.new(5).bytes(3_000_000)
      File.binwrite(File.join(dir, 'body'), body)
      out = h2c('/upload', '--data-binary', "@#{dir}/body", '-H', 'Content-Type: application/octet-stream')
      expect(out).to eq("#{body.bytesize} #{([Digest::SHA256.hexdigest(body)] * 2).join(' ')}")
    end
    expect(h2c('/echo', '-d', 'hello')).to eq('hello')
    expect(h2c('/stream')).to eq("part 0\npart 1\npart 2\n")
    expect(h2c('/boom', '-o', '/dev/null', '-w', '%{http_code}')).to eq('500')
  end

  it 'answers streams sent at once each with its own request (nghttp, one connection)' do
    urls = Array.new(10) { |i| "http://127.0.0.1:#{@port}/stream-#{i}?n=#{i}" }
    out, err, status = run_command('nghttp', '--timeout=5', *urls)
    expect(status).to be_success, err
    answers = out.scan(/\{[^}]*\}/).map { |json| JSON.parse(json).values_at('PATH_INFO', 'QUERY_STRING') }
    expect(answers.sort).to eq(Array.new(10) { |i| ["/stream-#{i}", "n=#{i}"] }.sort)
  end

  it 'is chosen by ALPN on HTTPS, and HTTP/1.1 goes on on both ports' do
    expect(curl('-k', '--http2', '-w', ' %{http_version}', "https://127.0.0.1:#{@tls_port}/pid")).to eq("#{@tipi.pid} 2")
    expect(curl('-k', '--http1.1', '-w', ' %{http_version}', "https://127.0.0.1:#{@tls_port}/pid")).to eq("#{@tipi.pid} 1.1")
    expect(curl('-w', ' %{http_version}', "http://127.0.0.1:#{@port}/pid")).to eq("#{@tipi.pid} 1.1")
  end
end
