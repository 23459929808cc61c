# frozen_string_literal: true

module Polyphony
  # A pool of up to `limit` resources made on demand by the block given to `new`; a fiber that
  # wants one when all are in use waits for one to be released.
  class ResourcePool
    # @return [Integer]
    attr_reader :limit

    def initialize(limit: 4, &factory)
      raise ArgumentError, 'ResourcePool needs a block making a resource' unless factory
      raise ArgumentError, 'limit must be positive' unless limit.positive?

      @limit = limit
      @factory = factory
      @size = 0
      @available = Polyphony::Queue.new
      @held = {}
    end

    # How many resources exist.
    attr_reader :size

    # How many are free right now.
    def available
      @available.size
    end

    # Lends a resource to the block; returns the block's value. A fiber that holds one already
    # (a nested acquire) gets the same one.
    def acquire
      fiber = Fiber.current
      held = @held[fiber]
      return yield(held) if held

      resource = __checkout__
      @held[fiber] = resource
      begin
        yield resource
      ensure
        @held.delete(fiber)
        if @discarded&.delete(fiber)
          @size -= 1
        else
          @available << resource
        end
      end
    end

    # Inside `acquire`: the resource held is not given back to the pool when the block ends
    # (a broken connection, say); a new one is made when needed.
    # @return [self]
    def discard!
      Kernel.raise ArgumentError, 'discard! outside acquire' unless @held.key?(Fiber.current)

      (@discarded ||= {})[Fiber.current] = true
      self
    end

    # Makes resources until there are `limit` of them.
    # @return [self]
    def fill!
      @available << __make__ while @size < @limit
      self
    end

    # Calls `name` on a resource, acquired for the call: `pool.query(sql)`.
    def method_missing(name, *args, **options, &block)
      return super if %i[to_ary to_str to_hash].include?(name)

      acquire { |resource| resource.public_send(name, *args, **options, &block) }
    end

    def respond_to_missing?(name, include_private = false)
      return false if %i[to_ary to_str to_hash].include?(name)

      true
    end
    alias with_resource acquire

    private

    def __checkout__
      return @available.shift unless @available.empty? && @size < @limit

      __make__
    end

    def __make__
      @size += 1
      begin
        @factory.call
      rescue ::Exception
        @size -= 1
        raise
      end
    end
  end
end
