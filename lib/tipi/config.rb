# frozen_string_literal: true

require 'uri'

module Tipi
  # The `--config FILE` DSL: Ruby, with Puma's names where Puma has one.
  #
  #   bind 'tcp://0.0.0.0:8080'          # or: port 8080, '127.0.0.1'
  #   bind 'unix:///run/app.sock'
  #   workers 2
  #   environment 'production'
  #   pidfile 'tmp/tipi.pid'
  #   rackup 'config.ru'                 # or: app { |env| [200, {}, ['hi']] }
  #   timeout 30
  #   max_body 10_000_000
  #   max_connections 1024
  #   max_header_size 12_288              # longest target or header value
  #   max_head_size 65_536                # longest request head
  #   quiet
  #   before_fork { DB.disconnect }
  #   on_worker_boot { |index| DB.connect }
  #
  # Options given on the command line win over the file's.
  class Config
    # @return [Hash] the options the file sets
    def self.load(path)
      raise ArgumentError, "no such config file #{path}" unless File.file?(path)

      config = new
      config.instance_eval(File.read(path), path)
      config.options
    end

    attr_reader :options

    def initialize
      @options = {}
    end

    def bind(url)
      (@options[:binds] ||= []) << Listener.normalize(url)
    end

    def port(number, host = '0.0.0.0')
      bind(Listener.tcp_url(host, number))
    end

    # HTTPS on host:port, with the certificate chain and key in these PEM files (without
    # them, a self-signed certificate for localhost). Several certificates, picked by the name
    # the client asks for: `certs: [[cert, key], ...]` (the first the default), or
    # `certs: 'DIR'` (each NAME.pem holding both, or NAME.crt with NAME.key).
    def ssl_bind(host, port, cert: nil, key: nil, certs: nil)
      url = Listener.tcp_url(host, port).sub('tcp://', 'ssl://')
      query = []
      query.push(['cert', cert], ['key', key]) if cert || key
      case certs
      when String then query << ['certs', certs]
      when Array then certs.each { |c, k| query.push(['cert', c], ['key', k]) }
      end
      bind(query.empty? ? url : "#{url}?#{URI.encode_www_form(query)}")
    end

    def workers(count)
      @options[:workers] = Integer(count)
    end

    def environment(name)
      @options[:environment] = name.to_s
    end

    def pidfile(path)
      @options[:pidfile] = path
    end

    def rackup(path)
      @options[:app] = path
    end

    # The app itself, instead of a file: a Rack app, or a block taking the env.
    def app(rack_app = nil, &block)
      @options[:rack_app] = rack_app || block
    end

    def timeout(seconds)
      @options[:timeout] = Float(seconds)
    end

    def max_body(bytes)
      @options[:max_body] = Integer(bytes)
    end

    def max_connections(count)
      @options[:max_connections] = Integer(count)
    end

    def max_header_size(bytes)
      @options[:max_header_size] = Integer(bytes)
    end

    def max_head_size(bytes)
      @options[:max_head_size] = Integer(bytes)
    end

    def quiet(flag = true) # rubocop:disable Style/OptionalBooleanParameter
      @options[:quiet] = flag
    end

    # Runs in the controller before workers are forked (close what must not be shared).
    def before_fork(&block)
      (@options[:before_fork] ||= []) << block
    end

    # Runs in each worker as it starts, with its index (0...workers).
    def on_worker_boot(&block)
      (@options[:on_worker_boot] ||= []) << block
    end
  end
end
