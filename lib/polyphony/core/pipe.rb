# frozen_string_literal: true

module Polyphony
  # A pipe as one object: write to it, read from it (Polyphony's Pipe). Its ends are plain
  # IOs, so everything IO can do (and Polyphony's IO methods) works on it, splice included.
  class Pipe
    # @return [IO] the end to read from
    attr_reader :read_io
    # @return [IO] the end to write to
    attr_reader :write_io

    def initialize
      @read_io, @write_io = IO.pipe
    end

    %i[read readpartial read_nonblock gets each_line read_loop feed_loop poly_read poly_wait
       wait_readable eof?].each do |name|
      define_method(name) { |*args, **kw, &block| @read_io.public_send(name, *args, **kw, &block) }
    end

    %i[write << puts print write_nonblock poly_write].each do |name|
      define_method(name) do |*args, &block|
        result = @write_io.public_send(name, *args, &block)
        name == :<< ? self : result
      end
    end

    # Closes the writing end: readers see EOF once they have read what was written.
    def close_write
      @write_io.close unless @write_io.closed?
      self
    end

    # Closes the writing end, as Polyphony's Pipe#close does (readers see EOF); the reading end
    # closes with #close_read, or when the pipe is garbage collected.
    def close
      close_write
      nil
    end

    # Closes the reading end.
    def close_read
      @read_io.close unless @read_io.closed?
      self
    end

    # The two descriptors, [read, write].
    def fds
      [@read_io.fileno, @write_io.fileno]
    end

    # Whether the writing end is closed.
    def closed?
      @write_io.closed?
    end

    # @api private
    def __read_io__
      @read_io
    end

    # @api private
    def __write_io__
      @write_io
    end
  end

  class << self
    # A new Polyphony::Pipe.
    def pipe
      Pipe.new
    end
  end
end
