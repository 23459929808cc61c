# frozen_string_literal: true

module Polyphony
  # A one-shot signal between fibers: `await` waits until `signal` is called (or returns at
  # once if it was called already), and returns the signalled value.
  class Event
    def initialize
      @waiters = WaitList.new
      @signaled = false
      @value = nil
    end

    # Wakes every waiting fiber with `value`; a later `await` returns it at once, once.
    def signal(value = nil)
      if @waiters.empty?
        @signaled = true
        @value = value
      else
        @waiters.wake_all(value)
      end
      self
    end

    # Waits for the signal; returns its value.
    def await
      value = @waiters.wait_unless { @signaled }
      return value unless value.equal?(WaitList::READY)

      @signaled = false
      @value
    end
  end
end
