# frozen_string_literal: true

require 'tmpdir'
require_relative '../support/pebble'
require 'tipi'
require 'tipi/acme'

# ACME that never hammers the CA (against a local Pebble): one account, saved the moment it is
# made; failed names backed off, doubling; refusals the CA marks as final and configuration
# errors not retried until the next day (or a changed configuration), and reported once.
RSpec.describe 'tipi ACME backoff' do
  before(:all) do
    @pebble = Pebble.new(blocklist: ['blocked.test'])
  end

  after(:all) do
    @pebble.stop
  end

  def acme(names, dir, **options)
    lines = []
    acme = Tipi::ACME.new(Polyphony::TLS::ServerContext.new(['http/1.1']), names: names, directory: @pebble.directory,
                                                                            ca_file: @pebble.ca_file, dir: dir,
                                                                            log: ->(line) { lines << line }, **options)
    [acme, lines]
  end

  it 'saves the account the moment it is made and uses it for every later order, failed or not' do
    dir = Dir.mktmpdir
    # Nothing answers HTTP-01 on Pebble's validation port: every order fails validation.
    acme, lines = acme(['unreachable.test'], dir, retry_base: 0.2)
    expect(acme.renew_if_due('unreachable.test')).to be(false)
    account = Dir.glob("#{dir}/accounts/*.json")
    expect(account.size).to eq(1)
    saved = File.read(account.first)
    3.times do
      sleep 0.05 until acme.retry_at('unreachable.test') <= Time.now.to_f
      expect(acme.renew_if_due('unreachable.test')).to be(false)
    end
    expect(lines.grep(/created the ACME account/).size).to eq(1)
    expect(lines.grep(/ordering a certificate for unreachable\.test/).size).to eq(4)
    expect(File.read(account.first)).to eq(saved)
    # Another process (a second manager on the same directory) uses the same account.
    other, other_lines = acme(['unreachable.test'], dir, retry_base: 0.2)
    sleep 0.05 until other.retry_at('unreachable.test') <= Time.now.to_f
    other.renew_if_due('unreachable.test')
    expect(other_lines.grep(/created the ACME account/)).to be_empty
  ensure
    FileUtils.rm_rf(dir)
  end

  it 'backs a failing name off, doubling, and says when the next try is' do
    dir = Dir.mktmpdir
    acme, lines = acme(['unreachable.test'], dir, retry_base: 0.2)
    waits = 4.times.map do
      sleep 0.02 until (acme.retry_at('unreachable.test') || 0) <= Time.now.to_f
      acme.renew_if_due('unreachable.test')
      expect(acme.renew_if_due('unreachable.test')).to be(false) # in backoff: no order
      lines.grep(/no certificate for unreachable\.test/).last[/next try in ([\d.]+) s/, 1].to_f
    end
    expect(waits).to eq([0.2, 0.4, 0.8, 1.6])
    expect(lines.grep(/ordering a certificate/).size).to eq(4)
    expect(lines.last).to match(/validation failed: .*; next try in 1\.6 s \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)\z/)
  ensure
    FileUtils.rm_rf(dir)
  end

  it 'does not order again a name the CA refuses for good, until the next day' do
    dir = Dir.mktmpdir
    acme, lines = acme(['blocked.test'], dir, retry_base: 0.1)
    expect(acme.renew_if_due('blocked.test')).to be(false)
    expect(lines.last).to match(/no certificate for blocked\.test: .*rejectedIdentifier.*the CA refuses this name for good; next try in 24\.0 h/)
    expect(acme.retry_at('blocked.test') - Time.now.to_f).to be > 86_000
    sleep 0.3
    said = lines.size
    expect(acme.renew_if_due('blocked.test')).to be(false)
    expect(lines.size).to eq(said) # not asked again, nothing said again
  ensure
    FileUtils.rm_rf(dir)
  end

  it 'reports a CA bundle that does not sign the ACME server once, with what to change, and retries when it changes' do
    dir = Dir.mktmpdir
    wrong = File.join(dir, 'wrong-ca.pem')
    File.write(wrong, Polyphony::TLS.self_signed(['unrelated.test']).first)
    acme, lines = acme(['tipi.test'], dir, ca_file: wrong, retry_base: 0.1)
    expect(acme.renew_if_due('tipi.test')).to be(false)
    sleep 0.2
    expect(acme.renew_if_due('tipi.test')).to be(false)
    failures = lines.grep(/no certificate for tipi\.test/)
    expect(failures.size).to eq(1)
    expect(failures.first).to include('--acme-ca must hold the CA that signs the ACME server', 'fix the configuration')
    # Fixed: the backoff decided under the old configuration does not hold.
    fixed, = acme(['tipi.test'], dir, retry_base: 0.1)
    expect(fixed.retry_at('tipi.test')).to be_nil
  ensure
    FileUtils.rm_rf(dir)
  end

  it 'reports a directory URL that is not an ACME server as a configuration error' do
    dir = Dir.mktmpdir
    acme, lines = acme(['tipi.test'], dir, directory: @pebble.directory.sub('/dir', '/nothing-here'))
    expect(acme.renew_if_due('tipi.test')).to be(false)
    expect(lines.last).to match(/check --acme-directory.*fix the configuration/)
  ensure
    FileUtils.rm_rf(dir)
  end
end
