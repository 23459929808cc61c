# frozen_string_literal: true

require 'openssl'
require 'tmpdir'
require_relative '../support/pebble'
require 'tipi'
require 'tipi/acme'

# `tipi -f`: certificates from a local Pebble CA, obtained and renewed by the real command.
RSpec.describe 'tipi with ACME' do
  before(:all) do
    @pebble = Pebble.new # Pebble's default: 5% of good nonces rejected as bad
    File.write(@root = File.join(@pebble.dir, 'issuing-root.pem'), @pebble.issuing_root)
  end

  after(:all) do
    @pebble.stop
  end

  def tipi(http_port, https_port, *args, dir:)
    TipiProcess.new('-f', "tipi.test:#{http_port}:#{https_port}", '--acme-directory', @pebble.directory,
                    '--acme-ca', @pebble.ca_file, '--acme-dir', dir, '--acme-email', 'ops@tipi.test', *args, TIPI_APP)
  end

  def free_port
    TCPServer.new('127.0.0.1', 0).then { |s| s.addr[1].tap { s.close } }
  end

  def curl(*args)
    run_command('curl', '-sS', '--max-time', '10', '--cacert', @root, *args)
  end

  # The serial number of the certificate served for tipi.test on `port`.
  def served_serial(port)
    context = OpenSSL::SSL::SSLContext.new
    context.ca_file = @root
    context.verify_mode = OpenSSL::SSL::VERIFY_PEER
    ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), context)
    ssl.hostname = 'tipi.test'
    ssl.connect
    ssl.peer_cert.serial.tap { ssl.close }
  end

  it 'gets a certificate with HTTP-01, serves HTTPS with it, redirects HTTP, and reuses it after a restart' do
    dir = Dir.mktmpdir
    https_port = free_port
    server = tipi(@pebble.http_port, https_port, dir: dir)
    expect(server.lines.join).to include("listening on https://0.0.0.0:#{https_port} (certificates from ACME)")
    server.read_until(/issued the certificate for tipi\.test/)
    log = server.lines.join
    expect(log).to include('tipi: acme: created the ACME account', 'ordering a certificate for tipi.test (http-01)',
                           'serving the http-01 challenge for tipi.test')
    out, err, status = curl('--resolve', "tipi.test:#{https_port}:127.0.0.1", "https://tipi.test:#{https_port}/pid")
    expect(status).to be_success, err
    expect(out).to eq(server.pid.to_s)
    # IPv6 too, with the same certificate.
    expect(server.lines.join).to include("listening on https://[::]:#{https_port} (certificates from ACME)")
    out, err, status = curl('--resolve', "tipi.test:#{https_port}:[::1]", "https://tipi.test:#{https_port}/pid")
    expect(status).to be_success, err
    expect(out).to eq(server.pid.to_s)

    out, _err, status = curl('-i', '--resolve', "tipi.test:#{@pebble.http_port}:127.0.0.1",
                             "http://tipi.test:#{@pebble.http_port}/some/path?q=1")
    expect(status).to be_success
    expect(out).to match(%r{\AHTTP/1.1 308 .*^Location: https://tipi.test:#{https_port}/some/path\?q=1\r$}m)

    files = Dir.glob("#{dir}/**/*.{pem,json}")
    expect(files.size).to eq(2) # the account and the certificate
    expect(files.map { |f| File.stat(f).mode & 0o777 }).to all(eq(0o600))
    expect(Dir.children(File.join(dir, 'challenges'))).to be_empty
    server.stop

    again = tipi(@pebble.http_port, https_port, dir: dir)
    out, err, status = curl('--resolve', "tipi.test:#{https_port}:127.0.0.1", "https://tipi.test:#{https_port}/pid")
    expect(status).to be_success, err
    expect(out).to eq(again.pid.to_s)
    sleep 0.5
    expect(again.lines.join).not_to include('ordering')
    expect(again.lines.join).to match(/tipi: acme: loaded the stored certificate for tipi\.test, valid until \d{4}-/)
  ensure
    again&.stop
    server&.stop unless server.nil? || server.stopped?
    FileUtils.rm_rf(dir)
  end

  it 'listens on the address -f names, and says what -f wants when it is malformed' do
    http_port = free_port
    https_port = free_port
    dir = Dir.mktmpdir
    server = TipiProcess.new('-f', "127.0.0.1:tipi.test:#{http_port}:#{https_port}", '--acme-directory',
                             @pebble.directory, '--acme-ca', @pebble.ca_file, '--acme-dir', dir, TIPI_APP)
    listening = server.lines.grep(/listening on/).map(&:strip)
    expect(listening).to eq(["* listening on http://127.0.0.1:#{http_port}",
                             "* listening on https://127.0.0.1:#{https_port} (certificates from ACME)"])
    expect { TCPSocket.new('::1', http_port) }.to raise_error(Errno::ECONNREFUSED)
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-f', 'tipi.test:80', TIPI_APP)
    expect(status).not_to be_success
    expect(err).to include('-f wants [ADDRESS:]NAMES:HTTP_PORT:HTTPS_PORT, got "tipi.test:80"')
  ensure
    server&.stop
    FileUtils.rm_rf(dir) if dir
  end

  it 'gets a certificate with TLS-ALPN-01 ordered by the controller and served by workers' do
    dir = Dir.mktmpdir
    server = tipi(free_port, @pebble.tls_port, '-w', '2', '--acme-challenge', 'tls-alpn-01', dir: dir)
    server.read_until(/issued the certificate for tipi\.test/)
    expect(server.lines.join).to include('ordering a certificate for tipi.test (tls-alpn-01)')
    expect(server.lines.grep(/ordering/).size).to eq(1) # once, not once per worker
    sleep 1.5 # the workers pick it up from disk
    pids = 6.times.map do
      out, err, status = curl('--resolve', "tipi.test:#{@pebble.tls_port}:127.0.0.1", "https://tipi.test:#{@pebble.tls_port}/pid")
      expect(status).to be_success, err
      out.to_i
    end
    expect(pids - server.workers).to be_empty
  ensure
    server&.stop
    FileUtils.rm_rf(dir)
  end

  it 'gets certificates on demand for allowed names during their first handshake' do
    dir = Dir.mktmpdir
    https_port = free_port
    server = TipiProcess.new('-f', "*:#{@pebble.http_port}:#{https_port}", '--acme-allow', 'ok.test,*.ok.test',
                             '--acme-directory', @pebble.directory, '--acme-ca', @pebble.ca_file, '--acme-dir', dir, TIPI_APP)
    %w[ok.test www.ok.test].each do |name|
      out, err, status = curl('--resolve', "#{name}:#{https_port}:127.0.0.1", "https://#{name}:#{https_port}/pid")
      expect(status).to be_success, err
      expect(out).to eq(server.pid.to_s)
    end
    expect(server.lines_matching(/issued the certificate for/, 2).size).to eq(2)
    _out, err, status = curl('--resolve', "bad.test:#{https_port}:127.0.0.1", "https://bad.test:#{https_port}/pid")
    expect(status).not_to be_success
    expect(err).to include('unrecognized name') # alert 112 (RFC 6066), not access_denied
    server.read_until(/no certificate for bad\.test: not an allowed name/)
    server.read_until(/TLS handshake failed: no certificate for "bad\.test"/)
    # Known now: served at once, not ordered again.
    _out, err, status = curl('--resolve', "ok.test:#{https_port}:127.0.0.1", "https://ok.test:#{https_port}/pid")
    expect(status).to be_success, err
    server.lines_matching(%r{"GET /pid HTTP/(1\.1|2)" 200}, 3)
    expect(server.lines.grep(/ordering/).size).to eq(2)
  ensure
    server&.stop
    FileUtils.rm_rf(dir)
  end

  it 'reports a certificate it cannot use or store and serves on' do
    dir = Dir.mktmpdir
    lines = []
    acme = Tipi::ACME.new(Polyphony::TLS::ServerContext.new(['http/1.1']), names: ['broken.test'],
                          directory: @pebble.directory, ca_file: @pebble.ca_file, dir: dir, log: ->(l) { lines << l })
    FileUtils.mkdir_p(acme.cert_path('broken.test')) # a directory where the certificate goes
    acme.reload
    acme.reload # reported once, not at each look
    expect(lines).to eq(["tipi: acme: unusable certificate #{acme.cert_path('broken.test')}: Is a directory @ io_fread - " \
                         "#{acme.cert_path('broken.test')}"])
    expect(acme.renew_if_due('broken.test')).to be(false) # the order's result cannot be saved
    expect(lines.last).to start_with('tipi: acme: no certificate for broken.test:')
  ensure
    FileUtils.rm_rf(dir)
  end

  it 'renews a certificate a third of whose lifetime is left, with no restart' do
    pebble = Pebble.new(validity: 12)
    File.write(root = File.join(pebble.dir, 'root.pem'), pebble.issuing_root)
    dir = Dir.mktmpdir
    https_port = free_port
    server = TipiProcess.new('-f', "tipi.test:#{pebble.http_port}:#{https_port}", '--acme-directory', pebble.directory,
                             '--acme-ca', pebble.ca_file, '--acme-dir', dir, '--acme-check', '0.5', TIPI_APP)
    server.read_until(/issued the certificate for tipi\.test/)
    @root = root
    first = served_serial(https_port)
    server.read_until(/renewed the certificate for tipi\.test/)
    second = served_serial(https_port)
    expect(second).not_to eq(first)
  ensure
    server&.stop
    pebble&.stop
    FileUtils.rm_rf(dir) if dir
  end
end
