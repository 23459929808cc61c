# frozen_string_literal: true

# The pure-Ruby HTTP/2 peer for bench/h2.sh: async-http (Debian's ruby-async-http) serving the
# same hello-world over h2c with prior knowledge, one process.
#
# Usage: ruby bench/async_http_h2.rb PORT
require 'async'
require 'async/http/server'
require 'async/http/endpoint'
require 'async/http/protocol/http2'
require 'protocol/http/response'

endpoint = Async::HTTP::Endpoint.parse("http://127.0.0.1:#{ARGV.fetch(0)}", protocol: Async::HTTP::Protocol::HTTP2)
app = ->(_request) { Protocol::HTTP::Response[200, { 'content-type' => 'text/plain' }, ['Hello']] }
Async { Async::HTTP::Server.new(app, endpoint).run }
