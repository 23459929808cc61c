# frozen_string_literal: true

module Tipi
  # Accepts on one or more listeners and serves each connection on its own fiber.
  class Server
    # Header limits that fit real traffic: a Rails cookie store's 4 KB cookie and long query
    # strings (Puma allows 12 KB targets; nginx 8 KB lines); H1P's own defaults are stricter.
    MAX_HEADER_SIZE = 12 * 1024
    MAX_HEAD_SIZE = 64 * 1024

    attr_reader :listeners

    # @param app [#call] a Rack app, or with `native: true` a handler taking a Tipi::Request
    # @param listeners [Array<Listener>, nil] where to accept (default: tcp://host:port)
    # @param logger [#call, nil] called with (env, status, seconds, bytes) after each request
    #   (bytes: those of the response, head included; nil where unknown)
    # @param timeout [Numeric, nil] seconds a client may take to send a request head, or to
    #   send the next one, or its body
    # @param max_body [Integer, nil] largest request body accepted (413 beyond)
    # @param max_connections [Integer, nil] connections served at once (no more are accepted
    #   until one ends)
    # @param max_header_size [Integer] the longest request target and header value (414 or 431
    #   beyond)
    # @param max_head_size [Integer] the longest request head: request line and fields (431)
    def initialize(app, listeners: nil, host: '0.0.0.0', port: 1234, native: false, logger: nil, timeout: 30,
                   max_body: nil, max_connections: nil, max_header_size: MAX_HEADER_SIZE, max_head_size: MAX_HEAD_SIZE)
      @app = app
      @listeners = listeners || [Listener.bind(Listener.tcp_url(host, port))]
      @logger = logger
      limits = { max_target: max_header_size, max_header_value: max_header_size, max_head: max_head_size,
                 check_host: true }
      @options = { timeout: timeout, max_body: max_body, native: native, server: self, limits: limits }
      @max_connections = max_connections
      @connections = 0
      @slot_freed = Polyphony::Event.new
      @live = {}.compare_by_identity # (Fiber#hash is a method call; identity is not)
      @spares = [] # each listener's connection fibers waiting for a next connection
      @parkings = [] # each listener's idle connections, waiting without a fiber
    end

    # Forked workers sharing the listeners see each other's connection counts here
    # (`counters[index]` is this process's), so that one worker does not take a burst of
    # connections alone: the kernel wakes every worker on a shared listener, and the first awake
    # would accept them all, leaving the others idle for the connections' life.
    # @param counters [Polyphony::SharedCounters]
    # @param index [Integer] this worker's slot
    def balance(counters, index)
      @balance = counters
      @balance_index = index
    end

    # The first listener's port (the real one when 0 was asked for).
    def port
      @listeners.first.port
    end

    # Serves until #shutdown (or until the fiber is stopped).
    def run
      runner = @runner = Fiber.current
      @accepting = true
      @acceptors = @listeners.map { |listener| spin { accept_loop(listener, runner) } }
      publish_load # counted by the other workers from now on, not while this one was starting
      sweeper = spin { sweep } if @options[:timeout]
      Polyphony.__idle_limit__ = IDLE_LIMIT
      parker = spin { park_idle }
      @acceptors.each(&:await)
      @accepting = false
      close_parked
      @spares.each do |spare|
        spare.each_slice(2) { |fiber, _connection| fiber.schedule(nil) } # (they end)
        spare.clear
      end
      # Stopped accepting: the connections are this fiber's children; they finish first. (Idle
      # reads are still interrupted meanwhile, and parked WebSockets woken: those a graceful
      # stop is closing wait for their clients' Close frames with deadlines.)
      Fiber.await(*@live.keys) until @live.empty?
      parker.stop
      close_parked # (those parked meanwhile)
      sweeper&.stop
      runner.await_all_children
    ensure
      Polyphony.__idle_limit__ = nil
    end

    # Whether #shutdown has begun: connections close after their current request.
    def stopping?
      @stopping
    end

    # A graceful stop: no more connections are accepted (those waiting in the listen queue stay
    # there, for another process), idle ones are closed, and requests in flight finish (for at
    # most `grace` seconds, then their fibers are terminated). The listeners stay open unless
    # `close` (a restart hands them to the next process image).
    def shutdown(grace = 10, close: true)
      @stopping = true
      @acceptors&.each(&:stop)
      close_parked
      @live.each do |fiber, connection|
        connection.goaway # HTTP/2: no new streams
        fiber.stop if connection.idle?
      end
      move_on_after(grace) { sleep(0.01) until @live.empty? }
      @live.each_key(&:terminate)
      self.close if close
    end

    def close
      @listeners.each(&:close)
    end

    # @api private
    # Called when a WebSocket that `connection` serves by its callbacks is closing (`state`
    # :closing: our Close frame sent, the peer's awaited until a deadline) or has closed (its
    # socket too), by another fiber, say, while it was parked: then it waits again until that
    # deadline, or it is taken out and counted as ended.
    def websocket_changed(connection, state)
      parking = @parkings.find { |p| p.unpark(connection) }
      return unless parking

      if state == :closed
        connection_ended
      else
        park(parking, connection) || connection_ended
      end
    end

    private

    # A connection fiber's life: it serves `connection`, then waits in `spare` (its listener's)
    # with it for the next connection, which the accept loop gives the same Connection object
    # (Connection#renew). Spinning a fiber costs more than a whole keep-alive request, and a
    # Connection with its base env a good part of one: a server of short connections
    # (`Connection: close`) made both for each.
    #
    # A connection whose client sends nothing for a while between requests is parked instead
    # (Connection#parked?): it waits in `parking` without a fiber, and #dispatch hands it to a
    # spare fiber when the client sends again. (Unless fibers the app spun for it still run:
    # its fiber waits on with them.)
    def serve_connections(connection, spare, parking)
      fiber = Fiber.current
      while connection
        parked = false
        begin
          connection.serve
          while connection.parked? && !fiber.children.empty? && !@stopping
            # Fibers the app spun for it still run: it waits on with them, looking at them
            # again every PARK_AFTER while its client sends nothing. (Served again at once, a
            # connection parked without waiting, in a crowd, would spin.)
            move_on_after(PARK_AFTER) { Polyphony.__io_wait__(connection.socket.to_io.fileno, IO::READABLE) }
            connection.serve
          end
          # (Fibers the app spun and left running end with its connection, as they would with
          # a fiber of its own.)
          fiber.shutdown_all_children
        ensure
          @live.delete(fiber)
          parked = connection.parked? && park(parking, connection)
          connection_ended unless parked
        end
        return if connection.hijacked? || !@accepting || spare.size >= spares_per_listener * 2

        # Like a thread of Puma's, the next connection's code finds what was set on the
        # fiber by the last; its fiber-local variables, though, start empty as in a new one.
        Thread.current.keys.each { |key| Thread.current[key] = nil }
        spare.push(fiber, parked ? nil : connection) # (a parked one is not for reuse)
        connection = Polyphony.__switch__
      end
    end

    # One connection fewer.
    def connection_ended
      @connections -= 1
      publish_load
      @slot_freed.signal if @max_connections # (only then does an accept loop wait for it)
    end

    # Parks `connection` (see #serve_connections); whether it could be (not while stopping,
    # not a socket closed meanwhile).
    def park(parking, connection)
      if @stopping
        connection.close_parked
        return false
      end
      parking.park(connection.socket.to_io.fileno, connection, connection.wake_in)
      connection.release_while_parked
      true
    rescue IOError, SystemCallError
      connection.close_parked
      false
    end

    # Each listener's parked connections, as their clients send something, go on on a spare
    # fiber of the listener's, or a new one. One at a time: each runs until it waits before the
    # next is taken. Those whose client left are closed here: many clients leaving at once
    # make no fiber and no read buffer each (which, freed only by a later GC, had grown the C
    # heap by their number times 16 KB).
    def dispatch(parking, spare, runner)
      loop do
        connection = parking.take
        if !connection.websocket? && connection.left?
          drop_parked(connection)
          next
        end
        hand_over(spare, parking, runner) { connection }
        snooze
      end
    end

    # Serves a connection on a spare fiber of the listener's, or on a new one: the block gets
    # the spare's kept Connection (nil if none) and returns the connection to serve.
    def hand_over(spare, parking, runner)
      fiber, kept = spare.pop(2)
      fiber, kept = spare.pop(2) while fiber&.dead? # (stopped while it waited)
      connection = yield kept
      if fiber
        fiber.schedule(connection)
      else
        fiber = runner.spin { serve_connections(connection, spare, parking) }
      end
      @live[fiber] = connection
    end

    # Parks connections whose client has sent nothing for PARK_AFTER to 2 x PARK_AFTER
    # seconds between requests (H1P's parser waits for them with its fiber until then): see
    # Polyphony.__park_idle__. A crowd of them is parked sooner by the backend (IDLE_LIMIT).
    def park_idle
      loop do
        sleep PARK_AFTER
        Polyphony.__park_idle__
        @parkings.each(&:wake_due) # (parked WebSockets due to ping)
      end
    end

    # A short wait costs a fiber; a long one, only the connection's socket and buffers: parked
    # later, connections would hold a fiber each for longer; sooner, clients that pause briefly
    # between requests would go through the parking more often.
    PARK_AFTER = 0.025 # seconds
    # Connections that may wait with their fibers for their clients' next requests while the
    # process has nothing else to do: beyond it, those waiting more than a millisecond are
    # parked at once, oldest first; and none waits with its fiber once twice as many do, or as
    # many fibers are alive (see Polyphony.__idle_limit__=). A burst of clients that each send a
    # request then pause would otherwise hold a fiber each (a thousand at 20,000 per second),
    # with its launcher's, until the next look; and a fiber's stack, once touched, stays in the
    # process for good (Ruby reuses it, but never gives it back).
    IDLE_LIMIT = 64
    private_constant :PARK_AFTER, :IDLE_LIMIT

    # Closes the parked connections (the server stops: idle ones close at once).
    def close_parked
      @parkings.each do |parking|
        parking.tokens.each do |connection|
          parking.unpark(connection)
          if connection.websocket?
            (@runner || Fiber.current).spin { drop_parked(connection) }
          else
            drop_parked(connection)
          end
        end
      end
    end

    # Closes the connections parked longer than `seconds`.
    def expire_parked(seconds)
      @parkings.each { |parking| parking.expire(seconds).each { |connection| drop_parked(connection) } }
    end

    # Closes a connection taken out of its parking.
    def drop_parked(connection)
      connection.close_parked
      connection_ended
    end

    # Spare fibers each listener keeps: SPARES in all (they count as fibers alive for
    # IDLE_LIMIT's crowds: twice as many spares would make every wait one).
    def spares_per_listener
      @spares_per_listener ||= [SPARES / [@listeners.size, 1].max, 8].max
    end

    SPARES = 64 # connection fibers kept waiting for the next connection, at most
    private_constant :SPARES

    # Cuts connections whose request head is late, or whose client stopped reading its
    # response, a few times per timeout (one timer for all connections rather than one per
    # request).
    def sweep
      timeout = @options[:timeout]
      interval = [timeout / 4.0, 1.0].min
      seen = {}.compare_by_identity # socket => [the read it was on, when first seen on it]
      loop do
        sleep interval
        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        seen = sweep_reads(seen, now, timeout)
        expire_parked(timeout)
        give_back_memory
      end
    end

    # Raises Expired in each connection found on the same read of a request head, or at the
    # same point of writing a response, for longer than `timeout` (so cut between `timeout`
    # and `timeout` plus two sweeps after it stalled); returns what was seen this time.
    def sweep_reads(seen, now, timeout)
      @live.each_with_object({}.compare_by_identity) do |(fiber, connection), found|
        next unless (read = connection.stall_mark)

        # (By socket: a Connection renewed for another socket numbers its reads anew.)
        socket = connection.socket
        earlier = seen[socket]
        found[socket] = earlier && earlier[0] == read ? earlier : [read, now]
        fiber.raise(Connection::Expired) if now - found[socket][1] > timeout
      end
    end

    # After many connections closed, the memory they held goes back to the system: a GC frees
    # their objects (an idle server allocates nothing that would start one), and the C heap
    # gives back what they freed. At most once per sweep, when the count fell by half and by
    # more than GIVE_BACK_AFTER since the highest seen.
    def give_back_memory
      @connections_peak = [@connections_peak || 0, @connections].max
      return unless @connections_peak - @connections > GIVE_BACK_AFTER && @connections * 2 < @connections_peak

      @connections_peak = @connections
      @spares.each { |spare| spare.each_slice(2) { |_fiber, connection| connection&.release_memory } }
      # (Twice: the first GC leaves the pages it emptied to the second, which frees them.)
      2.times { GC.start }
      Polyphony.__malloc_trim__
    end

    GIVE_BACK_AFTER = 1000 # connections
    private_constant :GIVE_BACK_AFTER

    # At --max-connections: waits for a connection to end; meanwhile, when a new one waits to
    # be accepted, an idle keep-alive connection is closed to make room (as nginx does), so
    # that idle clients cannot lock others out.
    def wait_for_slot(listener)
      while @connections >= @max_connections
        if IO.select([listener.socket], nil, nil, 0)
          parked = @parkings.lazy.filter_map(&:evict).first
          if parked
            drop_parked(parked)
          else
            idle = @live.find { |_fiber, connection| connection.idle? }
            idle&.first&.stop
          end
        end
        move_on_after(SLOT_POLL) { @slot_freed.await }
      end
    end

    SLOT_POLL = 0.1 # seconds between looks for a waiting connection, at the limit
    private_constant :SLOT_POLL

    # Waits a little (at most BALANCE_WAIT pauses) while this worker holds more connections
    # than the least busy other worker (by more than BALANCE_SLACK), which then accepts the
    # next ones. (A worker stuck in a
    # long request with fewer connections costs the others at most that wait per accept.)
    def defer_to_other_workers
      BALANCE_WAIT.times do
        fewest = @balance.min_other(@balance_index)
        break if fewest.nil? || @connections <= fewest + BALANCE_SLACK

        sleep BALANCE_PAUSE
      end
    end

    # This worker's connection count, where the other workers see it.
    def publish_load
      @balance[@balance_index] = @connections if @balance
    end

    BALANCE_PAUSE = 0.0002 # seconds
    BALANCE_WAIT = 10 # pauses at most
    # Connections a worker may hold beyond the least loaded one before it defers: with none,
    # short connections (Connection: close) made workers take turns pausing, 7.3k req/s
    # against 10.6k with 4 (bench: wrk -c50, two workers); held ones still split within 4.
    BALANCE_SLACK = 4
    private_constant :BALANCE_PAUSE, :BALANCE_WAIT, :BALANCE_SLACK

    # Out of descriptors (or kernel memory), a connection cannot be accepted: it waits in the
    # listen queue until connections close. Said on stderr (at most every ACCEPT_REPORT_EVERY
    # seconds), and the accept is retried after a pause (the listener stays readable: retried
    # at once, it would spin).
    def pause_accepting(error)
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      unless @accept_reported && now - @accept_reported < ACCEPT_REPORT_EVERY
        @accept_reported = now
        $stderr.write("tipi: cannot accept connections for now (#{error.message}): they wait until " \
                      "some close (see ulimit -n and --max-connections)\n")
      end
      sleep ACCEPT_PAUSE
    end

    ACCEPT_PAUSE = 0.05 # seconds
    ACCEPT_REPORT_EVERY = 10 # seconds
    private_constant :ACCEPT_PAUSE, :ACCEPT_REPORT_EVERY

    def accept_loop(listener, runner)
      # A listener with its own app (the ACME responder of an HTTP port) serves it the Rack way.
      options = listener.app ? @options.merge(native: false) : @options
      info = { host: listener.host, port: listener.port, scheme: listener.tls ? 'https' : 'http', tls: listener.tls,
               acme: listener.acme&.on_demand? ? listener.acme : nil }
      info[:base_env] = RackEnv.listener_base(info)
      set_nodelay = nil # known from the first connection: see Listener#nodelay_inherited?
      spare = [] # fiber, connection (or nil), fiber, connection...: see #serve_connections
      @spares << spare
      parking = Polyphony::Parking.new
      @parkings << parking
      dispatcher = spin { dispatch(parking, spare, runner) }
      loop do
        wait_for_slot(listener) if @max_connections && @connections >= @max_connections
        defer_to_other_workers if @balance
        begin
          socket, ip = listener.accept
        rescue Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM => e
          pause_accepting(e)
          next
        end
        set_nodelay = !listener.nodelay_inherited?(socket) if set_nodelay.nil?
        socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1) if set_nodelay
        @connections += 1
        publish_load
        hand_over(spare, parking, runner) do |kept|
          kept&.renew(socket, ip) || Connection.new(socket, listener.app || @app, info, @logger, options, ip)
        end
      end
    rescue IOError, Errno::EBADF
      nil # the listener was closed under it (#close while running): nothing more to accept
    ensure
      dispatcher&.stop
    end
  end
end
