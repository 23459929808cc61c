# frozen_string_literal: true

module Polyphony
  # Kernel-side copying between descriptors: splice(2) and tee(2) through the backend (io_uring
  # or epoll), with an emulation (read and write through a buffer) used when the kernel refuses
  # (EINVAL: neither end is a pipe, or a descriptor splice does not support) and when forced:
  # `Polyphony.emulate_splice = true` or `POLYPHONY_EMULATE_SPLICE=1`.
  module SpliceAPI
    CHUNK = 65_536

    # Moves up to `maxlen` bytes from `src` to `dest` (one should be a pipe; otherwise the
    # emulation runs); a negative `maxlen` moves everything until EOF. Returns the byte count
    # (0 at EOF).
    def splice(src, dest, maxlen)
      return Polyphony.__splice_once__(src, dest, maxlen) unless maxlen.negative?

      total = 0
      while (n = Polyphony.__splice_once__(src, dest, CHUNK)).positive?
        total += n
      end
      total
    end

    # Copies up to `maxlen` bytes from pipe `src` to pipe `dest` without consuming them (a
    # negative `maxlen`: as much as `src` holds, up to 64 KiB).
    def tee(src, dest, maxlen)
      maxlen = CHUNK if maxlen.negative?
      src_io = Polyphony.__reading_io__(src)
      dest_io = Polyphony.__writing_io__(dest)
      return Polyphony.__emulated_tee__ if Polyphony.emulate_splice

      Polyphony.__io_tee__(src_io.fileno, dest_io.fileno, maxlen)
    end

    # Moves everything from `src` to `dest` until EOF through a pipe of its own, for two
    # descriptors neither of which is a pipe (a file to a socket, a socket to a socket).
    def double_splice(src, dest)
      src_io = Polyphony.__reading_io__(src)
      dest_io = Polyphony.__writing_io__(dest)
      unless Polyphony.emulate_splice || Polyphony.__io_pending__(src_io)
        dest_io.flush
        return Polyphony.__io_double_splice__(src_io.fileno, dest_io.fileno)
      end

      pipe = Polyphony.pipe
      total = 0
      while (n = splice(src, pipe, CHUNK)).positive?
        moved = 0
        moved += splice(pipe, dest, n - moved) while moved < n
        total += n
      end
      total
    ensure
      pipe&.close
      pipe&.close_read
    end
  end

  # Instance forms: `dest.splice_from(src, maxlen)`, `src.splice_to(dest, maxlen)`, and the same
  # for tee. `maxlen` as for IO.splice (negative: until EOF); 64 KiB by default.
  module SpliceFromAPI
    def splice_from(src, maxlen = SpliceAPI::CHUNK)
      IO.splice(src, self, maxlen)
    end

    def splice_to(dest, maxlen = SpliceAPI::CHUNK)
      IO.splice(self, dest, maxlen)
    end

    def tee_from(src, maxlen = SpliceAPI::CHUNK)
      IO.tee(src, self, maxlen)
    end

    def tee_to(dest, maxlen = SpliceAPI::CHUNK)
      IO.tee(self, dest, maxlen)
    end
  end

  class << self
    # Whether splice and tee are emulated (read and write through a buffer).
    attr_writer :emulate_splice

    def emulate_splice
      @emulate_splice = ENV['POLYPHONY_EMULATE_SPLICE'] == '1' if @emulate_splice.nil?
      @emulate_splice
    end

    # @api private
    def __splice_once__(src, dest, maxlen)
      src_io = __reading_io__(src)
      dest_io = __writing_io__(dest)
      # Bytes Ruby has buffered would be skipped by the descriptor: hand those over first.
      if emulate_splice || Polyphony.__io_pending__(src_io)
        return __emulated_splice__(src_io, dest_io, maxlen)
      end

      Polyphony.__io_splice__(src_io.fileno, dest_io.fileno, maxlen)
    rescue Errno::EINVAL
      __emulated_splice__(src_io, dest_io, maxlen)
    end

    # @api private
    def __emulated_splice__(src_io, dest_io, maxlen)
      data = src_io.poly_read(maxlen)
      return 0 unless data

      dest_io.poly_write(data)
    end

    # @api private
    def __emulated_tee__
      raise NotImplementedError, 'tee cannot be emulated: it copies without consuming'
    end

    # @api private
    def __reading_io__(io)
      io.is_a?(Pipe) ? io.__read_io__ : io
    end

    # @api private
    def __writing_io__(io)
      io.is_a?(Pipe) ? io.__write_io__ : io
    end
  end
end

IO.extend(Polyphony::SpliceAPI)
IO.include(Polyphony::SpliceFromAPI)
Polyphony::Pipe.include(Polyphony::SpliceFromAPI)
