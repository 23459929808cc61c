# frozen_string_literal: true

require 'uri'

module Tipi
  # A request as a Tipi-native handler sees it (no Rack): its head and body, and the means to
  # answer, at once (#respond) or streamed (#send_headers, #send_chunk, #finish).
  #
  #   Tipi.serve('127.0.0.1', 8080) do |req|
  #     req.respond("Hello from #{req.path}\n", 'Content-Type' => 'text/plain')
  #   end
  class Request
    # The head as H1P parsed it: ':method', ':path', ':protocol' and lower-cased field names.
    attr_reader :headers

    # @api private
    # Calls a Tipi-native handler with `request` (over HTTP/1.1 or HTTP/2).
    # @return [Array(Integer, String), nil] the error to answer when the handler failed
    def self.handle(app, request)
      app.call(request)
      return if request.status

      $stderr.puts("tipi: the handler answered nothing to #{request.method} #{request.uri}")
      [500, 'Internal Server Error']
    rescue H1P::TooLarge => e
      [413, e.message]
    rescue Polyphony::Cancel
      [408, 'Request Timeout'] # the body did not come in time
    rescue StandardError => e
      Tipi.report(e, $stderr)
      [500, 'Internal Server Error']
    end

    # @param connection [String, nil] the Connection field the server needs sent ("close",
    #   "keep-alive"), unless the handler sends its own
    def initialize(headers, parser, socket, timeout, connection = nil)
      @connection = connection
      @headers = headers
      @parser = parser
      @socket = socket
      @timeout = timeout
      @state = :new # then :streaming (head sent, chunks follow) or :done
    end

    # The request method ("GET"): Tipi's name for it, shadowing Object#method as the seed did.
    def method(*args)
      args.empty? ? @headers[':method'] : super
    end

    # The target as sent ("/search?q=x").
    def uri
      @headers[':path']
    end

    # The path without the query ("/search").
    def path
      @path ||= uri.split('?', 2).first
    end

    def query_string
      uri.split('?', 2)[1]
    end

    # The query decoded: { 'q' => 'x' } (the last value of a repeated name wins).
    def query
      @query ||= query_string ? URI.decode_www_form(query_string).to_h : {}
    end

    def protocol
      @headers[':protocol']
    end

    # The whole body (nil when there is none), read through the connection as it arrives.
    def read
      body = nil
      each_chunk { |chunk| (body ||= String.new(capacity: chunk.bytesize)) << chunk }
      body
    end

    # Yields the body chunk by chunk as it arrives.
    def each_chunk
      while @parser && (chunk = Input.next_chunk(@parser, @timeout))
        yield chunk
      end
    end

    # The trailer fields that ended the body ({name => value or [values]}, names lower-cased),
    # once it has been read (#read, #each_chunk); nil before, or when none came.
    def trailers
      @parser ? @parser.trailers : @trailers
    end

    # Called by the server once the handler has returned: no more of the body is read (the
    # connection's parser goes on to the next request, perhaps, on a renewed connection,
    # another client's).
    # @return [Boolean] false when a fiber the handler left running is still reading the body
    #   (the parser is its own until then: the connection cannot go on)
    def close
      return true unless @parser

      in_use = body_in_use?
      @trailers = @parser.trailers unless in_use # (else they are unknown)
      @parser = nil
      !in_use
    end

    # Answers with `body` (a String or nil) and `headers` (':status' for the status, 200 by
    # default); Content-Length is added.
    def respond(body = nil, headers = {})
      fields = begin_response(headers, :done)
      if head?
        fields['Content-Length'] = body.bytesize.to_s if body && !field?(fields, 'content-length')
        body = nil
      end
      H1P.send_response(@socket, fields, body)
    end

    # Sends the head of a streamed response (chunked; to an HTTP/1.0 client, which has no
    # chunked coding, as it comes, ended by closing the connection); #send_chunk and #finish
    # follow.
    def send_headers(headers = {})
      fields = begin_response(headers, :streaming)
      # (HEAD too: the framing a GET gets, not the Content-Length: 0 H1P would add.)
      return H1P.send_response(@socket, fields.merge('Transfer-Encoding' => 'chunked')) unless http10?

      @close = true
      fields = fields.reject { |name, _| name.casecmp('connection')&.zero? }
      H1P.send_head(@socket, fields.merge('Connection' => 'close'))
    end

    # Sends one chunk of a streamed response (the head first if not sent); `done: true` ends it.
    def send_chunk(data, done: false)
      send_headers if @state == :new
      raise Error, 'the response is complete' unless @state == :streaming

      written = if data.nil? || data.empty? || head? then 0
                elsif http10? then @socket.write(data)
                else H1P.send_body_chunk(@socket, data)
                end
      finish if done
      written
    end

    # Ends a streamed response.
    def finish
      return if @state == :done

      send_headers if @state == :new
      @state = :done
      head? || http10? ? 0 : H1P.send_body_chunk(@socket, nil)
    end

    # Whether this is a WebSocket opening handshake (GET with Upgrade: websocket).
    def websocket?
      upgrade = @headers['upgrade']
      upgrade.is_a?(String) && upgrade.casecmp('websocket')&.zero? && @headers[':method'] == 'GET'
    end

    # Accepts a WebSocket opening handshake (101 Switching Protocols) and yields the
    # Polyphony::WebSocket; the connection closes when the block ends (with close code 1000, or
    # 1011 when it raised). Without a block the WebSocket is returned and lives until the handler
    # returns. A request that is no valid handshake is answered 400 (426 for a version other
    # than 13) and nil is returned.
    # @param protocols [Array<String>, nil] subprotocols this server speaks: the first the client
    #   offers is chosen (Sec-WebSocket-Protocol)
    # @param ping_interval [Numeric, nil] seconds between keep-alive pings (nil: none)
    # @param max_message [Integer] the largest message accepted (larger: close code 1009)
    def upgrade_to_websocket(protocols: nil, ping_interval: 30, max_message: Polyphony::WebSocket::DEFAULT_MAX_MESSAGE,
                             &block)
      return unless (accept = websocket_accept)

      protocol = chosen_protocol(protocols)
      begin_response({ ':status' => 101 }, :done)
      @close = true # no HTTP after a WebSocket
      head = +"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
              "Sec-WebSocket-Accept: #{accept}\r\n"
      head << "Sec-WebSocket-Protocol: #{protocol}\r\n" if protocol
      @socket.write(head << "\r\n")
      run_websocket(@socket, protocol, buffered: @parser.buffered, ping_interval: ping_interval,
                                       max_message: max_message, &block)
    end

    # @api private
    # What the access log needs of the request, in Rack's terms.
    def log_env(remote_addr)
      { 'REMOTE_ADDR' => remote_addr, 'REQUEST_METHOD' => method, 'PATH_INFO' => path,
        'QUERY_STRING' => query_string || '', 'SERVER_PROTOCOL' => server_protocol }
    end

    # @api private
    # The WebSocket this request was upgraded to, if any.
    attr_reader :websocket

    # @api private
    # The status sent, or nil when the handler answered nothing.
    attr_reader :status

    # @api private
    # Whether the response asked for the connection to close.
    def close?
      @close
    end

    private

    # Sec-WebSocket-Accept for a valid handshake; else answers the error and returns nil.
    def websocket_accept
      unless websocket? && @headers['connection'].to_s.downcase.split(/\s*,\s*/).include?('upgrade')
        respond("Not a WebSocket handshake\n", ':status' => 400, 'Content-Type' => 'text/plain')
        return
      end
      return unless websocket_version_13?

      key = @headers['sec-websocket-key']
      accept = key.is_a?(String) && Polyphony::WebSocket.accept_key(key)
      return accept if accept

      respond("Bad Sec-WebSocket-Key\n", ':status' => 400, 'Content-Type' => 'text/plain')
      nil
    end

    # Whether the client speaks WebSocket version 13; else answers 426 naming it.
    def websocket_version_13?
      return true if @headers['sec-websocket-version'] == '13'

      respond("WebSocket version 13 only\n", ':status' => 426, 'Sec-WebSocket-Version' => '13',
                                               'Content-Type' => 'text/plain')
      false
    end

    # The first subprotocol the client offers that the handler speaks.
    def chosen_protocol(protocols)
      protocols && Array(@headers['sec-websocket-protocol']).flat_map { |value| value.split(/\s*,\s*/) }
                                                            .find { |name| protocols.include?(name) }
    end

    # The WebSocket over `io` once the handshake is answered: yielded (then closed: 1000, or 1011
    # when the block raised), or returned without a block. A block that gave the WebSocket an
    # #on_message callback leaves it open: its messages go to the callback until it closes,
    # served by the connection (which parks it while idle: see Connection#serve) or, when the
    # connection cannot park it, here.
    def run_websocket(io, protocol, **options)
      @websocket = Polyphony::WebSocket.new(io, protocol: protocol, **options)
      return @websocket unless block_given?

      begin
        yield @websocket
        return @websocket if @websocket.callbacks? && (parks_websockets? || @websocket.__pump__(false))

        @websocket.close
      rescue StandardError
        @websocket.close(1011, 'internal error')
        raise
      end
    end

    # Whether the connection serves a WebSocket with callbacks itself once the handler returns
    # (HTTP/1.1's does; an HTTP/2 stream's WebSocket is served in the handler's fiber).
    def parks_websockets?
      true
    end

    def head?
      @headers[':method'] == 'HEAD'
    end

    def http10?
      @headers[':protocol'] == 'http/1.0'
    end

    def server_protocol
      protocol.upcase
    end

    # Moves to `state` and returns the response's fields: ':status' (200 unless given), and the
    # Connection field the server needs unless the handler sent its own.
    def begin_response(headers, state)
      raise Error, 'the response has begun already' unless @state == :new

      @state = state
      @status = headers[':status'] || 200
      @close = close_requested?(headers)
      fields = { ':status' => 200 }.merge(headers)
      connection = body_in_use? ? 'close' : @connection
      fields['Connection'] = connection if connection && !field?(fields, 'connection')
      fields
    end

    # (Field names are ASCII: `casecmp`, not `casecmp?`, whose Unicode case folding costs.)
    def field?(fields, name)
      fields.any? { |key, _| key.is_a?(String) && key.casecmp(name)&.zero? }
    end

    # Whether the handler's fields ask for the connection to close.
    def close_requested?(headers)
      headers.any? do |name, value|
        name.is_a?(String) && name.casecmp('connection')&.zero? &&
          Array(value).join(',').split(',').any? { |token| token.strip.casecmp('close')&.zero? }
      end
    end

    # Whether a fiber the handler spun is reading the body (in the parser) as it answers: the
    # connection ends after the answer then (see #close), and the answer says so.
    def body_in_use?
      @parser&.__in_use__ || false
    end

  end
end
