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
    # The names of the certificate an ssl:// listener without one makes for itself.
    SELF_SIGNED_NAMES = %w[localhost *.localhost 127.0.0.1 ::1].freeze

    # @return [Polyphony::TLS::ServerContext, nil] the certificates of an ssl:// listener
    attr_reader :url, :socket, :tls
    # @return [#call, nil] the app this listener's connections get instead of the server's
    attr_accessor :app
    # @return [Tipi::ACME, nil] gets certificates on demand, before handshakes
    attr_accessor :acme

    # @param url [String] tcp://host:port, unix://path, or [host:]port
    # @return [String] the URL in its full form
    def self.normalize(url)
      case url
      when %r{\Atcp://(\[[^\]]*\]|[^:/]*):(\d+)/?\z} then "tcp://#{Regexp.last_match(1)}:#{Regexp.last_match(2)}"
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

    # An ssl:// URL's certificate: the cert= and key= files, or a self-signed one.
    def self.tls_context(url, alpn)
      query = URI.decode_www_form(url[/\?(.*)\z/, 1] || '').to_h
      cert, key = query.values_at('cert', 'key')
      return Polyphony::TLS::ServerContext.new(alpn) if query['acme'] # filled by Tipi::ACME
      return Polyphony::TLS::ServerContext.self_signed(SELF_SIGNED_NAMES, alpn: alpn) unless cert || key
      raise ArgumentError, "#{url}: give both cert= and key=" unless cert && key

      Polyphony::TLS::ServerContext.load(cert, key, alpn: alpn)
    rescue Polyphony::TLS::CertificateError => e
      raise ArgumentError, "cannot listen on #{url.sub(/\?.*/, '')}: #{e.message}"
    end

    # `url` with cert= and key= added, unless it has its own (-s with --cert and --key).
    def self.with_certificate(url, cert, key)
      return url unless url.start_with?('ssl:') && cert && !url.include?('?')

      "#{url}?#{URI.encode_www_form(cert: cert, key: key)}"
    end

    # { url => fd } handed down by a restart (read once: the variable is removed).
    def self.inherited_fds
      @inherited_fds ||= begin
        value = ENV.delete(INHERIT_ENV)
        value ? JSON.parse(value) : {}
      end
    end

    def self.bind_tcp(url)
      host, port = url.sub(%r{\A\w+://}, '').sub(/\?.*\z/, '').match(/\A\[?(.*?)\]?:(\d+)\z/).captures
      TCPServer.new(host, port.to_i)
    rescue Errno::EADDRINUSE, Errno::EADDRNOTAVAIL, Errno::EACCES, SocketError => e
      raise ArgumentError, "cannot listen on #{url}: #{e.message}"
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

      query = URI.decode_www_form(@url[/\?(.*)\z/, 1] || '').to_h
      return 'certificates from ACME' if query['acme']

      query['cert'] ? "certificate #{query['cert']}" : "self-signed certificate for #{SELF_SIGNED_NAMES.join(', ')}"
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
      [{ INHERIT_ENV => JSON.generate(fds) }, fds.values.to_h { |fd| [fd, fd] }]
    end
  end
end
