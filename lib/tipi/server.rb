# frozen_string_literal: true

require 'socket'

module Tipi
  # Listens on one address and serves each connection on its own fiber.
  class Server
    attr_reader :host, :port

    # @param app [#call] a Rack app
    # @param logger [#call, nil] called with (env, status, seconds) after each request
    # @param timeout [Numeric, nil] seconds a client may take to send a request head, or to
    #   send the next one, or its body
    # @param max_body [Integer, nil] largest request body accepted (413 beyond)
    # @param max_connections [Integer, nil] connections served at once (no more are accepted
    #   until one ends)
    def initialize(app, host: '0.0.0.0', port: 1234, logger: nil, timeout: 30, max_body: nil,
                   max_connections: nil)
      @app = app
      @listener = TCPServer.new(host, port)
      @host = host
      @port = @listener.addr[1]
      @logger = logger
      @options = { timeout: timeout, max_body: max_body }
      @max_connections = max_connections
      @connections = 0
      @slot_freed = Polyphony::Event.new
    end

    # Serves until the fiber is stopped (or the listener closed).
    def run
      info = { host: @host, port: @port, scheme: 'http' }
      loop do
        @slot_freed.await while @max_connections && @connections >= @max_connections
        socket = @listener.poly_accept
        @connections += 1
        spin do
          Connection.new(socket, @app, info, @logger, @options).serve
        ensure
          @connections -= 1
          @slot_freed.signal
        end
      end
    end

    def close
      @listener.close unless @listener.closed?
    end
  end
end
