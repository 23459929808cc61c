# frozen_string_literal: true

require 'openssl'
require 'tmpdir'
require_relative '../support/pebble'
require_relative '../support/redis_server'
require 'tipi'
require 'tipi/acme'

# One certificate store for a fleet: several tipi servers on one Redis (`--acme-store`) make
# one order per name and all serve its result; any of them answers the CA's challenge.
RSpec.describe 'tipi ACME with a store in Redis' do
  before(:all) do
    @pebble = Pebble.new
    @redis = RedisServer.new
    File.write(@root = File.join(@pebble.dir, 'issuing-root.pem'), @pebble.issuing_root)
  end

  after(:all) do
    @redis.stop
    @pebble.stop
  end

  def free_port
    TCPServer.new('127.0.0.1', 0).then { |s| s.addr[1].tap { s.close } }
  end

  def served_serial(port, name)
    context = OpenSSL::SSL::SSLContext.new
    context.ca_file = @root
    context.verify_mode = OpenSSL::SSL::VERIFY_PEER
    ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), context)
    ssl.hostname = name
    ssl.connect
    ssl.peer_cert.serial.tap { ssl.close }
  end

  # The first of `servers` to log `pattern`.
  def wait_for_any(servers, pattern, limit: 40)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + limit
    loop do
      servers.each do |server|
        return server if server.lines.join.match?(pattern)

        begin
          server.read_until(pattern, limit: 0.3)
          return server
        rescue RuntimeError
          nil
        end
      end
      raise "no #{pattern.inspect} in #{limit} s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    end
  end

  def tipi(spec, db, *args)
    TipiProcess.new('-f', spec, '--acme-directory', @pebble.directory, '--acme-ca', @pebble.ca_file,
                    '--acme-store', @redis.url(db), *args, TIPI_APP)
  end

  it 'has two servers make one account and one order, and serve the same certificate' do
    # Only the first listens where Pebble validates HTTP-01: whichever orders, it answers.
    ports = [free_port, free_port]
    servers = [tipi("fleet.test:#{@pebble.http_port}:#{ports[0]}", 1), tipi("fleet.test:#{free_port}:#{ports[1]}", 1)]
    wait_for_any(servers, /issued the certificate for fleet\.test/)
    sleep 1.5 # the other picks it up from the store
    logs = servers.map { |server| server.lines.join }
    expect(logs.sum { |log| log.scan('ordering a certificate for fleet.test').size }).to eq(1)
    expect(logs.sum { |log| log.scan('created the ACME account').size }).to eq(1)
    expect(served_serial(ports[0], 'fleet.test')).to eq(served_serial(ports[1], 'fleet.test'))
  ensure
    servers&.each(&:stop)
  end

  it 'answers a TLS-ALPN-01 challenge an order of another server put in the store' do
    # The server on Pebble's TLS port orders nothing itself (no allowed name): it only serves.
    server = tipi("*:#{free_port}:#{@pebble.tls_port}", 2, '--acme-allow', 'none.test', '--acme-challenge', 'tls-alpn-01')
    lines = []
    orderer = Tipi::ACME.new(Polyphony::TLS::ServerContext.new(['http/1.1']), names: ['alpn.test'],
                             directory: @pebble.directory, ca_file: @pebble.ca_file, challenge: 'tls-alpn-01',
                             store: @redis.url(2), log: ->(line) { lines << line })
    expect(orderer.renew_if_due('alpn.test')).to be(true), lines.join("\n")
    expect(lines.join).to include('serving the tls-alpn-01 challenge for alpn.test (through the store)')
    sleep 1.5 # the server picks the new certificate up from the store (names there are served)
    stored = OpenSSL::X509::Certificate.new(orderer.store.certificate('alpn.test'))
    expect(served_serial(@pebble.tls_port, 'alpn.test')).to eq(stored.serial)
  ensure
    server&.stop
  end

  it "lets a lock whose holder crashed lapse, and keeps a live holder's" do
    store = Tipi::ACME::RedisStore.new(@redis.url(3), 'ca', lock_ttl: 0.6)
    redis = Tipi::RedisClient.new(@redis.url(3))
    redis.call('SET', 'tipi:acme:ca:lock:crashed.test', 'someone who died', 'PX', '600')
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    store.lock('crashed.test') { :got_it }
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be_between(0.4, 3)
    # A holder that works for longer than the lock's lifetime keeps it (it renews it).
    order = []
    holder = spin { store.lock('busy.test') { order << :first_in; sleep 1.5; order << :first_out } }
    snooze
    waiter = spin { store.lock('busy.test') { order << :second_in } }
    Fiber.await(holder, waiter)
    expect(order).to eq(%i[first_in first_out second_in])
  end

  it 'refuses a store it cannot reach, at boot, saying which' do
    port = free_port
    _out, err, status = run_command(RbConfig.ruby, 'exe/tipi', '-f', "x.test:#{free_port}:#{free_port}",
                                    '--acme-store', "redis://127.0.0.1:#{port}/0", TIPI_APP)
    expect(status).not_to be_success
    expect(err).to include("tipi: cannot use the ACME store redis://127.0.0.1:#{port}/0")
  end
end
