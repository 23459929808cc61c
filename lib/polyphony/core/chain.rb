# frozen_string_literal: true

module Polyphony
  class Backend
    # Runs I/O operations in order as one submission (io_uring links them; epoll starts each
    # when the one before completes), and returns the total byte count:
    #
    #   Polyphony.backend.chain([:write, conn, head], [:splice, pipe, conn, size], [:write, conn, "\r\n"])
    #
    # Ops: `[:write, io, string]` (also `:send`), `[:splice, src, dest, maxlen]`. The kernel
    # stops a chain at a failure and, on io_uring, at a short write or splice; what is left
    # is then done one op at a time, so the outcome is the same either way. An op's error is
    # raised as its Errno.
    def chain(*ops)
      Kernel.raise ArgumentError, 'chain needs at least one op' if ops.empty?

      ops = ops.map { |op| __chain_op__(op) }
      ops.each { |kind, io| io.flush if kind == :write }
      # A splice may move less than asked with the kernel carrying on with the next op: so a
      # splice ends a submission, and the next ones wait until it is complete.
      segments = ops.slice_after { |kind, *| kind == :splice }
      segments.sum { |segment| __chain_segment__(segment) }
    end

    private

    def __chain_segment__(ops)
      raw = ops.map { |kind, *args| [kind, *args.map { |a| a.is_a?(IO) ? a.fileno : a }] }
      results = Polyphony.__chain__(raw)
      total = 0
      ops.each_with_index do |op, i|
        result = results[i]
        if result >= 0 && (op.first == :splice || result == op[2].bytesize)
          total += result + (op.first == :splice ? __chain_finish__(op, result) : 0)
          next
        end
        unless result >= 0 || [Errno::ECANCELED::Errno, Errno::EAGAIN::Errno].include?(-result)
          Kernel.raise SystemCallError.new(nil, -result)
        end

        # Cut short: finish this op, then the rest, one at a time.
        done = [result, 0].max
        total += done + __chain_finish__(op, done)
        ops[(i + 1)..].each { |rest| total += __chain_finish__(rest, 0) }
        break
      end
      total
    end


    def __chain_op__(op)
      kind, *args = op
      case kind
      when :write, :send
        io, data = args
        [:write, Polyphony.__writing_io__(io), data.to_s.b]
      when :splice
        src, dest, maxlen = args
        Kernel.raise ArgumentError, 'splice in a chain needs a non-negative maxlen' unless maxlen.to_i >= 0

        [:splice, Polyphony.__reading_io__(src), Polyphony.__writing_io__(dest), maxlen.to_i]
      else
        Kernel.raise ArgumentError, "unknown chain op #{kind.inspect}: use :write, :send or :splice"
      end
    end

    def __chain_finish__(op, done)
      kind, a, b, c = op
      return a.poly_write(b.byteslice(done..)) if kind == :write

      left = c - done
      moved = 0
      while left.positive? && (n = IO.splice(a, b, left)).positive?
        moved += n
        left -= n
      end
      moved
    end
  end
end
