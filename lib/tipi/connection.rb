# frozen_string_literal: true

module Tipi
  # One client connection, served on its own fiber: requests one after the other (keep-alive,
  # pipelining) until the client closes, asks to close, or sends something malformed.
  class Connection
    # @param options [Hash] :timeout (seconds to receive a request head, or between two
    #   requests, or for a body, or a TLS handshake), :max_body (bytes), :native (the app takes
    #   Tipi::Request), :server (the Tipi::Server)
    # @param server_info [Hash] :host, :port, :scheme, :tls (a Polyphony::TLS::ServerContext:
    #   the connection speaks HTTPS), :acme (a Tipi::ACME getting certificates on demand)
    # @param remote_addr [String, nil] the peer's IP address, when the accept gave it
    def initialize(socket, app, server_info, logger, options = {}, remote_addr = nil)
      @socket = socket
      @app = app
      @server = server_info
      @remote_addr = remote_addr || remote_addr(socket)
      @logger = logger
      @timeout = options[:timeout]
      @owner = options[:server]
      @native = options[:native]
      @max_body = options[:max_body]
      @limits = options[:limits] || {}
    end

    # The next connection accepted on the same listener, to be served by this object (and its
    # fiber) now that its last one is over (not hijacked): cheaper than a new object. Its base
    # env is kept with the new peer's address, and its parser starts over on the new socket.
    # (rack.input objects of the last connection's requests read nothing more: Input#close.)
    # @return [Connection] self
    def renew(socket, remote_addr)
      @socket = socket
      @remote_addr = remote_addr || remote_addr(socket)
      if @base_env
        @base_env['REMOTE_ADDR'] = @remote_addr
        # (The last socket's HijackCall was revoked when it ended: see #serve.)
        @base_env['rack.hijack'] = @hijack = HijackCall.new(self)
      end
      @http2 = @hijacked = @parked = @websocket = nil
      @linger = false
      self
    end

    # A connection's `rack.hijack` for one socket: a renewed connection's requests get a new
    # one, and a kept env's hijacks nothing once its socket is gone.
    class HijackCall
      def initialize(connection)
        @connection = connection
      end

      def call
        raise IOError, 'rack.hijack called after its connection ended' unless @connection

        @connection.call
      end

      def revoke
        @connection = nil
      end
    end

    # Raised in a connection's fiber by the server's sweeper when its request head is late.
    class Expired < StandardError; end

    # What the connection waits on the client for, as a number that changes as the client
    # makes progress: the read of a request head under way (its number, which changes with each
    # request), or while a response is written, minus one minus the bytes the client has taken
    # so far; nil otherwise. The server's sweeper raises Expired in the fiber of a connection it
    # finds at the same mark for longer than the timeout: a client that sends no head, or one
    # that stops reading its response.
    def stall_mark
      return @parser&.__reading__ unless (written = @parser&.__writing__)

      -1 - written
    end

    # The client's socket (a Polyphony::TLS socket once a TLS handshake is done).
    attr_reader :socket

    # Whether the app took the socket (full or partial hijack): it is the app's now.
    def hijacked?
      @hijacked
    end

    # Rack's full hijack, called by the socket's HijackCall (its requests'
    # `env['rack.hijack']`): hands the app the socket.
    def call
      raise IOError, 'rack.hijack called after its request ended' unless @env

      @hijacked = true
      @env['rack.hijack_io'] = @socket
    end

    # Whether it waits, between requests, for one that has not begun to arrive: a graceful
    # stop closes such a keep-alive connection at once (clients retry a request on a reused
    # connection closed this way). A new connection's first request and a request on its way
    # are served first.
    def idle?
      return false unless @parser&.__idle__

      !IO.select([@socket], nil, nil, 0)
    rescue IOError
      true
    end

    # Serves requests until the connection ends, or until the client has sent nothing for a
    # while between requests: then it is parked (#parked?), its socket left open, and the
    # server has it wait without a fiber (Polyphony::Parking) until the client sends more;
    # #serve then goes on with it. A WebSocket given an #on_message callback is served so too
    # (#serve_websocket).
    def serve
      if @parked
        @parked = false
        return serve_websocket if @websocket
      else
        return unless secure
        return serve_http2 if @server[:tls] && @socket.alpn_protocol == 'h2'

        renew_parser
      end
      # A Rack app's common requests are served by H1P in Rust (see #serve_in_rust); the
      # others come here.
      while (request = @native ? read_request : serve_in_rust)
        return @parked = true if request == :idle
        return upgrade_to_http2(request) if h2c_upgrade?(request)

        break unless @native ? serve_native(request) : serve_request(request)
        break if @owner&.stopping? # it began while this request was served
      end
      serve_websocket if @websocket
    rescue H1P::InvalidResponse => e
      # The app's mistake, answered with a 500 (when nothing else was sent) by H1P.
      Tipi.report(e, $stderr)
    rescue H1P::TooLarge => e
      respond_error(e.limit == :target ? 414 : 431, e.message)
    rescue H1P::Error => e
      # An h2c client with prior knowledge: its preface is no HTTP/1 request.
      return serve_http2(@parser.buffered) if h2c_preface?

      respond_error(400, e.message)
    rescue SystemCallError, IOError, Expired
      nil # the client went away, or stopped reading its response
    rescue StandardError => e
      # A fault of Tipi's own: this connection ends, the server goes on.
      Tipi.report(e, $stderr)
    ensure
      if @hijacked
        # The app owns the socket now; fibers it spun for it run to their end first.
        Fiber.current.await_all_children
      elsif !@parked
        linger if @linger
        close
      end
    end

    # Whether the last #serve left the connection waiting for its client's next request: see
    # #serve.
    def parked?
      @parked
    end

    # Whether the connection is a WebSocket served by its callbacks (see #serve_websocket).
    def websocket?
      !@websocket.nil?
    end

    # Seconds a parked connection may wait for its client before it is due to be served
    # anyway (a WebSocket's next ping), or nil.
    def wake_in
      @websocket && (@websocket.__wake_in__ || false)
    end

    # Whether the client of a parked connection that became ready left (closed or reset its end)
    # with nothing unread: it can be closed there and then, without a fiber to find that out.
    # (Bytes sent before a close are served: a request then a half-close is answered.)
    def left?
      @socket.to_io.recv_nonblock(1, Socket::MSG_PEEK, exception: false) == ''
    rescue SystemCallError, IOError
      true
    end

    # Called once the connection is parked: what is cheap to make again goes (its base env,
    # remade for its next request), and its last request's env and objects, kept until now
    # for its hijack (some 2 KB of C heap each, and their strings).
    def release_while_parked
      @base_env = @env = @request = nil
    end

    # A spare connection (ended, kept to serve a next one: see #renew) frees what it keeps for
    # speed: its parser's buffers and its base env.
    def release_memory
      @parser.__retire__ if @parser && !@parser.__in_use__
      @base_env = nil
    end

    # Closes a parked connection (idle too long, or the server stops: a WebSocket's close
    # handshake, code 1001, waits for its client, so the server calls this on a fiber of its
    # own for one).
    def close_parked
      @parked = false
      websocket = @websocket
      @websocket = nil
      close_websocket(websocket, 1001, 'server shutting down') if websocket
      close
    rescue SystemCallError, IOError
      nil
    end

    # After answering a request whose body was left unread: no more is sent, and what the client
    # still sends is read and dropped for a while (at most LINGER seconds and LINGER_BYTES), so
    # that closing does not reset the connection before the client has read the answer.
    def linger
      @linger = false
      @socket.shutdown(Socket::SHUT_WR) if @socket.respond_to?(:shutdown)
      left = LINGER_BYTES
      move_on_after(LINGER) do
        while left.positive? && (chunk = @socket.readpartial(65_536))
          left -= chunk.bytesize
        end
      end
    rescue SystemCallError, IOError
      nil
    end

    # The connection's end: its socket closed, and nothing of its client kept (for a spare).
    def close
      # An env the app kept hijacks nothing once its connection has ended (before this
      # connection is renewed, a request on another could call it).
      @hijack&.revoke
      @socket.close unless @socket.closed?
      @env = @request = nil
    end
    private :close

    LINGER = 2
    LINGER_BYTES = 1 << 20
    private_constant :LINGER, :LINGER_BYTES

    # A graceful stop: an HTTP/2 connection sends GOAWAY (its streams in flight finish); a
    # WebSocket closes with 1001 (going away).
    def goaway
      @http2&.shutdown
      websocket = @websocket || @request&.websocket
      spin { websocket.close(1001, 'server shutting down') } if websocket&.open?
    end

    private

    # @param received [String, nil] bytes already read from the socket (the preface)
    # @param upgrade [Array(Hash, String), nil] see HTTP2Connection#serve
    def serve_http2(received = nil, upgrade: nil)
      @http2 = HTTP2Connection.new(@socket, @app, @server, @logger, timeout: @timeout, max_body: @max_body,
                                                                    native: @native, remote_addr: @remote_addr)
      @http2.serve(received, upgrade: upgrade)
    end

    # Whether a request on a plain connection asks to go on in HTTP/2 (`Upgrade: h2c`).
    def h2c_upgrade?(request)
      return false if @server[:tls] || !request[@native ? 'http2-settings' : 'HTTP_HTTP2_SETTINGS']

      upgrade = Array(request[@native ? 'upgrade' : 'HTTP_UPGRADE']).join(',')
      upgrade.split(',').any? { |protocol| protocol.strip.casecmp('h2c')&.zero? }
    end

    # RFC 7540 3.2: the request's body is read here (it came over HTTP/1.1), the 101 sent, and
    # the request answered on HTTP/2's stream 1.
    def upgrade_to_http2(request)
      input = Input.new(@parser, @timeout, @native ? nil : request) # (a Rack env gets the trailers)
      body = input.read
      input.close
      @socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
      serve_http2(@parser.buffered, upgrade: [http2_request(request), body, @parser.trailers])
    rescue H1P::TooLarge => e
      respond_error(413, e.message)
    rescue Polyphony::Cancel
      nil # the body did not come in time
    end

    # The upgrading request without what belongs to HTTP/1.1; a native handler's headers as
    # HTTP/2 gives them.
    def http2_request(request)
      return request.reject { |name, _| HTTP1_ONLY.include?(name) } unless @native

      headers = request.reject { |name, _| NATIVE_HTTP1_ONLY.include?(name) }
      headers.merge!(':protocol' => 'h2', ':scheme' => 'http')
      headers[':authority'] = request['host'] if request['host'].is_a?(String)
      headers
    end

    HTTP1_ONLY = %w[HTTP_UPGRADE HTTP_HTTP2_SETTINGS HTTP_CONNECTION rack.hijack].freeze
    NATIVE_HTTP1_ONLY = %w[upgrade http2-settings connection host :rx].freeze
    private_constant :HTTP1_ONLY, :NATIVE_HTTP1_ONLY

    # A renewed connection's parser starts over on the new socket (see #renew). One still in
    # use (by a reader the last client's app left behind) is left to it: a new one is made.
    def renew_parser
      @parser&.__renew__(@socket)
    rescue H1P::Error
      @parser = nil
    ensure
      unless @parser
        @parser = H1P::Parser.new(@socket, **@limits, max_body: @max_body)
        @parser.__idle_parking__ = true
      end
    end

    # Whether the first bytes of a plain connection, which H1P refused, are HTTP/2's preface.
    def h2c_preface?
      @parser.__heads__.zero? && !@server[:tls] && @parser.buffered.start_with?(HTTP2Connection::PREFACE_START)
    end

    # On an HTTPS listener, the TLS handshake (at most the timeout). A failed one is logged
    # (a client that does not trust the certificate, a plain HTTP request, a scanner) and the
    # connection closed.
    # @return [Boolean] whether requests can be served
    def secure
      return true unless @server[:tls]

      if @server[:acme] # certificates on demand: the name the client asks for comes first
        name = Polyphony::TLS.peek_server_name(@socket, @timeout)
        @server[:acme].obtain_on_demand(name) if name
      end
      @socket = Polyphony::TLS.accept(@socket, @server[:tls], timeout: @timeout)
      true
    rescue Polyphony::TLS::Error => e
      $stderr.write("tipi: #{@remote_addr}: #{e.message}\n")
      false
    rescue SystemCallError, IOError
      false
    end

    # A native handler's next request (H1P's headers), :idle when the client has sent nothing
    # for a while (parked: see #serve), or nil when the client closes, or sends not all of a
    # head within the timeout: a slow client is cut (by the
    # server's sweeper, see #stall_mark: a timer, or even a look at the clock, per request would
    # cost more than much of the rest of the request's handling).
    def read_request
      @parser.parse_headers
    rescue Expired
      nil
    end

    # Serves requests in H1P's loop (H1P::Parser#serve_rack: no body, no Upgrade field, as
    # #serve_request would), until the connection ends (false), the client leaves (nil), the
    # client sends nothing for a while (:idle), or a request needs the Ruby path: its env,
    # unanswered. A late head is cut as in #read_request.
    # The loop calls #call_app and #finished.
    def serve_in_rust
      @parser.serve_rack(self, @socket, @base_env ||= base_env, @owner, !@logger.nil?)
    rescue Expired
      nil
    end

    public

    # The app's response to `env` (H1P's loop calls it too), or false when the connection
    # answered already (a body over the limit: 413; a malformed one: 400) or was cut (a body
    # too slow, a client gone).
    def call_app(env, input = nil)
      @env = env # (for #call: env['rack.hijack'], in the base)
      @app.call(env)
    rescue Polyphony::Cancel
      false # the body did not come in time
    rescue StandardError => e
      return body_failed(input.failure) if input&.failure

      Tipi.report(e, env['rack.errors'])
      [500, { 'Content-Type' => 'text/plain', 'Connection' => 'close' }, ["Internal Server Error\n"]]
    end

    # Whether the app left the request's body unread (the connection ends after the answer: the
    # rest is not waited for); :failed when it was malformed, which was answered instead (one
    # 400, never the app's answer and then another). Whatever the app made of an error reading
    # it, the client gets the answer to that error.
    def body_unread?(input, body)
      return false unless input.is_a?(Input)

      complete = begin
        input.failure.nil? && input.drain_buffered
      rescue H1P::Error, SystemCallError, IOError
        false # (the input keeps the failure)
      end
      return !complete unless input.failure

      body.close if body.respond_to?(:close)
      body_failed(input.failure)
      :failed
    end

    # Answers a request whose body could not be read: 413 over the limit, 400 when malformed;
    # a client that went away gets a line in the log, no backtrace.
    def body_failed(error)
      case error
      when H1P::TooLarge then respond_error(413, error.message)
      when H1P::Error then respond_error(400, error.message)
      else $stderr.write("tipi: #{@remote_addr}: the client went away during the request body (#{error.message})\n")
      end
      false
    end

    # After each response: the access log's line.
    def finished(env, status, bytes, seconds)
      @logger&.call(env, status, seconds, bytes)
    end

    private

    # The connection's constant part of each request's env, rack.hijack included.
    def base_env
      env = RackEnv.base(@server)
      env['REMOTE_ADDR'] = @remote_addr
      env['rack.hijack'] = @hijack = HijackCall.new(self)
      env
    end

    # @return [Boolean] whether the connection goes on
    def serve_request(env)
      # (The base env has rack.input: Input::EMPTY.)
      input = @parser.complete? ? Input::EMPTY : (env['rack.input'] = request_input(env))
      answer(env, input)
    ensure
      # However the request ended, its rack.input reads no more (a hijacking app keeps it).
      input&.close unless @hijacked
    end

    # A request body's rack.input; `Expect: 100-continue` is answered when the app first reads.
    def request_input(env)
      expect = env['HTTP_EXPECT']
      return Input.new(@parser, @timeout, env) unless expect && env['SERVER_PROTOCOL'] == 'HTTP/1.1'

      # (RFC 9110 10.1.1: 100-continue is the only expectation defined; others are ignored.)
      continue = -> { @socket.write("HTTP/1.1 100 Continue\r\n\r\n") } if expect.casecmp('100-continue').zero?
      Input.new(@parser, @timeout, env, continue: continue)
    end

    # @param input [Input, EmptyInput] the request's body
    # @return [Boolean] whether the connection goes on
    def answer(env, input = Input::EMPTY)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC) if @logger
      response = call_app(env, input)
      return false if response == false # the body was too large, malformed or too slow

      unless @hijacked
        status, headers, body = response
        unless response.is_a?(Array) && response.size == 3
          respond_error(500, 'Internal Server Error')
          raise H1P::InvalidResponse, "the app returned #{response.inspect}, not [status, headers, body]"
        end
        return false unless (unread = body_unread?(input, body)) != :failed

        keep_alive = @parser.respond(@socket, status, headers, body, unread || @owner&.stopping?)
        @hijacked = true if keep_alive.nil? # a partial hijack: the socket is the app's
        @linger = unread && !@parser.__in_use__ # (else that reader takes what comes)
      end
      finished(env, status, @hijacked ? 0 : @parser.bytes_sent, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) if @logger
      keep_alive || false
    end

    # Whether the connection serves another request after this one (as far as the client and
    # the server are concerned; the app's response may still ask to close).
    def keep_alive?
      # (Not while a fiber the app left running reads the body on in the parser.)
      !@parser.__in_use__ && @parser.keep_alive? && !@owner&.stopping?
    end

    # The Connection field the response needs: "close" when the connection ends after it (a
    # client must not send another request on it), "keep-alive" for an HTTP/1.0 client.
    def connection_field(protocol, keep_alive)
      return 'close' unless keep_alive

      'keep-alive' if protocol.casecmp('http/1.0')&.zero?
    end

    # A Tipi-native handler: it answers through the request object.
    def serve_native(headers)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      keep_alive = keep_alive?
      request = @request = Request.new(headers, @parser, @socket, @timeout,
                                       connection_field(headers[':protocol'], keep_alive))
      failure = begin
        Request.handle(@app, request)
      ensure
        detached = request.close
      end
      take_websocket(request) # (also when the handler raised after the upgrade)
      if failure
        respond_error(*failure) unless request.status # else the answer has begun: cut it
        return false
      end
      request.finish
      @logger&.call(request.log_env(@remote_addr), request.status,
                    Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
      keep_alive && detached && !request.close?
    end

    # A WebSocket the handler gave an #on_message callback (Request#upgrade_to_websocket) is
    # served here once the handler has returned: its messages go to the callback until it
    # closes; while its client sends nothing for a while it is parked (#parked?) and waits
    # without a fiber, its pings sent when the server wakes it (#wake_in).
    def serve_websocket
      websocket = @websocket
      if @owner&.stopping?
        close_websocket(websocket, 1001, 'server shutting down')
      elsif websocket.__pump__(true) == :idle
        return @parked = true
      end
      @websocket = nil
    rescue StandardError
      @websocket = nil
      close_websocket(websocket, 1011, 'internal error') if websocket.open?
      raise
    ensure
      if !@parked && @websocket.equal?(websocket) # (its fiber was stopped or terminated)
        @websocket = nil
        websocket.__abandon__
      end
    end

    # Closes `websocket` (one this connection serves) and waits for its client's Close frame,
    # at most its close timeout.
    def close_websocket(websocket, code, reason)
      websocket.close(code, reason)
      websocket.__await_close__
    end

    # Takes over the WebSocket of a request whose handler left it to its callbacks.
    def take_websocket(request)
      websocket = request.websocket
      return unless websocket&.callbacks? && websocket.open?

      @websocket = websocket
      # (No more HTTP on it: its parser's buffers go now, not at a later GC.)
      @parser.__retire__ unless @parser.__in_use__
      @parser = nil
      # (Only while it is this connection's: a renewed one serves another client.)
      websocket.__watch__ { |state| @owner&.websocket_changed(self, state) if @websocket.equal?(websocket) }
    end

    def respond_error(status, message)
      H1P.send_response(@socket, { ':status' => status, 'Content-Type' => 'text/plain', 'Connection' => 'close' },
                        "#{message}\n")
    rescue StandardError
      nil
    end

    # The peer's IP address ('127.0.0.1' for a Unix socket, as other servers say).
    def remote_addr(socket)
      Polyphony.__peer_ip__(socket.fileno) || '127.0.0.1'
    rescue StandardError # (a closed socket, or no IO at all)
      '127.0.0.1'
    end
  end
end
