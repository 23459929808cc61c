# frozen_string_literal: true

module Polyphony
  # A FIFO queue for fibers: `shift` waits (the fiber, not the thread) while the queue is
  # empty; with a capacity, `push` waits while it is full. Waiters are served in order. Once
  # closed, as a Thread::Queue: pushing raises ClosedQueueError, shifting takes what is left,
  # then nil.
  class Queue
    # @param capacity [Integer, nil] the most items it holds; nil for no limit
    def initialize(capacity = nil)
      @items = []
      @capacity = capacity
      @shifters = WaitList.new
      @pushers = WaitList.new
      @closed = false
    end

    # Adds an item, waiting for room when the queue is capped and full.
    # @raise [ClosedQueueError] if the queue is closed
    # @return [self]
    def push(item)
      @pushers.wait_while { !@closed && @capacity && @items.size >= @capacity }
      Kernel.raise ClosedQueueError, 'queue closed' if @closed

      @items << item
      @shifters.wake_first
      self
    end
    alias << push
    alias enq push

    # Adds an item at the front.
    def unshift(item)
      @items.unshift(item)
      @shifters.wake_first
      self
    end

    # Removes and returns the first item, waiting for one if the queue is empty; nil once the
    # queue is closed and empty.
    def shift
      while @items.empty? && !@closed
        woken = @shifters.wait_unless { !@items.empty? || @closed }
        return woken.value if woken.is_a?(Flushed)
      end
      return nil if @items.empty? # closed and drained

      item = @items.shift
      @pushers.wake_first if @capacity
      @shifters.wake_first unless @items.empty?
      item
    end
    alias pop shift
    alias deq shift

    # Takes every item there is now, yielding each in order; does not wait.
    # @return [self]
    def shift_each(&block)
      shift_all.each(&block)
      self
    end

    # Removes and returns every item, without waiting.
    def shift_all
      items = @items
      @items = []
      @pushers.wake_all if @capacity
      items
    end

    # Sets the capacity (nil: unlimited); waiting pushers are let in if there is room now.
    def cap(capacity)
      @capacity = capacity
      @pushers.wake_all
      self
    end

    # @return [Integer, nil]
    attr_reader :capacity

    # Whether the queue has a capacity.
    def capped?
      !@capacity.nil?
    end

    # Removes every item.
    def clear
      @items.clear
      @pushers.wake_all
      self
    end

    # Removes `item` (each occurrence); pushers waiting for room look again.
    def delete(item)
      @items.delete(item)
      @pushers.wake_all if @capacity
      self
    end

    def size
      @items.size
    end
    alias length size

    def empty?
      @items.empty?
    end

    # Closes the queue: waiting shifters get nil once it is empty, waiting pushers an error.
    # @return [self]
    def close
      @closed = true
      @shifters.wake_all
      @pushers.wake_all
      self
    end

    def closed?
      @closed
    end

    # Whether fibers wait to shift.
    def pending?
      !@shifters.empty?
    end

    # How many fibers wait to shift.
    def num_waiting
      @shifters.size
    end

    # Ends the wait of every fiber waiting to shift: their `shift` returns `value`.
    # @return [self]
    def flush_waiters(value)
      @shifters.wake_all(Flushed.new(value))
      self
    end

    # What #flush_waiters wakes shifters with.
    Flushed = Struct.new(:value)
    private_constant :Flushed

  end
end
