# frozen_string_literal: true

module Polyphony
  # A queue that can be closed: receivers get the remaining items, then nil.
  class Channel < Queue
    # Raised when sending to a closed channel.
    class ClosedError < StandardError; end

    # Sends an item.
    # @raise [ClosedError] when the channel is closed
    def push(item)
      raise ClosedError, 'send to a closed channel' if closed?

      super
    end
    alias << push
    alias send push

    # The next item; nil once the channel is closed and drained (Queue#shift).
    alias receive shift
  end
end
