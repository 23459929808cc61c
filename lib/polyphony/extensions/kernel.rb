# frozen_string_literal: true

module Polyphony
  # The fiber API available everywhere: `spin`, `sleep`, `receive`, `move_on_after`...
  module KernelAPI
    # Spins a child of the current fiber running `block`.
    # @param tag [Object] a name for the fiber
    # @return [Fiber]
    def spin(tag = nil, &block)
      Fiber.current.spin(tag, &block)
    end

    # Spins a fiber running `block` in a loop, optionally throttled to `rate` times per second
    # (or once per `interval` seconds).
    def spin_loop(tag = nil, rate: nil, interval: nil, &block)
      raise ArgumentError, 'spin_loop needs a block' unless block

      Fiber.current.spin(tag) do
        rate || interval ? throttled_loop(rate, interval: interval, &block) : loop(&block)
      rescue LocalJumpError => e
        # `break` in the block: its method (this one) has returned, so Ruby cannot end it, and
        # the break ends the loop instead, as in Polyphony.
        Kernel.raise unless e.reason == :break

        e.exit_value
      end
    end

    # Runs the block in a fiber of its own, then waits for every fiber spun in it (directly
    # or not) to end; returns the block's value. An exception in any of them ends the others and
    # is raised here.
    def spin_scope(&block)
      raise ArgumentError, 'spin_scope needs a block' unless block

      Fiber.current.spin do
        result = block.call
        Fiber.current.await_all_children
        result
      end.await
    end

    # `snooze` (let other runnable fibers run, then continue) is defined natively on Object.

    # Waits until the current fiber is scheduled; returns the value it was scheduled with. A
    # thread's root fiber that has fibers working also returns (nil) once the thread has no work
    # left: no fiber runnable, no timer, no I/O in flight. (With none, it waits to be
    # scheduled, from a trap handler or another thread, say.)
    def suspend
      fiber = Fiber.current
      fiber.blocking? && fiber.__cooperative__? ? Polyphony.__suspend__ : Polyphony.__switch__
    end

    # Sleeps for `duration` seconds, letting other fibers run. Without a duration, waits until
    # the fiber is scheduled (and returns the value it was scheduled with).
    # A thread's root fiber with no fiber of its own alive and no timeout pending sleeps as
    # stock Ruby does (Thread#wakeup and Thread#run end it): there is nobody to let run.
    # @return [Integer] the seconds slept, rounded (as Kernel#sleep)
    def sleep(duration = nil)
      fiber = Fiber.current
      if fiber.blocking? && !fiber.__cooperative__? && !Thread.current.main_fiber&.__cooperative__?
        return duration.nil? ? super() : super
      end
      return Polyphony.__switch__ if duration.nil?

      unless duration.is_a?(Numeric)
        raise TypeError, "can't convert #{duration.class} into time interval"
      end
      raise ArgumentError, 'time interval must not be negative' if duration.negative?

      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Polyphony.__sleep__(duration.to_f)
      (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round
    end

    # Runs the block every `interval` seconds, on a fixed schedule (no drift).
    def every(interval)
      raise ArgumentError, 'interval must be positive' unless interval.positive?

      next_time = Process.clock_gettime(Process::CLOCK_MONOTONIC) + interval
      loop do
        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        Polyphony.__sleep__(next_time - now) if next_time > now
        next_time += interval
        # Fell behind (a slow block): skip the missed beats rather than bursting.
        next_time = now + interval if next_time < now
        yield
      end
    end

    # Spins a fiber that runs the block once after `interval` seconds.
    def after(interval, &block)
      spin do
        sleep(interval)
        block.call
      end
    end

    # Runs the block `rate` times per second (or once per `interval`), `count` times or forever.
    def throttled_loop(rate = nil, interval: nil, count: nil, &block)
      throttler = Polyphony::Throttler.new(rate, interval: interval)
      if count
        count.times { |i| throttler.call { block.call(i) } }
      else
        loop { throttler.call(&block) }
      end
    end

    # Runs the block; if it takes longer than `interval`, it is interrupted and `with_value`
    # is returned instead. A block that takes an argument gets the canceller fiber, as in
    # Polyphony: its `reset` starts the countdown again.
    def move_on_after(interval, with_value: nil, &block)
      exception = Polyphony::MoveOn.new(with_value)
      Polyphony::Timeout.run(interval, exception, block)
    rescue Polyphony::MoveOn => e
      raise unless e.equal?(exception)

      with_value
    end

    # Runs the block; if it takes longer than `interval`, `with_exception` (Polyphony::Cancel
    # by default; a class, an instance, a message or `[class, message]`) is raised in it. A
    # block that takes an argument gets the canceller fiber (its `reset` starts the countdown
    # again); without a block, the canceller fiber is returned, armed.
    def cancel_after(interval, with_exception: Polyphony::Cancel, &block)
      exception = Fiber.current.__exception__(with_exception)
      return Polyphony::Timeout.canceller(interval, exception) unless block

      Polyphony::Timeout.run(interval, exception, block)
    end

    # Waits for a message in the current fiber's mailbox.
    def receive
      Fiber.current.receive
    end

    # Yields each message of the current fiber's mailbox as it comes: see Fiber#receive_loop.
    def receive_loop(&block)
      Fiber.current.receive_loop(&block)
    end

    # All messages waiting in the current fiber's mailbox.
    def receive_all_pending
      Fiber.current.receive_all_pending
    end

    # Supervises the current fiber's children: see Fiber#supervise.
    def supervise(*fibers, **opts, &block)
      Fiber.current.supervise(*fibers, **opts, &block)
    end
  end
end

# Object, not Kernel: Kernel#sleep stays reachable as `Kernel.sleep` for code that really
# wants to block the thread.
Object.include(Polyphony::KernelAPI)
Object.send(:private, *Polyphony::KernelAPI.instance_methods(false))
