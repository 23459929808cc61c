# frozen_string_literal: true

require 'timeout'

module Polyphony
  # Stock `Timeout.timeout` raises from a watcher thread into the *thread*, which would land
  # in whichever fiber runs then. In a thread that runs Polyphony's fibers it interrupts the
  # calling fiber instead, with stock Ruby's contract: without an exception class, the block
  # sees a private exception that no `rescue Timeout::Error` or `rescue => e` in it can stop
  # (net/http rescues and retries its own timeouts), and the caller gets Timeout::Error; with a
  # class, that class is raised in the block. In any other thread the stock method runs.
  module TimeoutAdapter
    # What the block sees when it runs out of time (stock Ruby 3.3 has Timeout::ExitException).
    class Expired < ::Exception; end

    def timeout(sec, klass = nil, message = nil, &block)
      return super unless Fiber.scheduler.is_a?(Polyphony::Scheduler)
      return yield(sec) if sec.nil? || sec.zero?

      message ||= 'execution expired'
      return cancel_after(sec, with_exception: [klass, message]) { yield(sec) } if klass

      expired = Expired.new(message)
      begin
        cancel_after(sec, with_exception: expired) { yield(sec) }
      rescue Expired => e
        raise unless e.equal?(expired)

        raise ::Timeout::Error, message, e.backtrace
      end
    end
  end
end

Timeout.singleton_class.prepend(Polyphony::TimeoutAdapter)
