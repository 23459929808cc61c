# frozen_string_literal: true

module Polyphony
  # `system` and backticks in fibers write the child's output where the program's `$stdout`
  # and `$stderr` point, as Polyphony does, when those are not the process's own descriptors 1
  # and 2 (a StringIO, say, that a test or a logger put there): stock Ruby's child writes to
  # descriptors 1 and 2 whatever `$stdout` is. Only in fibers (a spun fiber, or a root fiber
  # with fibers alive): elsewhere the calls are stock Ruby's. Prepended with the root-fiber
  # wrappers (see RootFiber.install).
  module ChildOutput
    def system(*args, **options)
      targets = { out: [$stdout, 1], err: [$stderr, 2] }.filter_map do |stream, (target, fd)|
        [stream, target] if ChildOutput.redirect?(target, fd, options, stream)
      end
      return super if targets.empty?

      spawn_options = options.except(:exception) # (system's own option; Process.spawn has none)
      status = ChildOutput.run(args, spawn_options, targets.to_h)
      return true if status.success?
      # As stock `system(..., exception: true)` reports a failure.
      Kernel.raise RuntimeError, "Command failed with #{status.to_s.sub(/\Apid \d+ /, '')}: #{args.last}" if options[:exception]

      false
    rescue SystemCallError
      Kernel.raise if options[:exception]

      nil # (as stock `system` answers for a command that cannot run)
    end

    def `(command)
      return super unless ChildOutput.redirect?($stderr, 2, {}, :err)

      ChildOutput.capture(command, $stderr)
    end

    private :system, :`

    class << self
      # Whether the child's `stream` must be pumped into `target` (a `$stdout` or `$stderr`
      # that is not descriptor `fd`), given the call's own `options`.
      def redirect?(target, fd, options, stream)
        return false unless RootFiber.cooperative_here?
        return false if options.key?(stream) || options.keys.any? { |k| k.is_a?(Array) && k.include?(stream) }

        !(target.respond_to?(:fileno) && (target.fileno rescue nil) == fd)
      end

      # Runs `command` as backticks do (its output is the result, `$?` is set), with its
      # standard error copied into `err_target` as it comes.
      def capture(command, err_target)
        out_reader, out_writer = IO.pipe
        err_reader, err_writer = IO.pipe
        pid = Process.spawn(command, out: out_writer, err: err_writer)
        out_writer.close
        err_writer.close
        pump = Fiber.current.spin { err_reader.read_loop { |data| err_target.write(data) } }
        output = out_reader.read
        pump.await
        Process.wait(pid)
        output
      ensure
        [out_reader, out_writer, err_reader, err_writer].each { |io| io&.close unless io&.closed? }
      end

      # Spawns `args`, each stream of `targets` (:out, :err) to a pipe copied into its target
      # as it comes; waits for the child and returns its status (also in `$?`).
      def run(args, options, targets)
        pipes = targets.transform_values { IO.pipe }
        redirects = pipes.transform_values(&:last)
        pid = Process.spawn(*args, **options, **redirects)
        redirects.each_value(&:close)
        pumps = pipes.map do |stream, (reader, _)|
          Fiber.current.spin { reader.read_loop { |data| targets[stream].write(data) } }
        end
        Fiber.await(pumps)
        Process.wait2(pid).last
      ensure
        pipes&.each_value { |ios| ios.each { |io| io.close unless io.closed? } }
      end
    end
  end
end
