# frozen_string_literal: true

require 'tipi'
require 'tipi/cli'

module Rack
  module Handler
    # Tipi as a Rack handler: `rackup -s tipi`, `rails server -u tipi`. One process, as rackup
    # runs it; the `tipi` command has workers, HTTPS and the rest.
    module Tipi
      # Rack::Server's options: :Host and :Port (rackup's defaults: localhost in development,
      # else 0.0.0.0; 9292), :environment, :Silent (no access log). Yields the Tipi::Server
      # before it runs.
      def self.run(app, **options)
        environment = options[:environment] || ENV['RACK_ENV'] || 'development'
        $stdout.sync = true # the banner and the access log reach a pipe at once
        host = options[:Host] || (environment == 'development' ? 'localhost' : '0.0.0.0')
        listener = ::Tipi::Listener.bind(::Tipi::Listener.tcp_url(host, options[:Port] || 9292))
        logger = options[:Silent] ? nil : ::Tipi::CLI.method(:log)
        server = ::Tipi::Server.new(app, listeners: [listener], logger: logger)
        yield server if block_given?
        ::Tipi::Controller.new(server, { environment: environment, app: 'given by Rack' }, []).run
      end

      def self.valid_options
        { 'Host=HOST' => 'where to listen (localhost in development, else 0.0.0.0)', 'Port=PORT' => 'port (9292)' }
      end
    end

    register :tipi, Tipi if respond_to?(:register)
  end
end
