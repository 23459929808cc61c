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

    # `sleep`, `move_on_after` and `cancel_after` are Kernel's (Polyphony::KernelAPI), public.
    public :sleep, :move_on_after, :cancel_after

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
