# frozen_string_literal: true

require 'socket'
require 'uri'

module Tipi
  # A small Redis client (RESP2 over a TCP socket, which waits cooperatively in fibers), for
  # the ACME store a fleet of servers shares. One connection per process, reconnected after a
  # fork or a failure; fibers take turns on it.
  class RedisClient
    class Error < StandardError; end

    # @param url [String] redis://HOST:PORT/DB (a password as redis://:PASSWORD@HOST:PORT/DB)
    def initialize(url)
      uri = URI(url)
      raise ArgumentError, "#{url}: a redis:// URL, as redis://127.0.0.1:6379/0" unless uri.scheme == 'redis' && uri.host

      @host = uri.host
      @port = uri.port || 6379
      @db = uri.path.delete_prefix('/').then { |db| db.empty? ? 0 : Integer(db) }
      @password = uri.password && URI.decode_www_form_component(uri.password)
      @url = "redis://#{@host}:#{@port}/#{@db}"
      @lock = Polyphony::Mutex.new
    rescue ArgumentError => e
      raise ArgumentError, "bad --acme-store #{url.inspect}: #{e.message}"
    end

    attr_reader :url

    # Sends a command and returns its reply: a String, an Integer, nil, or an Array of them.
    # @raise [RedisClient::Error] what Redis answered with an error, or a connection failure
    def call(*args)
      @lock.synchronize do
        socket = connection
        socket.write(encode(args))
        read_reply(socket)
      rescue SystemCallError, IOError, EOFError => e
        disconnect
        raise Error, "#{@url}: #{e.message}"
      end
    end

    def close
      disconnect
    end

    private

    def connection
      disconnect if @pid && @pid != Process.pid # (a forked child does not share the parent's)
      @socket ||= begin
        @pid = Process.pid
        socket = TCPSocket.new(@host, @port)
        @socket = socket
        handshake(socket)
        socket
      end
    end

    def handshake(socket)
      if @password
        socket.write(encode(['AUTH', @password]))
        read_reply(socket)
      end
      return if @db.zero?

      socket.write(encode(['SELECT', @db.to_s]))
      read_reply(socket)
    end

    def disconnect
      @socket&.close unless @socket&.closed?
      @socket = nil
    end

    def encode(args)
      out = +"*#{args.size}\r\n"
      args.each do |arg|
        arg = arg.to_s
        out << "$#{arg.bytesize}\r\n" << arg.b << "\r\n"
      end
      out
    end

    def read_reply(socket)
      line = socket.gets("\r\n") or raise EOFError, 'the connection ended'
      kind = line[0]
      body = line[1..].chomp("\r\n")
      case kind
      when '+' then body
      when '-' then raise Error, "#{@url}: #{body}"
      when ':' then body.to_i
      when '$'
        length = body.to_i
        return nil if length.negative?

        data = socket.read(length + 2) or raise EOFError, 'the connection ended'
        data.byteslice(0, length)
      when '*'
        count = body.to_i
        count.negative? ? nil : Array.new(count) { read_reply(socket) }
      else raise Error, "#{@url}: unreadable reply #{line.inspect}"
      end
    end
  end
end
