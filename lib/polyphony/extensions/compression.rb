# frozen_string_literal: true

require 'zlib'

module Polyphony
  # Stream compression between IOs (or Polyphony::Pipes), reading and writing through the
  # backend: `IO.gzip`, `IO.gunzip`, `IO.deflate`, `IO.inflate`. Either end may also be a
  # String: a source String is the data, a destination String has the output appended.
  module CompressionAPI
    # Compresses `src` into `dest` in the gzip format (RFC 1952), until EOF.
    # @param options [Hash, Integer] `level:` (or the level alone, as earlier versions took it),
    #   `mtime:` (a Time or seconds; the current time by default, false for none),
    #   `orig_name:` and `comment:` (header fields, nil for none)
    # @return [Integer] the bytes written
    def gzip(src, dest, options = {}, **keywords)
      options = options.is_a?(Integer) ? { level: options } : options.merge(keywords)
      unknown = options.keys - %i[level mtime orig_name comment]
      Kernel.raise ArgumentError, "unknown gzip option(s): #{unknown.join(', ')}" unless unknown.empty?

      level = options.fetch(:level, Zlib::DEFAULT_COMPRESSION)
      Gzip.new(level, options).pump(src, dest)
    end

    # Decompresses gzip (or zlib) data from `src` into `dest`. With `info` (a Hash), the gzip
    # header's `:mtime` (a Time), `:orig_name` and `:comment` are stored in it.
    # @return [Integer] the bytes written
    def gunzip(src, dest, info = nil)
      header = info && GzipHeader.new
      written = Compression.pump(src, dest, Zlib::Inflate.new(Zlib::MAX_WBITS + 32)) do |data|
        header&.feed(data)
      end
      header&.store(info)
      written
    end

    # Compresses `src` into `dest` in the zlib format (RFC 1950).
    # @return [Integer] the bytes written
    def deflate(src, dest, level = Zlib::DEFAULT_COMPRESSION)
      Compression.pump(src, dest, Zlib::Deflate.new(level))
    end

    # Decompresses zlib data from `src` into `dest`.
    # @return [Integer] the bytes written
    def inflate(src, dest)
      Compression.pump(src, dest, Zlib::Inflate.new)
    end
  end

  # @api private
  module Compression
    class << self
      # Runs every piece of `src` through `stream` into `dest`; yields each input piece first.
      def pump(src, dest, stream)
        written = 0
        each_piece(src) do |data|
          yield data if block_given?
          written += put(dest, stream.is_a?(Zlib::Deflate) ? stream.deflate(data) : stream.inflate(data))
        end
        written + put(dest, stream.finish)
      ensure
        stream.close
      end

      def each_piece(src, &block)
        return yield(src.b) if src.is_a?(String)

        Polyphony.__reading_io__(src).read_loop(&block)
      end

      def put(dest, data)
        return 0 if data.empty?
        return (dest << data) && data.bytesize if dest.is_a?(String)

        Polyphony.__writing_io__(dest).poly_write(data)
      end
    end
  end

  # A gzip member written by hand around a raw deflate stream: Zlib::Deflate's own gzip mode
  # cannot set the header's fields.
  # @api private
  class Gzip
    FNAME = 0x08
    FCOMMENT = 0x10
    OS_UNIX = 3

    def initialize(level, options)
      @level = level
      @mtime = options.fetch(:mtime, Time.now)
      @orig_name = options[:orig_name]
      @comment = options[:comment]
    end

    def pump(src, dest)
      crc = 0
      size = 0
      written = Compression.put(dest, header)
      written += Compression.pump(src, dest, Zlib::Deflate.new(@level, -Zlib::MAX_WBITS)) do |data|
        crc = Zlib.crc32(data, crc)
        size += data.bytesize
      end
      written + Compression.put(dest, [crc, size & 0xffff_ffff].pack('VV'))
    end

    private

    def header
      flags = 0
      extra = +''.b
      if @orig_name
        flags |= FNAME
        extra << field(@orig_name, :orig_name)
      end
      if @comment
        flags |= FCOMMENT
        extra << field(@comment, :comment)
      end
      [0x1f, 0x8b, 8, flags, mtime, xfl, OS_UNIX].pack('CCCCVCC') + extra
    end

    def field(value, name)
      value = value.to_s.b
      Kernel.raise ArgumentError, "gzip #{name} must not contain NUL" if value.include?("\0")

      value + "\0"
    end

    def mtime
      return 0 unless @mtime

      @mtime.to_i & 0xffff_ffff
    end

    def xfl
      return 2 if @level == Zlib::BEST_COMPRESSION
      return 4 if @level == Zlib::BEST_SPEED

      0
    end
  end

  # Reads a gzip header's fields from the first bytes of a stream, however they are split.
  # @api private
  class GzipHeader
    FHCRC = 0x02
    FEXTRA = 0x04

    def initialize
      @bytes = +''.b
      @fields = nil
    end

    def feed(data)
      return if @fields || @bytes.bytesize > 1 << 20

      @bytes << data.b
      @fields = parse
    end

    def store(info)
      fields = @fields || {}
      info[:mtime] = fields[:mtime]
      info[:orig_name] = fields[:orig_name]
      info[:comment] = fields[:comment]
      info
    end

    private

    # The fields, or nil while the header is incomplete (or when the data is not gzip).
    def parse
      bytes = @bytes
      return nil if bytes.bytesize < 10
      return {} unless bytes.getbyte(0) == 0x1f && bytes.getbyte(1) == 0x8b

      flags = bytes.getbyte(3)
      mtime = bytes.byteslice(4, 4).unpack1('V')
      at = 10
      if flags & FEXTRA != 0
        return nil if bytes.bytesize < at + 2

        at += 2 + bytes.byteslice(at, 2).unpack1('v')
      end
      orig_name, at = zero_terminated(bytes, at, flags & Gzip::FNAME != 0)
      return nil unless at

      comment, at = zero_terminated(bytes, at, flags & Gzip::FCOMMENT != 0)
      return nil unless at

      { mtime: mtime.zero? ? nil : Time.at(mtime), orig_name: orig_name, comment: comment }
    end

    def zero_terminated(bytes, at, present)
      return [nil, at] unless present

      ends = bytes.index("\0", at)
      ends ? [bytes.byteslice(at, ends - at).force_encoding(Encoding::ISO_8859_1).encode(Encoding::UTF_8), ends + 1] : [nil, nil]
    end
  end
end

IO.extend(Polyphony::CompressionAPI)
