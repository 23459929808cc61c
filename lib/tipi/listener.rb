# frozen_string_literal: true

require 'io/nonblock'
require 'json'
require 'socket'
require 'uri'

module Tipi
  # A bound socket the server accepts on, named by a Puma-style URL: `tcp://host:port`,
  # `ssl://host:port?cert=PATH&key=PATH` (HTTPS; with no cert and key, a self-signed
  # certificate for localhost) or `unix:///path/to.sock`. Listeners survive a restart: their
  # descriptors pass to the new process image through the environment (TIPI_LISTEN_FDS), so no
  # connection is refused.
  class Listener
    INHERIT_ENV = 'TIPI_LISTEN_FDS'
    # The TLS session ticket secret handed to the next image at a restart (hex), so that
    # clients resume across it.
    TICKET_ENV = 'TIPI_TLS_TICKET_SECRET'
    # The names of the certificate an ssl:// listener without one makes for itself.
    SELF_SIGNED_NAMES = %w[localhost *.localhost 127.0.0.1 ::1].freeze

    # @return [Polyphony::TLS::ServerContext, nil] the certificates of an ssl:// listener
    attr_reader :url, :socket, :tls

    # Shares another listener's certificates (the IPv6 half of an ACME listener, say).
    # @api private
    attr_writer :tls
    # @return [#call, nil] the app this listener's connections get instead of the server's
    attr_accessor :app
    # @return [Tipi::ACME, nil] gets certificates on demand, before handshakes
    attr_accessor :acme

    # @param url [String] tcp://host:port, unix://path, or [host:]port
    # @return [String] the URL in its full form
    def self.normalize(url)
      case url
      when %r{\Atcp://(\[[^\]]*\]|[^:/]*):(\d+)/?(\?v6only=1)?\z}
        "tcp://#{Regexp.last_match(1)}:#{Regexp.last_match(2)}#{Regexp.last_match(3)}"
      when %r{\Assl://(\[[^\]]*\]|[^:/]*):(\d+)/?(\?.*)?\z}
        "ssl://#{Regexp.last_match(1)}:#{Regexp.last_match(2)}#{Regexp.last_match(3)}"
      when %r{\Aunix://(.+)\z} then "unix://#{Regexp.last_match(1)}"
      when /\A\d+\z/ then "tcp://0.0.0.0:#{url}"
      when /\A(\[[^\]]*\]|[^:\/]+):(\d+)\z/ then "tcp://#{Regexp.last_match(1)}:#{Regexp.last_match(2)}"
      else raise ArgumentError, "bad listen address #{url.inspect} (expected [host:]port, " \
                                'tcp://host:port, ssl://host:port or unix:///path)'
      end
    end

    # tcp://host:port, with an IPv6 host in brackets.
    def self.tcp_url(host, port)
      host.include?(':') ? "tcp://[#{host}]:#{port}" : "tcp://#{host}:#{port}"
    end

    # Binds `url`, or takes over the socket a previous image of this process left for it.
    # @param alpn [Array<String>] what an ssl:// listener offers
    def self.bind(url, inherited = inherited_fds, alpn: %w[h2 http/1.1])
      url = normalize(url)
      tls = tls_context(url, alpn) if url.start_with?('ssl:')
      fd = inherited.delete(url)
      return new(url, url.start_with?('unix:') ? UNIXServer.for_fd(fd) : TCPServer.for_fd(fd), tls) if fd

      new(url, url.start_with?('unix:') ? bind_unix(url.delete_prefix('unix://')) : bind_tcp(url), tls)
    end

    # An ssl:// URL's certificates: each cert= and key= pair (repeated: picked by the name the
    # client asks for, the first one for clients whose name none covers), every PEM file of a
    # certs= directory, or a self-signed one.
    def self.tls_context(url, alpn)
      query = URI.decode_www_form(url[/\?(.*)\z/, 1] || '')
      return Polyphony::TLS::ServerContext.new(alpn) if query.assoc('acme') # filled by Tipi::ACME

      pairs = certificate_pairs(url, query)
      return Polyphony::TLS::ServerContext.self_signed(SELF_SIGNED_NAMES, alpn: alpn) if pairs.empty?

      context = Polyphony::TLS::ServerContext.new(alpn)
      pairs.each_with_index { |(cert, key), i| context.add_certificate_files(cert, key, fallback: i.zero?) }
      context
    rescue Polyphony::TLS::CertificateError => e
      raise ArgumentError, "cannot listen on #{url.sub(/\?.*/, '')}: #{e.message}"
    end

    # [[cert file, key file]...] of an ssl:// URL's query (in order).
    def self.certificate_pairs(url, query)
      certs = query.select { |name, _| name == 'cert' }.map(&:last)
      keys = query.select { |name, _| name == 'key' }.map(&:last)
      unless certs.size == keys.size
        raise ArgumentError, "#{url.sub(/\?.*/, '')}: give a key= for each cert= (#{certs.size} certificates, #{keys.size} keys)"
      end

      pairs = certs.zip(keys)
      query.select { |name, _| name == 'certs' }.each { |_, dir| pairs.concat(directory_pairs(dir)) }
      pairs
    end

    # The certificates of a directory: each NAME.pem holding a chain and its key, or a
    # NAME.crt (or NAME.pem) with its NAME.key beside it; by name, so the first is the default.
    def self.directory_pairs(dir)
      files = Dir.children(dir).sort
      pairs = files.filter_map do |file|
        path = File.join(dir, file)
        base = file.sub(/\.(pem|crt)\z/, '')
        next unless file.match?(/\.(pem|crt)\z/) && File.file?(path)

        key = File.join(dir, "#{base}.key")
        next [path, key] if File.file?(key)
        next [path, path] if File.read(path).include?('PRIVATE KEY-----')
      end
      raise ArgumentError, "#{dir}: no certificate with its key (NAME.pem holding both, or NAME.crt and NAME.key)" if pairs.empty?

      pairs
    rescue SystemCallError => e
      raise ArgumentError, "cannot read the certificates in #{dir}: #{e.message}"
    end

    # `url` with each certificate's cert= and key= added (a directory as certs=), unless it
    # has its own (-s with --cert and --key).
    def self.with_certificate(url, certs, keys = [])
      certs = Array(certs)
      keys = Array(keys)
      return url unless url.start_with?('ssl:') && !certs.empty? && !url.include?('?')

      dirs, files = certs.partition { |cert| File.directory?(cert) }
      query = files.zip(keys).flat_map { |cert, key| [['cert', cert], ['key', key]] }
      query += dirs.map { |dir| ['certs', dir] }
      "#{url}?#{URI.encode_www_form(query)}"
    end

    # { url => fd } handed down by a restart (read once: the variable is removed).
    def self.inherited_fds
      @inherited_fds ||= begin
        value = ENV.delete(INHERIT_ENV)
        secret = ENV.delete(TICKET_ENV)
        Polyphony::TLS.ticket_secret = [secret].pack('H*') if secret&.match?(/\A\h{64}\z/)
        value ? JSON.parse(value) : {}
      end
    end

    # IPv6 is not there (a kernel or container without it): the IPv6 half of a dual listener is
    # left out.
    class NoIPv6 < StandardError; end

    def self.bind_tcp(url)
      host, port = url.sub(%r{\A\w+://}, '').sub(/\?.*\z/, '').match(/\A\[?(.*?)\]?:(\d+)\z/).captures
      return TCPServer.new(host, port.to_i) unless url.match?(/[?&]v6only=1/)

      bind_ipv6_only(host, port.to_i)
    rescue Errno::EAFNOSUPPORT, Errno::EADDRNOTAVAIL => e
      raise NoIPv6, "#{url.sub(/\?.*/, '')}: #{e.message}" if url.match?(/[?&]v6only=1/)

      raise ArgumentError, "cannot listen on #{url}: #{e.message}"
    rescue Errno::EADDRINUSE, Errno::EACCES, SocketError => e
      raise ArgumentError, "cannot listen on #{url}: #{e.message}"
    end

    # An IPv6 listener that takes IPv6 only (IPV6_V6ONLY), beside an IPv4 one on the same port
    # (a dual-stack socket would take that port's IPv4 too).
    def self.bind_ipv6_only(host, port)
      socket = Socket.new(:INET6, :STREAM)
      socket.setsockopt(Socket::IPPROTO_IPV6, Socket::IPV6_V6ONLY, 1)
      socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_REUSEADDR, 1)
      socket.bind(Addrinfo.tcp(host, port))
      socket.listen(Socket::SOMAXCONN)
      socket.autoclose = false
      TCPServer.for_fd(socket.fileno)
    rescue StandardError
      socket&.close
      raise
    end

    # A stale socket file (no server answers on it) is replaced; a live one is an error.
    def self.bind_unix(path)
      if File.socket?(path)
        begin
          UNIXSocket.new(path).close
          raise ArgumentError, "cannot listen on unix://#{path}: a server is using it"
        rescue Errno::ECONNREFUSED, Errno::ENOENT
          File.unlink(path)
        end
      end
      UNIXServer.new(path)
    rescue Errno::EADDRINUSE, Errno::EACCES, Errno::ENOENT => e
      raise ArgumentError, "cannot listen on unix://#{path}: #{e.message}"
    end

    def initialize(url, socket, tls = nil)
      @url = url
      @socket = socket
      @tls = tls
      # Responses written in pieces (streamed bodies) go out at once, not after the client's
      # delayed ACK (40 ms). Linux gives accepted sockets the listener's TCP_NODELAY, which
      # spares a system call per connection (see #nodelay_inherited?).
      socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1) unless unix?
      # #accept calls accept4(2) at once, polling only when no connection is pending: the
      # socket must not block (Ruby makes its own sockets so; an inherited one is made so here).
      socket.nonblock = true
    end

    # Accepts the next connection, letting other fibers run until one comes: the socket and
    # the peer's IP address (nil on a Unix socket). Stopping the fiber never drops a connection
    # (no accept is left in the kernel on its behalf: a graceful stop relies on it), and the
    # address comes with the connection, not from a getpeername(2).
    def accept
      fd, ip = Polyphony.__io_accept_peer__(@socket.fileno)
      socket = @socket.__socket_class__.for_fd(fd)
      socket.sync = true
      [socket, ip]
    end

    # Whether `socket`, accepted here, has TCP_NODELAY from the listener (asked of a first
    # connection; where it does not, each connection sets it).
    def nodelay_inherited?(socket)
      unix? || socket.getsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY).int != 0
    end

    def unix?
      @url.start_with?('unix:')
    end

    # The bound host (for SERVER_NAME when a request has no Host header).
    def host
      unix? ? 'localhost' : @url[%r{\A\w+://\[?(.*?)\]?:\d+(\?.*)?\z}, 1]
    end

    # The bound port (the real one when 0 was asked for); nil for a Unix socket.
    def port
      unix? ? nil : @socket.local_address.ip_port
    end

    # The URL with the real port, for the boot banner.
    def to_s
      return @url if unix?

      "#{@tls ? 'https' : 'http'}://#{@url[%r{\A\w+://(.*?):\d+(\?.*)?\z}, 1]}:#{port}"
    end

    # What the boot banner says of the listener's certificate.
    def certificate
      return unless @tls

      query = URI.decode_www_form(@url[/\?(.*)\z/, 1] || '')
      return 'certificates from ACME' if query.assoc('acme')

      pairs = Listener.certificate_pairs(@url, query)
      return "self-signed certificate for #{SELF_SIGNED_NAMES.join(', ')}" if pairs.empty?
      return "certificate #{pairs.first.first}" if pairs.size == 1

      "#{pairs.size} certificates picked by name, default #{pairs.first.first}"
    end

    def close
      @socket.close unless @socket.closed?
    end

    # Removes a Unix socket's file (at the final stop, not at a restart).
    def unlink
      path = @url.delete_prefix('unix://')
      File.unlink(path) if unix? && File.socket?(path)
    rescue SystemCallError
      nil
    end

    # The environment entry and exec redirections that keep `listeners` open across exec.
    def self.handover(listeners)
      fds = listeners.to_h { |listener| [listener.url, listener.socket.fileno] }
      env = { INHERIT_ENV => JSON.generate(fds) }
      env[TICKET_ENV] = Polyphony::TLS.ticket_secret.unpack1('H*') if listeners.any?(&:tls)
      [env, fds.values.to_h { |fd| [fd, fd] }]
    end
  end
end
