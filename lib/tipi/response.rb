# frozen_string_literal: true

module Tipi
  # Writes the Rack responses H1P's parser does not write on its own (an Array of Strings is
  # written by H1P::Parser#send_rack_response before it comes to this): an Array of other
  # objects joined, a file by splice, a body the app framed as it comes, anything else chunked
  # as it is iterated (to HTTP/1.0, as it comes until the connection closes).
  module Response
    TOKEN = /\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\z/.freeze

    module_function

    # @param connection [String, nil] a Connection field to send unless the app sent one:
    #   "close" when the connection ends after this response, "keep-alive" for an HTTP/1.0
    #   client that asked for it
    # @param http10 [Boolean] the client speaks HTTP/1.0, which has no chunked coding: a body
    #   of unknown length is sent as it comes and ended by closing the connection
    # @return [Boolean] whether the body ends with the connection (the caller closes it)
    def write(conn, status, headers, body, head_request: false, connection: nil, http10: false)
      fields = { ':status' => status }
      headers.each do |name, value|
        # Rack's "\n"-joined values are repeated fields.
        fields[name] = value.is_a?(String) && value.include?("\n") ? value.split("\n") : value
      end
      fields['Connection'] = connection if connection && !field?(fields, 'connection')
      if head_request && !field?(fields, 'content-length') && !field?(fields, 'transfer-encoding')
        write_head_of_stream(conn, status, fields, http10)
      elsif head_request || [204, 304].include?(status.to_i) || status.to_i < 200
        H1P.send_response(conn, fields)
      elsif body.respond_to?(:to_ary)
        H1P.send_response(conn, fields, body.to_ary.join)
      elsif body.respond_to?(:to_path) && field?(fields, 'content-length')
        # A file: its bytes go from the file to the socket in the kernel (through TLS, by
        # pieces).
        H1P.send_response(conn, fields)
        File.open(body.to_path, 'rb') do |file|
          conn.is_a?(IO) ? IO.double_splice(file, conn) : IO.copy_stream(file, conn)
        end
      elsif field?(fields, 'content-length') || field?(fields, 'transfer-encoding')
        # The app framed the body itself (Rack::Chunked chunks it): sent as it comes.
        H1P.send_response(conn, fields)
        body.each { |chunk| conn.write(chunk) }
      elsif http10
        write_head_until_close(conn, status, headers)
        body.each { |chunk| conn.write(chunk) }
        return true
      elsif body.respond_to?(:trailers)
        write_with_trailers(conn, fields, body)
      else
        enum = body.to_enum(:each)
        H1P.send_chunked_response(conn, fields) do
          enum.next
        rescue StopIteration
          nil
        end
      end
      false
    end

    # A HEAD answer for a body of unknown length: the framing a GET would get (chunked; none
    # for HTTP/1.0), not the `Content-Length: 0` H1P would add.
    def write_head_of_stream(conn, status, fields, http10)
      return H1P.send_response(conn, fields.merge('Transfer-Encoding' => 'chunked')) unless http10

      write_head(conn, status, fields.reject { |name, _| name == ':status' })
    end

    # The head of a body that the end of the connection ends (HTTP/1.0 has no chunked coding):
    # as given, with Connection: close in place of any Connection field or pseudo-field.
    def write_head_until_close(conn, status, headers)
      headers = headers.reject { |name, _| name.start_with?(':') || name.casecmp('connection')&.zero? }
      write_head(conn, status, headers.merge('Connection' => 'close'))
    end

    # A chunked body ending with the fields its `trailers` gives after iteration (Rack 3's
    # convention; HTTP/2 sends them too).
    def write_with_trailers(conn, fields, body)
      H1P.send_response(conn, fields.merge('Transfer-Encoding' => 'chunked'))
      body.each { |chunk| H1P.send_body_chunk(conn, chunk.to_s) }
      trailers = body.trailers
      H1P.send_body_chunk(conn, nil, trailers.nil? || trailers.empty? ? nil : trailers)
    end

    # The status line and fields alone, as given (a partial hijack's head: the app's callable
    # writes what follows, so no framing is added).
    def write_head(conn, status, headers)
      head = +"HTTP/1.1 #{status} #{Rack::Utils::HTTP_STATUS_CODES[status.to_i]}\r\n"
      headers.each do |name, value|
        raise H1P::Error, "invalid header name #{name.inspect}" unless name.match?(TOKEN)

        Array(value).flat_map { |v| v.to_s.split("\n") }.each do |line|
          raise H1P::Error, "header #{name} has CR or NUL in its value" if line.match?(/[\r\0]/)

          head << name << ': ' << line << "\r\n"
        end
      end
      conn.write(head << "\r\n")
    end

    # (Field names are ASCII: `casecmp`, not `casecmp?`, whose Unicode case folding made this
    # check a fifth of a request's time.)
    def field?(fields, name)
      fields.any? { |key, _| key.is_a?(String) && key.casecmp(name)&.zero? }
    end

    # Whether the app's headers ask for the connection to close.
    def close_requested?(headers)
      H1P.connection_close?(headers)
    end
  end
end
