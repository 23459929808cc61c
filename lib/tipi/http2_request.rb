# frozen_string_literal: true

module Tipi
  # A Tipi-native handler's request on an HTTP/2 stream: the same API as over HTTP/1.1
  # (Tipi::Request), the answer going out as the stream's HEADERS and DATA frames. A WebSocket
  # comes by RFC 8441's extended CONNECT and runs over the stream.
  class HTTP2Request < Request
    # A stream seen as an IO, for Polyphony::WebSocket: reads are the request body's DATA,
    # writes the response's.
    class StreamIO
      def initialize(connection, id, body)
        @connection = connection
        @id = id
        @body = body
      end

      def readpartial(_length = nil, _buffer = nil)
        raise IOError, 'stream closed' if @closed

        @body.read_body_chunk or raise EOFError
      end

      def write(data)
        raise IOError, 'stream closed' if @closed

        @connection.send_data(@id, data.b, false)
        data.bytesize
      rescue Polyphony::HTTP2::Error => e
        raise IOError, e.message
      end

      # Ends the stream; a reader waiting on it gets the end of the body.
      def close
        return if @closed

        @closed = true
        @body << nil if @body.respond_to?(:<<)
        @connection.send_data(@id, '', true)
      rescue Polyphony::HTTP2::Error
        nil # reset by the client already
      end

      def closed?
        @closed ? true : false
      end
    end

    # @param headers [Hash] H1P's shape: ':method', ':path', ':scheme', ':authority', ':protocol'
    #   ("h2"), ':connect_protocol' for an extended CONNECT, lower-case field names
    # @param connection [Tipi::HTTP2Connection]
    # @param body [#read_body_chunk] the request body
    def initialize(headers, connection, id, body, timeout)
      super(headers, body, nil, timeout)
      @connection = connection
      @id = id
      @body = body
    end

    def respond(body = nil, headers = {})
      status, fields = head(headers, :done)
      body = nil if head?
      @connection.answer(@id, status, fields, body ? [body.to_s] : true)
      body&.bytesize || 0
    end

    def send_headers(headers = {})
      status, fields = head(headers, :streaming)
      @connection.answer(@id, status, fields, head?) # HEAD: the stream ends with the head
      0
    end

    def send_chunk(data, done: false)
      send_headers if @state == :new
      raise Error, 'the response is complete' unless @state == :streaming

      data = data.to_s
      @connection.send_data(@id, data, false) unless data.empty? || head?
      finish if done
      data.bytesize
    end

    def finish
      return if @state == :done

      send_headers if @state == :new
      @state = :done
      @connection.send_data(@id, '', true) unless head?
      0
    end

    # An extended CONNECT with `:protocol` websocket (RFC 8441).
    def websocket?
      @headers[':method'] == 'CONNECT' && @headers[':connect_protocol'] == 'websocket'
    end

    # As Tipi::Request#upgrade_to_websocket, over the stream: answered 200 (RFC 8441 has no
    # 101 and no Sec-WebSocket-Key/Accept).
    def upgrade_to_websocket(protocols: nil, ping_interval: 30, max_message: Polyphony::WebSocket::DEFAULT_MAX_MESSAGE,
                             &block)
      unless websocket?
        respond("Not a WebSocket handshake\n", ':status' => 400, 'content-type' => 'text/plain')
        return
      end
      return unless websocket_version_13?

      protocol = chosen_protocol(protocols)
      send_headers(protocol ? { 'sec-websocket-protocol' => protocol } : {})
      @state = :done # the stream ends with the WebSocket
      run_websocket(StreamIO.new(@connection, @id, @body), protocol, ping_interval: ping_interval,
                                                                     max_message: max_message, &block)
    end

    private

    def server_protocol
      'HTTP/2'
    end

    # A stream's WebSocket has no socket of its own to park.
    def parks_websockets?
      false
    end

    # A stream's body is its own: no other request waits for a fiber still reading it.
    def body_in_use?
      false
    end

    # The response's status and fields (no pseudo-fields), the state moved to `state`.
    def head(headers, state)
      fields = begin_response(headers, state)
      status = fields.delete(':status').to_i
      [status, fields.reject { |name, _| name.start_with?(':') }]
    end
  end
end
