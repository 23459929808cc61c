# frozen_string_literal: true

module Polyphony
  # What Polyphony adds to Thread (stock Thread's own methods are left as they are).
  module ThreadAPI
    # The thread's root fiber, known once the thread has used Polyphony (nil before).
    # @return [Fiber, nil]
    attr_reader :main_fiber

    # @api private
    attr_writer :main_fiber

    # Sends a message to the thread's main fiber (its `receive` gets it).
    # @raise [ThreadError] if the thread has not used Polyphony yet
    # @return [self]
    def <<(message)
      Kernel.raise ThreadError, "#{inspect} has no Polyphony fiber to send to" unless @main_fiber

      @main_fiber << message
      self
    end
  end
end

Thread.include(Polyphony::ThreadAPI)
