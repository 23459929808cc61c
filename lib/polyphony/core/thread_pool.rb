# frozen_string_literal: true

require 'etc'

module Polyphony
  # Runs blocking work (a C library call that holds no GVL, CPU-heavy code in a C extension,
  # a blocking API) on a pool of threads; the fiber that asks waits without blocking the others.
  #
  #   digest = Polyphony::ThreadPool.process { Digest::SHA256.file(path).hexdigest }
  class ThreadPool
    # @return [Integer] the number of threads
    attr_reader :size

    # The process-wide pool (as many threads as processors).
    def self.default
      @default ||= new
    end

    # `default.process { }`
    def self.process(&block)
      default.process(&block)
    end

    def initialize(size = Etc.nprocessors)
      Kernel.raise ArgumentError, 'a pool needs at least one thread' unless size.positive?

      @size = size
      @jobs = Thread::Queue.new
      @threads = []
      @mutex = Thread::Mutex.new
      @pending = 0
    end

    # Whether a job is queued or running.
    def busy?
      @mutex.synchronize { @pending.positive? }
    end

    # Runs the block on a pool thread and returns its result (or raises its exception) in the
    # calling fiber, which waits cooperatively.
    def process(&block)
      Kernel.raise ArgumentError, 'ThreadPool#process needs a block' unless block

      __start_threads__
      fiber = Fiber.current
      @mutex.synchronize { @pending += 1 }
      @jobs << [block, fiber]
      outcome, value = Polyphony.__switch__
      outcome == :error ? Kernel.raise(value) : value
    end

    # Runs the block on a pool thread without waiting for it.
    def cast(&block)
      Kernel.raise ArgumentError, 'ThreadPool#cast needs a block' unless block

      __start_threads__
      @mutex.synchronize { @pending += 1 }
      @jobs << [block, nil]
      self
    end

    # Stops the threads once the jobs queued so far are done.
    def stop
      @threads.size.times { @jobs << :stop }
      @threads.each(&:join)
      @threads.clear
      self
    end

    private

    def __start_threads__
      return if @threads.size == @size

      @mutex.synchronize do
        (@size - @threads.size).times { @threads << Thread.new { __work__ } }
      end
    end

    def __work__
      while (job = @jobs.pop) != :stop
        block, fiber = job
        outcome = begin
          [:ok, block.call]
        rescue Exception => e # rubocop:disable Lint/RescueException -- handed to the caller
          [:error, e]
        ensure
          @mutex.synchronize { @pending -= 1 }
        end
        fiber&.__wake__(outcome)
      end
    end
  end
end
