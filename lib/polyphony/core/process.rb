# frozen_string_literal: true

module Polyphony
  class << self
    # Forks; the child runs the block (the forking fiber becomes its root fiber: the parent's
    # other fibers do not exist in the child) on a fresh backend, then exits. Returns the
    # child's pid.
    def fork(&block)
      Kernel.raise ArgumentError, 'Polyphony.fork needs a block' unless block

      Kernel.fork do
        Fiber.current.__become_root__
        block.call
      end
    end

    # Runs `cmd` (a shell command) or the block (in a forked child) and waits for it to end,
    # letting other fibers run; returns its Process::Status. If the waiting fiber is stopped
    # or interrupted first, the child is sent SIGTERM (SIGKILL after `kill_after` seconds) and
    # reaped: no zombie, no orphan.
    def watch_process(cmd = nil, kill_after: 5, &block)
      Kernel.raise ArgumentError, 'give a command or a block, not both' if cmd && block

      pid = cmd ? Process.spawn(cmd) : fork(&block)
      status = __wait_child__(pid)
      pid = nil
      status
    ensure
      __terminate_child__(pid, kill_after) if pid
    end

    # @api private
    def __wait_child__(pid)
      status = Polyphony.__process_wait__(pid, 0)
      status == false ? Thread.new { Process::Status.wait(pid, 0) }.value : status
    end

    # @api private
    def __terminate_child__(pid, kill_after)
      Process.kill('TERM', pid)
      reaped = move_on_after(kill_after) { __wait_child__(pid) }
      return if reaped

      Process.kill('KILL', pid)
      __wait_child__(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end
  end
end
