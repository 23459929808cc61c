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

    # Serves until the fiber is stopped, or until #shutdown.
    def run
      info = { host: @host, port: @port, scheme: 'http' }
      @live = {}
      loop do
        @slot_freed.await while @max_connections && @connections >= @max_connections
        socket = begin
          @listener.poly_accept
        rescue IOError, Errno::EBADF
          # The listener was closed (#shutdown): the connections are this fiber's children,
          # which would end with it; let them finish first.
          Fiber.current.await_all_children
          break
        end
        @connections += 1
        connection = Connection.new(socket, @app, info, @logger, @options.merge(server: self))
        fiber = spin do
          connection.serve
        ensure
          @connections -= 1
          @live.delete(Fiber.current)
          @slot_freed.signal
        end
        @live[fiber] = connection
      end
    end

    # Whether #shutdown has begun: connections close after their current request.
    def stopping?
      @stopping
    end

    # A graceful stop: no more connections are accepted, idle ones are closed, and requests in
    # flight finish (for at most `grace` seconds, then their fibers are terminated).
    def shutdown(grace = 10)
      @stopping = true
      close
      @live&.each { |fiber, connection| fiber.stop if connection.idle? }
      move_on_after(grace) { sleep(0.01) until @live.nil? || @live.empty? }
      @live&.each_key(&:terminate)
    end

    def close
      @listener.close unless @listener.closed?
    end
  end
end
