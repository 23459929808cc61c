# frozen_string_literal: true

module Tipi
  # The Rack 2 environment of one request, from H1P's headers.
  module RackEnv
    EMPTY = ''.b.freeze
    # Header names whose env keys are not HTTP_*.
    SPECIAL = { 'content-type' => 'CONTENT_TYPE', 'content-length' => 'CONTENT_LENGTH' }.freeze
    KEYS = Hash.new { |keys, name| keys[name] = "HTTP_#{name.upcase.tr('-', '_')}".freeze }

    module_function

    # @param headers [Hash] from H1P::Parser#parse_headers
    # @param input [#read] rack.input
    # @param server [Hash] :host, :port (the listener's), :remote_addr, :scheme
    def build(headers, input, server)
      path = headers[':path']
      path_info, query = path.split('?', 2)
      env = {
        'REQUEST_METHOD' => headers[':method'],
        'SCRIPT_NAME' => EMPTY,
        'PATH_INFO' => path_info,
        'QUERY_STRING' => query || EMPTY,
        'SERVER_NAME' => server_name(headers['host'], server[:host]),
        'SERVER_PORT' => (server[:port] || server_port(headers['host'])).to_s,
        'SERVER_PROTOCOL' => headers[':protocol'].upcase,
        'REMOTE_ADDR' => server[:remote_addr],
        'rack.version' => [1, 3],
        'rack.url_scheme' => server[:scheme] || 'http',
        'rack.input' => input,
        'rack.errors' => $stderr,
        'rack.multithread' => false,
        'rack.multiprocess' => false,
        'rack.run_once' => false,
        'rack.hijack?' => true # the connection sets rack.hijack
      }
      headers.each do |name, value|
        next if name.start_with?(':')

        value = value.join(name == 'cookie' ? '; ' : ', ') if value.is_a?(Array)
        env[SPECIAL[name] || KEYS[name]] = value
      end
      env
    end

    # A Unix socket has no port: the Host header's, else 80.
    def server_port(host)
      host&.[](/:(\d+)\z/, 1) || '80'
    end

    # The host part of a Host header ("[::1]:80", "example.com:8080"), else the listener's.
    def server_name(host, fallback)
      return fallback.to_s unless host

      host.start_with?('[') ? host[/\A\[[^\]]*\]/] : host.split(':', 2).first
    end
  end
end
