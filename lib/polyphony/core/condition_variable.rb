# frozen_string_literal: true

module Polyphony
  # A condition variable for fibers, used with a Polyphony::Mutex (or anything with `unlock`
  # and `lock`, such as a Polyphony::Monitor): `wait` releases the lock, parks the fiber until
  # `signal` or `broadcast` (or the timeout), then takes the lock again. Ruby's own
  # ConditionVariable is left as it is.
  class ConditionVariable
    def initialize
      @waiters = WaitList.new
    end

    # Releases `mutex`, waits to be signalled (at most `timeout` seconds), and locks `mutex`
    # again before returning, also when the wait is interrupted.
    # @return [self]
    def wait(mutex, timeout = nil)
      mutex.unlock
      begin
        timeout ? move_on_after(timeout) { @waiters.wait } : @waiters.wait
      ensure
        mutex.lock
      end
      self
    end

    # Wakes the fiber that has waited longest, if any.
    # @return [self]
    def signal
      @waiters.wake_first
      self
    end

    # Wakes every waiting fiber.
    # @return [self]
    def broadcast
      @waiters.wake_all
      self
    end
  end
end
