# frozen_string_literal: true

module Polyphony
  # Fiber methods: lifecycle, control, supervision and messaging, following Polyphony's API.
  #
  # Structured concurrency: (1) a fiber is the child of the fiber it was spun from; (2) a fiber
  # terminates its children, and waits for them, before it terminates itself; (3) an uncaught
  # exception in a fiber is raised in its parent, up to the root fiber of the thread.
  #
  # Everything per fiber is O(1): children, waiters and monitors are Hashes keyed by fiber,
  # compared by identity (a Fiber's own #hash is its object_id, which Ruby makes on first use and
  # keeps in global tables until the fiber is freed).
  module FiberAPI
    # The block of every spun fiber: one shared Proc, so spinning allocates no closure.
    RUN = proc { |value| Fiber.current.__run__(value) }

    # @return [Object] the fiber's tag, given to `spin`
    attr_accessor :tag

    # @return [Fiber, nil] the fiber this one was spun from (nil for a thread's root fiber)
    attr_reader :parent

    # @return [Object] what the fiber's block returned, or the exception that ended it
    attr_reader :result

    # Spins a child fiber running `block`. It starts at the next context switch.
    # @param tag [Object] a name for the fiber
    # @return [Fiber]
    def spin(tag = nil, &block)
      Kernel.raise ArgumentError, 'spin needs a block' unless block

      fiber = Fiber.new(&RUN)
      fiber.__prepare__(tag, block, self, @thread ||= Polyphony.__thread_init__)
      fiber.__record_caller__ if Polyphony.backtrace_chaining == :full
      children = (@children ||= {}.compare_by_identity)
      children[fiber] = true
      Polyphony::RootFiber.cooperative(true) if children.size == 1 && blocking?
      if (supervised = @supervised) # (see #supervise)
        fiber.monitor(self)
        supervised[fiber] = true
      end
      Polyphony.__spawn__(fiber)
    end

    # @return [Array<Fiber>] the fiber's live children, oldest first
    def children
      @children ? @children.keys : []
    end

    # @return [Symbol] :running, :runnable, :waiting or :dead
    def state
      return :dead if __dead__
      return :running if equal?(Fiber.current)

      Polyphony.__runnable__(self) ? :runnable : :waiting
    end

    # Whether the fiber's block has finished (with its children).
    def dead?
      __dead__
    end

    # Whether the fiber has not finished yet (Polyphony's name for it).
    def running?
      !__dead__
    end

    # Whether this is a thread's root fiber.
    def main?
      @root || (!@thread.nil? && equal?(@thread.main_fiber))
    end

    # The thread the fiber runs in (nil for a fiber Polyphony did not spin, before it waits).
    def thread
      @thread
    end

    # Where the fiber's block was written, as "file:line" (nil for a root fiber).
    def location
      return nil unless @block

      @block.source_location&.join(':')
    end

    # Where the fiber was spun, then where its parent was, up to the thread's root fiber: the
    # full call stacks of each `spin` when `Polyphony.backtrace_chaining` is :full (recorded at
    # every spin, which costs), else the location of each fiber's block.
    # @return [Array<String>]
    def caller
      own = @caller || (@block ? [location] : [])
      @parent ? own + @parent.caller : own
    end

    # @api private
    def __record_caller__
      @caller = Polyphony.__sanitize_backtrace__(Kernel.caller(2))
    end

    # The fiber's mailbox (a Polyphony::Queue): what `<<` puts and `receive` takes.
    def mailbox
      __mailbox__
    end

    # Yields each message of the mailbox as it comes, forever (or until the block breaks).
    def receive_loop
      mailbox = __mailbox__
      loop { yield mailbox.shift }
    end

    # Moves the fiber under its thread's root fiber: it no longer ends with its parent.
    # @return [self]
    def detach
      attach_to((@thread || Thread.current).main_fiber)
    end

    # Moves all children of this fiber under `new_parent`.
    # @return [self]
    def attach_all_children_to(new_parent)
      children.each { |child| child.attach_to(new_parent) }
      self
    end

    # Resumes the fiber with `value` at the next context switch.
    # @raise [FiberError] if the fiber is dead
    def schedule(value = nil)
      Kernel.raise FiberError, "can't schedule a dead fiber (#{inspect})" if __dead__

      __wake__(value)
      self
    end

    # Like {#schedule}, but the fiber runs before the others that are runnable.
    def schedule_with_priority(value = nil)
      Kernel.raise FiberError, "can't schedule a dead fiber (#{inspect})" if __dead__

      __wake__(value, true)
      self
    end

    # Waits for the fiber to finish and returns its result; raises what it raised.
    # @raise [FiberError] when awaiting itself
    def await
      Kernel.raise FiberError, 'a fiber cannot await itself' if equal?(Fiber.current)

      Polyphony.__await__([self], false).first
    end
    alias join await
    alias value await

    # Ends the fiber quietly; its result is `value`. Its children end first.
    def interrupt(value = nil)
      __control__(Polyphony::MoveOn.new(value))
    end
    alias stop interrupt
    alias move_on interrupt

    # Ends the fiber and its children; `ensure` blocks run. `graceful` (positional, as
    # Polyphony takes it, or a keyword) is what `graceful_shutdown?` answers meanwhile.
    def terminate(positional = false, graceful: positional)
      @graceful_shutdown = graceful
      __control__(Polyphony::Terminate.new)
    end

    # Raises an exception in the fiber, as `Kernel#raise` takes it.
    def raise(*args)
      exception = args.empty? ? RuntimeError.new('unhandled exception') : __exception__(*args)
      __control__(exception)
    end

    # Raises `exception` (a Polyphony::Cancel by default) in the fiber: an error for its parent.
    def cancel(exception = Polyphony::Cancel)
      __control__(__exception__(exception))
    end

    # Runs the block in the fiber at the point where it waits, then lets it go on waiting (for
    # its I/O, timer, message...). In the running fiber it just calls the block. What the block
    # raises is raised at the fiber's wait. The block must not wait itself: it runs inside the
    # interrupted wait, whose wake-up could end the block's wait instead.
    # @raise [FiberError] if the fiber is dead or belongs to another thread
    # @return [self]
    def interject(&block)
      Kernel.raise ArgumentError, 'interject needs a block' unless block
      Kernel.raise FiberError, "can't interject in a dead fiber (#{inspect})" if __dead__
      return tap { block.call } if equal?(Fiber.current)
      unless @thread.nil? || @thread.equal?(Thread.current)
        Kernel.raise FiberError, "can't interject in a fiber of another thread (#{inspect})"
      end

      Polyphony.__interject__(self, block)
      self
    end


    # Runs the fiber's block again: in the same fiber when it is alive, in a new fiber (same
    # block, tag and parent) when it is dead.
    # @return [Fiber] the fiber that runs the block
    def restart(value = nil)
      Kernel.raise FiberError, "can't restart a thread's root fiber" if @root
      Kernel.raise FiberError, "can't restart a fiber that was not spun" unless @block

      unless __dead__
        __control__(Polyphony::Restart.new(value))
        return self
      end

      parent = @parent && !@parent.__dead__ ? @parent : Fiber.current
      replacement = parent.spin(@tag, &@block)
      replacement.schedule(value) unless value.nil? # (the block's first value)
      @monitors&.each_key { |monitor| replacement.monitor(monitor) }
      @replacement = replacement
    end
    alias reset restart

    # The fiber that replaced this one after a restart, if any.
    # @api private
    attr_reader :replacement

    # Sends `[fiber, result]` to `receiver`'s monitor mailbox when this fiber terminates.
    def monitor(receiver = Fiber.current)
      (@monitors ||= {}.compare_by_identity)[receiver] = true
      self
    end

    # Stops monitoring by `receiver`.
    def unmonitor(receiver = Fiber.current)
      @monitors&.delete(receiver)
      self
    end

    # The fibers monitoring this one.
    # @return [Array<Fiber>]
    def monitors
      @monitors ? @monitors.keys : []
    end

    # Makes `new_parent` the fiber's parent, and has it monitor the fiber.
    # @return [self]
    def attach_and_monitor(new_parent)
      attach_to(new_parent)
      monitor(new_parent)
    end

    # The queue of `[fiber, result]` messages from monitored fibers.
    def monitor_mailbox
      @monitor_mailbox ||= Polyphony::Queue.new
    end

    # Makes `new_parent` the fiber's parent.
    def attach_to(new_parent)
      @parent&.__remove_child__(self)
      (new_parent.__children_hash__)[self] = true
      @parent = new_parent
      self
    end

    # Waits until every child has terminated; returns their results.
    def await_all_children
      return [] unless @children && !@children.empty?

      Polyphony.__await__(@children.keys, true)
    end

    # Terminates every child and waits for them to end.
    def shutdown_all_children(graceful = false)
      return self unless @children && !@children.empty?

      kids = @children.keys
      __terminate_in_spin_order__(kids, graceful)
      Polyphony.__await__(kids, false)
      self
    end

    # Terminates every child without waiting.
    def terminate_all_children(graceful = false)
      __terminate_in_spin_order__(@children.keys, graceful) if @children
      self
    end

    # Each termination goes to the front of the run queue: the youngest child first, so that
    # they unwind in the order they were spun.
    # @api private
    def __terminate_in_spin_order__(kids, graceful)
      kids.reverse_each { |child| child.terminate(graceful) }
    end

    # Whether the fiber is being terminated gracefully.
    def graceful_shutdown?
      @graceful_shutdown
    end

    # Sets what `graceful_shutdown?` answers (`terminate(graceful)` sets it too).
    attr_writer :graceful_shutdown

    # Supervises `fibers` (all children when none are given) until they have all terminated.
    #
    # @param restart [:always (or true), :on_error, nil] restart a fiber after any termination, only
    #   after an exception, or never
    # @param on_done [#call, nil] called with (fiber, result) after each termination
    # @param on_error [#call, nil] called with (fiber, exception) after each one by an exception
    # @yield [fiber, result] after each termination
    def supervise(*fibers, restart: nil, on_done: nil, on_error: nil, &block)
      restart = :always if restart == true
      unless [nil, false, :always, :on_error].include?(restart)
        Kernel.raise ArgumentError, "restart: must be :always, :on_error or true, not #{restart.inspect}"
      end

      block = __supervision_callback__(block, on_done, on_error)

      supervised = {}.compare_by_identity
      # Supervising all children: those spun on this fiber meanwhile are supervised too.
      @supervised = supervised if fibers.empty?
      (fibers.empty? ? children : fibers).each do |fiber|
        fiber.attach_to(self) unless fiber.parent.equal?(self)
        fiber.monitor(self)
        supervised[fiber] = true
      end
      __supervision_loop__(supervised, restart, block)
    ensure
      @supervised = nil if fibers.empty?
    end

    # `on_done` (after every end), `on_error` (after an end by an exception) and the block, in
    # that order, as one callback, or nil.
    # @api private
    def __supervision_callback__(block, on_done, on_error)
      return block if on_done.nil? && on_error.nil?

      lambda do |fiber, result|
        on_done&.call(fiber, result)
        on_error&.call(fiber, result) if result.is_a?(::Exception)
        block&.call(fiber, result)
      end
    end

    # @api private
    def __supervision_loop__(supervised, restart, block)
      mailbox = monitor_mailbox
      until supervised.empty?
        fiber, result = mailbox.shift
        next unless supervised.delete(fiber)

        block&.call(fiber, result)
        if restart == :always || (restart == :on_error && result.is_a?(::Exception))
          fiber.restart unless fiber.replacement
        end
        replacement = fiber.replacement
        supervised[replacement] = true if replacement
      end
    end

    # Sends a message to the fiber's mailbox.
    def <<(message)
      __mailbox__ << message
      self
    end
    alias send <<

    # Waits for a message in the current fiber's mailbox.
    def receive
      __mailbox__.shift
    end

    # All messages waiting in the mailbox, without waiting.
    def receive_all_pending
      @mailbox ? @mailbox.shift_all : []
    end

    # @api private
    # The mailbox, made on first use. Made before it is stored: a trap handler sending to this
    # fiber while `Queue.new` runs must not have its message replaced by an empty queue.
    def __mailbox__
      return @mailbox if @mailbox

      mailbox = Polyphony::Queue.new
      @mailbox ||= mailbox
    end

    def inspect
      return super unless @block || @root

      name = @root ? 'root' : (@tag || 'fiber').to_s
      "#<Fiber #{name}:#{object_id} (#{state})>"
    end
    alias to_s inspect

    # --- internals ---

    # @api private
    def __prepare__(tag, block, parent, thread)
      # (A Fiber's instance variables live outside the object, in a table where each one
      # written costs a lookup and a resize: those a fiber does not need are left unset.)
      @tag = tag unless tag.nil?
      @block = block
      @parent = parent
      @thread = thread
    end

    # The whole life of a spun fiber. Returns Polyphony::FIBER_DONE to whoever gets control
    # next (its launcher, or the root fiber), which then carries on switching.
    # @api private
    def __run__(first_value)
      result = __execute__(first_value)
      if UNCAUGHT.equal?(result)
        __finalize__(@uncaught, true)
      else
        __finalize__(result, false)
      end
      Polyphony::FIBER_DONE
    end

    # Runs the block (again after a restart); returns its result, or UNCAUGHT when it ended
    # with an uncaught exception (then in @uncaught).
    # @api private
    def __execute__(value)
      while true # (not Kernel#loop: one block call less per fiber)
        begin
          Kernel.raise value if value.is_a?(::Exception)

          return @block.call(value)
        rescue Polyphony::Restart => e
          value = e.value
          __shutdown_children__
          @mailbox = nil
        rescue Polyphony::Interrupt, Polyphony::Terminate => e
          return e.value
        rescue ::Exception => e
          @uncaught = e
          return UNCAUGHT
        end
      end
    end

    # What __execute__ returns for a block that raised.
    UNCAUGHT = Object.new.freeze
    private_constant :UNCAUGHT

    # @api private
    def __finalize__(result, uncaught)
      if @children && !@children.empty?
        begin
          __shutdown_children__
        rescue ::Exception => e
          result, uncaught = e, true unless uncaught
        end
      end
      @result = result
      @dead = true
      if uncaught && !result.frozen? && !result.source_fiber
        result.source_fiber = self
        Polyphony.__chain_backtrace__(result, self) if Polyphony.backtrace_chaining
      end
      @parent&.__remove_child__(self)
      __inform__(result, uncaught)
    rescue ::Exception => e
      # Nothing may escape a fiber: it would surface in an unrelated fiber.
      @parent&.__wake__(e, true)
    end

    # (2): children end before their parent. An interruption aimed at this fiber while it
    # waits for them changes nothing: it is ending already.
    # @api private
    def __shutdown_children__
      while @children && !@children.empty?
        begin
          shutdown_all_children
        rescue Polyphony::Interrupt, Polyphony::Terminate, Polyphony::Restart
          next
        end
      end
    end

    # @api private
    def __inform__(result, uncaught)
      # (The groups stay set: a dead fiber gets no more, and each group is told only once.)
      group = @await_group
      groups = @waiters
      group&.__done__(result)
      groups&.each_key { |g| g.__done__(result) }
      @monitors&.each_key { |monitor| monitor.monitor_mailbox << [self, result] }
      return unless uncaught && @parent
      return if __awaited_by__(@parent, group, groups) || @monitors&.key?(@parent)

      # (3): the parent gets the exception, before anything else it is waiting for.
      @parent.__wake__(result, true)
    end

    # @api private
    def __awaited_by__(fiber, group, groups)
      group&.waiter.equal?(fiber) || groups&.each_key&.any? { |g| g.waiter.equal?(fiber) }
    end

    # @api private
    def __wake__(value, prioritize = false)
      thread = @thread
      if thread.nil? || thread.equal?(Thread.current)
        Polyphony.__schedule__(self, value, prioritize)
      else
        Polyphony.backend_for(thread)&.schedule(self, value, prioritize)
      end
    end

    # @api private
    def __control__(exception)
      return self if __dead__
      Kernel.raise exception if equal?(Fiber.current)

      __wake__(exception, true)
      self
    end

    # @api private
    def __exception__(*args)
      first = args.first
      if first.is_a?(Array) then __exception__(*first)
      elsif first.is_a?(Class) then first.new(*args[1..])
      elsif first.is_a?(String) then RuntimeError.new(first)
      elsif first.is_a?(::Exception) then first
      else Kernel.raise TypeError, "exception class/object expected, got #{first.inspect}"
      end
    end

    # @api private
    def __dead__
      @dead || !alive?
    end

    # Registers an AwaitGroup to be told when this fiber ends. Most fibers have one at most:
    # it is kept in `@await_group`, and a Hash is made only for a second one.
    # @api private
    def __add_waiter__(group)
      if @waiters then @waiters[group] = true
      elsif @await_group.nil? then @await_group = group
      elsif !@await_group.equal?(group)
        @waiters = { @await_group => true, group => true }.compare_by_identity
        @await_group = nil
      end
    end

    # @api private
    def __remove_waiter__(group)
      if @await_group.equal?(group) then @await_group = nil
      else @waiters&.delete(group)
      end
    end

    # @api private
    def __remove_child__(child)
      children = @children
      return unless children

      children.delete(child)
      Polyphony::RootFiber.cooperative(__cooperative__?) if children.empty? && blocking?
    end

    # In a forked child: the parent process's other fibers do not run here, so this fiber
    # becomes the root of the child's fiber tree.
    # @api private
    def __become_root__
      @parent = nil
      @children = nil
      @root = true
      @thread = Thread.current
      @thread.main_fiber = self
      self
    end

    # Whether stock blocking calls in this (root) fiber must wait cooperatively: other fibers
    # live, or a timeout is pending (which a call blocking the thread could not see fire).
    # @api private
    def __cooperative__?
      (@children && !@children.empty?) || @__timeouts&.positive?
    end

    # Counts the pending timeouts of a root fiber (Polyphony::Timeout keeps it).
    # @api private
    def __timeouts__(delta)
      @__timeouts = (@__timeouts || 0) + delta
      Polyphony::RootFiber.cooperative(__cooperative__?)
      @__timeouts
    end

    # @api private
    def __children_hash__
      @children ||= {}.compare_by_identity
    end

    # The backend calls this in the fiber where a thread first uses Polyphony, which may be a
    # wait in its root fiber (a blocking one, for Ruby) before anything was spun: the thread is
    # made ready and the fiber learns it, so that wakers in other threads can reach it.
    # @api private
    def __backend_made__
      return unless blocking?

      @thread ||= Polyphony.__thread_init__
      @thread.main_fiber ||= self
    end

    # @api private
    def __setup_root__
      @root = true
      @thread = Polyphony.__thread_init__
      @thread.main_fiber = self
      @tag = :main
      self
    end

    # @api private
    def __shutdown_at_exit__
      __shutdown_children__
    rescue ::Exception => e
      warn "polyphony: at exit: #{e.class}: #{e.message}"
    end
  end

  # Waits for a set of fibers on behalf of one `await` call: O(1) per fiber that finishes.
  # The first exception among the results is raised once all have finished (after the others
  # were terminated, when `terminate_on_error`).
  class AwaitGroup
    # @return [Fiber] the fiber that waits
    attr_reader :waiter

    def initialize(fibers, waiter, terminate_on_error)
      @fibers = fibers
      @waiter = waiter
      @remaining = fibers.size
      @terminate_on_error = terminate_on_error
      @error = nil
    end

    # Called once by each fiber of the group when it ends (it forgets the group itself).
    # @api private
    def __done__(result)
      @remaining -= 1
      __error__(result) if result.is_a?(::Exception)
      @waiter.__wake__(nil) if @remaining.zero?
    end

    # @return [Array] the fibers' results, in order
    def wait
      @fibers.each do |fiber|
        if fiber.dead?
          @remaining -= 1
          __error__(fiber.result)
        else
          fiber.__add_waiter__(self)
        end
      end
      Polyphony.__switch__ while @remaining.positive?
      Kernel.raise @error if @error

      @fibers.map(&:result)
    ensure
      # Interrupted while waiting: the fibers still running must not report to this group.
      @fibers.each { |fiber| fiber.__remove_waiter__(self) } if @remaining.positive?
    end

    private

    def __error__(result)
      return unless result.is_a?(::Exception) && !@error

      @error = result
      @fibers.each { |fiber| fiber.terminate unless fiber.dead? } if @terminate_on_error
    end
  end

  class << self
    # Waits for all `fibers`; returns their results in order.
    # @api private
    def __await__(fibers, terminate_on_error)
      current = Fiber.current
      if fibers.any? { |f| f.equal?(current) }
        Kernel.raise FiberError, 'a fiber cannot await itself'
      end

      AwaitGroup.new(fibers, current, terminate_on_error).wait
    end
  end
