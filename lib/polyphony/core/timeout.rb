# frozen_string_literal: true

module Polyphony
  # A pending timeout for the block of `move_on_after` or `cancel_after`, given to the block.
  # `reset` restarts the countdown (for idle timeouts on connections, say).
  class Timeout
    class << self
      # Runs `block` with `exception` raised in the calling fiber if it takes longer than
      # `interval` seconds. A block that takes an argument is given a canceller fiber (what
      # Polyphony gives); others run under a plain timer, which costs no fiber. `registry`, a
      # Hash, holds what was given to the block under the fiber while it runs (for Timer#reset).
      # @api private
      def run(interval, exception, block, registry = nil)
        fiber = Fiber.current
        timeout = block.arity.positive? ? canceller(interval, exception) : new(interval, fiber, exception)
        registry[fiber] = timeout if registry
        begin
          block.call(timeout)
        ensure
          registry&.delete(fiber)
          timeout.is_a?(Fiber) ? timeout.stop : timeout.cancel
        end
      end

      # A child fiber of the calling one that raises `exception` in it after `interval`
      # seconds. Its `reset` (or `restart`) starts the countdown again; `stop` disarms it.
      # @api private
      def canceller(interval, exception)
        target = Fiber.current
        target.spin(:canceller) do
          Polyphony.__sleep__(interval.to_f)
          target.__control__(exception)
        end
      end
    end

    # @return [Numeric] the interval, in seconds
    attr_reader :interval

    # @api private
    def initialize(interval, fiber, exception)
      @interval = interval
      @fiber = fiber
      @exception = exception
      @key = Polyphony.__timer_add__(interval.to_f, fiber, exception)
      # A root fiber is blocking for Ruby: while the timeout is pending, its stock blocking
      # calls must wait cooperatively, or the timeout could not interrupt them.
      @root = fiber.blocking? && fiber.__timeouts__(1)
    end

    # Starts the countdown again, from now, with `interval` (the original one by default).
    # @return [self]
    def reset(interval = @interval)
      @interval = interval
      @key &&= Polyphony.__timer_reset__(@key, interval.to_f)
      self
    end

    # Stops the countdown.
    # @return [Boolean] whether it was still pending
    def cancel
      if @root
        @root = false
        @fiber.__timeouts__(-1)
      end
      key = @key
      @key = nil
      key ? Polyphony.__timer_cancel__(key) : false
    end
  end
end
