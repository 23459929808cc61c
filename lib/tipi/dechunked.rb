# frozen_string_literal: true

module Tipi
  # A response body the app chunk-encoded itself (Rack 2's Rack::Chunked does, as it sees
  # SERVER_PROTOCOL 'HTTP/2' as a version that chunks), decoded for HTTP/2, which frames bodies
  # its own way: `each` yields the data, and `trailers` the fields that ended it. H1P decodes
  # (strictly: a malformed encoding is an H1P::Error, and the stream is reset).
  class Dechunked
    # What H1P reads before the body: a response head announcing it chunked.
    HEAD = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    # Whether the app's response fields say that it chunked the body itself.
    def self.chunked?(headers)
      headers.any? do |name, value|
        name.casecmp('transfer-encoding')&.zero? && value.to_s.downcase.include?('chunked')
      end
    end

    def initialize(body)
      @body = body
    end

    def each
      pieces = @body.to_enum(:each)
      head = HEAD
      @parser = H1P::Parser.new(:client) do
        next pieces.next.to_s unless head

        head = nil
        HEAD
      rescue StopIteration
        nil
      end
      @parser.parse_headers
      while (data = @parser.read_body_chunk)
        yield data
      end
    end

    def trailers
      @parser&.trailers
    end

    def close
      @body.close if @body.respond_to?(:close)
    end
  end
end
