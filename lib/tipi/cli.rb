# frozen_string_literal: true

require 'optparse'
require_relative 'config'
require_relative 'controller'
require_relative 'acme'
require_relative 'access_log'

module Tipi
  # The `tipi` command: options, the app, then the controller runs it.
  module CLI
    USAGE = 'Usage: tipi [options] [app.ru | app.rb | directory]   (default app: ./config.ru)'
    DEFAULTS = { quiet: false, timeout: 30.0 }.freeze
    DEFAULT_BIND = '0.0.0.0:1234'

    module_function

    def run(argv)
      options = parse(argv)
      ENV['RACK_ENV'] = options[:environment] # (the environment's own unless -e or the config file say)
      $stdout.sync = true # the access log reaches its reader even if a worker is killed
      app, native = load_app(options)
      return puts("tipi: #{options[:app]} loads") if options[:check]

      listeners = bind(options[:binds])
      options[:acme_manager] = setup_acme(options, listeners) if options[:acme]
      limits = options.slice(:max_header_size, :max_head_size)
      server = Server.new(app, listeners: listeners, native: native, logger: options[:quiet] ? nil : method(:log),
                               timeout: options[:timeout], max_body: options[:max_body],
                               max_connections: options[:max_connections], **limits)
      Controller.new(server, options, argv).run
    end

    def bind(urls)
      urls.filter_map do |url|
        Listener.bind(url)
      rescue Listener::NoIPv6 => e
        warn "tipi: no IPv6 here (#{e.message}): IPv4 only"
        nil
      end
    rescue ArgumentError => e
      abort "tipi: #{e.message}"
    end

    # Command line over config file over defaults.
    def parse(argv)
      cli = {}
      parser = option_parser(cli)
      rest = parser.parse(argv)
      abort "tipi: one app file at most, got #{rest.join(' ')}\n#{USAGE}" if rest.size > 1
      cli[:app] = rest.first if rest.first
      file = cli[:config] ? Config.load(cli[:config]) : {}
      options = DEFAULTS.merge(file).merge(cli)
      options[:environment] ||= ENV['RACK_ENV'] || 'development'
      options[:binds] = cli[:binds] || file[:binds] || [Listener.normalize(default_bind)]
      certs = Array(options[:cert])
      files = certs.reject { |cert| File.directory?(cert) }
      unless files.size == Array(options[:key]).size
        abort "tipi: give both --cert and --key, a --key for each --cert file " \
              "(#{files.size} certificates, #{Array(options[:key]).size} keys)\n#{USAGE}"
      end
      options[:binds] = options[:binds].map { |url| Listener.with_certificate(url, certs, options[:key]) }
      options[:app] ||= 'config.ru' unless options[:rack_app]
      options
    rescue OptionParser::ParseError, ArgumentError => e
      abort "tipi: #{e.message}\n#{USAGE}"
    end

    # Where to listen when neither the command line nor the config file says: on $PORT (as
    # Heroku-style platforms give it) if set.
    def default_bind
      port = ENV['PORT']
      return DEFAULT_BIND if port.nil? || port.empty?
      raise ArgumentError, "PORT must be a port number, not #{port.inspect}" unless port.match?(/\A\d+\z/)

      "0.0.0.0:#{port}"
    end

    def option_parser(options)
      OptionParser.new do |o|
        o.banner = USAGE
        o.on('-l', '--listen [HOST:]PORT', "listen on HOST:PORT (default #{DEFAULT_BIND}, or 0.0.0.0:$PORT);",
             'repeatable') do |value|
          (options[:binds] ||= []) << Listener.normalize(value)
        end
        o.on('-p', '--port PORT', Integer, 'listen on 0.0.0.0:PORT (as Puma and rackup); repeatable') do |value|
          (options[:binds] ||= []) << Listener.normalize("0.0.0.0:#{value}")
        end
        o.on('-b', '--bind URL', 'listen on tcp://HOST:PORT, ssl://HOST:PORT[?cert=PATH&key=PATH] or',
             'unix:///PATH; repeatable') do |value|
          (options[:binds] ||= []) << Listener.normalize(value)
        end
        o.on('-s', '--secure [HOST:]PORT', 'serve HTTPS on HOST:PORT (with --cert and --key, else a',
             'self-signed certificate for localhost); repeatable') do |value|
          (options[:binds] ||= []) << Listener.normalize("ssl://#{value.include?(':') ? value : "0.0.0.0:#{value}"}")
        end
        o.on('--cert FILE|DIR', 'a certificate chain (PEM) for -s; repeatable with --key (picked by',
             'name, the first the default); or a directory of them') { |v| (options[:cert] ||= []) << v }
        o.on('--key FILE', 'the private key (PEM) of the --cert before it') { |v| (options[:key] ||= []) << v }
        o.on('-f', '--full-service [ADDR:]NAMES:HTTP:HTTPS', 'HTTPS for NAMES (comma-separated; * for any',
             'name, on demand) on port HTTPS, certificates', 'from ACME (Let\'s Encrypt by default); port',
             'HTTP answers challenges, redirects to HTTPS;', 'on ADDR, else every IPv4 and IPv6 address') do |value|
          options[:acme] = full_service(value)
          (options[:binds] ||= []).concat(full_service_binds(options[:acme]))
        end
        o.on('--acme-email EMAIL', 'contact address for the ACME account') { |v| acme_option(options, :email, v) }
        o.on('--acme-directory URL', 'the ACME CA (default Let\'s Encrypt; "staging" for its staging CA)') do |v|
          acme_option(options, :directory, v == 'staging' ? Polyphony::ACME::LETS_ENCRYPT_STAGING : v)
        end
        o.on('--acme-ca FILE', 'CA bundle that signs the ACME server\'s own certificate') do |v|
          acme_option(options, :ca_file, v)
        end
        o.on('--acme-dir DIR', 'where account and certificates are kept (~/.local/share/tipi)') do |v|
          acme_option(options, :dir, v)
        end
        o.on('--acme-challenge TYPE', %w[http-01 tls-alpn-01], 'http-01 (default) or tls-alpn-01') do |v|
          acme_option(options, :challenge, v)
        end
        o.on('--acme-allow PATTERNS', 'with -f \'*:...\': the names (comma-separated, *.example.com',
             'style) certificates are obtained for on demand; default: any') do |v|
          acme_option(options, :allow, v.split(','))
        end
        o.on('--acme-check SECONDS', Float, 'how often certificates are checked for renewal (3600)') do |v|
          acme_option(options, :check_interval, v)
        end
        o.on('--acme-store URL', 'redis://HOST:PORT/DB: account, certificates, locks and challenges',
             'in Redis, shared by a fleet of servers (default: --acme-dir)') do |v|
          acme_option(options, :store, v)
        end
        o.on('--acme-retry-base SECONDS', Float, 'wait before ordering a failed name again, doubling (60)') do |v|
          acme_option(options, :retry_base, v)
        end
        o.on('--acme-eab KID:HMAC', 'external account binding (ZeroSSL...)') do |v|
          acme_option(options, :eab, v.split(':', 2))
        end
        positive(o, options, :workers, Integer, '-w', '--workers N', 'forked worker processes sharing the listeners')
        o.on('-C', '--config FILE', 'a Ruby config file (see docs/tipi.md)') { |v| options[:config] = v }
        o.on('-e', '--environment NAME', 'RACK_ENV for the app (default: $RACK_ENV, else development)') do |v|
          options[:environment] = v
        end
        o.on('-P', '--pidfile FILE', '--pid FILE', 'write the controller\'s pid to FILE') { |v| options[:pidfile] = v }
        o.on('-q', '--quiet', 'no access log') { options[:quiet] = true }
        positive(o, options, :timeout, Float, '--timeout SECONDS',
                 'for a request head, between requests, for a body, for a stalled write (30)')
        positive(o, options, :max_body, Integer, '--max-body BYTES', 'largest request body (413 beyond; no limit by default)')
        positive(o, options, :max_connections, Integer, '--max-connections N', 'connections served at once')
        positive(o, options, :max_header_size, Integer, '--max-header-size BYTES',
                 "longest request target or header value (#{Server::MAX_HEADER_SIZE}; 414 or 431 beyond)")
        positive(o, options, :max_head_size, Integer, '--max-head-size BYTES',
                 "longest request head, all fields (#{Server::MAX_HEAD_SIZE}; 431 beyond)")
        o.on('--check', 'load the config and the app, then exit (0 when they load)') { options[:check] = true }
        o.on('-v', '--version', 'print the version') do
          puts "Tipi #{Tipi::VERSION}"
          exit
        end
        o.on('-h', '--help', 'this help') do
          puts o
          exit
        end
      end
    end

    # An option whose value must be positive (the message names it otherwise).
    def positive(parser, options, key, type, *switches, description)
      parser.on(*switches, type, description) do |value|
        abort "tipi: #{switches.last.split.first} must be positive" unless value.positive?
        options[key] = value
      end
    end

    # "a.example,b.example:80:443"
    # -f [ADDRESS:]NAMES:HTTP_PORT:HTTPS_PORT (an IPv6 ADDRESS in brackets).
    def full_service(value)
      match = value.match(/\A(?:(\[[^\]]+\]|[^:\[\]]+):)?([^:\[\]]+):(\d+):(\d+)\z/)
      raise ArgumentError, "-f wants [ADDRESS:]NAMES:HTTP_PORT:HTTPS_PORT, got #{value.inspect}" unless match

      address, names, http_port, https_port = match.captures
      { names: names.split(','), http_port: http_port.to_i, https_port: https_port.to_i, address: address }
    end

    # The listeners of -f: on ADDRESS, or on every IPv4 and IPv6 address.
    def full_service_binds(acme)
      hosts = acme[:address] ? [acme[:address]] : ['0.0.0.0', '[::]']
      hosts.flat_map do |host|
        v6only = acme[:address].nil? && host == '[::]'
        [Listener.normalize("tcp://#{host}:#{acme[:http_port]}#{'?v6only=1' if v6only}"),
         Listener.normalize("ssl://#{host}:#{acme[:https_port]}?acme=1#{'&v6only=1' if v6only}")]
      end
    end

    def acme_option(options, name, value)
      (options[:acme_options] ||= {})[name] = value
    end

    # The ACME manager of an -f server: its HTTPS listener's certificates, its HTTP listener's
    # challenge responder.
    def setup_acme(options, listeners)
      https = listeners.select { |listener| listener.url.include?('acme=1') }
      http_urls = full_service_binds(options[:acme]).reject { |url| url.include?('acme=1') }
      http = listeners.select { |listener| http_urls.include?(listener.url) }
      acme = ACME.new(https.first.tls, names: options[:acme][:names], **(options[:acme_options] || {}))
      responder = ACME::Responder.new(acme.store, options[:acme][:https_port])
      http.each { |listener| listener.app = responder }
      https.each do |listener|
        listener.tls = https.first.tls # one set of certificates, IPv4 and IPv6 alike
        listener.acme = acme
      end
      acme.load_stored
      acme
    rescue ArgumentError, SystemCallError, RedisClient::Error => e
      abort "tipi: #{e.message}"
    end

    # @return [Array(#call, Boolean)] the app and whether it is Tipi-native (takes a Request)
    def load_app(options)
      return [options[:rack_app], false] if options[:rack_app]

      path = options[:app]
      return [Static.new(path), false] if File.directory?(path)

      abort "tipi: no such app file #{path}\n#{USAGE}" unless File.file?(path)
      path.end_with?('.rb') ? [load_native(path), true] : [load_rack(path), false]
    end

    def load_rack(path)
      require 'rack'
      require 'uri' # Rack 2.2's Lint uses URI without requiring it (Puma loads it too)
      app = Rack::Builder.parse_file(path)
      app.is_a?(Array) ? app.first : app # Rack 2 returns [app, options]
    end

    # An app.rb holds a Tipi-native handler: its last expression, called with each request.
    def load_native(path)
      handler = TOPLEVEL_BINDING.eval(File.read(path), File.expand_path(path))
      abort "tipi: #{path} must end with a handler (a proc taking a request), got #{handler.inspect}" \
        unless handler.respond_to?(:call)

      handler
    end

    def log(env, status, seconds, bytes = nil)
      AccessLog.call($stdout, env, status, seconds, bytes)
    end
  end
end
