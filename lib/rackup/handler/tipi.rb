# frozen_string_literal: true

# Rack 3 moved handlers to the rackup gem, which looks for them here.
require_relative '../../rack/handler/tipi'

module Rackup
  module Handler
    Tipi = ::Rack::Handler::Tipi
    register :tipi, Tipi if respond_to?(:register)
  end
end
