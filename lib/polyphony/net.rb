# frozen_string_literal: true

require 'socket'

module Polyphony
  # Polyphony's helpers for TCP servers and clients. The sockets they return are stock ones,
  # whose waits let other fibers run. (Polyphony's `secure_context:` option is not taken: TLS
  # here is Polyphony::TLS.)
  module Net
    class << self
      # A listening TCP socket on `host` (all IPv4 addresses by default) and `port`.
      # Options: `reuse_addr:`, `reuse_port:` (SO_REUSEADDR, SO_REUSEPORT), `backlog:`
      # (Socket::SOMAXCONN by default).
      # @return [TCPServer]
      def tcp_listen(host = nil, port = nil, opts = {})
        Kernel.raise ArgumentError, 'tcp_listen needs a port' unless port
        Kernel.raise ArgumentError, 'secure_context: is not taken here (see Polyphony::TLS)' if opts[:secure_context]

        address = Addrinfo.tcp(host || '0.0.0.0', port)
        socket = Socket.new(address.afamily, Socket::SOCK_STREAM)
        socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_REUSEADDR, true) if opts[:reuse_addr]
        socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_REUSEPORT, true) if opts[:reuse_port]
        socket.bind(address)
        socket.listen(opts[:backlog] || Socket::SOMAXCONN)
        socket.autoclose = false # the TCPServer below owns the descriptor now
        TCPServer.for_fd(socket.fileno)
      rescue StandardError
        socket&.autoclose = true
        socket&.close
        raise
      end

      # A TCP connection to `host` and `port`; the fiber waits while it connects.
      # @return [TCPSocket]
      def tcp_connect(host, port, opts = {})
        Kernel.raise ArgumentError, 'secure_context: is not taken here (see Polyphony::TLS)' if opts[:secure_context]

        TCPSocket.new(host, port)
      end
    end
  end
end
