# frozen_string_literal: true

# A Rack app for Tipi: `exe/tipi examples/hello.ru`, then `curl http://127.0.0.1:1234/hello`.
run lambda { |env|
  body = "Hello from Tipi! You asked for #{env['PATH_INFO']}\n"
  [200, { 'Content-Type' => 'text/plain', 'Content-Length' => body.bytesize.to_s }, [body]]
}
