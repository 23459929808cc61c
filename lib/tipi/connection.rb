# frozen_string_literal: true

module Tipi
  # One client connection, served on its own fiber: requests one after the other (keep-alive,
  # pipelining) until the client closes, asks to close, or sends something malformed.
  class Connection
    # @param options [Hash] :timeout (seconds to receive a request head, or between two
    #   requests, or for a body), :max_body (bytes)
    def initialize(socket, app, server_info, logger, options = {})
      @socket = socket
      @app = app
      @server = server_info.merge(remote_addr: remote_addr(socket))
      @logger = logger
      @timeout = options[:timeout]
      @owner = options[:server]
      @parser = H1P::Parser.new(socket, max_body: options[:max_body])
      @idle = true
    end

    # Whether it waits for a request that has not begun to arrive (a graceful stop closes
    # such a connection at once; one whose request is on its way is served first).
    def idle?
      @idle && !IO.select([@socket], nil, nil, 0)
    rescue IOError
      true
    end

    def serve
      while (headers = read_head)
        @idle = false
        break unless serve_request(headers)
        break if @owner&.stopping?

        @idle = true
      end
    rescue H1P::TooLarge => e
      respond_error(e.message.start_with?('target') ? 414 : 431, e.message)
    rescue H1P::Error => e
      respond_error(400, e.message)
    rescue Errno::ECONNRESET, Errno::EPIPE, IOError
      nil # the client went away
    ensure
      @socket.close unless @socket.closed?
    end

    private

    # The next request head, or nil when the client closes, or sends nothing (or not all of
    # a head) within the timeout: a slow or idle client is cut.
    def read_head
      return @parser.parse_headers unless @timeout

      move_on_after(@timeout, with_value: nil) { @parser.parse_headers }
    end

    # @return [Boolean] whether the connection goes on
    def serve_request(headers)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      env = RackEnv.build(headers, Input.new(@parser, @timeout), @server)
      status, response_headers, response_body = call_app(env)
      return false unless status # the body was too large or too slow: answered, or cut
      begin
        Response.write(@socket, status, response_headers, response_body,
                       head_request: headers[':method'] == 'HEAD')
      ensure
        response_body.close if response_body.respond_to?(:close)
      end
      @logger&.call(env, status, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
      @parser.keep_alive? && !close_requested?(response_headers)
    end

    def call_app(env)
      @app.call(env)
    rescue H1P::TooLarge => e
      respond_error(413, e.message)
      nil
    rescue Polyphony::Cancel
      nil # the body did not come in time
    rescue StandardError => e
      env['rack.errors'].puts("tipi: #{e.class}: #{e.message}\n\t#{e.backtrace&.first(10)&.join("\n\t")}")
      [500, { 'Content-Type' => 'text/plain', 'Connection' => 'close' }, ["Internal Server Error\n"]]
    end

    def close_requested?(headers)
      headers.any? { |name, value| name.casecmp?('connection') && value.to_s.casecmp?('close') }
    end

    def respond_error(status, message)
      H1P.send_response(@socket, { ':status' => status, 'Content-Type' => 'text/plain', 'Connection' => 'close' },
                        "#{message}\n")
    rescue StandardError
      nil
    end

    def remote_addr(socket)
      socket.respond_to?(:remote_address) ? socket.remote_address.ip_address : '127.0.0.1'
    rescue StandardError
      '127.0.0.1'
    end
  end
end
