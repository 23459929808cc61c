# frozen_string_literal: true

require 'socket'

module Polyphony
  # TLS on rustls, with the ciphertext moved by the backend: a TLS socket waits like any
  # socket, letting other fibers run. Errors: Polyphony::TLS::Error, and below it
  # HandshakeError (UnknownServerName when no certificate serves the name a client asked for)
  # and CertificateError (a certificate or key that cannot be used).
  module TLS
    # The CA bundle clients trust when given none (Debian's ca-certificates).
    SYSTEM_CA_FILE = '/etc/ssl/certs/ca-certificates.crt'

    # A TLS connection over a socket, used like one: readpartial, read, gets, read_loop,
    # write, <<, close (which sends close_notify first).
    class Socket
      attr_reader :io

      def initialize(io, session)
        @io = io
        @session = session
        @buffer = nil # bytes read past a line by #gets
      end

      # Completes the handshake (raises HandshakeError); returns self.
      def handshake
        @session.__handshake__(@io.fileno)
        self
      end

      # @api private
      # What H1P and the response writers use in place of this object's methods, resolved
      # once per connection: [session, fd], or nil while bytes read past a line by #gets are
      # held here (then #readpartial gives them first).
      def __transport__
        [@session, @io.fileno] unless @buffer
      end

      # The protocol ALPN chose ("h2", "http/1.1"), or nil.
      def alpn_protocol
        @session.alpn_protocol
      end

      # The host name the client asked for (SNI), on a server's connection.
      def server_name
        @session.server_name
      end

      # "TLSv1_3" or "TLSv1_2".
      def protocol_version
        @session.protocol_version
      end

      def readpartial(maxlen = 16_384, buffer = nil)
        data = read_some(maxlen, buffer)
        raise EOFError, 'end of file reached' unless data

        data
      end

      # Reads `length` bytes (fewer at the end), or everything until the end; nil at the end
      # when a length was asked for.
      def read(length = nil, buffer = nil)
        data = +''
        while length.nil? || data.bytesize < length
          chunk = read_some(length ? length - data.bytesize : 65_536)
          break unless chunk

          data << chunk
        end
        return nil if length&.positive? && data.empty?

        buffer ? buffer.replace(data) : data
      end

      # The next line (with its separator), or nil at the end.
      def gets(separator = "\n")
        line = +''
        loop do
          chunk = read_some(16_384)
          return line.empty? ? nil : line unless chunk

          index = chunk.index(separator)
          unless index
            line << chunk
            next
          end
          line << chunk.byteslice(0, index + separator.bytesize)
          rest = chunk.byteslice((index + separator.bytesize)..)
          @buffer = rest unless rest.empty?
          return line
        end
      end

      def read_loop(maxlen = 65_536)
        while (data = read_some(maxlen))
          yield data
        end
      end

      def write(*strings)
        data = strings.size == 1 ? strings.first.to_s : strings.join
        @session.__write__(@io.fileno, data)
      end

      def <<(data)
        write(data)
        self
      end

      def puts(*lines)
        write(lines.map { |line| line.to_s.end_with?("\n") ? line.to_s : "#{line}\n" }.join)
        nil
      end

      def flush
        self
      end

      def close
        return if @io.closed?

        begin
          @session.__close__(@io.fileno)
        rescue SystemCallError, IOError
          nil # the peer is gone: nothing to tell it
        end
        @io.close
      end

      def closed?
        @io.closed?
      end

      def to_io
        @io
      end

      def remote_address
        @io.remote_address
      end

      def local_address
        @io.local_address
      end

      def setsockopt(...)
        @io.setsockopt(...)
      end

      private

      def read_some(maxlen, buffer = nil)
        if @buffer
          data = @buffer.byteslice(0, maxlen)
          @buffer = @buffer.bytesize > maxlen ? @buffer.byteslice(maxlen..) : nil
          return buffer ? buffer.replace(data) : data
        end
        @session.__read__(@io.fileno, maxlen, buffer)
      end
    end

    # A listening socket whose connections speak TLS.
    class Server
      attr_reader :context

      def initialize(io, context)
        @io = io
        @context = context
      end

      # The next connection, its handshake done (one that fails raises and is closed).
      def accept
        TLS.accept(@io.poly_accept, @context)
      end

      def accept_loop
        loop { yield accept }
      end

      def close
        @io.close
      end

      def to_io
        @io
      end
    end

    class ServerContext
      # A context serving the certificate (chain) and key in these PEM files, also to clients
      # that send no SNI or a name it does not carry.
      def self.load(cert_file, key_file, alpn: ['http/1.1'])
        context = new(alpn)
        context.add_certificate_files(cert_file, key_file, fallback: true)
        context
      end

      # A context with a new self-signed certificate for `names` (localhost by default).
      def self.self_signed(names = ['localhost', '*.localhost'], alpn: ['http/1.1'])
        context = new(alpn)
        cert, key = TLS.self_signed(names)
        context.add_certificate(cert, key, true)
        context
      end

      # Adds the certificate (chain) and key in these PEM files; the names it serves.
      def add_certificate_files(cert_file, key_file, fallback: false)
        cert = read_pem(cert_file, 'certificate')
        key = read_pem(key_file, 'key')
        add_certificate(cert, key, fallback)
      rescue CertificateError => e
        raise CertificateError, "#{cert_file}, #{key_file}: #{e.message}"
      end

      private

      def read_pem(path, what)
        File.binread(path)
      rescue SystemCallError => e
        raise CertificateError, "cannot read the #{what} file: #{e.message}"
      end
    end

    module_function

    # The host name (SNI) a client's ClientHello asks for, read without consuming it (to get a
    # certificate before the handshake starts); nil when it names none, or sends no
    # ClientHello within `timeout` seconds.
    def peek_server_name(socket, timeout = 10)
      move_on_after(timeout, with_value: nil) do
        loop do
          data = socket.recv_nonblock(16_384, ::Socket::MSG_PEEK, exception: false)
          return nil if data.nil? || data == '' # the client went away

          if data == :wait_readable
            Polyphony.__io_wait__(socket.fileno, IO::READABLE)
            next
          end
          name = TLS.__peek_server_name__(data) # false: the ClientHello is not all there
          return name unless name == false

          sleep 0.005 # the rest of the ClientHello is on its way (the peeked bytes stay readable)
        end
      end
    end

    # Wraps an accepted socket and does the server side of the handshake (at most `timeout`
    # seconds); the socket is closed when it fails.
    def accept(socket, context, timeout: nil)
      handshake(socket, context.session, timeout)
    end

    # Connects to host:port over TLS, verifying the server's certificate for `server_name`
    # against `ca_file` (PEM; the system's CA bundle by default).
    def connect(host, port, ca_file: nil, ca: nil, alpn: [], server_name: host)
      roots = ca || File.binread(ca_file || SYSTEM_CA_FILE)
      session = ClientContext.new(roots, alpn).session(server_name)
      handshake(TCPSocket.new(host, port), session, nil)
    end

    # A TLS socket over `socket` once `session`'s handshake is done (within `timeout` seconds
    # when given); the socket is closed when it fails.
    def handshake(socket, session, timeout)
      tls = Socket.new(socket, session)
      if timeout
        done = move_on_after(timeout, with_value: false) { tls.handshake }
        raise HandshakeError, "TLS handshake failed: no handshake within #{timeout} s" unless done
      else
        tls.handshake
      end
      tls
    rescue Exception # rubocop:disable Lint/RescueException
      socket.close
      raise
    end
  end
end
