# frozen_string_literal: true

module Polyphony
  # Fibers waiting for something, woken in arrival order. A fiber interrupted while it waits
  # (stopped, timed out) leaves the list. O(1) per wait and wake.
  class WaitList
    def initialize
      @fibers = {}
    end

    # Parks the current fiber until it is woken; returns the value it was woken with.
    def wait
      fiber = Fiber.current
      @fibers[fiber] = true
      begin
        Polyphony.__switch__
      ensure
        @fibers.delete(fiber)
      end
    end

    # Wakes the fiber that has waited longest, if any.
    def wake_first(value = nil)
      return if @fibers.empty?

      fiber, = @fibers.first
      @fibers.delete(fiber)
      fiber.__wake__(value)
    end

    # Wakes every waiting fiber.
    def wake_all(value = nil)
      fibers = @fibers.keys
      @fibers.clear
      fibers.each { |fiber| fiber.__wake__(value) }
    end

    def size
      @fibers.size
    end

    def empty?
      @fibers.empty?
    end
  end
end
