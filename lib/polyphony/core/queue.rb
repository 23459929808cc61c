# frozen_string_literal: true

module Polyphony
  # A FIFO queue for fibers: `shift` waits (the fiber, not the thread) while the queue is
  # empty; with a capacity, `push` waits while it is full. Waiters are served in order.
  class Queue
    # @param capacity [Integer, nil] the most items it holds; nil for no limit
    def initialize(capacity = nil)
      @items = []
      @capacity = capacity
      @shifters = {}
      @pushers = {}
    end

    # Adds an item, waiting for room when the queue is capped and full.
    # @return [self]
    def push(item)
      __wait__(@pushers) while @capacity && @items.size >= @capacity
      @items << item
      __wake_first__(@shifters)
      self
    end
    alias << push

    # Adds an item at the front.
    def unshift(item)
      @items.unshift(item)
      __wake_first__(@shifters)
      self
    end

    # Removes and returns the first item, waiting for one if the queue is empty.
    def shift
      __wait__(@shifters) while @items.empty?
      item = @items.shift
      __wake_first__(@pushers) if @capacity
      __wake_first__(@shifters) unless @items.empty?
      item
    end
    alias pop shift

    # Removes and returns every item, without waiting.
    def shift_all
      items = @items
      @items = []
      @pushers.size.times { __wake_first__(@pushers) } if @capacity
      items
    end

    # Sets the capacity (nil: unlimited); waiting pushers are let in if there is room now.
    def cap(capacity)
      @capacity = capacity
      @pushers.size.times { __wake_first__(@pushers) }
      self
    end

    # @return [Integer, nil]
    attr_reader :capacity

    # Removes every item.
    def clear
      @items.clear
      @pushers.size.times { __wake_first__(@pushers) }
      self
    end

    # Removes `item` (each occurrence).
    def delete(item)
      @items.delete(item)
      self
    end

    def size
      @items.size
    end
    alias length size

    def empty?
      @items.empty?
    end

    # How many fibers wait to shift.
    def num_waiting
      @shifters.size
    end

    private

    def __wait__(waiters)
      fiber = Fiber.current
      waiters[fiber] = true
      begin
        Polyphony.__switch__
      ensure
        waiters.delete(fiber)
      end
    end

    def __wake_first__(waiters)
      return if waiters.empty?

      fiber, = waiters.first
      waiters.delete(fiber)
      fiber.__wake__(nil)
    end
  end
end
