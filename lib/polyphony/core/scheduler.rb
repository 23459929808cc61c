# frozen_string_literal: true

module Polyphony
  # Ruby's Fiber scheduler interface over the Polyphony backend. Set for each thread that runs
  # fibers, it makes stock Ruby code in spun fibers (which are non-blocking) cooperate:
  # IO#read/write/gets/puts and sockets wait in io_uring, Thread::Queue, Mutex, Monitor and
  # ConditionVariable park the fiber, Kernel#sleep and Timeout.timeout use the backend's
  # timers, and Process.wait and DNS lookups run off the thread. Net::HTTP, OpenSSL sockets and
  # Socket.tcp come along. Nothing of Ruby's core classes is replaced.
  #
  # A thread's root fiber is a blocking fiber: Ruby calls no scheduler there. Polyphony's own
  # methods (sleep, receive, IO#read_loop, accept_loop...) yield in every fiber.
  class Scheduler
    def initialize(thread = Thread.current)
      @thread = thread
    end

    # Waits until `io` is ready for `events`; false after `timeout` seconds.
    def io_wait(io, events, timeout)
      return Polyphony.__io_wait__(io.fileno, events) unless timeout

      move_on_after(timeout, with_value: false) { Polyphony.__io_wait__(io.fileno, events) }
    end

    # Reads into Ruby's own IO buffer through the backend (an io_uring read, or a read when
    # epoll says the descriptor is ready): at least `length` bytes unless EOF comes first.
    # Returns the count. (`offset` arrived in Ruby 3.3.)
    def io_read(io, buffer, length, offset = 0)
      fd = io.fileno
      room = buffer.size - offset
      total = 0
      loop do
        data = Polyphony.__io_read__(fd, room - total, nil)
        break unless data

        buffer.set_string(data, offset + total)
        total += data.bytesize
        data.clear # copied: its memory goes back now, not at the next GC
        break if total >= length || total >= room
      end
      total
    end

    # Writes from Ruby's own IO buffer through the backend: at least `length` bytes.
    def io_write(io, buffer, length, offset = 0)
      data = buffer.get_string(offset, [length, buffer.size - offset].max)
      Polyphony.__io_write__(io.fileno, data)
    ensure
      data&.clear # copied: its memory goes back now, not at the next GC
    end

    def kernel_sleep(duration = nil)
      duration ? Polyphony.__sleep__(duration) : Polyphony.__switch__
    end

    # Parks the current fiber until #unblock; false after `timeout` seconds.
    def block(_blocker, timeout = nil)
      unless timeout
        Polyphony.__switch__
        return true
      end

      move_on_after(timeout, with_value: false) do
        Polyphony.__switch__
        true
      end
    end

    # Called from any thread.
    def unblock(_blocker, fiber)
      if Thread.current.equal?(@thread)
        Polyphony.__schedule__(fiber, nil, false)
      else
        Polyphony.backend_for(@thread)&.schedule(fiber)
      end
    end

    def timeout_after(duration, exception_class, *exception_args, &block)
      cancel_after(duration, with_exception: exception_class.new(*exception_args), &block)
    end

    # Waits for a child process through its pidfd (io_uring/epoll). For pid -1, 0 or a
    # process group, which have no pidfd, a helper thread waits.
    def process_wait(pid, flags)
      if pid.positive?
        status = Polyphony.__process_wait__(pid, flags)
        return status unless status == false
      end
      Thread.new { Process::Status.wait(pid, flags) }.value
    end

    # Resolves in a helper thread (getaddrinfo blocks).
    def address_resolve(hostname)
      host = hostname.sub(/%.*\z/, '')
      Thread.new { Addrinfo.getaddrinfo(host, nil).map(&:ip_address).uniq }.value
    rescue SocketError
      []
    end

    # Fiber.schedule { }: a fiber spun from the current one.
    def fiber(**_options, &block)
      Fiber.current.spin(&block)
    end

    # Polyphony ends a thread's fibers with its root fiber (structured concurrency), not here.
    def close; end
  end

  class << self
    # Makes the calling thread ready to run fibers: its Fiber scheduler.
    # @api private
    def __thread_init__
      Polyphony.backend # made now: a bad POLYPHONY_BACKEND fails here, not mid-program
      Fiber.set_scheduler(Scheduler.new) unless Fiber.scheduler
      Thread.current
    end
  end
end
