# frozen_string_literal: true

module Polyphony
  # A re-entrant lock for fibers, with Monitor's interface (`synchronize`, `enter`, `exit`,
  # `try_enter`, `mon_locked?`, `mon_owned?`, `new_cond`): the fiber holding it may take it
  # again; other fibers wait, in order, letting the thread's other fibers run. Ruby's own
  # Monitor (which is per thread) is left as it is.
  class Monitor
    def initialize
      @mutex = Polyphony::Mutex.new
      @count = 0
    end

    # Takes the monitor (again, in the fiber holding it).
    # @return [nil]
    def enter
      @mutex.lock unless @mutex.owned?
      @count += 1
      nil
    end
    alias mon_enter enter

    # Releases one `enter`; the last one frees the monitor.
    # @raise [ThreadError] if the calling fiber does not hold it
    # @return [nil]
    def exit
      mon_check_owner
      @count -= 1
      @mutex.unlock if @count.zero?
      nil
    end
    alias mon_exit exit

    # Takes the monitor if it is free or held by the calling fiber, without waiting.
    # @return [Boolean] whether it was taken
    def try_enter
      return false unless @mutex.owned? || @mutex.try_lock

      @count += 1
      true
    end
    alias try_mon_enter try_enter
    alias mon_try_enter try_enter

    # Runs the block holding the monitor; returns its value.
    def synchronize
      enter
      begin
        yield
      ensure
        self.exit
      end
    end
    alias mon_synchronize synchronize

    # Whether some fiber holds the monitor.
    def mon_locked?
      @mutex.locked?
    end

    # Whether the calling fiber holds the monitor.
    def mon_owned?
      @mutex.owned?
    end

    # @raise [ThreadError] unless the calling fiber holds the monitor
    def mon_check_owner
      Kernel.raise ThreadError, 'current fiber not owner' unless @mutex.owned?
    end

    # A condition variable bound to this monitor.
    # @return [Polyphony::Monitor::ConditionVariable]
    def new_cond
      ConditionVariable.new(self)
    end

    # Releases the monitor completely (whatever the depth) for a condition wait, and takes it
    # back to the same depth.
    # @api private
    def __wait_for_cond__(cond, timeout)
      count = @count
      @count = 0
      begin
        cond.wait(@mutex, timeout)
      ensure
        @count = count
      end
    end

    # A condition variable of a Polyphony::Monitor, as MonitorMixin::ConditionVariable.
    class ConditionVariable
      # @api private
      def initialize(monitor)
        @monitor = monitor
        @cond = Polyphony::ConditionVariable.new
      end

      # Releases the monitor, waits to be signalled (at most `timeout` seconds), takes it back.
      # @return [true]
      def wait(timeout = nil)
        @monitor.mon_check_owner
        @monitor.__wait_for_cond__(@cond, timeout)
        true
      end

      # Waits while the block is true.
      def wait_while
        wait while yield
      end

      # Waits until the block is true.
      def wait_until
        wait until yield
      end

      def signal
        @monitor.mon_check_owner
        @cond.signal
      end

      def broadcast
        @monitor.mon_check_owner
        @cond.broadcast
      end
    end
  end
end
