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
  # handshake for it. A name whose order failed is not tried again for ON_DEMAND_BACKOFF s.
  class ACME
    CHECK_INTERVAL = 3600
    RETRY_INTERVAL = 60
    ON_DEMAND_BACKOFF = 600
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
    def initialize(context, names:, directory: Polyphony::ACME::LETS_ENCRYPT, dir: nil, ca_file: nil, email: nil,
                   challenge: 'http-01', eab: nil, check_interval: CHECK_INTERVAL, allow: [], log: nil)
      @context = context
      @names = names - ['*']
      @on_demand = names.include?('*')
      @allow = allow
      @failed = {}
      @directory = directory
      @challenge = challenge
      @check_interval = check_interval
      @log = log || ->(line) { $stdout.write("#{line}\n") }
      @order = { directory: directory, challenge: challenge, contact: email ? ["mailto:#{email}"] : [] }
      @order[:ca] = File.read(ca_file) if ca_file
      @order[:eab_kid], @order[:eab_hmac] = eab[0], decode_base64url(eab[1]) if eab
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

        @loaded[name] = mtime # a file that cannot be used is reported once, not every second
        pem = File.read(cert_path(name))
        @context.add_certificate(pem, pem, false)
      rescue Errno::ENOENT
        nil
      rescue SystemCallError, Polyphony::TLS::CertificateError => e
        say "unusable certificate #{cert_path(name)}: #{e.message}"
      end
    end

    # Obtains missing certificates, then renews them when due; forever (in a fiber).
    def run
      loop do
        failed = names.reject { |name| renew_if_due(name) }
        sleep(failed.empty? ? @check_interval : [@check_interval, RETRY_INTERVAL].min)
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

      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      return if @failed[name] && @failed[name] > now

      @failed[name] = now + ON_DEMAND_BACKOFF unless renew_if_due(name)
    end

    def allowed?(name)
      name.match?(HOST_NAME) && (@allow.empty? || @allow.any? { |pattern| File.fnmatch?(pattern, name) })
    end

    # @return [Boolean] false when an order failed
    def renew_if_due(name)
      locked(name) do
        reload # another process may have renewed it meanwhile
        remaining = due(name)
        obtain(name, remaining) if remaining
      end
      true
    rescue Polyphony::ACME::Error, SystemCallError, OpenSSL::X509::CertificateError => e
      # Logged and tried again later: the server serves on (with the certificates it has).
      say "no certificate for #{name}: #{e.message}"
      false
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
      save(account_path, result['account']) unless options[:account]
      save(cert_path(name), result['chain'] + result['key'])
      reload
      cert = OpenSSL::X509::Certificate.new(result['chain'])
      say "#{remaining == :missing ? 'issued' : 'renewed'} the certificate for #{name} " \
          "(#{format('%.1f', Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)} s), " \
          "valid until #{cert.not_after.utc.iso8601}"
    end

    def account
      File.read(account_path) if File.exist?(account_path)
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
