# frozen_string_literal: true

require 'json'
require 'rbconfig'

module Tipi
  # Runs a server in this process, or in forked workers that this process supervises.
  #
  # Signals: INT and TERM stop gracefully (requests in flight finish). USR2 restarts
  # gracefully: the new code is first loaded in a separate `tipi --check` (a restart that would
  # not boot is refused and the running code goes on), then this process execs itself (same
  # pid) keeping the listeners open, so no connection is refused; with workers the old ones
  # serve until the new ones run. TTIN and TTOU add and remove a worker.
  class Controller
    OLD_WORKERS_ENV = 'TIPI_OLD_WORKERS'
    # A worker that dies sooner than this after its start is replaced after this pause.
    RESPAWN_PAUSE = 1.0
    # Workers whose connection counts are shared (more can run; they take part unbalanced).
    BALANCE_SLOTS = 256
    # Seconds an app's EventMachine reactor has to stop before the process exits anyway.
    REACTOR_STOP_WAIT = 5

    Slot = Struct.new(:index, :pid, :fiber, :retired)

    def initialize(server, options, argv)
      @server = server
      @options = options
      @argv = argv
      @exe = File.expand_path($PROGRAM_NAME)
      @pid = Process.pid
      @old_workers = JSON.parse(ENV.delete(OLD_WORKERS_ENV) || '[]')
    end

    def run
      GCHeadroom.grow # before forking: workers start with the room, and at once
      banner
      File.write(@options[:pidfile], "#{@pid}\n") if @options[:pidfile]
      @options[:workers] ? supervise : serve(%w[INT TERM USR2])
    ensure
      if Process.pid == @pid # not in a worker
        @server.close
        @server.listeners.each(&:unlink)
        File.delete(@options[:pidfile]) if @options[:pidfile] && File.exist?(@options[:pidfile])
      end
    end

    private

    def banner
      say "Tipi #{Tipi::VERSION} (Polyphony #{Polyphony::VERSION}, #{Polyphony.backend_kind} backend, " \
          "ruby #{RUBY_VERSION})"
      say "* app: #{@options[:app] || 'from the config file'}, environment: #{@options[:environment]}"
      @server.listeners.each do |listener|
        say "* listening on #{listener}#{" (#{listener.certificate})" if listener.tls}"
      end
      say "* pid #{@pid}#{", #{@options[:workers]} workers" if @options[:workers]}"
    end

    # Serves in this process until a stop signal: the controller's (USR2 restarts it), or a
    # worker's, sent by the supervisor (which does the talking).
    def serve(signals)
      controller = Process.pid == @pid
      serving = spin { @server.run }
      # Certificates: ordered and renewed by the controller, picked up by workers.
      acme = @options[:acme_manager]
      spin { controller ? acme.run : acme.watch } if acme
      signal_queue = trap_signals(signals)
      say 'Use Ctrl-C to stop' if controller
      each_signal(signal_queue) do |signal|
        if signal == 'USR2'
          restart_here if preflight
        else
          say "Tipi stopping (SIG#{signal}, pid #{@pid})" if controller
          @server.shutdown
          break
        end
      end
      serving.await
    ensure
      stop_app_reactor
    end

    # The serving process is about to exit. An EventMachine reactor that the app runs in a
    # thread of its own (faye-websocket starts one so, for the sockets it hijacks) is stopped
    # here and its thread waited for: else Ruby's exit kills that thread wherever it is, and
    # killed inside a connection's unbind callback (which EventMachine runs from a C++
    # destructor) the reactor then crashes in release_machine.
    def stop_app_reactor
      return unless defined?(EventMachine) && EventMachine.reactor_running?

      reactor = EventMachine.reactor_thread
      return unless reactor && !reactor.equal?(Thread.current)

      EventMachine.stop_event_loop
      reactor.join(REACTOR_STOP_WAIT)
    rescue StandardError
      nil # the reactor's own error, which its thread reported as it ended
    end

    # Traps `signals` (before the banner says we are ready: an early signal is not lost) into
    # a queue, which #each_signal handles one at a time (a handler does not run amid another
    # one's work).
    def trap_signals(signals)
      Polyphony::Queue.new.tap { |queue| signals.each { |signal| trap(signal) { queue << signal } } }
    end

    def each_signal(queue)
      loop { yield queue.shift }
    end

    def supervise
      @slots = []
      @retired = []
      # Each worker's connection count, for the workers to share connections out evenly.
      @balance = Polyphony::SharedCounters.new(BALANCE_SLOTS) if @options[:workers] > 1
      @options[:workers].times { add_worker }
      spin { @options[:acme_manager].run } if @options[:acme_manager]
      snooze until @slots.all?(&:pid)
      retire_old_workers
      signal_queue = trap_signals(%w[INT TERM USR2 TTIN TTOU])
      say 'Use Ctrl-C to stop'
      each_signal(signal_queue) do |signal|
        case signal
        when 'TTIN' then add_worker
        when 'TTOU' then remove_worker
        when 'USR2' then restart_workers if preflight
        else
          stop_workers
          break
        end
      end
      Fiber.await(*(@slots + @retired).map(&:fiber), *@reapers)
      say 'Tipi stopped'
    end

    def add_worker
      slot = Slot.new(@slots.size)
      @slots << slot
      slot.fiber = spin { run_slot(slot) }
    end

    def run_slot(slot)
      until @stopping || slot.retired
        @options[:before_fork]&.each(&:call)
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        slot.pid = Polyphony.fork { worker(slot.index) }
        say "* worker #{slot.index + 1}: pid #{slot.pid}"
        Process.wait(slot.pid)
        @balance[slot.index] = nil if balanced?(slot.index)
        break if @stopping || slot.retired

        say "Tipi: worker #{slot.index + 1} (pid #{slot.pid}) exited (#{$?}), starting another"
        sleep(RESPAWN_PAUSE) if Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < RESPAWN_PAUSE
      end
    end

    def worker(index)
      %w[USR2 TTIN TTOU].each { |signal| trap(signal, 'IGNORE') }
      @server.balance(@balance, index) if balanced?(index)
      @options[:on_worker_boot]&.each { |hook| hook.call(index) }
      serve(%w[INT TERM])
    end

    # Whether worker `index` shares its connection count with the others.
    def balanced?(index)
      @balance && index < BALANCE_SLOTS
    end

    def remove_worker
      return say('Tipi: SIGTTOU ignored: one worker is the fewest') if @slots.size <= 1

      slot = @slots.pop
      slot.retired = true
      @retired << slot
      signal_process('TERM', slot.pid)
      say "Tipi: worker #{slot.index + 1} (pid #{slot.pid}) stopping, #{@slots.size} left"
    end

    def stop_workers
      @stopping = true
      say "Tipi stopping (pid #{@pid}): workers finish their requests"
      (@slots.map(&:pid) + @old_workers).each { |pid| signal_process('TERM', pid) }
    end

    # After a restart: the previous image's workers stop gracefully now that new ones run.
    def retire_old_workers
      say "* previous workers stopping: pids #{@old_workers.join(', ')}" unless @old_workers.empty?
      @reapers = @old_workers.map do |pid|
        spin do
          signal_process('TERM', pid)
          Process.wait(pid)
        rescue Errno::ECHILD
          nil
        ensure
          @old_workers.delete(pid)
        end
      end
    end

    def signal_process(signal, pid)
      Process.kill(signal, pid) if pid
    rescue Errno::ESRCH
      nil
    end

    # Loads the app as the restarted process would, in a separate process: false (and the
    # reason on stderr) when it would not boot.
    def preflight
      say "Tipi restarting (SIGUSR2, pid #{@pid}): checking that the app loads"
      return true if system(RbConfig.ruby, @exe, '--check', *@argv, out: File::NULL)

      say 'Tipi: restart refused: the app does not load (see above); the running code goes on'
      false
    end

    def restart_here
      @server.shutdown(close: false) # requests in flight finish; new ones wait in the listen queue
      exec_restart({})
    end

    def restart_workers
      exec_restart(OLD_WORKERS_ENV => JSON.generate(@slots.map(&:pid).compact + @old_workers))
    end

    def exec_restart(env)
      handover, redirects = Listener.handover(@server.listeners)
      $stdout.flush
      Process.exec(handover.merge(env), RbConfig.ruby, @exe, *@argv, redirects)
    end

    # One write per line: workers share the output, and `puts` may write a line and its
    # newline apart.
    def say(line)
      $stdout.write("#{line}\n")
    end
  end
end
