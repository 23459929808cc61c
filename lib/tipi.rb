# frozen_string_literal: true

require_relative 'polyphony'
require_relative 'h1p'
require_relative 'tipi/version'
require_relative 'tipi/input'
require_relative 'tipi/rack_env'
require_relative 'tipi/dechunked'
require_relative 'tipi/gc_headroom'
require_relative 'tipi/request'
require_relative 'tipi/connection'
require_relative 'tipi/http2'
require_relative 'tipi/http2_request'
require_relative 'tipi/listener'
require_relative 'tipi/server'
require_relative 'tipi/static'

# Tipi: an HTTP/1.1 server for Rack apps on Polyphony fibers: one fiber per connection, H1P
# parsing, keep-alive and pipelining.
module Tipi
  # A misuse of the Tipi API (answering twice, streaming after the end).
  class Error < StandardError; end

  # Writes `error` and where it came from to `output` (rack.errors, stderr), in one write.
  def self.report(error, output)
    output.puts("tipi: #{error.class}: #{error.message}\n\t#{error.backtrace&.first(10)&.join("\n\t")}")
  end

  # Serves the Tipi-native handler on host:port in this fiber, until it is stopped:
  #
  #   Tipi.serve('127.0.0.1', 8080) { |req| req.respond("hi\n") }
  #
  # @param options [Hash] Tipi::Server's: timeout, max_body, max_connections, logger
  def self.serve(host, port, **options, &handler)
    server = Server.new(handler, host: host, port: port, native: true, **options)
    server.run
  ensure
    server&.close
  end
end
