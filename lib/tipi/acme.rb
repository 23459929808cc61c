# frozen_string_literal: true

require 'digest'
require 'fileutils'
require 'json'
require 'openssl'
require 'time'

module Tipi
  # Certificates for an HTTPS listener from an ACME CA, obtained when missing and renewed when
  # less than a third of their lifetime is left, in the background, with no restart: each one
  # goes into the listener's certificate store as soon as it is issued.
  #
  # On disk (directories 0700, files 0600), under `dir` (default ~/.local/share/tipi):
  # `accounts/CA.json` (the account key), `certificates/CA/NAME.pem` (chain and key, written
  # whole by rename), `challenges/` (responses being validated, for every worker). One process
  # orders (the controller); an flock per name means no two processes ever order the same
  # certificate; workers pick up new files within a second.
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

    attr_reader :challenge_dir

    # @param context [Polyphony::TLS::ServerContext] the HTTPS listener's certificates
    # @param names [Array<String>] host names to get certificates for
    # @param directory [String] the CA's directory URL
    # @param ca_file [String, nil] the CA bundle that signs the ACME server's own certificate
    # @param challenge [String] 'http-01' (needs port 80, see Responder) or 'tls-alpn-01'
    # @param eab [Array(String, String), nil] external account binding: key id, HMAC key
    #   (base64url)
    # @param log [#call] takes each line for the operator
    # @param retry_base [Numeric] seconds before a failed name is ordered again (doubling)
    def initialize(context, names:, directory: Polyphony::ACME::LETS_ENCRYPT, dir: nil, ca_file: nil, email: nil,
                   challenge: 'http-01', eab: nil, check_interval: CHECK_INTERVAL, allow: [], log: nil,
                   retry_base: RETRY_BASE)
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
      setup_dirs(dir || default_dir)
      context.challenge_dir = @challenge_dir
      @loaded = {}
    end

    # Installs the certificates on disk that are new to this process (issued earlier, or by
    # another process).
    def reload
      names.each do |name|
        mtime = File.mtime(cert_path(name))
        next if @loaded[name] == mtime

        first = !@loaded.key?(name)
        @loaded[name] = mtime # a file that cannot be used is reported once, not every second
        pem = File.read(cert_path(name))
        @context.add_certificate(pem, pem, false)
        say "loaded the stored certificate for #{name}, valid until #{not_after(pem)}" if first && @booting
      rescue Errno::ENOENT
        nil
      rescue SystemCallError, Polyphony::TLS::CertificateError => e
        say "unusable certificate #{cert_path(name)}: #{e.message}"
      end
    end

    # Installs the certificates already on disk, saying which (at boot).
    def load_stored
      @booting = true
      reload
    ensure
      @booting = false
    end

    # Obtains missing certificates, then renews them when due; forever (in a fiber). Names in
    # backoff wait for their next try.
    def run
      loop do
        names.each { |name| renew_if_due(name) }
        now = Time.now.to_f
        waits = names.filter_map { |name| retry_at(name)&.-(now) }
        sleep([@check_interval, *waits].min.clamp(0.05, nil))
      end
    end

    # Picks up certificates another process obtained; forever (in a worker's fiber).
    def watch(interval = 1)
      loop do
        reload
        sleep interval
      end
    end

    # The names certificates are kept for: those given, and on demand, those on disk.
    def names
      return @names unless @on_demand

      @names | Dir.children(@certificates).filter_map do |file|
        name = file.delete_suffix('.pem')
        name if file.end_with?('.pem') && name.match?(HOST_NAME)
      end
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
      locked(name) do
        reload # another process may have renewed it meanwhile
        remaining = due(name)
        next true unless remaining
        next false if retry_at(name)&.>(Time.now.to_f)

        obtain(name, remaining)
        clear_retry(name)
        true
      rescue Polyphony::ACME::Error, SystemCallError, OpenSSL::X509::CertificateError => e
        # Logged and tried again later: the server serves on (with the certificates it has).
        back_off(name, e)
        false
      end
    rescue SystemCallError => e
      say "no certificate for #{name}: #{e.message}"
      false
    end

    # When `name` may be ordered again (epoch seconds), or nil when it is not in backoff.
    def retry_at(name)
      record = JSON.parse(File.read(retry_path(name)))
      record['config'] == @config ? record['at'] : nil
    rescue Errno::ENOENT, JSON::ParserError
      nil
    end

    # The seconds left on the certificate for `name` when it is due for renewal (:missing when
    # there is none); nil when it is good for now.
    def due(name)
      cert = OpenSSL::X509::Certificate.new(File.read(cert_path(name)))
      left = cert.not_after - Time.now
      left < (cert.not_after - cert.not_before) / 3 ? left : nil
    rescue Errno::ENOENT, OpenSSL::X509::CertificateError
      :missing
    end

    def cert_path(name)
      raise ArgumentError, "bad host name #{name.inspect}" unless name.match?(/\A[A-Za-z0-9.-]+\z/)

      File.join(@certificates, "#{name.downcase}.pem")
    end

    private

    def obtain(name, remaining)
      options = @order.merge(names: [name], challenge_dir: @challenge_dir, account: account)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      result = Polyphony::ACME.obtain(options, @context) { |message| say message }
      save(cert_path(name), result['chain'] + result['key'])
      reload
      cert = OpenSSL::X509::Certificate.new(result['chain'])
      say "#{remaining == :missing ? 'issued' : 'renewed'} the certificate for #{name} " \
          "(#{format('%.1f', Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)} s), " \
          "valid until #{cert.not_after.utc.iso8601}"
    end

    # The saved account; made (and saved before anything else) when there is none. Processes
    # take turns: the first makes it, the others find it.
    def account
      return File.read(account_path) if File.exist?(account_path)

      File.open("#{account_path}.lock", File::RDWR | File::CREAT, 0o600) do |lock|
        sleep 0.1 until lock.flock(File::LOCK_EX | File::LOCK_NB)
        next File.read(account_path) if File.exist?(account_path)

        Polyphony::ACME.register(@order) { |message| say message }.tap { |json| save(account_path, json) }
      end
    end

    # Records a failed order for `name` and when to try again; says why, and when.
    def back_off(name, error)
      previous = File.exist?(retry_path(name)) ? JSON.parse(File.read(retry_path(name))) : {}
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
      save(retry_path(name), JSON.generate('at' => at, 'delay' => delay, 'kind' => kind, 'config' => @config,
                                            'error' => error.message))
      return if repeated # (a configuration error is reported once)

      say "no certificate for #{name}: #{error.message}; #{"#{advice}; " if advice}next try " \
          "in #{duration(delay)} (#{Time.at(at).utc.strftime('%Y-%m-%d %H:%M:%S UTC')})"
    rescue SystemCallError, JSON::ParserError => e
      say "no certificate for #{name}: #{error.message} (and its backoff cannot be kept: #{e.message})"
    end

    def clear_retry(name)
      File.delete(retry_path(name))
    rescue Errno::ENOENT
      nil
    end

    def retry_path(name)
      cert_path(name).sub(/\.pem\z/, '.retry')
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

    # Written whole (a reader in another process never sees half a file), readable by us only.
    def save(path, data)
      tmp = "#{path}.#{Process.pid}.tmp"
      File.open(tmp, File::WRONLY | File::CREAT | File::TRUNC, 0o600) { |f| f.write(data) }
      File.rename(tmp, path)
    end

    def locked(name)
      File.open(File.join(@certificates, "#{name.downcase}.lock"), File::RDWR | File::CREAT, 0o600) do |lock|
        sleep 0.1 until lock.flock(File::LOCK_EX | File::LOCK_NB)
        yield
      end
    end

    def setup_dirs(dir)
      ca = @directory.sub(%r{\Ahttps?://}, '').gsub(/[^A-Za-z0-9.-]+/, '_')[0, 60]
      ca = "#{ca}-#{Digest::SHA256.hexdigest(@directory)[0, 8]}"
      @certificates = File.join(dir, 'certificates', ca)
      @challenge_dir = File.join(dir, 'challenges')
      @account_path = File.join(dir, 'accounts', "#{ca}.json")
      [dir, @certificates, @challenge_dir, File.dirname(@account_path)].each do |path|
        FileUtils.mkdir_p(path, mode: 0o700)
      end
    rescue SystemCallError => e
      raise ArgumentError, "cannot use #{dir} for certificates: #{e.message}"
    end

    attr_reader :account_path

    def default_dir
      File.join(ENV.fetch('XDG_DATA_HOME', File.join(Dir.home, '.local', 'share')), 'tipi')
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

      def initialize(challenge_dir, https_port)
        @dir = challenge_dir
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
        file = File.join(@dir, token) if token.match?(/\A[A-Za-z0-9_-]+\z/)
        body = file && File.file?(file) ? File.read(file) : nil
        return [404, { 'Content-Type' => 'text/plain', 'Content-Length' => '10' }, ["not found\n"]] unless body

        [200, { 'Content-Type' => 'application/octet-stream', 'Content-Length' => body.bytesize.to_s }, [body]]
      end
    end
  end
end
