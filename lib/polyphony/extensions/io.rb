# frozen_string_literal: true

require 'socket'

module Polyphony
  # Polyphony's IO methods, added to IO and the socket classes (new methods only: Ruby's own
  # are left alone). They let other fibers run while they wait, in any fiber, the thread's root
  # fiber included, and they honour Ruby's own read buffer.
  #
  # In spun fibers the stock methods (read, readpartial, gets, write, accept, connect...) yield
  # too, through Polyphony::Scheduler; in a thread's root fiber, which Ruby runs as a blocking
  # fiber, they block the thread as usual.
  module IOAPI
    # Reads at most `maxlen` bytes (any that are ready); nil at EOF. Waits in the backend.
    def poly_read(maxlen = 65_536, buffer = nil)
      # Nothing in Ruby's own buffer: one backend read (io_uring waits inside it).
      unless Polyphony.__io_pending__(self)
        Kernel.raise ArgumentError, "negative length #{maxlen} given" if maxlen.negative?

        return Polyphony.__io_read__(fileno, maxlen, buffer)
      end

      loop do
        data = buffer ? read_nonblock(maxlen, buffer, exception: false) : read_nonblock(maxlen, exception: false)
        return data unless data == :wait_readable

        Polyphony.__io_wait__(fileno, IO::READABLE)
      end
    end

    # Writes all of `data`; returns the byte count. Waits in the backend.
    def poly_write(data)
      data = data.to_s
      total = data.bytesize
      until data.empty?
        written = write_nonblock(data, exception: false)
        if written == :wait_writable
          Polyphony.__io_wait__(fileno, IO::WRITABLE)
        else
          data = data.byteslice(written..)
        end
      end
      total
    end

    # Yields each piece of data read until EOF; returns nil.
    def read_loop(maxlen = 65_536)
      while (data = poly_read(maxlen))
        yield data
      end
    end

    alias recv_loop read_loop

    # Feeds each piece of data read to `receiver.send(method, data)`, and yields what that
    # returns when a block is given.
    def feed_loop(receiver, method = :call)
      read_loop do |data|
        result = receiver.public_send(method, data)
        yield result if block_given?
      end
    end

    # Waits until the IO is ready for `events` (IO::READABLE, IO::WRITABLE), at most
    # `timeout` seconds (then returns nil); returns self.
    def poly_wait(events = IO::READABLE, timeout = nil)
      return self if timeout.nil? && Polyphony.__io_wait__(fileno, events)

      ready = move_on_after(timeout, with_value: false) { Polyphony.__io_wait__(fileno, events) }
      ready ? self : nil
    end
  end

  # Servers: accepting through io_uring, in any fiber.
  module ServerAPI
    # Accepts one connection, letting other fibers run meanwhile. With `polled: true` it waits
    # for readiness and accepts with a non-blocking call, so that stopping the fiber can never
    # drop a connection the kernel accepted for it (what a graceful stop needs); otherwise the
    # accept itself waits in the kernel (one operation fewer when the listener is idle).
    def poly_accept(polled: false)
      fd = Polyphony.__io_accept__(fileno, polled)
      socket = __socket_class__.for_fd(fd)
      socket.sync = true
      socket
    end

    # Accepts connections forever, yielding each (usually to `spin` a fiber for it).
    def accept_loop
      loop { yield poly_accept }
    end

    # @api private
    def __socket_class__
      return Socket if is_a?(Socket)

      is_a?(UNIXServer) ? UNIXSocket : TCPSocket
    end
  end

  # Polyphony's third argument to IO#read: where in `buffer` the data goes (what is before it
  # stays; -1 appends). Calls without it are Ruby's own. (Native: one C call in front of
  # every IO#read, not a Ruby method.)
  module ReadAtPosition
    Polyphony.__read_at_position__(self)
  end

  class << self
    # @api private
    def __read_at__(io, length, buffer, position)
      Kernel.raise TypeError, "buffer must be a String, not #{buffer.class}" unless buffer.is_a?(String)
      Kernel.raise FrozenError, "can't modify frozen String: #{buffer.inspect}" if buffer.frozen?

      position = buffer.bytesize if position == -1
      unless position.is_a?(Integer) && position.between?(0, buffer.bytesize)
        Kernel.raise ArgumentError, "buffer position #{position.inspect} out of 0..#{buffer.bytesize} (or -1)"
      end

      kept = buffer.byteslice(0, position)
      data = io.read(length)
      buffer.replace(data ? kept << data : kept)
      data && buffer
    end
  end

  # Closing an IO that fibers of this thread wait on raises IOError ("stream closed in
  # another fiber") in them, as Ruby does for threads; otherwise they would wait forever.
  # Prepended to IO with the root-fiber wrappers, once a fiber has been spun.
  module IOClose
    def close
      return super if closed?

      begin
        # The waiters unwind first: Ruby also remembers them and would blame this fiber.
        snooze if Polyphony.__io_closing__(fileno)
      ensure
        super # also when this fiber is stopped meanwhile (an unwinding waiter was its parent)
      end
    end
  end
end

IO.include(Polyphony::IOAPI)
IO.prepend(Polyphony::ReadAtPosition)
TCPServer.include(Polyphony::ServerAPI)
UNIXServer.include(Polyphony::ServerAPI)
Socket.include(Polyphony::ServerAPI)
