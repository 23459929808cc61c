# frozen_string_literal: true

require 'json'
require 'socket'
require 'tmpdir'
require 'fileutils'
require 'net/http'
require 'openssl'

# Debian's Pebble (a test ACME CA) and pebble-challtestsrv (its DNS, resolving every name to
# 127.0.0.1) on loopback, on free ports. The validator connects to `http_port` (HTTP-01) and
# `tls_port` (TLS-ALPN-01) of 127.0.0.1: the server under test listens there.
class Pebble
  attr_reader :dir, :http_port, :tls_port, :ca_file, :directory

  # @param env [Hash] Pebble's environment (PEBBLE_WFE_NONCEREJECT ...)
  # @param validity [Integer, nil] lifetime of the certificates it issues, in seconds
  # @param eab [Hash, nil] { key id => HMAC key (base64url) }: accounts need external binding
  # @param blocklist [Array<String>, nil] names Pebble refuses for good (rejectedIdentifier)
  def initialize(env: {}, validity: nil, eab: nil, blocklist: nil)
    @dir = Dir.mktmpdir('pebble')
    @http_port, @tls_port, api, management, dns = free_ports(5)
    cert, key = Polyphony::TLS.self_signed(['localhost'])
    File.write(@ca_file = File.join(@dir, 'listener.pem'), cert)
    File.write(File.join(@dir, 'listener.key'), key)
    config = { 'listenAddress' => "127.0.0.1:#{api}", 'managementListenAddress' => "127.0.0.1:#{management}",
               'certificate' => @ca_file, 'privateKey' => File.join(@dir, 'listener.key'),
               'httpPort' => @http_port, 'tlsPort' => @tls_port, 'ocspResponderURL' => '',
               'externalAccountBindingRequired' => false }
    config['certificateValidityPeriod'] = validity if validity
    config['domainBlocklist'] = blocklist if blocklist
    config.merge!('externalAccountBindingRequired' => true, 'externalAccountMACKeys' => eab) if eab
    File.write(File.join(@dir, 'config.json'), JSON.generate('pebble' => config))
    @log = File.open(File.join(@dir, 'pebble.log'), 'w')
    @dns = spawn('pebble-challtestsrv', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', "127.0.0.1:#{dns}",
                 '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', "127.0.0.1:#{free_ports(1).first}",
                 out: @log, err: @log)
    @pebble = spawn({ 'PEBBLE_VA_NOSLEEP' => '1' }.merge(env), 'pebble', '-config', File.join(@dir, 'config.json'),
                    '-dnsserver', "127.0.0.1:#{dns}", '-strict=false', out: @log, err: @log)
    @directory = "https://localhost:#{api}/dir"
    @management = management
    wait_for(api)
  end

  # The root that signs the certificates Pebble issues (a new one each run), as PEM.
  def issuing_root
    @issuing_root ||= begin
      http = Net::HTTP.new('localhost', @management)
      http.use_ssl = true
      http.ca_file = @ca_file
      http.get('/roots/0').body
    end
  end

  def log
    File.read(File.join(@dir, 'pebble.log'))
  end

  def stop
    [@pebble, @dns].each do |pid|
      Process.kill('TERM', pid)
      Process.wait(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end
    @log.close
    FileUtils.rm_rf(@dir)
  end

  private

  def free_ports(count)
    servers = Array.new(count) { TCPServer.new('127.0.0.1', 0) }
    servers.map { |s| s.addr[1] }.tap { servers.each(&:close) }
  end

  def wait_for(port)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
    loop do
      TCPSocket.new('127.0.0.1', port).close
      return
    rescue Errno::ECONNREFUSED
      raise "Pebble did not start:\n#{log}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end
end
