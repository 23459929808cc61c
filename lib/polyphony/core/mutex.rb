# frozen_string_literal: true

module Polyphony
  # A mutual exclusion lock between fibers, handed to waiters in order. `synchronize` is
  # re-entrant for the fiber holding the lock (as Polyphony's); `lock` is not.
  class Mutex
    def initialize
      @owner = nil
      @waiters = WaitList.new
    end

    # Runs the block holding the lock; returns its value. In the fiber that holds the lock
    # already, just runs the block.
    def synchronize
      return yield if @owner.equal?(Fiber.current)

      lock
      begin
        yield
      ensure
        unlock
      end
    end

    def lock
      fiber = Fiber.current
      raise ThreadError, 'deadlock; lock already owned by this fiber' if @owner.equal?(fiber)

      @waiters.wait_while { @owner }
      @owner = fiber
      self
    end

    # Takes the lock if it is free, without waiting.
    # @return [Boolean] whether the lock was taken
    def try_lock
      return false if @owner

      @owner = Fiber.current
      true
    end

    def unlock
      raise ThreadError, 'not owned by this fiber' unless @owner.equal?(Fiber.current)

      @owner = nil
      @waiters.wake_first
      self
    end

    def locked?
      !@owner.nil?
    end

    def owned?
      @owner.equal?(Fiber.current)
    end
  end
end
