# frozen_string_literal: true

require 'socket'

module Tipi
  # Listens on one address and serves each connection on its own fiber.
  class Server
    attr_reader :host, :port

    # @param app [#call] a Rack app
    # @param logger [#call, nil] called with (env, status, seconds) after each request
    def initialize(app, host: '0.0.0.0', port: 1234, logger: nil)
      @app = app
      @listener = TCPServer.new(host, port)
      @host = host
      @port = @listener.addr[1]
      @logger = logger
    end

    # Serves until the fiber is stopped (or the listener closed).
    def run
      info = { host: @host, port: @port, scheme: 'http' }
      @listener.accept_loop do |socket|
        spin { Connection.new(socket, @app, info, @logger).serve }
      end
    end

    def close
      @listener.close unless @listener.closed?
    end
  end
end
