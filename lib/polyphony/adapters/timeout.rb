# frozen_string_literal: true

require 'timeout'

module Polyphony
  # Stock `Timeout.timeout` raises from a watcher thread into the *thread*, which would land
  # in whichever fiber runs then. Inside Polyphony it interrupts the calling fiber instead,
  # with the same exceptions and messages as the standard library.
  module TimeoutAdapter
    def timeout(sec, klass = nil, message = nil, &block)
      return yield(sec) if sec.nil? || sec.zero?

      message ||= 'execution expired'
      cancel_after(sec, with_exception: [klass || ::Timeout::Error, message]) { yield(sec) }
    end
  end
end

Timeout.singleton_class.prepend(Polyphony::TimeoutAdapter)
