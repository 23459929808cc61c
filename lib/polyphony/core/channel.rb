# frozen_string_literal: true

module Polyphony
  # A queue that can be closed: receivers get the remaining items, then nil.
  class Channel < Queue
    # Raised when sending to a closed channel.
    class ClosedError < StandardError; end

    def initialize(capacity = nil)
      super
      @closed = false
    end

    # Sends an item.
    # @raise [ClosedError] when the channel is closed
    def push(item)
      raise ClosedError, 'send to a closed channel' if @closed

      super
    end
    alias << push
    alias send push

    # The next item; nil once the channel is closed and drained.
    def shift
      @shifters.wait_while { empty? && !@closed }
      return nil if empty? # closed and drained

      super
    end
    alias receive shift

    # Closes the channel and wakes every waiting receiver.
    def close
      @closed = true
      @shifters.wake_all
      self
    end

    def closed?
      @closed
    end
  end
end
