# frozen_string_literal: true

module Tipi
  # An HTTP/2 connection (ALPN h2 on TLS, the h2c preface or Upgrade: h2c on plain TCP): h2p
  # does the protocol, each stream's app runs on one of the connection's worker fibers, and one
  # writer fiber sends what they all produced, so that streams answering at once do not
  # interleave their bytes.
  class HTTP2Connection
    # The request line H1P sees of the client's connection preface ("PRI * HTTP/2.0\r\n\r\nSM...").
    PREFACE_START = 'PRI * HTTP/2.0'

    # Reads a stream's request body for Tipi::Input (which calls read_body_chunk). The
    # stream's window opens again as the app reads: what a client sends and the app has not
    # read is bounded by the windows (1 MiB per stream, 2 MiB per connection).
    class Body
      # The request's trailer fields ({name => value or [values]}), once they came.
      attr_accessor :trailers

      # @param limit [Integer, nil] the largest body accepted (H1P::TooLarge beyond: a 413)
      # @param connection [HTTP2Connection, nil] told what the app read, to open the window
      def initialize(limit = nil, connection = nil, id = nil)
        @queue = Polyphony::Queue.new
        @limit = limit
        @size = 0
        @connection = connection
        @id = id
      end

      def <<(chunk)
        @size += chunk.bytesize if chunk
        @queue << chunk
      end

      # Whether more came than the limit allows.
      def over_limit?
        @limit && @size > @limit
      end

      def read_body_chunk
        chunk = @queue.shift
        raise H1P::TooLarge, "body larger than #{@limit} bytes" if over_limit?

        @connection&.consumed(@id, chunk.bytesize) if chunk
        chunk
      end

      # The body of a request that has none.
      NONE = Object.new.tap do |none|
        def none.read_body_chunk = nil
        def none.trailers = nil
      end.freeze
    end

    MAX_STREAMS = 128 # concurrent streams per connection
    MAX_HEADER_LIST = 65_536 # bytes

    def initialize(socket, app, server, logger, options)
      @socket = socket
      @app = app
      @server = server
      @logger = logger
      @timeout = options[:timeout]
      @max_body = options[:max_body]
      @native = options[:native]
      # Extended CONNECT (a WebSocket over a stream) for Tipi-native handlers: Rack has no way
      # to take a stream over.
      @h2 = Polyphony::HTTP2::Server.new(MAX_STREAMS, MAX_HEADER_LIST, @native ? true : false)
      @bodies = {}
      @event = [] # what next_event fills
      @streams = {} # stream id => the worker fiber running its app
      @jobs = [] # requests waiting for a worker: id, env, input, id, env...
      @workers = []
      @idle = [] # workers parked until there is work
      @pending = Polyphony::Event.new # output waits to be written
      @capacity = Polyphony::Event.new # a window may have opened: streams waiting look again
      @drained = Polyphony::Event.new # the writer took what h2 had to send
      @window_waiters = 0 # streams waiting for @capacity
      @reader_waits = false # the reader waits for @drained
      # No hijacking a stream: HTTP/2 multiplexes the socket.
      @remote_addr = options[:remote_addr]
      @base_env = RackEnv.base(server)
      @base_env.merge!('REMOTE_ADDR' => @remote_addr, 'SERVER_PROTOCOL' => 'HTTP/2', 'rack.hijack?' => false)
    end

    # @param received [String, nil] bytes already read (by H1P, which refused them)
    # @param upgrade [Array(Hash, String, Hash), nil] after `Upgrade: h2c`: the upgrading
    #   request (a Rack env, or for a native handler H1P's headers in HTTP/2's shape), its body
    #   and its trailer fields (or nils), to be answered on stream 1
    def serve(received = nil, upgrade: nil)
      if upgrade
        @upgrade = upgrade
        @h2.upgrade(*upgraded_head(upgrade.first))
      end
      @fiber = Fiber.current
      # One writer: what every stream produced in a round of the event loop goes out in one
      # write, in order.
      writer = spin { loop { @pending.await; flush_once } }
      handle(received) if received && !received.empty?
      @socket.read_loop do |data|
        handle(data)
        break if @h2.closed? || @h2.flooded? || !caught_up
      end
      @h2.flooded? ? move_on_after(FLOOD_LINGER) { flush_once } : flush_once
    rescue Polyphony::HTTP2::Error => e
      $stderr.write("tipi: #{@remote_addr}: #{e.message}\n")
      flush_once rescue nil # rubocop:disable Style/RescueModifier
    rescue SystemCallError, IOError
      nil # the client went away
    ensure
      $stderr.write("tipi: #{@remote_addr}: PING/SETTINGS flood: GOAWAY ENHANCE_YOUR_CALM\n") if @h2.flooded?
      @workers.dup.each(&:stop)
      writer&.stop
      @socket.close unless @socket.closed?
    end

    # Seconds a flooding peer's connection is given to take its GOAWAY.
    FLOOD_LINGER = 2

    # A graceful stop: GOAWAY; streams in flight finish.
    def shutdown
      @h2.graceful_shutdown
      @pending.signal
    end

    # @api private
    # Answers stream `id` (for HTTP2Request): `body` an Array of Strings (the stream ends), true
    # (no body, the stream ends) or false (DATA follows).
    def answer(id, status, fields, body)
      write { @h2.respond_rack(id, status, fields, body) }
    end

    # @api private
    # Sends a piece of stream `id`'s body as fast as the stream's and the connection's windows
    # let it go (the worker waits meanwhile, and the app's body is pulled no faster): h2 never
    # holds more of a stream than its window. A client that opens no window for the timeout
    # gets the stream reset.
    def send_data(id, data, last)
      data = data.to_s
      size = data.bytesize
      offset = 0
      stalled = nil # since when the window has stayed shut (the timeout counts from there)
      while offset < size
        allowed = @h2.send_capacity(id, size - offset)
        next wait_for_window(id, stalled ||= Process.clock_gettime(Process::CLOCK_MONOTONIC)) if allowed.zero?

        stalled = nil
        piece = allowed == size ? data : data.byteslice(offset, allowed)
        offset += allowed
        write { @h2.send_data(id, piece, last && offset == size) }
      end
      write { @h2.send_data(id, '', true) } if last && size.zero?
    end

    # @api private
    # The app read `count` bytes of stream `id`'s body: the client may send as many more.
    def consumed(id, count)
      write { @h2.release(id, count) }
    end

    private

    def handle(data)
      @h2.receive(data)
      dispatch
      @pending.signal
      @capacity.signal if @window_waiters.positive? # (WINDOW_UPDATE frames may have come)
    end

    # While the peer does not take what it is sent (or h2 has not caught up with what came),
    # reads no more, so that neither side's bytes pile up here. False if that lasted longer
    # than the timeout: the peer reads nothing, the connection is given up.
    def caught_up
      while @h2.backlogged?
        @pending.signal
        @reader_waits = true
        begin
          return false if @timeout && !move_on_after(@timeout, with_value: false) { @drained.await || true }

          @drained.await unless @timeout
        ensure
          @reader_waits = false
        end
      end
      true
    end

    # Waits for stream `id`'s window to open (see #send_data), until the timeout from `since`:
    # the stream wakes whenever frames come, and a client sending others (PINGs, say) while
    # it keeps the window shut must not start the timeout over each time.
    def wait_for_window(id, since)
      @pending.signal # (what is queued goes out: the client answers it with WINDOW_UPDATE)
      @window_waiters += 1
      begin
        opened = if @timeout
                   left = @timeout - (Process.clock_gettime(Process::CLOCK_MONOTONIC) - since)
                   left.positive? && move_on_after(left, with_value: false) { @capacity.await || true }
                 else
                   @capacity.await
                 end
      ensure
        @window_waiters -= 1
      end
      return unless opened == false

      write { @h2.reset(id) }
      raise Polyphony::HTTP2::Error, "stream #{id}: the client opened no window for #{@timeout} s"
    end

    # Acts on what h2 made of the bytes: requests go to workers, body pieces to their streams.
    # (Plain branches on the event's kind: pattern matching cost more than the rest of it.)
    def dispatch
      base = @native ? nil : @base_env
      while (event = @h2.next_event(base, @event))
        kind, id, value, end_stream = event
        case kind
        when :request then request(id, value, end_stream)
        when :data then body_piece(id, value, end_stream)
        when :trailers then @bodies[id]&.trailers = value
        when :reset
          @bodies.delete(id)&.<<(nil)
          @streams.delete(id)&.raise(StreamReset)
        end
      end
    end

    def request(id, env, end_stream)
      if id == 1 && @upgrade
        env, body = upgraded_request
      elsif !end_stream
        return refuse_declared(id, env) if declared_too_large?(env)

        body = @bodies[id] = Body.new(@max_body, self, id)
      end
      # (A native handler's `env` is H1P's headers.)
      return start_stream(id, HTTP2Request.new(env, self, id, body || Body::NONE, @timeout), nil) if @native

      env['rack.input'] = input = body ? Input.new(body, @timeout, env) : Input::EMPTY
      start_stream(id, env, input)
    end

    def body_piece(id, bytes, end_stream)
      body = @bodies[id] or return
      body << bytes unless bytes.empty?
      if body.over_limit?
        # More than --max-body: the app's next read raises H1P::TooLarge (a 413, unless it
        # answered already), and h2 resets the rest of the upload once the stream is answered.
        @h2.refuse_body(id)
        end_stream = true
      end
      return unless end_stream

      body << nil
      @bodies.delete(id)
    end

    # Whether the request declares a content-length over --max-body.
    def declared_too_large?(env)
      return false unless @max_body

      length = @native ? env['content-length'] : env['CONTENT_LENGTH']
      length.is_a?(String) && length.to_i > @max_body
    end

    # Answers 413 at once to a request whose declared length is over --max-body, without
    # running the app or taking its body (h2 resets the upload once the answer is out).
    def refuse_declared(id, env)
      @h2.refuse_body(id)
      message = "body larger than #{@max_body} bytes\n"
      answer(id, 413, { 'content-type' => 'text/plain', 'content-length' => message.bytesize.to_s }, [message])
      path = @native ? env[':path'] : env['PATH_INFO']
      $stderr.write("tipi: #{@remote_addr}: 413 for #{path}: content-length #{@native ? env['content-length'] : env['CONTENT_LENGTH']}\n")
    end

    # Raised in a worker whose stream the client reset (not a StandardError: the app's own
    # rescue clauses let it through).
    class StreamReset < Polyphony::BaseException; end

    # Workers parked per connection (more are spun when requests block).
    MAX_IDLE_WORKERS = 2

    # Each stream's app runs on a worker fiber; a worker serves requests in turn, so a fiber is
    # not made per request. One that takes a request while others wait wakes a spare first: a
    # request that blocks (a slow app, a body on its way) never holds up the next.
    def start_stream(id, env, input)
      @jobs.push(id, env, input) # (three entries, not an Array of them)
      wake_worker
    end

    def wake_worker
      return if @waking

      @waking = true
      if (worker = @idle.pop)
        worker.schedule
      else
        @workers << @fiber.spin { work }
      end
    end

    def work
      loop do
        @waking = false
        while (id = @jobs.shift)
          env = @jobs.shift
          input = @jobs.shift
          wake_worker unless @jobs.empty?
          serve_stream(id, env, input)
        end
        break if @idle.size >= MAX_IDLE_WORKERS

        @idle << Fiber.current
        suspend
      end
    ensure
      @workers.delete(Fiber.current)
      @idle.delete(Fiber.current)
    end

    def serve_stream(id, env, input)
      @streams[id] = Fiber.current
      input ? run_stream(id, env, input) : run_native(id, env)
    rescue StreamReset
      nil # the client does not want the answer
    ensure
      @streams.delete(id)
    end

    # The method, target and authority of the request that came with `Upgrade: h2c`.
    def upgraded_head(request)
      return request.values_at(':method', ':path', ':authority') if @native

      query = request['QUERY_STRING']
      [request['REQUEST_METHOD'], query.empty? ? request['PATH_INFO'] : "#{request['PATH_INFO']}?#{query}",
       request['HTTP_HOST']]
    end

    # The request that came with `Upgrade: h2c`, now served over HTTP/2, and its body.
    def upgraded_request
      request, data, trailers = @upgrade
      @upgrade = nil
      body = Body.new
      body << data if data
      body.trailers = trailers
      body << nil
      request = request.merge('SERVER_PROTOCOL' => 'HTTP/2', 'rack.hijack?' => false) unless @native
      [request, body]
    end

    # The app's answer to one stream; `input` is closed after it (the app's rack.input may be
    # a wrapper, such as Rack::Lint's, that must not be closed).
    def run_stream(id, env, input)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC) if @logger
      status, headers, body = call_app(env)
      status = status.to_i
      head_only = env['REQUEST_METHOD'] == 'HEAD' || status == 204 || status == 304
      body = Dechunked.new(body) if !head_only && Dechunked.chunked?(headers)
      if head_only || (body.respond_to?(:to_ary) && !body.respond_to?(:trailers))
        # The whole answer in one call: head, and body or none.
        write { @h2.respond_rack(id, status, headers, head_only || body.to_ary) }
      else
        write { @h2.respond_rack(id, status, headers, false) }
        send_body(id, body)
      end
      @logger&.call(env, status, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
    rescue Polyphony::HTTP2::Error
      nil # the stream is gone (reset by the client)
    rescue StandardError => e
      # The body failed while it was sent (raised in `each`, chunked wrongly): the stream is
      # cut, the connection goes on.
      Tipi.report(e, env['rack.errors'])
      begin
        write { @h2.reset(id) }
      rescue Polyphony::HTTP2::Error
        nil
      end
    ensure
      body.close if body.respond_to?(:close)
      input.close
    end

    # Sends a body piece by piece, and the trailer fields its `trailers` gives after that
    # (Rack 3's convention), if any.
    def send_body(id, body)
      body.each { |chunk| send_data(id, chunk, false) unless chunk.to_s.empty? }
      trailers = trailers(body)
      write { trailers ? @h2.send_trailers(id, trailers) : @h2.send_data(id, '', true) }
    end

    # A body's trailer fields as [[name, value]...] (Array values and "\n"-joined ones are
    # repeated fields), or nil.
    def trailers(body)
      return unless body.respond_to?(:trailers)

      fields = body.trailers&.flat_map do |name, value|
        Array(value).flat_map { |v| v.to_s.split("\n") }.map { |line| [name.to_s.downcase, line] }
      end
      fields unless fields.nil? || fields.empty?
    end

    # A Tipi-native handler's answer to one stream (`request` a Tipi::HTTP2Request).
    def run_native(id, request)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      failure = Request.handle(@app, request)
      if failure
        request.status ? write { @h2.reset(id) } : request.respond("#{failure[1]}\n", ':status' => failure[0])
      else
        request.finish
      end
      @logger&.call(request.log_env(@remote_addr), request.status,
                    Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
    rescue Polyphony::HTTP2::Error
      nil # the stream is gone (reset by the client)
    end

    def call_app(env)
      @app.call(env)
    rescue H1P::TooLarge => e
      [413, { 'content-type' => 'text/plain' }, ["#{e.message}\n"]]
    rescue StandardError => e
      Tipi.report(e, env['rack.errors'])
      [500, { 'content-type' => 'text/plain' }, ["Internal Server Error\n"]]
    end

    # Runs a change to the connection; the writer sends what it produced.
    def write
      yield
      @pending.signal
    end

    # Writes what the answers given since the last flush produced (h2 makes their frames now,
    # all at once).
    # One flush at a time (the writer's, or the connection's last): their bytes must not
    # interleave on the socket.
    def flush_once
      (@flush_lock ||= Polyphony::Mutex.new).synchronize { flush }
    end

    def flush
      # h2 has more only when it stopped at its outbox's limit (it writes up to it).
      while (wrote = @h2.flush_to(@socket)) >= Polyphony::HTTP2::OUTBOX_LIMIT
        dispatch # streams h2 took in while making them
        @capacity.signal if @window_waiters.positive?
      end
      dispatch
      # Windows change as h2 reads what came: at `receive`, or here once it could send again.
      # (Not after a flush that sent nothing: a stream waiting for its window asks for a flush,
      # and each would wake it again, the two taking turns at full speed.)
      @capacity.signal if wrote.positive? && @window_waiters.positive?
      @drained.signal if @reader_waits
    end
  end
end
