# frozen_string_literal: true

module Polyphony
  # What Polyphony adds to Thread (stock Thread's own methods are left as they are).
  module ThreadAPI
    # The thread's root fiber, known once the thread has used Polyphony (nil before).
    # @return [Fiber, nil]
    attr_reader :main_fiber

    # @api private
    attr_writer :main_fiber

    # Sends a message to the thread's main fiber (its `receive` gets it).
    # @raise [ThreadError] if the thread has not used Polyphony yet
    # @return [self]
    def <<(message)
      Kernel.raise ThreadError, "#{inspect} has no Polyphony fiber to send to" unless @main_fiber

      @main_fiber << message
      self
    end

    # Waits for the thread to end, letting the calling thread's fibers run meanwhile, and
    # returns its value (raising what ended it), as Polyphony's Thread#await does. With
    # `timeout`, returns nil if the thread is still running after that many seconds (it goes
    # on). Thread#join keeps Ruby's contract (it returns the thread).
    # @return [Object] the thread's value
    def await(timeout = nil)
      return value if timeout.nil?

      move_on_after(timeout, with_value: nil) { join && value }
    end

    # Calls the block whenever this thread is about to wait in the kernel with no fiber to run
    # (the block must not wait itself). Set it from the thread itself; nil removes it.
    # @return [Proc, nil] the block
    def on_idle(&block)
      __own_backend__.idle_proc = block
    end

    # Runs a GC when this thread is idle and at least `period` seconds have passed since the
    # last one (nil or 0: never), as Polyphony's option for servers that idle between bursts.
    # Set it from the thread itself.
    # @return [Numeric, nil] the period
    def idle_gc_period=(period)
      unless period.nil? || (period.is_a?(Numeric) && !period.negative?)
        Kernel.raise ArgumentError, "idle_gc_period must be a number of seconds, not #{period.inspect}"
      end

      __own_backend__.idle_gc_period = period&.to_f
    end

    private

    def __own_backend__
      unless equal?(Thread.current)
        Kernel.raise ThreadError, "#{inspect}: set idle hooks from the thread itself"
      end

      Polyphony.backend
    end
  end
end

Thread.include(Polyphony::ThreadAPI)
