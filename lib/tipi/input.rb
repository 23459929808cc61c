# frozen_string_literal: true

require 'stringio'

module Tipi
  # rack.input: the request body, read from the connection as the app asks for it (read,
  # gets, each), and kept as it goes so that rewind works (Rack 2). A body over the server's
  # limit raises H1P::TooLarge (413); one that does not arrive within the timeout ends the
  # connection.
  class Input
    def initialize(parser, timeout = nil)
      @parser = parser
      @timeout = timeout
      @buffer = StringIO.new(String.new(encoding: Encoding::BINARY))
      @done = false
    end

    # Rack's read: everything (a String, "" at the end), or up to `length` bytes (nil at the end).
    def read(length = nil, out = nil)
      if length.nil?
        fill
        data = @buffer.read
        return data unless out

        out.replace(data)
      else
        fill(length)
        @buffer.read(length, out)
      end
    end

    def gets
      fill(nil, line: true)
      @buffer.gets
    end

    def each
      return to_enum(:each) unless block_given?

      while (line = gets)
        yield line
      end
    end

    def rewind
      @buffer.rewind
      0
    end

    def close; end

    private

    # Reads from the connection until `length` bytes (or a whole line) are buffered past the
    # read position, or the body ends.
    def fill(length = nil, line: false)
      until @done
        rest = @buffer.size - @buffer.pos
        break if length && rest >= length
        break if line && @buffer.string.index("\n", @buffer.pos)

        chunk = @timeout ? cancel_after(@timeout) { @parser.read_body_chunk } : @parser.read_body_chunk
        chunk ? append(chunk) : @done = true
      end
    end

    def append(chunk)
      position = @buffer.pos
      @buffer.seek(0, IO::SEEK_END)
      @buffer.write(chunk)
      @buffer.pos = position
    end
  end
end
