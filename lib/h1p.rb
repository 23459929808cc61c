# frozen_string_literal: true

require_relative 'polyphony/native'

# H1P: a blocking HTTP/1 parser (in Rust) for servers and clients. It needs no event loop:
# it works in a plain thread-per-connection server, under Ruby's Fiber scheduler and with
# Polyphony. Loading it defines H1P and nothing else (the native library defines Polyphony's
# classes only when `require 'polyphony'` asks).
#
#   parser = H1P::Parser.new(socket)          # or .new(socket, :client), or .new { next_chunk }
#   while (headers = parser.parse_headers)    # nil at a clean end of the connection
#     body = parser.read_body                 # nil when there is none
#     H1P.send_response(socket, { ':status' => 200, 'Content-Type' => 'text/plain' }, 'hi')
#   end
#
# Malformed input raises H1P::Error, with a message that says what was wrong.
module H1P
end
