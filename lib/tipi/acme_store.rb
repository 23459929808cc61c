# frozen_string_literal: true

require 'digest'
require 'fileutils'
require 'json'
require 'securerandom'
require_relative 'redis_client'

module Tipi
  class ACME
    # Where an ACME manager keeps the account, the certificates, the backoff records, its
    # locks and the challenge responses being validated: a directory (one machine: the
    # processes of one server, or several servers sharing it), or Redis (a fleet of servers
    # behind a load balancer). Every method is the same for both.
    #
    # `ca` names the CA (its directory URL, made safe for a file name): each CA has its own
    # account and certificates.
    module Store
      # A store for `spec`: a redis:// URL, else a directory (nil: the default one).
      def self.open(spec, ca)
        spec.to_s.start_with?('redis://') ? RedisStore.new(spec, ca) : DirectoryStore.new(spec, ca)
      end
    end

    # The directory store (directories 0700, files 0600): `accounts/CA.json`,
    # `certificates/CA/NAME.pem` (chain and key, written whole by rename), `NAME.retry`
    # beside it, `challenges/` (responses being validated). Locks are flocks.
    class DirectoryStore
      attr_reader :challenge_dir

      def initialize(dir, ca)
        dir ||= default_dir
        @certificates = File.join(dir, 'certificates', ca)
        @challenge_dir = File.join(dir, 'challenges')
        @account_path = File.join(dir, 'accounts', "#{ca}.json")
        [dir, @certificates, @challenge_dir, File.dirname(@account_path)].each do |path|
          FileUtils.mkdir_p(path, mode: 0o700)
        end
      rescue SystemCallError => e
        raise ArgumentError, "cannot use #{dir} for certificates: #{e.message}"
      end

      def to_s
        File.dirname(@challenge_dir)
      end

      # Options for Polyphony::ACME.obtain: where it writes challenge responses.
      def order_options
        { challenge_dir: @challenge_dir }
      end

      # Makes `context` find TLS-ALPN-01 responses written by any process.
      def serve_challenges(context)
        context.challenge_dir = @challenge_dir
      end

      def account
        File.read(@account_path) if File.exist?(@account_path)
      end

      def save_account(json)
        save(@account_path, json)
      end

      # The certificate (chain and key, PEM), or nil.
      def certificate(name)
        File.read(cert_path(name))
      rescue Errno::ENOENT
        nil
      end

      # Changes whenever the certificate does (nil when there is none).
      def certificate_version(name)
        File.mtime(cert_path(name))
      rescue Errno::ENOENT
        nil
      end

      def save_certificate(name, pem)
        save(cert_path(name), pem)
      end

      # The names certificates are stored for.
      def names
        Dir.children(@certificates).filter_map { |file| file.delete_suffix('.pem') if file.end_with?('.pem') }
      end

      def retry_record(name)
        JSON.parse(File.read(retry_path(name)))
      rescue Errno::ENOENT, JSON::ParserError
        nil
      end

      def save_retry(name, record)
        save(retry_path(name), JSON.generate(record))
      end

      def clear_retry(name)
        File.delete(retry_path(name))
      rescue Errno::ENOENT
        nil
      end

      # Runs the block holding the lock `key` (an flock: a process that dies lets it go).
      def lock(key)
        File.open(File.join(@certificates, "#{key}.lock"), File::RDWR | File::CREAT, 0o600) do |lock|
          sleep 0.1 until lock.flock(File::LOCK_EX | File::LOCK_NB)
          yield
        end
      end

      # The HTTP-01 response for `token`, or nil.
      def http_challenge(token)
        file = File.join(@challenge_dir, token)
        File.file?(file) ? File.read(file) : nil
      end

      def cert_path(name)
        raise ArgumentError, "bad host name #{name.inspect}" unless name.match?(/\A[A-Za-z0-9.-]+\z/)

        File.join(@certificates, "#{name.downcase}.pem")
      end

      private

      def retry_path(name)
        cert_path(name).sub(/\.pem\z/, '.retry')
      end

      # Written whole (a reader in another process never sees half a file), readable by us only.
      def save(path, data)
        tmp = "#{path}.#{Process.pid}.tmp"
        File.open(tmp, File::WRONLY | File::CREAT | File::TRUNC, 0o600) { |f| f.write(data) }
        File.rename(tmp, path)
      end

      def default_dir
        File.join(ENV.fetch('XDG_DATA_HOME', File.join(Dir.home, '.local', 'share')), 'tipi')
      end
    end

    # The Redis store, for several servers: keys under `tipi:acme:CA:` (the account, each
    # certificate and its version, backoff records, the set of names); locks are keys set with
    # NX and an expiry, renewed while their holder works, so a crashed holder's lock lapses
    # after LOCK_TTL seconds. Challenge responses go to Redis too (the order's thread writes
    # them; any server answers the CA's request).
    class RedisStore
      LOCK_TTL = 30 # seconds a lock outlives its holder's last renewal
      CHALLENGE_TTL = 600

      RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
      RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
      private_constant :RELEASE, :RENEW

      # @param lock_ttl [Numeric] seconds (shorter in the specs)
      def initialize(url, ca, lock_ttl: LOCK_TTL)
        @redis = RedisClient.new(url)
        @prefix = "tipi:acme:#{ca}:"
        @lock_ttl = lock_ttl
        @redis.call('PING')
      rescue RedisClient::Error => e
        raise ArgumentError, "cannot use the ACME store #{url}: #{e.message}"
      end

      def to_s
        @redis.url
      end

      def order_options
        { challenge_store: @redis.url, challenge_prefix: "#{@prefix}challenge:" }
      end

      def serve_challenges(context)
        context.challenge_store(@redis.url, "#{@prefix}challenge:")
      end

      def account
        @redis.call('GET', "#{@prefix}account")
      end

      def save_account(json)
        @redis.call('SET', "#{@prefix}account", json)
      end

      def certificate(name)
        @redis.call('GET', "#{@prefix}cert:#{name.downcase}")
      end

      def certificate_version(name)
        @redis.call('GET', "#{@prefix}certv:#{name.downcase}")
      end

      def save_certificate(name, pem)
        name = name.downcase
        @redis.call('SET', "#{@prefix}cert:#{name}", pem)
        @redis.call('SADD', "#{@prefix}names", name)
        @redis.call('INCR', "#{@prefix}certv:#{name}")
      end

      def names
        @redis.call('SMEMBERS', "#{@prefix}names")
      end

      def retry_record(name)
        json = @redis.call('GET', "#{@prefix}retry:#{name.downcase}")
        json && JSON.parse(json)
      rescue JSON::ParserError
        nil
      end

      def save_retry(name, record)
        @redis.call('SET', "#{@prefix}retry:#{name.downcase}", JSON.generate(record))
      end

      def clear_retry(name)
        @redis.call('DEL', "#{@prefix}retry:#{name.downcase}")
      end

      # Runs the block holding the lock `key` across the fleet: taken with SET NX PX, renewed
      # every third of its lifetime while the block runs, released (if still ours) after it.
      def lock(key)
        key = "#{@prefix}lock:#{key}"
        token = SecureRandom.hex(16)
        ttl = (@lock_ttl * 1000).to_i.to_s
        sleep 0.1 until @redis.call('SET', key, token, 'NX', 'PX', ttl)
        renewer = spin do
          loop do
            sleep @lock_ttl / 3.0
            @redis.call('EVAL', RENEW, '1', key, token, ttl)
          end
        end
        begin
          yield
        ensure
          renewer.stop
          @redis.call('EVAL', RELEASE, '1', key, token)
        end
      end

      def http_challenge(token)
        @redis.call('GET', "#{@prefix}challenge:http:#{token}")
      end

      # (The directory store's: there is no file here. For messages only.)
      def cert_path(name)
        "#{@redis.url} #{@prefix}cert:#{name.downcase}"
      end
    end
  end
end
