# frozen_string_literal: true

require_relative 'polyphony'
require_relative 'h1p'
require_relative 'tipi/version'
require_relative 'tipi/input'
require_relative 'tipi/rack_env'
require_relative 'tipi/response'
require_relative 'tipi/connection'
require_relative 'tipi/server'
require_relative 'tipi/static'

# Tipi: an HTTP/1.1 server for Rack apps on Polyphony fibers: one fiber per connection, H1P
# parsing, keep-alive and pipelining.
module Tipi
end
