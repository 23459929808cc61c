# frozen_string_literal: true

module Polyphony
  # A group of timers: its `after`/`every` fibers are children of the fiber that made the
  # Timer's calls, and `stop` cancels them all. `resolution` is accepted for Polyphony
  # compatibility; the backend's timers are exact, so it only bounds nothing.
  class Timer
    def initialize(tag = nil, resolution: 0.001)
      @tag = tag
      @resolution = resolution
      @fibers = {}
    end

    # Runs the block once after `interval` seconds, in a new fiber.
    def after(interval, &block)
      __track__ { sleep(interval); block.call }
    end

    # Runs the block every `interval` seconds, in a new fiber.
    def every(interval, &block)
      every = Polyphony::KernelAPI.instance_method(:every)
      __track__ { every.bind_call(self, interval, &block) }
    end

    # `sleep`, `move_on_after` and `cancel_after` are Kernel's (Polyphony::KernelAPI), public.
    public :sleep, :move_on_after, :cancel_after

    # Stops every fiber started by `after` and `every`.
    def stop
      @fibers.each_key(&:stop)
      @fibers.clear
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
