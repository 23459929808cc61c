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

class << Exception
  # Polyphony's switch: true keeps Polyphony's own frames in the backtraces it chains (see
  # `Polyphony.backtrace_chaining`).
  attr_accessor :__disable_sanitized_backtrace__
end

module Polyphony
  # lib/polyphony/ and lib/polyphony.rb: frames taken out of chained backtraces.
  LIB_PREFIX = File.expand_path('../..', __dir__)
  private_constant :LIB_PREFIX

  class << self
    # What an exception that ends a fiber and reaches its parent gets appended to its
    # backtrace: `:locations` (the default) the location of the block of the fiber it came
    # from and of each of its ancestors, free until an exception happens; `:full` the whole call
    # stack of each `spin` (as Polyphony does; recorded at every spin, which costs about as much
    # again as the spin); false or nil, nothing (the backtrace stays Ruby's).
    attr_reader :backtrace_chaining

    def backtrace_chaining=(mode)
      unless [:locations, :full, false, nil].include?(mode)
        Kernel.raise ArgumentError, "backtrace_chaining must be :locations, :full or false, not #{mode.inspect}"
      end

      @backtrace_chaining = mode
    end

    # @api private
    def __chain_backtrace__(exception, fiber)
      own = exception.backtrace
      return unless own

      exception.set_backtrace(__sanitize_backtrace__(own) + fiber.caller)
    end

    # Polyphony's frames taken out, unless `Exception.__disable_sanitized_backtrace__` (or
    # when nothing else would be left).
    # @api private
    def __sanitize_backtrace__(lines)
      return lines if ::Exception.__disable_sanitized_backtrace__

      kept = lines.reject { |line| line.start_with?(LIB_PREFIX) && __polyphony_frame__(line) }
      kept.empty? ? lines : kept
    end

    # @api private
    def __polyphony_frame__(line)
      rest = line[LIB_PREFIX.size..]
      rest.start_with?('/polyphony/', '/polyphony.rb:')
    end
  end

  @backtrace_chaining = :locations
end
