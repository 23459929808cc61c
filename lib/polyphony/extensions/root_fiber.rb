# frozen_string_literal: true

require 'socket'

module Polyphony
  # A thread's root fiber is a blocking fiber for Ruby, which then calls no Fiber scheduler:
  # a stock blocking call there (IO#read, Queue#pop, Process.wait...) would stop every other
  # fiber of the thread. So, in a root fiber, and only while other fibers are alive, these
  # calls are handed to a helper fiber (a non-blocking one, where the scheduler makes them
  # cooperative) and awaited. Results, exceptions and Ruby's own buffering are those of the
  # stock method; with no other fiber alive, the stock method runs as it is.
  #
  # Not covered, on purpose: methods that yield to a block (each_line), and Mutex /
  # ConditionVariable (a helper fiber would own the lock).
  module RootFiber
    class << self
      # Runs the stock call on a helper fiber and waits for it; if the wait is interrupted (a
      # timeout fires), the call is abandoned rather than left running.
      def delegate(&call)
        helper = Fiber.current.spin(&call)
        helper.await
      ensure
        helper.stop if helper&.alive?
      end

      # `receiver.name(*args, &block)` on a helper fiber, for the native wrappers, which call
      # this in a blocking fiber while the thread's root fiber has fibers alive or a timeout
      # pending (the last of `args` holds the keywords, when `keywords`). In a thread whose
      # scheduler is not Polyphony's (replaced by the program), the stock method runs as it is.
      def delegate_call(receiver, name, args, keywords, block)
        options = keywords ? args.pop : {}
        unless Fiber.scheduler.is_a?(Polyphony::Scheduler)
          return receiver.method(name).super_method.call(*args, **options, &block)
        end

        delegate { receiver.__send__(name, *args, **options, &block) }
      end

      # Defines `names` in `mod` as cooperative wrappers around the stock methods. They are
      # native (ext/polyphony/src/ruby_api/stock.rs): with no fiber alive beside the root
      # fiber, a call costs one look at a flag more than the stock method, and `gets` still
      # sets its caller's `$_`. A File is exempt (disk reads and writes do not wait for a peer).
      def wrap(mod, names)
        Polyphony.__cooperative_methods__(mod, names)
      end
    end

    IO_METHODS = %i[read readpartial gets readline readlines getc getbyte readchar readbyte sysread pread
                    write puts print << printf syswrite pwrite wait_readable wait_writable wait].freeze

    module IOMethods
      RootFiber.wrap(self, IO_METHODS)
    end

    # IO.select in any fiber of a Polyphony thread (Ruby 3.1 gives the scheduler no hook for
    # it): one waiter fiber per descriptor, the first ready one ends the wait, then Ruby's own
    # select (with a zero timeout) says what is ready.
    module SelectMethods
      def select(reads, writes = nil, errors = nil, timeout = nil)
        return super unless RootFiber.cooperative_here?

        ready = super(reads, writes, errors, 0)
        return ready if ready || timeout&.zero?

        RootFiber.wait_any(reads, writes, timeout) && super(reads, writes, errors, 0)
      end
    end

    class << self
      # Waits until one of `reads` is readable or one of `writes` writable; false after
      # `timeout` seconds.
      def wait_any(reads, writes, timeout)
        signal = Polyphony::Queue.new
        waiters = [[reads, IO::READABLE], [writes, IO::WRITABLE]].flat_map do |ios, events|
          (ios || []).map do |io|
            Fiber.current.spin { signal << Polyphony.__io_wait__(io.to_io.fileno, events) }
          end
        end
        return false if waiters.empty? && timeout.nil?

        timeout ? move_on_after(timeout, with_value: false) { signal.shift } : signal.shift
      ensure
        waiters&.each(&:stop)
        waiters&.each(&:await)
      end
    end

    module AcceptMethods
      RootFiber.wrap(self, %i[accept])
    end

    module SocketMethods
      RootFiber.wrap(self, %i[connect recv recvmsg recvfrom])
    end

    module TCPSocketClassMethods
      RootFiber.wrap(self, %i[new open])
    end

    module ProcessMethods
      RootFiber.wrap(self, %i[wait wait2 waitpid waitpid2])
    end

    module KernelMethods
      RootFiber.wrap(self, %i[system ` gets readline readlines])
      # Private, as Kernel's are: a public `gets` on every object made Ripper take a String
      # source for an IO.
      private :system, :`, :gets, :readline, :readlines
    end

    module ThreadMethods
      RootFiber.wrap(self, %i[join value])
    end

    # Thread#join with a time limit in a Polyphony fiber: Ruby 3.1 hands the wait to the
    # scheduler in a loop that ignores the limit, so the limit is a timeout around a plain join.
    module ThreadJoinLimit
      def join(*args)
        limit = args.first
        return super if limit.nil? || !RootFiber.cooperative_here?

        move_on_after(limit, with_value: nil) { super() }
      end
    end

    class << self
      # Whether the current fiber waits cooperatively: a spun fiber, or a root fiber that has
      # fibers alive or a timeout pending.
      def cooperative_here?
        fiber = Fiber.current
        Fiber.scheduler.is_a?(Polyphony::Scheduler) && (!fiber.blocking? || fiber.__cooperative__?)
      end
    end

    module QueueMethods
      RootFiber.wrap(self, %i[pop shift deq])
    end

    module SizedQueueMethods
      RootFiber.wrap(self, %i[push << enq])
    end

    class << self
      # Tells the thread's backend whether its root fiber must now wait cooperatively (the
      # fiber tree calls this when the root fiber gets its first child or timeout, and when it
      # has none left). The wrappers (and IOClose) are put in place the first time: a program
      # that never spins a fiber nor sets a timeout calls the stock methods as they are.
      def cooperative(flag)
        install if flag && !@installed
        Polyphony.__root_cooperative__(flag)
      end

      private

      def install
        @installed = true
        IO.prepend(IOMethods)
        IO.prepend(IOClose)
        IO.singleton_class.prepend(SelectMethods)
        [TCPServer, UNIXServer, Socket].each { |c| c.prepend(AcceptMethods) }
        [Socket, BasicSocket].each { |c| c.prepend(SocketMethods) }
        TCPSocket.singleton_class.prepend(TCPSocketClassMethods)
        Process.singleton_class.prepend(ProcessMethods)
        Object.prepend(KernelMethods)
        Object.prepend(ChildOutput)
        Thread.prepend(ThreadMethods)
        Thread.prepend(ThreadJoinLimit)
        Thread::Queue.prepend(QueueMethods)
        Thread::SizedQueue.prepend(SizedQueueMethods)
      end
    end
  end
end
