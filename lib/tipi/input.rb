# frozen_string_literal: true

require 'stringio'
require 'tempfile'

module Tipi
  # rack.input: the request body, read from the connection as the app asks for it (read,
  # gets, each), and kept as it goes so that rewind works (Rack 2): in memory up to
  # SPILL_AT bytes, then in an unlinked temporary file, so that a large upload does not sit
  # in memory. A body over the server's limit raises H1P::TooLarge (413); one that does not
  # arrive within the timeout ends the connection. Trailer fields that end the body (a chunked
  # HTTP/1.1 body's, an HTTP/2 stream's) go into the env as REQUEST_TRAILERS once it is read.
  class Input
    SPILL_AT = 1 << 20
    # The env key of the request's trailer fields, `{name => value or [values]}` (names
    # lower-cased), set once the body has been read to its end, if it had any. Rack has no
    # place for them, and RFC 9110 forbids merging them into the header fields.
    REQUEST_TRAILERS = 'tipi.request_trailers'

    # The next piece of the body from `parser` (nil at its end), within `timeout` seconds
    # (Polyphony::Cancel beyond) when there is one.
    def self.next_chunk(parser, timeout)
      timeout ? cancel_after(timeout) { parser.read_body_chunk } : parser.read_body_chunk
    end

    # @param parser [#read_body_chunk, #trailers] where the body comes from
    # @param env [Hash, nil] the request's Rack env, given REQUEST_TRAILERS
    # @param continue [#call, nil] called before the first read from the connection: the
    #   client asked `Expect: 100-continue` and waits for the interim response before it sends
    #   the body (none is sent to an app that answers without reading it)
    def initialize(parser, timeout = nil, env = nil, continue: nil)
      @parser = parser
      @env = env
      @timeout = timeout
      @continue = continue
      @buffer = nil # made on the first read: most requests have no body, and no app reads it
      @size = 0
      @last_newline = -1 # where the last "\n" kept is, to know when gets has a line
      @done = false
    end

    # Rack's read: everything (a String, "" at the end), or up to `length` bytes (nil at the end).
    def read(length = nil, out = nil)
      if length.nil?
        fill
        data = buffer.read || String.new(encoding: Encoding::BINARY)
        return data unless out

        out.replace(data)
      else
        fill(length)
        buffer.read(length, out)
      end
    end

    def gets
      fill(nil, line: true)
      buffer.gets
    end

    def each
      return to_enum(:each) unless block_given?

      while (line = gets)
        yield line
      end
    end

    def rewind
      buffer.rewind
      0
    end

    # Called by the server after the response: nothing more is read from the connection,
    # whose parser goes on to the next request (perhaps, on a renewed connection, another
    # client's), and a spilled body's file goes at once.
    def close
      @done = true
      @buffer.close! if @buffer.is_a?(Tempfile)
    end

    # Whether the body went to a temporary file.
    def spilled?
      @buffer.is_a?(Tempfile)
    end

    # The error that ended the body's reading (H1P::Error for a malformed or too large body,
    # SystemCallError or IOError when the client went away), whatever the app made of it.
    attr_reader :failure

    # Whether the client still waits for `100 Continue` before it sends the body.
    def awaiting_continue?
      !@continue.nil?
    end

    # Reads what of the rest of the body has already arrived (no waiting), and tells whether
    # that was all of it: a server answers a request whose body the app left unread, and must
    # know whether the connection can go on. A malformed body raises its H1P::Error here.
    def drain_buffered
      return true if @done
      return false if @continue # the client has sent nothing of it
      return false if @parser.__in_use__ # a fiber the app left reads it on

      until @done
        chunk = capture { @parser.read_body_chunk(true) }
        return @parser.complete?.tap { |complete| finished if complete } unless chunk

        chunk.clear
      end
      true
    end

    private

    def buffer
      @buffer ||= StringIO.new(String.new(encoding: Encoding::BINARY))
    end

    # Reads from the connection until `length` bytes (or a whole line) are buffered past the
    # read position, or the body ends.
    def fill(length = nil, line: false)
      until @done
        rest = @size - buffer.pos
        break if length && rest >= length
        break if line && @last_newline >= buffer.pos

        send_continue if @continue
        chunk = capture { Input.next_chunk(@parser, @timeout) }
        chunk ? append(chunk) : finished
      end
    end

    def send_continue
      continue = @continue
      @continue = nil
      continue.call
    end

    # Runs a read from the connection, remembering the error that ends it.
    def capture
      yield
    rescue H1P::Error, SystemCallError, IOError => e
      @failure ||= e
      raise
    end

    def finished
      @done = true
      trailers = @env && @parser.trailers
      @env[REQUEST_TRAILERS] = trailers if trailers
    end

    def append(chunk)
      spill if @size + chunk.bytesize > SPILL_AT && !spilled?
      newline = chunk.rindex("\n")
      @last_newline = @size + newline if newline
      position = buffer.pos
      buffer.seek(0, IO::SEEK_END)
      buffer.write(chunk)
      buffer.pos = position
      @size += chunk.bytesize
      chunk.clear # its copy is kept: free it now rather than at the next GC
    end

    def spill
      file = Tempfile.new('tipi-body')
      file.unlink # no name left behind, whatever happens to this process
      file.binmode
      file.write(buffer.string)
      file.pos = buffer.pos
      @buffer = file
    end
  end
end

module Tipi
  # rack.input of a request that has no body: nothing to read or keep, so one object serves
  # them all (Input::EMPTY).
  class EmptyInput
    # "" for everything or for 0 bytes, nil (the end) for more (`out` emptied, as StringIO does).
    def read(length = nil, out = nil)
      return out&.clear unless length.nil? || length.zero?

      out ? out.clear : String.new(encoding: Encoding::BINARY)
    end

    def gets
      nil
    end

    def each
      return to_enum(:each) unless block_given?

      self
    end

    def rewind
      0
    end

    def close
      nil
    end
  end

  class Input
    EMPTY = EmptyInput.new.freeze
  end
end
