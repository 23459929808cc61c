# frozen_string_literal: true

module Polyphony
  # Spaces calls out to at most `rate` per second (or one per `interval` seconds). The rate is
  # given positionally or as `rate:`, as Polyphony takes it.
  class Throttler
    def initialize(positional_rate = nil, rate: positional_rate, interval: nil)
      @interval = interval || (rate.is_a?(Numeric) && rate.positive? ? 1.0 / rate : nil)
      unless @interval.is_a?(Numeric) && @interval.positive? && @interval.finite?
        raise ArgumentError, 'give a positive rate (per second) or interval: (seconds)'
      end

      @next_time = nil
    end

    # Runs the block, after waiting as long as the rate requires.
    def call
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      if @next_time && @next_time > now
        Polyphony.__sleep__(@next_time - now)
        now = @next_time
      end
      @next_time = now + @interval
      yield self
    end
    alias process call

    # Polyphony's throttler had a timer to stop; this one holds nothing, so there is nothing
    # to release. Kept for code written for Polyphony.
    # @return [self]
    def stop
      self
    end
  end
end
