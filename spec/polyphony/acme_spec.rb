# frozen_string_literal: true

require 'tmpdir'
require 'base64'
require_relative '../support/pebble'

RSpec.describe Polyphony::ACME do
  # Answers HTTP-01 challenges from `dir` on `port`, in a fiber.
  def responder(port, dir)
    spin do
      Tipi.serve('127.0.0.1', port, logger: nil) do |req|
        file = File.join(dir, req.path.split('/').last)
        File.file?(file) ? req.respond(File.read(file)) : req.respond('', ':status' => 404)
      end
    end.tap { snooze }
  end

  def order(pebble, dir, **options)
    { directory: pebble.directory, ca: File.read(pebble.ca_file), names: ['acme.test'], challenge: 'http-01',
      challenge_dir: dir }.merge(options)
  end

  before { require 'tipi' }

  it 'still gets its certificate when the CA rejects a third of the nonces' do
    pebble = Pebble.new(env: { 'PEBBLE_WFE_NONCEREJECT' => '33' })
    dir = Dir.mktmpdir
    server = responder(pebble.http_port, dir)
    log = []
    others = 0
    ticker = spin_loop { others += 1; sleep 0.001 }
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    result = Polyphony::ACME.obtain(order(pebble, dir)) { |line| log << line }
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    expect(result['chain']).to start_with('-----BEGIN CERTIFICATE-----')
    expect(result['key']).to start_with('-----BEGIN PRIVATE KEY-----')
    expect(JSON.parse(result['account'])).to include('id')
    expect(log).to include('ordering a certificate for acme.test (http-01)', 'serving the http-01 challenge for acme.test')
    # Other fibers ran all along while the order was in progress (an order takes from tens of
    # milliseconds to seconds, depending on when Pebble has validated; a 1 ms ticker that is never
    # starved ticks nearly once per millisecond; a tenth of that is asked, for a busy machine).
    expect(others).to be >= [(elapsed * 1000 / 10).floor, 1].max
    expect(Dir.children(dir)).to be_empty # the challenge response was withdrawn
  ensure
    ticker&.stop
    server&.stop
    pebble&.stop
  end

  it 'says why validation failed, and reuses a saved account' do
    pebble = Pebble.new(env: { 'PEBBLE_WFE_NONCEREJECT' => '0' })
    dir = Dir.mktmpdir
    server = responder(pebble.http_port, dir)
    account = Polyphony::ACME.obtain(order(pebble, dir))['account']
    server.stop
    log = []
    expect { Polyphony::ACME.obtain(order(pebble, dir, account: account, names: ['other.test'])) { |line| log << line } }
      .to raise_error(Polyphony::ACME::Error, /validation failed: other\.test: .*(refused|connect)/i)
    expect(log.grep(/created the ACME account/)).to be_empty
  ensure
    pebble&.stop
  end

  it 'binds the account to an external one when the CA requires it (ZeroSSL-style EAB)' do
    key = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W'
    pebble = Pebble.new(env: { 'PEBBLE_WFE_NONCEREJECT' => '0' }, eab: { 'kid-1' => key })
    dir = Dir.mktmpdir
    server = responder(pebble.http_port, dir)
    expect { Polyphony::ACME.obtain(order(pebble, dir)) }
      .to raise_error(Polyphony::ACME::Error, /externalAccountRequired|external account/i)
    result = Polyphony::ACME.obtain(order(pebble, dir, eab_kid: 'kid-1', eab_hmac: Base64.urlsafe_decode64(key)))
    expect(result['chain']).to start_with('-----BEGIN CERTIFICATE-----')
  ensure
    server&.stop
    pebble&.stop
  end

  it 'names the problem when the CA cannot be reached' do
    expect do
      Polyphony::ACME.obtain(directory: 'https://127.0.0.1:1/dir', names: ['x.test'], challenge: 'http-01',
                             challenge_dir: Dir.tmpdir, attempts: 2)
    end.to raise_error(Polyphony::ACME::Error, /cannot reach the ACME server: .*(refused|connect)/i)
    expect { Polyphony::ACME.obtain(directory: 'https://127.0.0.1:1/dir', names: ['x.test'], challenge: 'dns-01', challenge_dir: '/') }
      .to raise_error(Polyphony::ACME::Error, 'unknown challenge "dns-01" (http-01 or tls-alpn-01)')
  end
end
