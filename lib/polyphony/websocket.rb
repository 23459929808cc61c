# frozen_string_literal: true

require 'uri'
require_relative '../h1p'

module Polyphony
  # A WebSocket connection (RFC 6455) over a socket, once the opening handshake is done (Tipi's
  # Tipi::Request#upgrade_to_websocket does it for a server; WebSocket.connect for a client).
  # Frames are decoded and encoded in Rust; this class moves the bytes, so the socket may be
  # plain or TLS. Pings are answered, the close handshake is done, and a peer that breaks the
  # protocol is closed with the code RFC 6455 names (1002, 1007, 1009).
  #
  #   ws.send('text')                      # a text message (a UTF-8 String)
  #   ws.send(bytes.b)                     # a binary message (an ASCII-8BIT String)
  #   ws.recv_loop { |message| ws << message }
  #   ws.close_code                        # 1000, 1001 ... once closed; 1006 if the peer vanished
  class WebSocket
    # A failed opening handshake.
    class Error < StandardError; end

    # Sending on a closed WebSocket.
    class ClosedError < Error; end

    TEXT = 1
    BINARY = 2
    PING = 9
    PONG = 10

    # The largest message a peer may send, all fragments together (larger: close code 1009).
    DEFAULT_MAX_MESSAGE = 16 << 20

    # Seconds to wait for the peer's Close frame after sending ours.
    CLOSE_TIMEOUT = 5

    KEY_BYTES = 16 # of a Sec-WebSocket-Key
    ENDED = 'the connection ended without a Close frame'
    private_constant :KEY_BYTES, :ENDED

    # The status code and reason of the close (nil while open): the peer's, or ours when we
    # closed first; 1005 when the peer's Close frame had none, 1006 when the connection ended
    # without one.
    attr_reader :close_code, :close_reason

    # The subprotocol agreed on in the handshake (Sec-WebSocket-Protocol), or nil.
    attr_reader :protocol

    # The socket the messages travel on.
    attr_reader :io

    # @param io [IO, Polyphony::TLS::Socket] a connection whose opening handshake is done
    # @param client [Boolean] this end is the client (its frames are masked)
    # @param buffered [String, nil] bytes read past the handshake (the first frames)
    # @param max_message [Integer] the largest message accepted from the peer
    # @param ping_interval [Numeric, nil] seconds between pings while nothing else is sent; a
    #   reader that hears nothing for two intervals treats the peer as gone (close code 1006)
    # @param protocol [String, nil] the subprotocol agreed on
    # @param close_timeout [Numeric] seconds to wait for the peer's Close frame after ours
    def initialize(io, client: false, buffered: nil, max_message: DEFAULT_MAX_MESSAGE, ping_interval: nil,
                   protocol: nil, close_timeout: CLOSE_TIMEOUT)
      @io = io
      @codec = Codec.new(client, max_message)
      @codec.feed(buffered) if buffered && !buffered.empty?
      @protocol = protocol
      @write_lock = Polyphony::Mutex.new
      @state = :open # then :closing (our Close frame sent), then :closed
      @readers = 0
      @heard = @pinged = now
      @close_timeout = close_timeout
      @ping_interval = ping_interval
      @pinger = spin { ping_loop } if ping_interval
    end

    # Has `block` called with each message, instead of a fiber waiting in #recv: a server that
    # parks connections (Tipi) then keeps an idle WebSocket without a fiber, its socket waiting
    # in the kernel, and runs the block on a pooled fiber when a message comes.
    # @yield [message] a String, as #recv returns it
    # @return [self]
    def on_message(&block)
      raise ArgumentError, 'on_message needs a block' unless block

      @on_message = block
      self
    end

    # Has `block` called once, when the WebSocket has closed (whoever closed it).
    # @yield [code, reason] as #close_code and #close_reason
    # @return [self]
    def on_close(&block)
      raise ArgumentError, 'on_close needs a block' unless block

      @on_close = block
      self
    end

    # Whether #on_message was given a block.
    def callbacks?
      !@on_message.nil?
    end

    # The next message: a String, UTF-8 for a text message and ASCII-8BIT for a binary one; nil
    # once the WebSocket is closed (see #close_code).
    def recv
      @readers += 1
      loop do
        event = next_event
        return event unless event.nil?
        return nil if @state == :closed
        return lost unless (data = read_some)

        @codec.feed(data)
      end
    ensure
      @readers -= 1
    end

    # Yields each message until the WebSocket closes.
    def recv_loop
      while (message = recv)
        yield message
      end
    end
    alias each recv_loop

    # Sends a message: text for a String in UTF-8 (or another encoding, converted), binary for an
    # ASCII-8BIT one (see String#b).
    # @raise [ClosedError] once the WebSocket is closing or closed
    def send(message)
      message = message.to_s
      opcode = message.encoding == Encoding::BINARY ? BINARY : TEXT
      message = message.encode(Encoding::UTF_8) if opcode == TEXT && message.encoding != Encoding::UTF_8
      write_frame(@codec.frame(opcode, message))
      self
    end

    def <<(message)
      send(message)
    end

    # Sends a Ping (data of at most 125 bytes); the peer answers with a Pong, which #recv
    # consumes.
    def ping(data = '')
      write_frame(@codec.frame(PING, data.b))
    end

    def open?
      @state == :open
    end

    def closed?
      @state == :closed
    end

    # Closes with `code` and `reason`: our Close frame, then the peer's (read here unless
    # another fiber is in #recv, which sees it; at most `close_timeout` seconds), then the socket
    # closes. Messages that arrive in between are dropped. Calling it again does nothing.
    def close(code = 1000, reason = '')
      return unless @state == :open

      @state = :closing
      @close_code = code
      @close_reason = reason
      begin
        write_raw(@codec.close_frame(code, reason))
      rescue SystemCallError, IOError
        return lost
      end
      if @parkable
        # Served by a server that parks it (see #__pump__): the pump reads the peer's Close
        # frame, or ends it once the deadline has passed; its owner wakes it then.
        @close_deadline = now + @close_timeout
        @watcher&.call(:closing)
      elsif @readers.zero?
        await_close_reply
      else
        # The reading fiber gets the peer's Close frame; a peer that never sends one is cut.
        @closer = spin do
          sleep @close_timeout
          finish(@close_code, @close_reason)
        end
      end
      nil
    end

    # The client side: connects to `url` (ws://host:port/path or wss://...), does the opening
    # handshake and returns the WebSocket.
    # @param headers [Hash] more request fields (Origin, Cookie ...)
    # @param protocols [Array<String>, nil] subprotocols offered
    # @raise [Error] when the server does not accept
    def self.connect(url, headers: {}, protocols: nil, ca_file: nil, **options)
      uri = URI(url)
      raise ArgumentError, "not a ws:// or wss:// URL: #{url}" unless %w[ws wss].include?(uri.scheme)

      # Ruby 3.1's URI knows no wss:// (a URI::Generic: no default port, no request_uri).
      uri.port ||= uri.scheme == 'wss' ? 443 : 80

      socket = if uri.scheme == 'wss'
                 Polyphony::TLS.connect(uri.host, uri.port, ca_file: ca_file, alpn: ['http/1.1'])
               else
                 TCPSocket.new(uri.host, uri.port)
               end
      key = [Random.bytes(KEY_BYTES)].pack('m0')
      socket.write(handshake_request(uri, key, headers, protocols))
      parser = H1P::Parser.new(socket, :client)
      response = parser.parse_headers
      check_handshake(response, key, protocols)
      new(socket, client: true, buffered: parser.buffered, protocol: response['sec-websocket-protocol'], **options)
    rescue StandardError
      socket&.close
      raise
    end

    def self.handshake_request(uri, key, headers, protocols)
      target = uri.path.empty? ? '/' : uri.path
      target += "?#{uri.query}" if uri.query
      request = +"GET #{target} HTTP/1.1\r\nHost: #{uri.host}:#{uri.port}\r\nUpgrade: websocket\r\n" \
                 "Connection: Upgrade\r\nSec-WebSocket-Key: #{key}\r\nSec-WebSocket-Version: 13\r\n"
      request << "Sec-WebSocket-Protocol: #{protocols.join(', ')}\r\n" if protocols && !protocols.empty?
      headers.each { |name, value| request << "#{name}: #{value}\r\n" }
      request << "\r\n"
    end

    def self.check_handshake(response, key, protocols)
      raise Error, 'the server closed the connection during the handshake' unless response
      unless response[':status'] == 101
        raise Error, "the server answered #{response[':status']} #{response[':status_message']}, not 101"
      end
      raise Error, 'the server sent a wrong Sec-WebSocket-Accept' unless response['sec-websocket-accept'] == accept_key(key)

      chosen = response['sec-websocket-protocol']
      raise Error, "the server chose a subprotocol not offered: #{chosen}" if chosen && !protocols&.include?(chosen)
    end
    private_class_method :handshake_request, :check_handshake

    # @api private
    # Runs the #on_message block for each message until the WebSocket closes (:closed), or, when
    # `parkable`, until its peer has sent nothing for a while (:idle): the caller then waits
    # without a fiber until the socket is readable, or for #__wake_in__ seconds (a ping is due),
    # and calls this again. While parkable the pings are sent from here, not by a fiber of
    # their own.
    def __pump__(parkable)
      if parkable && !@parkable
        @parkable = true
        @pinger&.stop
        @pinger = nil
      end
      @readers += 1
      loop do
        event = next_event
        if event
          @on_message.call(event)
          next
        end
        return :closed if @state == :closed || (parkable && keep_alive == :closed)

        data = read_until_due(parkable)
        next if data == :due # (a ping or a deadline: see #keep_alive)
        return @codec.release || :idle if data == :idle
        return lost || :closed unless data

        @codec.feed(data)
      end
    ensure
      @readers -= 1
    end

    # @api private
    # Seconds until a parked WebSocket has something to do if its peer sends nothing: a ping
    # owed, or the end of a close handshake the peer does not answer (nil: nothing).
    def __wake_in__
      due = @state == :closing ? @close_deadline : @ping_interval && (@pinged + @ping_interval)
      due && [due - now, 0].max
    end

    # @api private
    # Has `block` called with :closing when #close has sent our Close frame (the peer's is
    # awaited by the pump), and with :closed once the WebSocket has closed, before #on_close's
    # block: how the server that parks it learns it.
    def __watch__(&block)
      @watcher = block
    end

    # @api private
    # The connection under it is gone otherwise (its fiber was stopped): closed as lost (1006).
    def __abandon__
      lost
    end

    # @api private
    # After #close on a parked WebSocket, which nobody reads: the peer's Close frame, read here
    # (at most the close timeout), then the end.
    def __await_close__
      await_close_reply if @state == :closing
    end

    private

    # The next message decoded from what was read (control frames acted on), nil when more
    # bytes are needed or the WebSocket is closed.
    def next_event
      # (A peer flooding messages, each read bringing thousands, must not hold the thread.)
      Polyphony.__give_way__
      while (event = @codec.next)
        return event if event.is_a?(String) && @state == :open
        return nil if event.is_a?(Array) && control(event) == :closed
      end
    end

    # A ping when one is due; a peer silent for two intervals while we read is gone; a close
    # handshake the peer leaves unanswered ends at its deadline (the pump's: see #close).
    def keep_alive
      if @state == :closing && @close_deadline && now >= @close_deadline
        finish(@close_code, @close_reason)
        return :closed
      end
      return unless @ping_interval && @state == :open

      if @readers.positive? && now - @heard > 2 * @ping_interval
        finish(1006, "no answer to pings for #{2 * @ping_interval} seconds")
        return :closed
      end
      return unless now - @pinged >= @ping_interval

      @pinged = now
      ping
    rescue ClosedError
      :closed
    end

    # #read_more, given up with :due when a parkable pump has a ping or deadline first.
    def read_until_due(parkable)
      wait = parkable && __wake_in__
      wait ? move_on_after(wait, with_value: :due) { read_more(true) } : read_more(parkable)
    end

    # The next bytes for the pump: a String, nil when the stream ended, :idle (see #__pump__).
    def read_more(parkable)
      data = parkable ? Polyphony.__read_idle__(@io, 65_536) : false
      return read_some if data == false

      @heard = now if data.is_a?(String)
      data
    rescue EOFError, SystemCallError, IOError
      nil
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # Bytes from the socket, or nil when it ended.
    def read_some
      data = @io.readpartial(65_536)
      @heard = now
      data
    rescue EOFError, SystemCallError, IOError
      nil
    end

    def write_frame(frame)
      raise ClosedError, "the WebSocket is #{@state}" unless @state == :open

      write_raw(frame)
    rescue SystemCallError, IOError
      lost
      raise ClosedError, 'the connection ended'
    end

    # Acts on a control frame from the codec; :closed when the WebSocket is now closed.
    def control((kind, first, reason))
      case kind
      when :ping
        # A Pong is owed unless we are closing (then the Close frame went first).
        write_raw(@codec.frame(PONG, first)) if @state == :open
      when :close
        reply_close(first == 1005 ? 1000 : first) if @state == :open
        finish(@close_code || first, @close_reason || reason)
        :closed
      when :error # the peer broke the protocol
        reply_close(first, reason)
        finish(first, reason)
        :closed
      end
    rescue SystemCallError, IOError
      lost
      :closed
    end

    def reply_close(code, reason = '')
      write_raw(@codec.close_frame(code, reason))
    rescue SystemCallError, IOError
      nil
    end

    # One frame, whole: writers of several fibers take turns.
    def write_raw(frame)
      @write_lock.synchronize { @io.write(frame) }
    end

    # The connection ended without a Close frame (close code 1006); nil.
    def lost
      finish(1006, ENDED)
      nil
    end

    # After our Close frame: reads until the peer's (dropping messages) or the timeout.
    def await_close_reply
      move_on_after(@close_timeout) do
        @readers += 1
        while @state == :closing
          event = @codec.next
          next control(event) if event.is_a?(Array)
          next if event

          (data = read_some) ? @codec.feed(data) : break
        end
      ensure
        @readers -= 1
      end
      finish(@close_code, @close_reason)
    end

    def finish(code, reason)
      return if @state == :closed

      @state = :closed
      @close_code ||= code
      @close_reason ||= reason
      begin
        @io.close unless @io.closed?
      rescue SystemCallError, IOError
        nil
      end
      @pinger&.stop unless Fiber.current == @pinger
      @closer&.stop unless Fiber.current == @closer
      @watcher&.call(:closed)
      call_on_close
    end

    # The app's #on_close block: what it raises is reported, not raised in whichever fiber
    # closed the WebSocket (a server's own, possibly).
    def call_on_close
      @on_close&.call(@close_code, @close_reason)
    rescue StandardError => e
      warn "polyphony: WebSocket#on_close: #{e.class}: #{e.message}\n\t#{e.backtrace&.first(8)&.join("\n\t")}"
    end

    # The pinger's fiber (while no server parks the WebSocket): #keep_alive when a ping is due.
    def ping_loop
      loop do
        sleep(__wake_in__ || @ping_interval)
        break unless open? && keep_alive != :closed
      end
    end
  end
end
