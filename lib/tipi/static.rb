# frozen_string_literal: true

require 'rack'
require 'time'

module Tipi
  # A Rack app serving the files under a directory: Content-Type, ETag, Last-Modified,
  # 304 for If-None-Match (weak comparison) / If-Modified-Since, Range (one or several: 206,
  # else 416) unless If-Range names another version, HEAD. Nothing outside the root is
  # reachable: `..` segments, encoded slashes and symlinks that lead out get 404. Whole files
  # are sent by splice(2) (H1P::Parser#respond); ranges are read as the socket takes them,
  # never whole into memory.
  class Static
    def initialize(root)
      @root = File.realpath(root)
    end

    def call(env)
      method = env['REQUEST_METHOD']
      return error(405, 'Method Not Allowed', 'Allow' => 'GET, HEAD') unless %w[GET HEAD].include?(method)

      path = resolve(env['PATH_INFO'])
      return error(404, 'Not Found') unless path

      serve(env, path, File.stat(path))
    end

    private

    # The real path of a regular file under the root, or nil.
    def resolve(path_info)
      return nil if path_info.match?(/%2f|%5c/i) # encoded slashes

      segments = Rack::Utils.unescape_path(path_info).split('/').reject(&:empty?)
      return nil if segments.any? { |s| s == '..' || s.include?("\0") }

      path = File.join(@root, *segments)
      path = File.join(path, 'index.html') if File.directory?(path)
      real = File.realpath(path)
      real.start_with?("#{@root}/") && File.file?(real) ? real : nil
    rescue Errno::ENOENT, Errno::EACCES, Errno::ENOTDIR, Errno::ELOOP, ArgumentError
      nil
    end

    def serve(env, path, stat)
      etag = %("#{stat.size.to_s(16)}-#{stat.mtime.to_i.to_s(16)}")
      headers = {
        'Content-Type' => Rack::Mime.mime_type(File.extname(path), 'application/octet-stream'),
        'Last-Modified' => stat.mtime.httpdate,
        'ETag' => etag,
        'Accept-Ranges' => 'bytes'
      }
      return [304, headers.slice('Last-Modified', 'ETag'), []] if not_modified?(env, etag, stat.mtime)

      range = env['HTTP_RANGE'] if current?(env['HTTP_IF_RANGE'], etag, headers['Last-Modified'])
      ranges = range && Rack::Utils.get_byte_ranges(range, stat.size)
      return whole(path, stat.size, headers) if ranges.nil?
      return error(416, 'Range Not Satisfiable', 'Content-Range' => "bytes */#{stat.size}") if ranges.empty?
      return partial(path, ranges.first, stat.size, headers) if ranges.size == 1

      multipart(path, ranges, stat.size, headers)
    end

    # RFC 9110 13.1.2: If-None-Match compares entity tags weakly (W/"x" matches "x").
    def not_modified?(env, etag, mtime)
      if (match = env['HTTP_IF_NONE_MATCH'])
        return match.strip == '*' || match.split(',').any? { |tag| tag.strip.delete_prefix('W/') == etag }
      end
      since = env['HTTP_IF_MODIFIED_SINCE']
      since && Time.httpdate(since) >= Time.at(mtime.to_i)
    rescue ArgumentError
      false
    end

    # RFC 9110 13.1.5: a Range counts only if If-Range (when given) names this version: the
    # same strong entity tag, or exactly its Last-Modified date. Otherwise the whole file.
    def current?(if_range, etag, last_modified)
      return true if if_range.nil?

      if_range = if_range.strip
      if_range.start_with?('"', 'W/') ? if_range == etag : if_range == last_modified
    end

    def whole(path, size, headers)
      [200, headers.merge('Content-Length' => size.to_s), FileBody.new(path)]
    end

    def partial(path, range, size, headers)
      headers = headers.merge('Content-Range' => "bytes #{range.begin}-#{range.end}/#{size}",
                              'Content-Length' => range.size.to_s)
      [206, headers, Pieces.new(path, [[nil, range]])]
    end

    def multipart(path, ranges, size, headers)
      boundary = "tipi-#{Random.bytes(8).unpack1('H*')}"
      type = headers['Content-Type']
      parts = ranges.each_with_index.map do |range, i|
        ["#{"\r\n" unless i.zero?}--#{boundary}\r\nContent-Type: #{type}\r\n" \
         "Content-Range: bytes #{range.begin}-#{range.end}/#{size}\r\n\r\n", range]
      end
      body = Pieces.new(path, parts, "\r\n--#{boundary}--\r\n")
      headers = headers.merge('Content-Type' => "multipart/byteranges; boundary=#{boundary}",
                              'Content-Length' => body.bytesize.to_s)
      [206, headers, body]
    end

    def error(status, message, headers = {})
      body = "#{message}\n"
      [status, headers.merge('Content-Type' => 'text/plain', 'Content-Length' => body.bytesize.to_s), [body]]
    end

    # Byte ranges of a file, each after its text (a multipart part's head), then an ending:
    # read by pieces as the body is iterated.
    class Pieces
      PIECE = 65_536

      def initialize(path, parts, ending = nil)
        @path = path
        @parts = parts
        @ending = ending
      end

      def bytesize
        @parts.sum { |text, range| text.to_s.bytesize + range.size } + @ending.to_s.bytesize
      end

      def each
        File.open(@path, 'rb') do |file|
          @parts.each do |text, range|
            yield text if text
            file.seek(range.begin)
            left = range.size
            while left.positive? && (chunk = file.read([left, PIECE].min))
              left -= chunk.bytesize
              yield chunk
            end
          end
        end
        yield @ending if @ending
      end
    end

    # A whole file: Tipi splices it (`to_path`); other servers iterate it.
    class FileBody
      def initialize(path)
        @path = path
      end

      def to_path
        @path
      end

      def each
        File.open(@path, 'rb') do |file|
          while (chunk = file.read(65_536))
            yield chunk
          end
        end
      end
    end
  end
end
