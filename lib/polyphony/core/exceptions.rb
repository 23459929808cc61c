# frozen_string_literal: true

module Polyphony
  # Base of the exceptions Polyphony raises in a fiber to steer it. They carry a value: what
  # the fiber (or the interrupted block) returns.
  class BaseException < ::Exception
    # @return [Object] the value the interrupted fiber or block evaluates to
    attr_reader :value

    # @param value [Object] the value the interrupted fiber or block evaluates to
    def initialize(value = nil)
      @value = value
      super()
    end
  end

  # Ends the fiber it is raised in, quietly: the fiber's result is the exception's value.
  # `Fiber#interrupt` and `Fiber#stop` raise it.
  class Interrupt < BaseException; end

  # Raised by `move_on_after` and `Fiber#interrupt`; a quiet interruption.
  class MoveOn < Interrupt; end

  # Raised by `Fiber#terminate`: ends a fiber (and its children), its `ensure` blocks running.
  class Terminate < BaseException; end

  # Raised by `Fiber#restart` in a running fiber: its block is run again from the start.
  class Restart < BaseException; end

  # Raised by `cancel_after` and `Fiber#cancel`: an error, so if nobody rescues it, it reaches
  # the parent fiber like any other uncaught exception.
  class Cancel < BaseException; end

  # What Polyphony adds to every exception.
  module ExceptionSource
    # The fiber an uncaught exception ended (set as it is handed to the fiber's parent), or nil.
    # @return [Fiber, nil]
    attr_accessor :source_fiber
  end
end

Exception.include(Polyphony::ExceptionSource)
