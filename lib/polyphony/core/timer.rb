# frozen_string_literal: true

module Polyphony
  # A group of timers: its `after` fibers are children of the fiber that made the Timer's
  # calls, `every` loops in the calling fiber, and `stop` cancels them all. `resolution` is
  # accepted for Polyphony compatibility; the backend's timers are exact, so it bounds nothing.
  class Timer
    def initialize(tag = nil, resolution: 0.001)
      @tag = tag
      @resolution = resolution
      @fibers = {}
      @everies = {}
      @timeouts = {}
    end

    # Runs the block once after `interval` seconds, in a new fiber.
    def after(interval, &block)
      __track__ { sleep(interval); block.call }
    end

    # Runs the block every `interval` seconds in the calling fiber, until `stop` (as Polyphony
    # does: spin a fiber for it to run beside other work).
    def every(interval, &block)
      fiber = Fiber.current
      stopped = Polyphony::MoveOn.new
      @everies[fiber] = stopped
      begin
        Polyphony::KernelAPI.instance_method(:every).bind_call(self, interval, &block)
      rescue Polyphony::MoveOn => e
        Kernel.raise unless e.equal?(stopped)
      ensure
        @everies.delete(fiber)
      end
    end

    # `sleep` is Kernel's (Polyphony::KernelAPI), public.
    public :sleep

    # As Kernel's `move_on_after`; `reset`, called in the block's fiber, restarts its countdown.
    def move_on_after(interval, with_value: nil, &block)
      exception = Polyphony::MoveOn.new(with_value)
      Polyphony::Timeout.run(interval, exception, block, @timeouts)
    rescue Polyphony::MoveOn => e
      Kernel.raise unless e.equal?(exception)

      with_value
    end

    # As Kernel's `cancel_after`; `reset`, called in the block's fiber, restarts its countdown.
    def cancel_after(interval, with_exception: Polyphony::Cancel, &block)
      exception = Fiber.current.__exception__(with_exception)
      Polyphony::Timeout.run(interval, exception, block, @timeouts)
    end

    # Restarts the countdown of the calling fiber's `move_on_after` or `cancel_after` block
    # run through this timer.
    # @return [Boolean] whether the fiber had one
    def reset
      timeout = @timeouts[Fiber.current]
      return false unless timeout

      timeout.reset
      true
    end

    # Stops every fiber started by `after`, and ends the loops of `every`.
    def stop
      @fibers.each_key(&:stop)
      @fibers.clear
      @everies.each { |fiber, stopped| fiber.raise(stopped) }
      self
    end

    private

    def __track__(&block)
      fibers = @fibers
      fiber = Fiber.current.spin(@tag) do
        block.call
      ensure
        fibers.delete(Fiber.current)
      end
      fibers[fiber] = true
      fiber
    end
  end
end
