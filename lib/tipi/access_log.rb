# frozen_string_literal: true

module Tipi
  # The access log's lines: Common Log Format, then the seconds the request took.
  #
  #   127.0.0.1 - - [07/Dec/2026:10:00:00 +0000] "GET /a?b=1 HTTP/1.1" 200 1234 0.0004
  #
  # The size is the response's bytes, head included ("-" where unknown). Control characters,
  # quotes and backslashes in the request line are written as \xHH: a client cannot forge a
  # line, nor a terminal escape.
  module AccessLog
    module_function

    # @param out [IO] where lines go, each in one write (workers share the output)
    def call(out, env, status, seconds, bytes = nil)
      query = env['QUERY_STRING']
      target = query.nil? || query.empty? ? env['PATH_INFO'] : "#{env['PATH_INFO']}?#{query}"
      request = "#{env['REQUEST_METHOD']} #{target} #{env['SERVER_PROTOCOL']}"
      out.write("#{env['REMOTE_ADDR']} - - [#{Time.now.strftime('%d/%b/%Y:%H:%M:%S %z')}] " \
                "\"#{escape(request)}\" #{status.to_i} #{bytes || '-'} #{format('%.4f', seconds)}\n")
    end

    UNSAFE = /[\x00-\x1f\x7f"\\]/n.freeze
    private_constant :UNSAFE

    def escape(text)
      text = text.b
      text.match?(UNSAFE) ? text.gsub(UNSAFE) { |c| format('\\x%02X', c.ord) } : text
    end
  end
end
