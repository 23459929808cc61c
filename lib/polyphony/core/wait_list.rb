# frozen_string_literal: true

module Polyphony
  # Fibers parked until another fiber wakes them, woken in the order they came. A fiber
  # interrupted while it waits (stopped, timed out) leaves the list. O(1) per wait and wake.
  #
  # A trap handler runs at any point of Ruby code in the main thread, so it may wake a list
  # between a fiber's look at its condition and that fiber's parking. The condition is therefore
  # asked again once the fiber is listed, and a fiber that turns out not to need to wait leaves
  # the list by `Hash#delete`, whose answer says whether a wake-up (now in the run queue) came
  # first: a wake-up is never lost, and never left over to resume the fiber later by mistake.
  class WaitList
    # Returned by #wait_unless when the fiber did not wait.
    READY = Object.new.freeze

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

    # Parks the current fiber while the block is true.
    def wait_while
      wait_unless { !yield } while yield
    end

    # Parks the current fiber unless the block, asked once the fiber is listed, is true.
    # @return the value the fiber was woken with, or READY if it did not wait
    def wait_unless
      fiber = Fiber.current
      @fibers[fiber] = true
      unless yield
        begin
          return Polyphony.__switch__
        ensure
          @fibers.delete(fiber)
        end
      end
      # Woken between the listing and the look (the wake-up is in the run queue): taken.
      @fibers.delete(fiber) ? READY : Polyphony.__switch__
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
