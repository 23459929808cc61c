# frozen_string_literal: true

require 'json'
require 'digest'
require 'tmpdir'

# `tipi -s`: HTTPS on rustls, talked to with curl (OpenSSL) verifying the certificate.
RSpec.describe 'tipi over HTTPS' do
  before(:all) do
    @dir = Dir.mktmpdir
    cert, key = Polyphony::TLS.self_signed(['localhost'])
    File.write(@cert = File.join(@dir, 'cert.pem'), cert)
    File.write(@key = File.join(@dir, 'key.pem'), key)
    @tipi = TipiProcess.new('-s', '127.0.0.1:0', '--cert', @cert, '--key', @key, TIPI_APP)
    @port = https_port(@tipi)
  end

  after(:all) do
    @tipi.stop
    FileUtils.rm_rf(@dir)
  end

  def https_port(tipi)
    tipi.lines.grep(%r{listening on https://}).first[/:(\d+) /, 1].to_i
  end

  # curl verifying the server's certificate against ours, for the name localhost.
  def curl(*args, port: @port)
    out, err, status = run_command('curl', '-sS', '--max-time', '10', '--cacert', @cert,
                                   '--resolve', "localhost:#{port}:127.0.0.1", *args)
    [out, err, status]
  end

  def url(path, port: @port)
    "https://localhost:#{port}#{path}"
  end

  it 'announces the listener and its certificate' do
    expect(@tipi.lines.join).to include("* listening on https://127.0.0.1:#{@port} (certificate #{@cert})")
  end

  it 'serves the Rack app over TLS, with an https env, on kept-alive HTTP/1.1 connections' do
    out, err, status = curl('--http1.1', '-w', '\n%{http_version} %{num_connects}\n', url('/env?a=1'), url('/env?b=2'))
    expect(status).to be_success, err
    first, second = out.split("\n").each_slice(2).to_a
    env = JSON.parse(first[0])
    expect(env).to include('rack.url_scheme' => 'https', 'SERVER_NAME' => 'localhost', 'SERVER_PORT' => @port.to_s,
                           'QUERY_STRING' => 'a=1', 'HTTP_HOST' => "localhost:#{@port}")
    expect(first[1]).to eq('1.1 1')
    expect(JSON.parse(second[0])['QUERY_STRING']).to eq('b=2')
    expect(second[1]).to eq('1.1 0') # the same connection
  end

  it 'streams large bodies both ways' do
    body = Random.new(7).bytes(3_000_000)
    File.binwrite(File.join(@dir, 'body'), body)
    out, err, status = curl('--data-binary', "@#{File.join(@dir, 'body')}", '-H', 'Content-Type: application/octet-stream',
                            url('/upload'))
    expect(status).to be_success, err
    expect(out).to eq("#{body.bytesize} #{([Digest::SHA256.hexdigest(body)] * 2).join(' ')}") # read, rewound, read
    out, _err, status = curl(url('/stream'))
    expect(status).to be_success
    expect(out).to eq("part 0\npart 1\npart 2\n")
  end

  it 'logs a failed handshake and closes that connection, serving the others' do
    # A client that does not trust the certificate, and one that speaks plain HTTP.
    _out, _err, status = run_command('curl', '-sS', '--max-time', '10', "https://127.0.0.1:#{@port}/")
    expect(status.exitstatus).to eq(60)
    plain = TCPSocket.new('127.0.0.1', @port)
    plain.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    expect(plain.read).to match(%r{\AHTTP/1.1 400 Bad Request\r\n.*use an https:// address}m) # as nginx does
    plain.close
    failures = @tipi.lines_matching(/tipi: 127\.0\.0\.1: TLS handshake failed/, 2)
    expect(failures.last(2).join).to match(/fatal alert: UnknownCA.*\n.*a plain HTTP request came to the HTTPS port/)
    # Garbage that is not HTTP gets closed too.
    garbage = TCPSocket.new('127.0.0.1', @port)
    garbage.write("\x16\x03\x01\x00\x05hello")
    expect(garbage.read.bytesize).to be < 10
    garbage.close
    @tipi.lines_matching(/tipi: 127\.0\.0\.1: TLS handshake failed/, 3)
    _out, err, status = curl(url('/pid'))
    expect(status).to be_success, err
  end

  it 'refuses to start on a certificate it cannot use, saying why' do
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-s', '127.0.0.1:0', '--cert', @cert,
                                    '--key', @cert, TIPI_APP)
    expect(status).not_to be_success
    expect(err).to include("tipi: cannot listen on ssl://127.0.0.1:0: #{@cert}, #{@cert}: bad certificate: " \
                           'no usable private key in the key PEM')
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-s', '127.0.0.1:0', '--cert', @cert, TIPI_APP)
    expect(status).not_to be_success
    expect(err).to include('give both --cert and --key')
  end

  # The subject alternative name of the certificate served on `port` to a client asking for
  # `name` (no SNI when nil).
  def served_name(port, name)
    context = OpenSSL::SSL::SSLContext.new
    context.verify_mode = OpenSSL::SSL::VERIFY_NONE
    ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), context)
    ssl.hostname = name if name
    ssl.connect
    ssl.peer_cert.extensions.find { |e| e.oid == 'subjectAltName' }.value.tap { ssl.close }
  end

  it 'serves several certificates from the command line, picked by name, the first by default' do
    require 'openssl'
    files = %w[a.test b.test].flat_map do |name|
      cert, key = Polyphony::TLS.self_signed([name])
      [File.join(@dir, "#{name}.crt").tap { |f| File.write(f, cert) }, File.join(@dir, "#{name}.key").tap { |f| File.write(f, key) }]
    end
    tipi = TipiProcess.new('-s', '127.0.0.1:0', '--cert', files[0], '--key', files[1], '--cert', files[2],
                           '--key', files[3], TIPI_APP)
    port = https_port(tipi)
    expect(tipi.lines.join).to include("(2 certificates picked by name, default #{files[0]})")
    expect(served_name(port, 'b.test')).to eq('DNS:b.test')
    expect(served_name(port, 'a.test')).to eq('DNS:a.test')
    expect(served_name(port, 'other.test')).to eq('DNS:a.test')
    expect(served_name(port, nil)).to eq('DNS:a.test')
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-s', '127.0.0.1:0', '--cert', files[0], '--key',
                                    files[1], '--cert', files[2], TIPI_APP)
    expect(status).not_to be_success
    expect(err).to include('a --key for each --cert file (2 certificates, 1 keys)')
  ensure
    tipi&.stop
  end

  it 'serves several certificates given in a config file' do
    require 'openssl'
    pairs = %w[c.test d.test].map do |name|
      cert, key = Polyphony::TLS.self_signed([name])
      [File.join(@dir, "#{name}.crt").tap { |f| File.write(f, cert) }, File.join(@dir, "#{name}.key").tap { |f| File.write(f, key) }]
    end
    File.write(config = File.join(@dir, 'tipi.rb'), <<~RUBY)
      ssl_bind '127.0.0.1', 0, certs: #{pairs.inspect}
      rackup #{TIPI_APP.inspect}
    RUBY
    tipi = TipiProcess.new('--config', config)
    port = https_port(tipi)
    expect(served_name(port, 'd.test')).to eq('DNS:d.test')
    expect(served_name(port, 'elsewhere.test')).to eq('DNS:c.test')
  ensure
    tipi&.stop
  end

  it 'serves the certificates of a directory, picked by name' do
    require 'openssl'
    dir = File.join(@dir, 'certs')
    FileUtils.mkdir_p(dir)
    %w[one.test two.test].each do |name|
      cert, key = Polyphony::TLS.self_signed([name])
      File.write(File.join(dir, "#{name}.pem"), cert + key) # chain and key in one file
    end
    tipi = TipiProcess.new('-s', '127.0.0.1:0', '--cert', dir, TIPI_APP)
    port = https_port(tipi)
    expect(served_name(port, 'two.test')).to eq('DNS:two.test')
    expect(served_name(port, 'nobody.test')).to eq('DNS:one.test')
    FileUtils.mkdir_p(empty = File.join(@dir, 'empty'))
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-s', '127.0.0.1:0', '--cert', empty, TIPI_APP)
    expect(status).not_to be_success
    expect(err).to include("#{empty}: no certificate with its key")
  ensure
    tipi&.stop
  end

  it 'resumes TLS 1.3 and 1.2 sessions on any worker, the first time too' do
    require 'openssl'
    tipi = TipiProcess.new('-w', '2', '-s', '127.0.0.1:0', '--cert', @cert, '--key', @key, TIPI_APP)
    port = https_port(tipi)
    [OpenSSL::SSL::TLS1_3_VERSION, OpenSSL::SSL::TLS1_2_VERSION].each do |version|
      context = OpenSSL::SSL::SSLContext.new
      context.min_version = context.max_version = version
      context.session_cache_mode = OpenSSL::SSL::SSLContext::SESSION_CACHE_CLIENT
      open = [] # connections kept open, so that the workers take turns (the least busy accepts)
      # A request and its response on a new connection, left open: [worker pid, resumed?, session].
      exchange = lambda do |session|
        ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), context)
        # (A copy each time: OpenSSL spends a TLS 1.3 session once it has resumed it.)
        ssl.session = OpenSSL::SSL::Session.new(session.to_pem) if session
        ssl.connect
        ssl.write("GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = ssl.gets("\r\n\r\n")
        pid = ssl.read(head[/content-length: (\d+)/i, 1].to_i).to_i # (TLS 1.3 tickets come after the handshake)
        open << ssl
        [pid, ssl.session_reused?, ssl.session]
      end
      _pid, _reused, session = exchange.call(nil)
      results = []
      # Until the other worker has taken some: its first connection must resume too.
      until results.map(&:first).uniq.size == 2 && results.size >= 6
        raise "one worker took all #{results.size} connections" if results.size >= 60

        results << exchange.call(session)
        sleep 0.01
      end
      open.each(&:close)
      open.clear
      expect(results.map { |r| r[1] }).to all(be(true)), "version #{version.to_s(16)}: #{results.map { |r| r[0..1] }}"
      next unless version == OpenSSL::SSL::TLS1_3_VERSION

      # A restart hands the ticket secret over: the new workers resume the session too.
      tipi.signal('USR2')
      tipi.read_until(/Use Ctrl-C to stop/)
      # (The old workers finish what they hold before they exit; then only new ones answer.)
      old_workers = results.map(&:first).uniq
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 15
      sleep 0.1 while old_workers.any? { |pid| Process.kill(0, pid) rescue false } && # rubocop:disable Style/RescueModifier
                      Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
      after = 4.times.map { exchange.call(session) }
      open.each(&:close)
      open.clear
      expect(after.map(&:first) & results.map(&:first)).to be_empty # new workers
      expect(after.map { |r| r[1] }).to all(be(true))
    end
  ensure
    tipi&.stop
  end

  it 'serves static files (ranges, large files) from workers with a self-signed certificate' do
    root = File.join(@dir, 'www')
    FileUtils.mkdir_p(root)
    big = Random.new(3).bytes(2_500_000)
    File.binwrite(File.join(root, 'big.bin'), big)
    File.write(File.join(root, 'hello.txt'), "hello static\n")
    tipi = TipiProcess.new('-s', '127.0.0.1:0', '-w', '2', '-q', root)
    port = https_port(tipi)
    expect(tipi.lines.join).to include('self-signed certificate for localhost')
    out, err, status = run_command('curl', '-sS', '-k', '--max-time', '10', "https://127.0.0.1:#{port}/big.bin")
    expect(status).to be_success, err
    expect(out.b).to eq(big)
    out, _err, status = run_command('curl', '-sS', '-k', '-r', '6-11', "https://127.0.0.1:#{port}/hello.txt")
    expect(status).to be_success
    expect(out).to eq('static')
  ensure
    tipi&.stop
  end
end