end

Fiber.include(Polyphony::FiberAPI)

# Polyphony's `Fiber#raise` schedules the exception, and its `Fiber#kill` terminates the fiber
# the Polyphony way; Ruby's own (`kill` from 3.3 on) do not work on fibers parked by `transfer`.
# Prepended, since Ruby defines them on Fiber itself. Fibers Polyphony does not know keep Ruby's
# behaviour.
module Polyphony
  # @api private
  module FiberRaise
    def raise(*args)
      return super unless instance_variable_defined?(:@thread)

      Polyphony::FiberAPI.instance_method(:raise).bind_call(self, *args)
    end

    # Ends the fiber and waits until it has ended (its `ensure` blocks and children included),
    # as Ruby 3.3's Fiber#kill returns once the fiber is dead. From inside, it ends the fiber.
    # @return [self]
    def kill
      return super unless instance_variable_defined?(:@block)
      return self if __dead__
      return terminate if equal?(Fiber.current)

      terminate
      Polyphony.__await__([self], false) # (raises what the fiber raised while ending)
      self
    end
  end
end
Fiber.prepend(Polyphony::FiberRaise)

class << Fiber
  # Waits for all fibers; returns their results. If one raises, the others are terminated and
  # the exception is raised here.
  def await(*fibers)
    fibers = fibers.first if fibers.size == 1 && fibers.first.is_a?(Array)
    return [] if fibers.empty?

    Polyphony.__await__(fibers, true)
  end
  alias join await

  # Waits for the first of `fibers` to end; returns [fiber, result] (its result, or the
  # exception that ended it). The others go on.
  def select(*fibers)
    fibers = fibers.first if fibers.size == 1 && fibers.first.is_a?(Array)
    Kernel.raise ArgumentError, 'Fiber.select needs fibers' if fibers.empty?

    ended = fibers.find(&:dead?)
    return [ended, ended.result] if ended

    waiter = Fiber.current
    mailbox = waiter.monitor_mailbox
    others = [] # (ends of fibers the waiter monitors for itself: put back, in order)
    fibers.each { |fiber| fiber.monitor(waiter) }
    begin
      loop do
        message = mailbox.shift
        return message if fibers.include?(message.first)

        others << message
      end
    ensure
      fibers.each { |fiber| fiber.unmonitor(waiter) }
      others.reverse_each { |message| mailbox.unshift(message) }
    end
  end
end
