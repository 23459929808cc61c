# frozen_string_literal: true

require 'digest'
require 'fileutils'
require 'json'
require 'openssl'
require 'time'
require_relative 'acme_store'

module Tipi
  # Certificates for an HTTPS listener from an ACME CA, obtained when missing and renewed when
  # less than a third of their lifetime is left, in the background, with no restart: each one
  # goes into the listener's certificate store as soon as it is issued.
  #
  # Everything is kept in a store (see Tipi::ACME::Store): a directory (`dir`, by default
  # ~/.local/share/tipi) or Redis (`store: 'redis://HOST:PORT/DB'`), shared by every process
  # of a server and by every server that uses the same one. One process of a server orders
  # (the controller); a lock per name in the store means no two processes, nor two servers,
  # ever order the same certificate; the others pick the new certificate up within a second.
  #
  # With `*` among the names, certificates are also obtained on demand: for any name a client
  # asks for (by SNI) that `allow` patterns accept (all when there are none), during the first
  # handshake for it.
  #
  # The CA is never hammered. The account is made once, saved at once, and used by every order
  # of every process (an flock on the account file while it is made). A name whose order fails
  # is not ordered again before its backoff ends: `retry_base` seconds (60), doubling at each
  # failure up to a day; a day when the CA refused the name for good, or when the configuration
  # is wrong (reported once, with what to change; a changed configuration is tried at once).
  # The backoff is kept beside the certificate (`NAME.retry`), so every process, and the next
  # run, honours it; the log says when the next try is.
  class ACME
    CHECK_INTERVAL = 3600
    RETRY_BASE = 60
    RETRY_MAX = 86_400
    HOST_NAME = /\A(?=.{1,253}\z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?\z/.freeze

    # @return [DirectoryStore, RedisStore]
    attr_reader :store

    # @param context [Polyphony::TLS::ServerContext] the HTTPS listener's certificates
    # @param names [Array<String>] host names to get certificates for
    # @param directory [String] the CA's directory URL
    # @param ca_file [String, nil] the CA bundle that signs the ACME server's own certificate
    # @param challenge [String] 'http-01' (needs port 80, see Responder) or 'tls-alpn-01'
    # @param eab [Array(String, String), nil] external account binding: key id, HMAC key
    #   (base64url)
    # @param log [#call] takes each line for the operator
    # @param retry_base [Numeric] seconds before a failed name is ordered again (doubling)
    # @param store [String, nil] redis://HOST:PORT/DB to keep everything in Redis (else `dir`)
    def initialize(context, names:, directory: Polyphony::ACME::LETS_ENCRYPT, dir: nil, ca_file: nil, email: nil,
                   challenge: 'http-01', eab: nil, check_interval: CHECK_INTERVAL, allow: [], log: nil,
                   retry_base: RETRY_BASE, store: nil)
      @context = context
      @names = names - ['*']
      @on_demand = names.include?('*')
      @allow = allow
      @retry_base = retry_base
      @directory = directory
      @challenge = challenge
      @check_interval = check_interval
      @log = log || ->(line) { $stdout.write("#{line}\n") }
      @order = { directory: directory, challenge: challenge, contact: email ? ["mailto:#{email}"] : [] }
      @order[:ca] = File.read(ca_file) if ca_file
      @order[:eab_kid], @order[:eab_hmac] = eab[0], decode_base64url(eab[1]) if eab
      # What a backoff was decided under: a failure under another configuration is not held
      # against this one.
      @config = Digest::SHA256.hexdigest([directory, challenge, @order[:ca], email, eab&.first].inspect)[0, 16]
      @store = Store.open(store || dir, ca_name)
      @store.serve_challenges(context)
      @loaded = {}
    end

    # Installs the certificates on disk that are new to this process (issued earlier, or by
    # another process).
    def reload
      names.each do |name|
        version = @store.certificate_version(name)
        next if version.nil? || @loaded[name] == version

        first = !@loaded.key?(name)
        @loaded[name] = version # a certificate that cannot be used is reported once, not every second
        pem = @store.certificate(name) or next
        @context.add_certificate(pem, pem, false)
        say "loaded the stored certificate for #{name}, valid until #{not_after(pem)}" if first && @booting
      rescue SystemCallError, Polyphony::TLS::CertificateError => e
        say "unusable certificate #{cert_path(name)}: #{e.message}"
      end
    rescue RedisClient::Error => e
      say "cannot read the store: #{e.message}"
    end

    # Installs the certificates already in the store, saying which (at boot).
    def load_stored
      @booting = true
      reload
    ensure
      @booting = false
    end

    # Obtains missing certificates, then renews them when due; forever (in a fiber). Names in
    # backoff wait for their next try.
    def run
      # Certificates another process (or another server sharing the store) obtains are picked
      # up meanwhile.
      watcher = spin { watch }
      loop do
        names.each { |name| renew_if_due(name) }
        now = Time.now.to_f
        waits = names.filter_map { |name| retry_at(name)&.-(now) }
        sleep([@check_interval, *waits].min.clamp(0.05, nil))
      end
    ensure
      watcher&.stop
    end

    # Picks up certificates another process obtained; forever (in a worker's fiber).
    def watch(interval = 1)
      loop do
        reload
        sleep interval
      end
    end

    # The names certificates are kept for: those given, and on demand, those in the store.
    def names
      return @names unless @on_demand

      @names | @store.names.select { |name| name.match?(HOST_NAME) }
    end

    def on_demand?
      @on_demand
    end

    # Before a handshake for `name` (on demand): obtains its certificate unless one is there,
    # the name is not allowed, or its last order failed lately. Returns at once, or when the
    # certificate is in place (or could not be had: the handshake then fails).
    def obtain_on_demand(name)
      name = name.downcase
      return if @context.covers?(name)
      return say("no certificate for #{name}: not an allowed name (--acme-allow)") unless allowed?(name)

      renew_if_due(name)
    end

    def allowed?(name)
      name.match?(HOST_NAME) && (@allow.empty? || @allow.any? { |pattern| File.fnmatch?(pattern, name) })
    end

    # @return [Boolean] false when an order failed, or the name waits for its next try
    def renew_if_due(name)
      @store.lock(name.downcase) do
        reload # another process may have renewed it meanwhile
        remaining = due(name)
        next true unless remaining
        next false if retry_at(name)&.>(Time.now.to_f)

        obtain(name, remaining)
        clear_retry(name)
        true
      rescue Polyphony::ACME::Error, SystemCallError, OpenSSL::X509::CertificateError, RedisClient::Error => e
        # Logged and tried again later: the server serves on (with the certificates it has).
        back_off(name, e)
        false
      end
    rescue SystemCallError, RedisClient::Error => e
      say "no certificate for #{name}: #{e.message}"
      false
    end

    # When `name` may be ordered again (epoch seconds), or nil when it is not in backoff.
    def retry_at(name)
      record = @store.retry_record(name)
      record && record['config'] == @config ? record['at'] : nil
    end

    # The seconds left on the certificate for `name` when it is due for renewal (:missing when
    # there is none); nil when it is good for now.
    def due(name)
      pem = @store.certificate(name) or return :missing
      cert = OpenSSL::X509::Certificate.new(pem)
      left = cert.not_after - Time.now
      left < (cert.not_after - cert.not_before) / 3 ? left : nil
    rescue OpenSSL::X509::CertificateError
      :missing
    end

    def cert_path(name)
      @store.cert_path(name)
    end

    private

    def obtain(name, remaining)
      options = @order.merge(names: [name], account: account, **@store.order_options)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      result = Polyphony::ACME.obtain(options, @context) { |message| say message }
      @store.save_certificate(name, result['chain'] + result['key'])
      reload
      cert = OpenSSL::X509::Certificate.new(result['chain'])
      say "#{remaining == :missing ? 'issued' : 'renewed'} the certificate for #{name} " \
          "(#{format('%.1f', Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)} s), " \
          "valid until #{cert.not_after.utc.iso8601}"
    end

    # The saved account; made (and saved before anything else) when there is none. Processes
    # (and servers sharing the store) take turns: the first makes it, the others find it.
    def account
      @store.account || @store.lock('account') do
        @store.account || Polyphony::ACME.register(@order) { |message| say message }.tap { |json| @store.save_account(json) }
      end
    end

    # Records a failed order for `name` and when to try again; says why, and when.
    def back_off(name, error)
      previous = @store.retry_record(name) || {}
      previous = {} unless previous['config'] == @config
      kind, delay, advice =
        case error
        when Polyphony::ACME::ConfigError
          ['config', RETRY_MAX, 'fix the configuration (a changed one is tried at once)']
        when Polyphony::ACME::Refused
          ['refused', RETRY_MAX, 'the CA refuses this name for good']
        else
          ['passing', previous['kind'] == 'passing' ? [previous['delay'] * 2, RETRY_MAX].min : @retry_base, nil]
        end
      at = Time.now.to_f + delay
      repeated = kind == 'config' && previous['kind'] == 'config' && previous['error'] == error.message
      @store.save_retry(name, 'at' => at, 'delay' => delay, 'kind' => kind, 'config' => @config,
                              'error' => error.message)
      return if repeated # (a configuration error is reported once)

      say "no certificate for #{name}: #{error.message}; #{"#{advice}; " if advice}next try " \
          "in #{duration(delay)} (#{Time.at(at).utc.strftime('%Y-%m-%d %H:%M:%S UTC')})"
    rescue SystemCallError, RedisClient::Error => e
      say "no certificate for #{name}: #{error.message} (and its backoff cannot be kept: #{e.message})"
    end

    def clear_retry(name)
      @store.clear_retry(name)
    end

    def duration(seconds)
      return "#{seconds.round(1)} s" if seconds < 120
      return "#{(seconds / 60).round} min" if seconds < 7200

      "#{(seconds / 3600.0).round(1)} h"
    end

    def not_after(pem)
      OpenSSL::X509::Certificate.new(pem).not_after.utc.iso8601
    rescue OpenSSL::X509::CertificateError
      'unknown'
    end

    # The CA's name in the store: its directory URL, made safe for a file name.
    def ca_name
      ca = @directory.sub(%r{\Ahttps?://}, '').gsub(/[^A-Za-z0-9.-]+/, '_')[0, 60]
      "#{ca}-#{Digest::SHA256.hexdigest(@directory)[0, 8]}"
    end

    def decode_base64url(text)
      text.tr('-_', '+/').unpack1('m')
    end

    def say(line)
      @log.call("tipi: acme: #{line}")
    end

    # The app of the HTTP port next to an ACME HTTPS port: answers HTTP-01 challenges (of any
    # process's orders) and redirects everything else to HTTPS.
    class Responder
      PREFIX = '/.well-known/acme-challenge/'

      # @param store [DirectoryStore, RedisStore] where orders put their responses
      def initialize(store, https_port)
        @store = store
        @port = https_port == 443 ? '' : ":#{https_port}"
      end

      def call(env)
        path = env['PATH_INFO']
        return challenge(path.delete_prefix(PREFIX)) if path.start_with?(PREFIX)

        query = env['QUERY_STRING'].empty? ? '' : "?#{env['QUERY_STRING']}"
        [308, { 'Location' => "https://#{env['SERVER_NAME']}#{@port}#{path}#{query}", 'Content-Length' => '0' }, []]
      end

      private

      def challenge(token)
        body = token.match?(/\A[A-Za-z0-9_-]+\z/) ? @store.http_challenge(token) : nil
        return [404, { 'Content-Type' => 'text/plain', 'Content-Length' => '10' }, ["not found\n"]] unless body

        [200, { 'Content-Type' => 'application/octet-stream', 'Content-Length' => body.bytesize.to_s }, [body]]
      end
    end
  end
end
