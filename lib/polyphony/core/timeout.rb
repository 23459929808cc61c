# frozen_string_literal: true

module Polyphony
  # A pending timeout for the block of `move_on_after` or `cancel_after`, given to the block.
  # `reset` restarts the countdown (for idle timeouts on connections, say).
  class Timeout
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

    # Whether `exception` is the one this timeout raised.
    # @api private
    def raised?(exception)
      exception.equal?(@exception)
    end
  end
end
