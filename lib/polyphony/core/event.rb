# frozen_string_literal: true

module Polyphony
  # A one-shot signal between fibers: `await` waits until `signal` is called (or returns at
  # once if it was called already), and returns the signalled value.
  class Event
    def initialize
      @waiters = {}
      @signaled = false
      @value = nil
    end

    # Wakes every waiting fiber with `value`; a later `await` returns it at once, once.
    def signal(value = nil)
      if @waiters.empty?
        @signaled = true
        @value = value
      else
        waiters = @waiters.keys
        @waiters.clear
        waiters.each { |fiber| fiber.__wake__(value) }
      end
      self
    end

    # Waits for the signal; returns its value.
    def await
      if @signaled
        @signaled = false
        return @value
      end

      fiber = Fiber.current
      @waiters[fiber] = true
      begin
        Polyphony.__switch__
      ensure
        @waiters.delete(fiber)
      end
    end
  end
end
